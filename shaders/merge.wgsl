// Adapter merge for adapter-free inference: the adapted weight written out once,
//
//   W[o, i] = modulate(W0[o, i], m, s)        (the kind's snippet, shaders/kinds/)
//   m = Π_g Σ_{k in group g} B[bi, bj, o mod p, k]·A[bi, bj, k, i mod q],  bi = o / p, bj = i / q
//
// A template: the adapter kind's snippet is prepended and defines GROUPS and modulate.
// One invocation per element of a range of rows (row0 .. row0 + rows), so that weights
// over the storage-binding limit are merged range by range. Workgroups are folded into
// x and y past 65535: the linear id is gid.x + gid.y·num_workgroups.x·64.

struct Params {
    rows: u32,     // rows in this range
    row0: u32,     // first row of the range in W0
    d_in: u32,     // columns of W0
    nb: u32,       // grid size b
    p: u32,        // d_out / b
    q: u32,        // d_in / b
    s: f32,        // scale s
    rb: u32,       // per-block rank r_b
    _pad3: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> wq: array<WQ>;          // [rows, d_in] (this range)
@group(0) @binding(2) var<storage, read> fa: array<f32>;         // A [b, b, r_b, q]
@group(0) @binding(3) var<storage, read> fb: array<f32>;         // B [b, b, p, r_b]
@group(0) @binding(4) var<storage, read_write> w: array<f32>;    // [rows, d_in] (this range)
@group(0) @binding(5) var<storage, read> wq4: array<WQ4>;       // W0 as vec4 (the weights snippet's wload4; unused here)

@compute @workgroup_size(64)
fn merge_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = gid.x + gid.y * nwg.x * 64u;
    if (e >= p.rows * p.d_in) { return; }
    let o = p.row0 + e / p.d_in;
    let i = e % p.d_in;
    let bi = o / p.p;
    let bj = i / p.q;
    let blk = bi * p.nb + bj;
    let brow = (blk * p.p + o - bi * p.p) * p.rb;
    let acol = blk * p.rb * p.q + i - bj * p.q;
    let gr = p.rb / GROUPS;
    var m = rank_sum(brow, acol, 0u, gr);
    if (GROUPS == 2u) { m *= rank_sum(brow, acol, gr, p.rb); }
    w[e] = modulate(wload(e), m, p.s);
}

// Σ_{k0 <= k < k1} B[row at brow, k]·A[k, column at acol].
fn rank_sum(brow: u32, acol: u32, k0: u32, k1: u32) -> f32 {
    var m = 0.0;
    for (var k = k0; k < k1; k++) { m = fma(fb[brow + k], fa[acol + k * p.q], m); }
    return m;
}
