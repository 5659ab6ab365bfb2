// Fused adapted linear layer: the product with W' = modulate(W0, M) where every W0
// element is modulated as it is loaded, so M, ΔW and W' are never written to memory.
// A template: the adapter kind's snippet (shaders/kinds/) is prepended and defines
// GROUPS and modulate (W0 ⊙ (1 + s·M) for BoHA and HiRA, W0 + s·M for the additive
// control, the pair kinds' product of two rank groups).
//
//   forward:  y[t, o]  = Σ_i x[t, i]·W'[o, i]   + beta·y[t, o]
//   backward: dx[t, i] = Σ_o dy[t, o]·W'[o, i]  + beta·dx[t, i]
//   W'[o, i] from m = Π_g Σ_{k in group g} B[bi, bj, o mod p, k]·A[bi, bj, k, i mod q],
//   bi = o / p, bj = i / q, group g the ranks g·r_b/GROUPS .. (g + 1)·r_b/GROUPS
//
// Two families, as for the GEMMs:
// - reg4c_*, reg4k_*, reg4_*, reg_*: no barriers; each invocation computes a register
//             tile of tokens × columns straight from global memory (CPU-type adapters).
//             With p and q multiples of 4 and the workgroup's 16 columns in one block
//             (p forward, q backward a multiple of 16): reg4c (vec4 loads, 16 × 16 tiles,
//             one factor kept in registers per block) for r_b ≤ 4 or r_b = 8, reg4k
//             (ranks in chunks of 4) for other multiples of 4; else reg4 (vec4 loads,
//             16 × 16 tiles) when p and q are multiples of 4, reg (4 × 4) for any shape.
// - shared_*: workgroup tiles of BM tokens × BN columns; each W0 tile is modulated once
//             while it is staged into workgroup memory and used by all BM tokens.
// beta is 0 (overwrite, the old value is never read) or 1 (accumulate).

struct Params {
    t: u32,        // tokens T
    d_out: u32,    // rows of W0
    d_in: u32,     // columns of W0
    nb: u32,       // grid size b
    p: u32,        // d_out / b
    q: u32,        // d_in / b
    tiles: u32,    // reg_*: column tiles per block (ceil(p / 4) forward, ceil(q / 4) backward)
    rb: u32,       // per-block rank r_b
    s: f32,        // scale s
    beta: f32,     // 0 overwrite, 1 accumulate
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> inp: array<f32>;        // x [T, d_in] forward, dy [T, d_out] backward
@group(0) @binding(2) var<storage, read> wq: array<WQ>;          // [d_out, d_in]
@group(0) @binding(3) var<storage, read> fa: array<f32>;         // A [b, b, r_b, q]
@group(0) @binding(4) var<storage, read> fb: array<f32>;         // B [b, b, p, r_b]
@group(0) @binding(5) var<storage, read_write> out: array<f32>;  // y [T, d_out] forward, dx [T, d_in] backward

// Ranks per group.
fn group_rank() -> u32 {
    return p.rb / GROUPS;
}

// The elementwise product of two 4×4 matrices (rank groups multiply elementwise).
fn hprod(a: mat4x4<f32>, b: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(a[0] * b[0], a[1] * b[1], a[2] * b[2], a[3] * b[3]);
}

fn finish(idx: u32, v: f32) {
    // beta = 0 must not read the old value: it may be uninitialised (NaN).
    if (p.beta != 0.0) {
        out[idx] = v + p.beta * out[idx];
    } else {
        out[idx] = v;
    }
}

// ---------------------------------------------------------------- register family
//
// The fallback for any shape (p or q not a multiple of 4). Workgroup (x, y) owns 4
// columns of one block, so its W0, A and B addresses are the same in every lane; each
// invocation owns TM = 4 tokens of workgroup z's token range.

const TM: u32 = 4u;          // tokens per invocation
const WG_REG: u32 = 64u;     // invocations per workgroup

// Σ_{k0 <= k < k1} B[rows brow, k]·A[k, column c] for 4 rows (forward).
fn rows_sum(brow: vec4<u32>, acol: u32, k0: u32, k1: u32) -> vec4<f32> {
    var m = vec4<f32>(0.0);
    for (var k = k0; k < k1; k++) {
        let bv = vec4<f32>(fb[brow.x + k], fb[brow.y + k], fb[brow.z + k], fb[brow.w + k]);
        m = fma(bv, vec4<f32>(fa[acol + k * p.q]), m);
    }
    return m;
}

// Σ_{k0 <= k < k1} B[row at brow, k]·A[k, columns acol] for 4 columns (backward).
fn cols_sum(acol: vec4<u32>, brow: u32, k0: u32, k1: u32) -> vec4<f32> {
    var m = vec4<f32>(0.0);
    for (var k = k0; k < k1; k++) {
        let ak = acol + vec4<u32>(k * p.q);
        let av = vec4<f32>(fa[ak.x], fa[ak.y], fa[ak.z], fa[ak.w]);
        m = fma(av, vec4<f32>(fb[brow + k]), m);
    }
    return m;
}

fn finish4(base: u32, v: vec4<f32>, ok: vec4<bool>) {
    if (ok.x) { finish(base, v.x); }
    if (ok.y) { finish(base + 1u, v.y); }
    if (ok.z) { finish(base + 2u, v.z); }
    if (ok.w) { finish(base + 3u, v.w); }
}

@compute @workgroup_size(WG_REG)
fn boha_reg_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) li: u32) {
    let tile = wg.x + wg.y * nwg.x;
    if (tile >= p.tiles * p.nb) { return; }
    let bi = tile / p.tiles;
    let ob0 = (tile % p.tiles) * 4u;
    let rv = vec4<u32>(ob0) + vec4<u32>(0u, 1u, 2u, 3u);
    let rows = min(rv, vec4<u32>(p.p - 1u));        // block-local rows, clamped
    let wrow = (rows + vec4<u32>(bi * p.p)) * p.d_in;
    let t0 = (wg.z * WG_REG + li) * TM;
    if (t0 >= p.t) { return; }
    let x0 = t0 * p.d_in;
    let x1 = min(t0 + 1u, p.t - 1u) * p.d_in;
    let x2 = min(t0 + 2u, p.t - 1u) * p.d_in;
    let x3 = min(t0 + 3u, p.t - 1u) * p.d_in;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var bj = 0u; bj < p.nb; bj++) {
        let blk = bi * p.nb + bj;
        let abase = blk * p.rb * p.q;
        let brow = (rows + vec4<u32>(blk * p.p)) * p.rb;
        for (var c = 0u; c < p.q; c++) {
            let i = bj * p.q + c;
            let gr = group_rank();
            var m = rows_sum(brow, abase + c, 0u, gr);
            if (GROUPS == 2u) { m *= rows_sum(brow, abase + c, gr, p.rb); }
            let w = modulate4(vec4<f32>(wload(wrow.x + i), wload(wrow.y + i), wload(wrow.z + i), wload(wrow.w + i)), m, p.s);
            acc0 = fma(vec4<f32>(inp[x0 + i]), w, acc0);
            acc1 = fma(vec4<f32>(inp[x1 + i]), w, acc1);
            acc2 = fma(vec4<f32>(inp[x2 + i]), w, acc2);
            acc3 = fma(vec4<f32>(inp[x3 + i]), w, acc3);
        }
    }
    let ok = rv < vec4<u32>(p.p);
    let col = bi * p.p + ob0;
    finish4(t0 * p.d_out + col, acc0, ok);
    if (t0 + 1u < p.t) { finish4((t0 + 1u) * p.d_out + col, acc1, ok); }
    if (t0 + 2u < p.t) { finish4((t0 + 2u) * p.d_out + col, acc2, ok); }
    if (t0 + 3u < p.t) { finish4((t0 + 3u) * p.d_out + col, acc3, ok); }
}

@compute @workgroup_size(WG_REG)
fn boha_reg_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let tile = wg.x + wg.y * nwg.x;
    if (tile >= p.tiles * p.nb) { return; }
    let bj = tile / p.tiles;
    let cb0 = (tile % p.tiles) * 4u;
    let cv = vec4<u32>(cb0) + vec4<u32>(0u, 1u, 2u, 3u);
    let cols = min(cv, vec4<u32>(p.q - 1u));        // block-local columns, clamped
    let icol = cols + vec4<u32>(bj * p.q);
    let t0 = (wg.z * WG_REG + li) * TM;
    if (t0 >= p.t) { return; }
    let g0 = t0 * p.d_out;
    let g1 = min(t0 + 1u, p.t - 1u) * p.d_out;
    let g2 = min(t0 + 2u, p.t - 1u) * p.d_out;
    let g3 = min(t0 + 3u, p.t - 1u) * p.d_out;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var bi = 0u; bi < p.nb; bi++) {
        let blk = bi * p.nb + bj;
        let acol = cols + vec4<u32>(blk * p.rb * p.q);
        let bbase = blk * p.p * p.rb;
        for (var ob = 0u; ob < p.p; ob++) {
            let o = bi * p.p + ob;
            let gr = group_rank();
            var m = cols_sum(acol, bbase + ob * p.rb, 0u, gr);
            if (GROUPS == 2u) { m *= cols_sum(acol, bbase + ob * p.rb, gr, p.rb); }
            let wr = o * p.d_in;
            let w = modulate4(vec4<f32>(wload(wr + icol.x), wload(wr + icol.y), wload(wr + icol.z), wload(wr + icol.w)), m, p.s);
            acc0 = fma(vec4<f32>(inp[g0 + o]), w, acc0);
            acc1 = fma(vec4<f32>(inp[g1 + o]), w, acc1);
            acc2 = fma(vec4<f32>(inp[g2 + o]), w, acc2);
            acc3 = fma(vec4<f32>(inp[g3 + o]), w, acc3);
        }
    }
    let ok = cv < vec4<u32>(p.q);
    let col = bj * p.q + cb0;
    finish4(t0 * p.d_in + col, acc0, ok);
    if (t0 + 1u < p.t) { finish4((t0 + 1u) * p.d_in + col, acc1, ok); }
    if (t0 + 2u < p.t) { finish4((t0 + 2u) * p.d_in + col, acc2, ok); }
    if (t0 + 3u < p.t) { finish4((t0 + 3u) * p.d_in + col, acc3, ok); }
}

// ---------------------------------------------------------------- register family, vec4
//
// The CPU path for p and q multiples of 4 (so every 4-row or 4-column group lies in one
// block). llvmpipe runs WG4 invocations as SIMD lanes and issues per-lane loads one lane
// at a time, so loads bound these kernels. The 16 W' columns of a tile belong to the
// workgroup (W0, A and B addresses are uniform: newer Mesa issues such loads once) and
// only the token operand differs per lane: each invocation owns 16 tokens × the
// workgroup's 16 columns, held in sixteen 4×4 matrices like the register GEMM. Each W0
// 4×4 block costs 4 + r_b vec4 loads and 4·r_b scalar B loads per invocation, so the
// cost grows with r_b (see the report in fused.rs).

@group(0) @binding(6) var<storage, read> inp4: array<vec4<f32>>;  // inp as vec4 (row length / 4 per row)
@group(0) @binding(7) var<storage, read> wq4: array<WQ4>;        // W0 as vec4 [d_out, d_in / 4]
@group(0) @binding(8) var<storage, read> fa4: array<vec4<f32>>;   // A as vec4 [b, b, r_b, q / 4]

override WG4: u32 = 16u;

var<private> c00: mat4x4<f32>;
var<private> c01: mat4x4<f32>;
var<private> c02: mat4x4<f32>;
var<private> c03: mat4x4<f32>;
var<private> c10: mat4x4<f32>;
var<private> c11: mat4x4<f32>;
var<private> c12: mat4x4<f32>;
var<private> c13: mat4x4<f32>;
var<private> c20: mat4x4<f32>;
var<private> c21: mat4x4<f32>;
var<private> c22: mat4x4<f32>;
var<private> c23: mat4x4<f32>;
var<private> c30: mat4x4<f32>;
var<private> c31: mat4x4<f32>;
var<private> c32: mat4x4<f32>;
var<private> c33: mat4x4<f32>;

// Tile row r (4 tokens) += a (columns over the reduction, vectors over tokens) times
// b0..b3 (columns over the tile's columns, vectors over the reduction).
fn update_row(r: u32, a: mat4x4<f32>, b0: mat4x4<f32>, b1: mat4x4<f32>, b2: mat4x4<f32>, b3: mat4x4<f32>) {
    switch r {
        case 0u: { c00 += a * b0; c01 += a * b1; c02 += a * b2; c03 += a * b3; }
        case 1u: { c10 += a * b0; c11 += a * b1; c12 += a * b2; c13 += a * b3; }
        case 2u: { c20 += a * b0; c21 += a * b1; c22 += a * b2; c23 += a * b3; }
        default: { c30 += a * b0; c31 += a * b1; c32 += a * b2; c33 += a * b3; }
    }
}

fn modulate_m(w: mat4x4<f32>, m: mat4x4<f32>) -> mat4x4<f32> {
    return mat4x4<f32>(modulate4(w[0], m[0], p.s), modulate4(w[1], m[1], p.s),
                       modulate4(w[2], m[2], p.s), modulate4(w[3], m[3], p.s));
}

// W'[o..o+3, i..i+3] with column j = W'[o + j, i..i+3] (o, i multiples of 4, one block).
fn wtile(o: u32, i: u32) -> mat4x4<f32> {
    let bi = o / p.p;
    let bj = i / p.q;
    let blk = bi * p.nb + bj;
    let s = p.d_in / 4u;
    let w4 = (o * p.d_in + i) / 4u;
    let w = mat4x4<f32>(wload4(w4), wload4(w4 + s), wload4(w4 + 2u * s), wload4(w4 + 3u * s));
    let brow = (blk * p.p + o - bi * p.p) * p.rb;
    let a4 = (blk * p.rb * p.q + i - bj * p.q) / 4u;
    let gr = group_rank();
    var m = block_sum(brow, a4, 0u, gr);
    if (GROUPS == 2u) { m = hprod(m, block_sum(brow, a4, gr, p.rb)); }
    return modulate_m(w, m);
}

// Σ_{k0 <= k < k1} B[o + j, k]·A[k, i..i+3] as column j, for the B row o at brow and the
// vec4 a4 holding A[0, i].
fn block_sum(brow: u32, a4: u32, k0: u32, k1: u32) -> mat4x4<f32> {
    let qs = p.q / 4u;
    var m0 = vec4<f32>(0.0);
    var m1 = vec4<f32>(0.0);
    var m2 = vec4<f32>(0.0);
    var m3 = vec4<f32>(0.0);
    for (var k = k0; k < k1; k++) {
        let av = fa4[a4 + k * qs];
        m0 = fma(vec4<f32>(fb[brow + k]), av, m0);
        m1 = fma(vec4<f32>(fb[brow + p.rb + k]), av, m1);
        m2 = fma(vec4<f32>(fb[brow + 2u * p.rb + k]), av, m2);
        m3 = fma(vec4<f32>(fb[brow + 3u * p.rb + k]), av, m3);
    }
    return mat4x4<f32>(m0, m1, m2, m3);
}

// Token operand rows 4r.. of this invocation at vec4 column k4, as columns over the
// reduction (vectors over the 4 tokens).
fn load_tok(rows: vec4<u32>, k4: u32) -> mat4x4<f32> {
    return transpose(mat4x4<f32>(inp4[rows.x + k4], inp4[rows.y + k4], inp4[rows.z + k4], inp4[rows.w + k4]));
}

fn tok_rows(t0: u32, rowlen4: u32) -> vec4<u32> {
    return min(vec4<u32>(t0) + vec4<u32>(0u, 1u, 2u, 3u), vec4<u32>(p.t - 1u)) * rowlen4;
}

// Block (tokens t0.., columns c0..) of the tile: column j of v holds column c0 + j.
fn store_block4(t0: u32, c0: u32, ncol: u32, v: mat4x4<f32>) {
    for (var j = 0u; j < 4u; j++) {
        if (c0 + j >= ncol) { return; }
        for (var r = 0u; r < 4u; r++) {
            if (t0 + r < p.t) { finish((t0 + r) * ncol + c0 + j, v[j][r]); }
        }
    }
}

fn store_tile4(t0: u32, c0: u32, ncol: u32) {
    store_block4(t0, c0, ncol, c00);
    store_block4(t0, c0 + 4u, ncol, c01);
    store_block4(t0, c0 + 8u, ncol, c02);
    store_block4(t0, c0 + 12u, ncol, c03);
    store_block4(t0 + 4u, c0, ncol, c10);
    store_block4(t0 + 4u, c0 + 4u, ncol, c11);
    store_block4(t0 + 4u, c0 + 8u, ncol, c12);
    store_block4(t0 + 4u, c0 + 12u, ncol, c13);
    store_block4(t0 + 8u, c0, ncol, c20);
    store_block4(t0 + 8u, c0 + 4u, ncol, c21);
    store_block4(t0 + 8u, c0 + 8u, ncol, c22);
    store_block4(t0 + 8u, c0 + 12u, ncol, c23);
    store_block4(t0 + 12u, c0, ncol, c30);
    store_block4(t0 + 12u, c0 + 4u, ncol, c31);
    store_block4(t0 + 12u, c0 + 8u, ncol, c32);
    store_block4(t0 + 12u, c0 + 12u, ncol, c33);
}

// y: workgroup (x, y) owns outputs o0..o0+15, z a range of WG4·16 tokens.
@compute @workgroup_size(WG4)
fn boha_reg4_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) li: u32) {
    let o0 = (wg.x + wg.y * nwg.x) * 16u;
    if (o0 >= p.d_out) { return; }
    // Output groups past d_out read the last group and are not stored.
    let og0 = o0;
    let og1 = min(o0 + 4u, p.d_out - 4u);
    let og2 = min(o0 + 8u, p.d_out - 4u);
    let og3 = min(o0 + 12u, p.d_out - 4u);
    // Tokens past T read the last row and are not stored (no early return: it would
    // make the workgroup's loads non-uniform).
    let t0 = (wg.z * WG4 + li) * 16u;
    // Lanes past the last token stop here: llvmpipe skips the loads of inactive lanes and
    // ends a loop once no lane is active, so a short batch does not pay for all WG4·16.
    if (t0 >= p.t) { return; }
    let s = p.d_in / 4u;
    let r0 = tok_rows(t0, s);
    let r1 = tok_rows(t0 + 4u, s);
    let r2 = tok_rows(t0 + 8u, s);
    let r3 = tok_rows(t0 + 12u, s);
    for (var i = 0u; i < p.d_in; i += 4u) {
        let b0 = wtile(og0, i);
        let b1 = wtile(og1, i);
        let b2 = wtile(og2, i);
        let b3 = wtile(og3, i);
        let k4 = i / 4u;
        update_row(0u, load_tok(r0, k4), b0, b1, b2, b3);
        update_row(1u, load_tok(r1, k4), b0, b1, b2, b3);
        update_row(2u, load_tok(r2, k4), b0, b1, b2, b3);
        update_row(3u, load_tok(r3, k4), b0, b1, b2, b3);
    }
    store_tile4(t0, o0, p.d_out);
}

// dx: workgroup (x, y) owns inputs i0..i0+15, z a range of WG4·16 tokens.
@compute @workgroup_size(WG4)
fn boha_reg4_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let i0 = (wg.x + wg.y * nwg.x) * 16u;
    if (i0 >= p.d_in) { return; }
    let ig0 = i0;
    let ig1 = min(i0 + 4u, p.d_in - 4u);
    let ig2 = min(i0 + 8u, p.d_in - 4u);
    let ig3 = min(i0 + 12u, p.d_in - 4u);
    let t0 = (wg.z * WG4 + li) * 16u;
    // Lanes past the last token stop here: llvmpipe skips the loads of inactive lanes and
    // ends a loop once no lane is active, so a short batch does not pay for all WG4·16.
    if (t0 >= p.t) { return; }
    let s = p.d_out / 4u;
    let r0 = tok_rows(t0, s);
    let r1 = tok_rows(t0 + 4u, s);
    let r2 = tok_rows(t0 + 8u, s);
    let r3 = tok_rows(t0 + 12u, s);
    for (var o = 0u; o < p.d_out; o += 4u) {
        // wtile gives columns over o; the product wants columns over i.
        let b0 = transpose(wtile(o, ig0));
        let b1 = transpose(wtile(o, ig1));
        let b2 = transpose(wtile(o, ig2));
        let b3 = transpose(wtile(o, ig3));
        let k4 = o / 4u;
        update_row(0u, load_tok(r0, k4), b0, b1, b2, b3);
        update_row(1u, load_tok(r1, k4), b0, b1, b2, b3);
        update_row(2u, load_tok(r2, k4), b0, b1, b2, b3);
        update_row(3u, load_tok(r3, k4), b0, b1, b2, b3);
    }
    store_tile4(t0, i0, p.d_in);
}

// ---------------------------------------------------------------- register family, vec4, cached factor
//
// reg4c_*: the reg4 kernels for r_b ≤ 4 or r_b = 8 (ranks 4..7 in a second matrix) when the workgroup's 16 columns lie in one block
// (p a multiple of 16 forward, q backward). One factor is then the same for a whole
// block of the reduction and is loaded once per block into registers as a 4×4 matrix per
// column group (forward: B of the 16 outputs, backward: A of the 16 inputs); per 4-step
// of the reduction only the other factor is loaded (forward: r_b vec4 loads of A;
// backward: r_b vec4 loads of the 4 B rows, which lie contiguously). The modulation of a
// W0 4×4 block is then one 4×4 matrix product (two for r_b = 8), M = A-columns × B-rows
// (ranks ≥ r_b are zero in both), and a 4-step costs 32 + r_b loads instead of
// 32 + 20·r_b.

@group(0) @binding(9) var<storage, read> fb4: array<vec4<f32>>;   // B as vec4 [b, b, p·r_b / 4]

// Rows o..o+3 of B from the vec4 q4 holding B[o, 0] (4·r_b contiguous floats): column j
// is B[o + j, 0..3], zero from r_b on.
fn b_rows4(q4: u32) -> mat4x4<f32> {
    switch p.rb {
        case 1u: {
            let v = fb4[q4];
            return mat4x4<f32>(vec4<f32>(v.x, 0.0, 0.0, 0.0), vec4<f32>(v.y, 0.0, 0.0, 0.0),
                               vec4<f32>(v.z, 0.0, 0.0, 0.0), vec4<f32>(v.w, 0.0, 0.0, 0.0));
        }
        case 2u: {
            let v0 = fb4[q4];
            let v1 = fb4[q4 + 1u];
            return mat4x4<f32>(vec4<f32>(v0.xy, 0.0, 0.0), vec4<f32>(v0.zw, 0.0, 0.0),
                               vec4<f32>(v1.xy, 0.0, 0.0), vec4<f32>(v1.zw, 0.0, 0.0));
        }
        case 3u: {
            let v0 = fb4[q4];
            let v1 = fb4[q4 + 1u];
            let v2 = fb4[q4 + 2u];
            return mat4x4<f32>(vec4<f32>(v0.xyz, 0.0), vec4<f32>(v0.w, v1.xy, 0.0),
                               vec4<f32>(v1.zw, v2.x, 0.0), vec4<f32>(v2.yzw, 0.0));
        }
        case 8u: {
            return mat4x4<f32>(fb4[q4], fb4[q4 + 2u], fb4[q4 + 4u], fb4[q4 + 6u]);
        }
        default: {
            return mat4x4<f32>(fb4[q4], fb4[q4 + 1u], fb4[q4 + 2u], fb4[q4 + 3u]);
        }
    }
}

// r_b = 8: ranks 4..7 of B rows o..o+3 (column j is B[o + j, 4..7]); zero otherwise.
fn b_rows4_hi(q4: u32) -> mat4x4<f32> {
    if (p.rb != 8u) { return mat4x4<f32>(); }
    return mat4x4<f32>(fb4[q4 + 1u], fb4[q4 + 3u], fb4[q4 + 5u], fb4[q4 + 7u]);
}

// r_b = 8: A[4..7, c..c+3] as columns (see a_cols4); zero otherwise.
fn a_cols4_hi(q4: u32, qs: u32) -> mat4x4<f32> {
    if (p.rb != 8u) { return mat4x4<f32>(); }
    return mat4x4<f32>(fa4[q4 + 4u * qs], fa4[q4 + 5u * qs], fa4[q4 + 6u * qs], fa4[q4 + 7u * qs]);
}

// A[k, c..c+3] for k < r_b as column k (zero from r_b on), from the vec4 q4 holding
// A[0, c]; qs = q / 4 is the vec4 stride between ranks.
fn a_cols4(q4: u32, qs: u32) -> mat4x4<f32> {
    var m = mat4x4<f32>(fa4[q4], vec4<f32>(0.0), vec4<f32>(0.0), vec4<f32>(0.0));
    if (p.rb > 1u) { m[1] = fa4[q4 + qs]; }
    if (p.rb > 2u) { m[2] = fa4[q4 + 2u * qs]; }
    if (p.rb > 3u) { m[3] = fa4[q4 + 3u * qs]; }
    return m;
}

// W'[o..o+3, i..i+3] with column j = W'[o + j, i..i+3], from the columns of A (at) and
// the rows of B (bt) of this 4×4 block: column j of at * bt is Σ_k A[k, i..]·B[o + j, k].
// With r_b = 8, ah and bh hold ranks 4..7 and add their product, or (two rank groups of
// 4) multiply it elementwise.
fn wtile_c(o: u32, i: u32, at: mat4x4<f32>, bt: mat4x4<f32>, ah: mat4x4<f32>, bh: mat4x4<f32>) -> mat4x4<f32> {
    let s = p.d_in / 4u;
    let w4 = (o * p.d_in + i) / 4u;
    let w = mat4x4<f32>(wload4(w4), wload4(w4 + s), wload4(w4 + 2u * s), wload4(w4 + 3u * s));
    var m = at * bt;
    if (p.rb == 8u) {
        if (GROUPS == 2u) { m = hprod(m, ah * bh); } else { m += ah * bh; }
    }
    return modulate_m(w, m);
}

// y: workgroup (x, y) owns outputs o0..o0+15 (one block row), z a range of WG4·16 tokens.
@compute @workgroup_size(WG4)
fn boha_reg4c_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let o0 = (wg.x + wg.y * nwg.x) * 16u;
    if (o0 >= p.d_out) { return; }
    let bi = o0 / p.p;
    let ol = o0 - bi * p.p;
    let t0 = (wg.z * WG4 + li) * 16u;
    // Lanes past the last token stop here: llvmpipe skips the loads of inactive lanes and
    // ends a loop once no lane is active, so a short batch does not pay for all WG4·16.
    if (t0 >= p.t) { return; }
    let s = p.d_in / 4u;
    let qs = p.q / 4u;
    let r0 = tok_rows(t0, s);
    let r1 = tok_rows(t0 + 4u, s);
    let r2 = tok_rows(t0 + 8u, s);
    let r3 = tok_rows(t0 + 12u, s);
    for (var bj = 0u; bj < p.nb; bj++) {
        let blk = bi * p.nb + bj;
        // B rows of the 16 outputs in this block, once per block.
        let bq = (blk * p.p + ol) * p.rb / 4u;
        let bt0 = b_rows4(bq);
        let bt1 = b_rows4(bq + p.rb);
        let bt2 = b_rows4(bq + 2u * p.rb);
        let bt3 = b_rows4(bq + 3u * p.rb);
        let bh0 = b_rows4_hi(bq);
        let bh1 = b_rows4_hi(bq + p.rb);
        let bh2 = b_rows4_hi(bq + 2u * p.rb);
        let bh3 = b_rows4_hi(bq + 3u * p.rb);
        let aq = blk * p.rb * qs;
        for (var c4 = 0u; c4 < qs; c4++) {
            let i = bj * p.q + c4 * 4u;
            let at = a_cols4(aq + c4, qs);
            let ah = a_cols4_hi(aq + c4, qs);
            let b0 = wtile_c(o0, i, at, bt0, ah, bh0);
            let b1 = wtile_c(o0 + 4u, i, at, bt1, ah, bh1);
            let b2 = wtile_c(o0 + 8u, i, at, bt2, ah, bh2);
            let b3 = wtile_c(o0 + 12u, i, at, bt3, ah, bh3);
            let k4 = i / 4u;
            update_row(0u, load_tok(r0, k4), b0, b1, b2, b3);
            update_row(1u, load_tok(r1, k4), b0, b1, b2, b3);
            update_row(2u, load_tok(r2, k4), b0, b1, b2, b3);
            update_row(3u, load_tok(r3, k4), b0, b1, b2, b3);
        }
    }
    store_tile4(t0, o0, p.d_out);
}

// dx: workgroup (x, y) owns inputs i0..i0+15 (one block column), z a range of WG4·16
// tokens.
@compute @workgroup_size(WG4)
fn boha_reg4c_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let i0 = (wg.x + wg.y * nwg.x) * 16u;
    if (i0 >= p.d_in) { return; }
    let bj = i0 / p.q;
    let il = i0 - bj * p.q;
    let t0 = (wg.z * WG4 + li) * 16u;
    // Lanes past the last token stop here: llvmpipe skips the loads of inactive lanes and
    // ends a loop once no lane is active, so a short batch does not pay for all WG4·16.
    if (t0 >= p.t) { return; }
    let s = p.d_out / 4u;
    let qs = p.q / 4u;
    let r0 = tok_rows(t0, s);
    let r1 = tok_rows(t0 + 4u, s);
    let r2 = tok_rows(t0 + 8u, s);
    let r3 = tok_rows(t0 + 12u, s);
    for (var bi = 0u; bi < p.nb; bi++) {
        let blk = bi * p.nb + bj;
        // A columns of the 16 inputs in this block, once per block.
        let aq = blk * p.rb * qs + il / 4u;
        let at0 = a_cols4(aq, qs);
        let at1 = a_cols4(aq + 1u, qs);
        let at2 = a_cols4(aq + 2u, qs);
        let at3 = a_cols4(aq + 3u, qs);
        let ah0 = a_cols4_hi(aq, qs);
        let ah1 = a_cols4_hi(aq + 1u, qs);
        let ah2 = a_cols4_hi(aq + 2u, qs);
        let ah3 = a_cols4_hi(aq + 3u, qs);
        let bq = blk * p.p * p.rb / 4u;
        for (var ob = 0u; ob < p.p; ob += 4u) {
            let o = bi * p.p + ob;
            let bt = b_rows4(bq + ob * p.rb / 4u);
            let bh = b_rows4_hi(bq + ob * p.rb / 4u);
            // wtile_c gives columns over o; the product wants columns over i.
            let b0 = transpose(wtile_c(o, i0, at0, bt, ah0, bh));
            let b1 = transpose(wtile_c(o, i0 + 4u, at1, bt, ah1, bh));
            let b2 = transpose(wtile_c(o, i0 + 8u, at2, bt, ah2, bh));
            let b3 = transpose(wtile_c(o, i0 + 12u, at3, bt, ah3, bh));
            let k4 = o / 4u;
            update_row(0u, load_tok(r0, k4), b0, b1, b2, b3);
            update_row(1u, load_tok(r1, k4), b0, b1, b2, b3);
            update_row(2u, load_tok(r2, k4), b0, b1, b2, b3);
            update_row(3u, load_tok(r3, k4), b0, b1, b2, b3);
        }
    }
    store_tile4(t0, i0, p.d_in);
}

// ---------------------------------------------------------------- register family, vec4, rank chunks
//
// reg4k_*: the same tiling for larger ranks that are multiples of 4 (HiRA, LoRA-sized
// ranks), with the workgroup's 16 columns in one block. The modulation of the 4 column
// groups is accumulated over chunks of 4 ranks, each chunk one 4×4 matrix product per
// group from vec4 loads: per 4-step of the reduction 32 + 5·r_b loads (the A or B chunk
// shared by the 4 groups, 4 vec4 rows of the other factor per group) instead of
// 32 + 20·r_b.

// The 4×4 chunk of B rows o..o+3, ranks kc..kc+3, from the vec4 q4 holding B[o, kc]:
// column j is B[o + j, kc..kc+3].
fn b_chunk4(q4: u32) -> mat4x4<f32> {
    let s = p.rb / 4u;
    return mat4x4<f32>(fb4[q4], fb4[q4 + s], fb4[q4 + 2u * s], fb4[q4 + 3u * s]);
}

// The 4×4 chunk of A ranks kc..kc+3, columns c..c+3, from the vec4 q4 holding A[kc, c]:
// column k is A[kc + k, c..c+3].
fn a_chunk4(q4: u32, qs: u32) -> mat4x4<f32> {
    return mat4x4<f32>(fa4[q4], fa4[q4 + qs], fa4[q4 + 2u * qs], fa4[q4 + 3u * qs]);
}

// W0[o..o+3, i..i+3] with column j = W0[o + j, i..i+3].
fn w0_4x4(o: u32, i: u32) -> mat4x4<f32> {
    let s = p.d_in / 4u;
    let w4 = (o * p.d_in + i) / 4u;
    return mat4x4<f32>(wload4(w4), wload4(w4 + s), wload4(w4 + 2u * s), wload4(w4 + 3u * s));
}

@compute @workgroup_size(WG4)
fn boha_reg4k_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) li: u32) {
    let o0 = (wg.x + wg.y * nwg.x) * 16u;
    if (o0 >= p.d_out) { return; }
    let bi = o0 / p.p;
    let ol = o0 - bi * p.p;
    let t0 = (wg.z * WG4 + li) * 16u;
    // Lanes past the last token stop here: llvmpipe skips the loads of inactive lanes and
    // ends a loop once no lane is active, so a short batch does not pay for all WG4·16.
    if (t0 >= p.t) { return; }
    let s = p.d_in / 4u;
    let qs = p.q / 4u;
    let r0 = tok_rows(t0, s);
    let r1 = tok_rows(t0 + 4u, s);
    let r2 = tok_rows(t0 + 8u, s);
    let r3 = tok_rows(t0 + 12u, s);
    for (var bj = 0u; bj < p.nb; bj++) {
        let blk = bi * p.nb + bj;
        let bq = (blk * p.p + ol) * p.rb / 4u;   // B[o0, 0] as a vec4 index
        let aq = blk * p.rb * qs;                // A[0, 0] of the block
        for (var c4 = 0u; c4 < qs; c4++) {
            let gr = group_rank();
            var m0 = mat4x4<f32>();
            var m1 = mat4x4<f32>();
            var m2 = mat4x4<f32>();
            var m3 = mat4x4<f32>();
            for (var kc = 0u; kc < gr; kc += 4u) {
                let at = a_chunk4(aq + kc * qs + c4, qs);
                let kq = bq + kc / 4u;
                m0 += at * b_chunk4(kq);
                m1 += at * b_chunk4(kq + p.rb);
                m2 += at * b_chunk4(kq + 2u * p.rb);
                m3 += at * b_chunk4(kq + 3u * p.rb);
            }
            if (GROUPS == 2u) {
                var n0 = mat4x4<f32>();
                var n1 = mat4x4<f32>();
                var n2 = mat4x4<f32>();
                var n3 = mat4x4<f32>();
                for (var kc = gr; kc < p.rb; kc += 4u) {
                    let at = a_chunk4(aq + kc * qs + c4, qs);
                    let kq = bq + kc / 4u;
                    n0 += at * b_chunk4(kq);
                    n1 += at * b_chunk4(kq + p.rb);
                    n2 += at * b_chunk4(kq + 2u * p.rb);
                    n3 += at * b_chunk4(kq + 3u * p.rb);
                }
                m0 = hprod(m0, n0);
                m1 = hprod(m1, n1);
                m2 = hprod(m2, n2);
                m3 = hprod(m3, n3);
            }
            let i = bj * p.q + c4 * 4u;
            let b0 = modulate_m(w0_4x4(o0, i), m0);
            let b1 = modulate_m(w0_4x4(o0 + 4u, i), m1);
            let b2 = modulate_m(w0_4x4(o0 + 8u, i), m2);
            let b3 = modulate_m(w0_4x4(o0 + 12u, i), m3);
            let k4 = i / 4u;
            update_row(0u, load_tok(r0, k4), b0, b1, b2, b3);
            update_row(1u, load_tok(r1, k4), b0, b1, b2, b3);
            update_row(2u, load_tok(r2, k4), b0, b1, b2, b3);
            update_row(3u, load_tok(r3, k4), b0, b1, b2, b3);
        }
    }
    store_tile4(t0, o0, p.d_out);
}

@compute @workgroup_size(WG4)
fn boha_reg4k_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                       @builtin(local_invocation_index) li: u32) {
    let i0 = (wg.x + wg.y * nwg.x) * 16u;
    if (i0 >= p.d_in) { return; }
    let bj = i0 / p.q;
    let il = i0 - bj * p.q;
    let t0 = (wg.z * WG4 + li) * 16u;
    // Lanes past the last token stop here: llvmpipe skips the loads of inactive lanes and
    // ends a loop once no lane is active, so a short batch does not pay for all WG4·16.
    if (t0 >= p.t) { return; }
    let s = p.d_out / 4u;
    let qs = p.q / 4u;
    let r0 = tok_rows(t0, s);
    let r1 = tok_rows(t0 + 4u, s);
    let r2 = tok_rows(t0 + 8u, s);
    let r3 = tok_rows(t0 + 12u, s);
    for (var bi = 0u; bi < p.nb; bi++) {
        let blk = bi * p.nb + bj;
        let aq = blk * p.rb * qs + il / 4u;      // A[0, il] of the block
        let bq = blk * p.p * p.rb / 4u;          // B[0, 0] of the block
        for (var ob = 0u; ob < p.p; ob += 4u) {
            let o = bi * p.p + ob;
            let gr = group_rank();
            var m0 = mat4x4<f32>();
            var m1 = mat4x4<f32>();
            var m2 = mat4x4<f32>();
            var m3 = mat4x4<f32>();
            for (var kc = 0u; kc < gr; kc += 4u) {
                let bt = b_chunk4(bq + (ob * p.rb + kc) / 4u);
                let ka = aq + kc * qs;
                m0 += a_chunk4(ka, qs) * bt;
                m1 += a_chunk4(ka + 1u, qs) * bt;
                m2 += a_chunk4(ka + 2u, qs) * bt;
                m3 += a_chunk4(ka + 3u, qs) * bt;
            }
            if (GROUPS == 2u) {
                var n0 = mat4x4<f32>();
                var n1 = mat4x4<f32>();
                var n2 = mat4x4<f32>();
                var n3 = mat4x4<f32>();
                for (var kc = gr; kc < p.rb; kc += 4u) {
                    let bt = b_chunk4(bq + (ob * p.rb + kc) / 4u);
                    let ka = aq + kc * qs;
                    n0 += a_chunk4(ka, qs) * bt;
                    n1 += a_chunk4(ka + 1u, qs) * bt;
                    n2 += a_chunk4(ka + 2u, qs) * bt;
                    n3 += a_chunk4(ka + 3u, qs) * bt;
                }
                m0 = hprod(m0, n0);
                m1 = hprod(m1, n1);
                m2 = hprod(m2, n2);
                m3 = hprod(m3, n3);
            }
            // Columns over o; the product wants columns over i.
            let b0 = transpose(modulate_m(w0_4x4(o, i0), m0));
            let b1 = transpose(modulate_m(w0_4x4(o, i0 + 4u), m1));
            let b2 = transpose(modulate_m(w0_4x4(o, i0 + 8u), m2));
            let b3 = transpose(modulate_m(w0_4x4(o, i0 + 12u), m3));
            let k4 = o / 4u;
            update_row(0u, load_tok(r0, k4), b0, b1, b2, b3);
            update_row(1u, load_tok(r1, k4), b0, b1, b2, b3);
            update_row(2u, load_tok(r2, k4), b0, b1, b2, b3);
            update_row(3u, load_tok(r3, k4), b0, b1, b2, b3);
        }
    }
    store_tile4(t0, i0, p.d_in);
}

// ---------------------------------------------------------------- shared family

const BM: u32 = 64u;   // tokens per workgroup
const BN: u32 = 64u;   // columns per workgroup
const BK: u32 = 16u;   // reduction step
const WS: u32 = 16u;   // workgroup side; each invocation owns 4 × 4 outputs

var<workgroup> ts: array<f32, BK * BM>;   // token operand tile, [k][m]
var<workgroup> ws: array<f32, BK * BN>;   // modulated W0 tile, [k][n]

// W'[o, i], reading the block's B row and A column from global memory.
fn wprime(o: u32, i: u32) -> f32 {
    let bi = o / p.p;
    let bj = i / p.q;
    let blk = bi * p.nb + bj;
    let brow = (blk * p.p + o - bi * p.p) * p.rb;
    let acol = blk * p.rb * p.q + i - bj * p.q;
    let gr = group_rank();
    var m = rank_sum(brow, acol, 0u, gr);
    if (GROUPS == 2u) { m *= rank_sum(brow, acol, gr, p.rb); }
    return modulate(wload(o * p.d_in + i), m, p.s);
}

// Σ_{k0 <= k < k1} B[row at brow, k]·A[k, column at acol].
fn rank_sum(brow: u32, acol: u32, k0: u32, k1: u32) -> f32 {
    var m = 0.0;
    for (var k = k0; k < k1; k++) { m = fma(fb[brow + k], fa[acol + k * p.q], m); }
    return m;
}

// One BM × BN output tile. Forward: columns are outputs o, the reduction runs over i and
// inp is x. Backward: columns are inputs i, the reduction runs over o and inp is dy.
fn shared_tile(backward: bool, wg: vec3<u32>, lid: vec3<u32>) {
    let li = lid.y * WS + lid.x;
    let t0 = wg.y * BM;
    let c0 = wg.x * BN;
    var ncol = p.d_out;
    var kdim = p.d_in;
    if (backward) {
        ncol = p.d_in;
        kdim = p.d_out;
    }
    var acc: array<vec4<f32>, 4>;   // acc[r][s]: token lid.y + 16r, column lid.x + 16s
    for (var k0 = 0u; k0 < kdim; k0 += BK) {
        for (var e = li; e < BM * BK; e += WS * WS) {
            let m = e / BK;
            let kk = e % BK;
            var v = 0.0;
            if (t0 + m < p.t && k0 + kk < kdim) { v = inp[(t0 + m) * kdim + k0 + kk]; }
            ts[kk * BM + m] = v;
        }
        for (var e = li; e < BN * BK; e += WS * WS) {
            var n: u32;
            var kk: u32;
            if (backward) {
                // consecutive invocations walk along a W0 row (i) for coalesced loads
                kk = e / BN;
                n = e % BN;
            } else {
                n = e / BK;
                kk = e % BK;
            }
            var v = 0.0;
            if (c0 + n < ncol && k0 + kk < kdim) {
                if (backward) { v = wprime(k0 + kk, c0 + n); } else { v = wprime(c0 + n, k0 + kk); }
            }
            ws[kk * BN + n] = v;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            let tv = vec4<f32>(ts[kk * BM + lid.y], ts[kk * BM + lid.y + 16u],
                               ts[kk * BM + lid.y + 32u], ts[kk * BM + lid.y + 48u]);
            let wv = vec4<f32>(ws[kk * BN + lid.x], ws[kk * BN + lid.x + 16u],
                               ws[kk * BN + lid.x + 32u], ws[kk * BN + lid.x + 48u]);
            acc[0] = fma(vec4<f32>(tv.x), wv, acc[0]);
            acc[1] = fma(vec4<f32>(tv.y), wv, acc[1]);
            acc[2] = fma(vec4<f32>(tv.z), wv, acc[2]);
            acc[3] = fma(vec4<f32>(tv.w), wv, acc[3]);
        }
        workgroupBarrier();
    }
    for (var r = 0u; r < 4u; r++) {
        let t = t0 + lid.y + 16u * r;
        if (t >= p.t) { break; }
        for (var c = 0u; c < 4u; c++) {
            let col = c0 + lid.x + 16u * c;
            if (col < ncol) { finish(t * ncol + col, acc[r][c]); }
        }
    }
}

@compute @workgroup_size(16, 16)
fn boha_shared_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    shared_tile(false, wg, lid);
}

@compute @workgroup_size(16, 16)
fn boha_shared_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    shared_tile(true, wg, lid);
}
