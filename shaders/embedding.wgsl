// Embedding gather: y[t] = scale · E[id[t]]. The table may exceed the storage-binding
// limit, so it is bound in row ranges [lo, lo + rows), one dispatch each; a dispatch
// writes only the tokens whose id falls in its range, and the last one also zeroes the
// rows of ids ≥ V (so a bad id gives a zero row, never an out-of-bounds read).
//
// Dispatch: one invocation per element of y, workgroups of 64, folded 2-D.

struct Params {
    tokens: u32,  // N
    cols: u32,    // C
    lo: u32,      // first table row bound
    rows: u32,    // table rows bound
    vocab: u32,   // V
    last: u32,    // 1 on the dispatch that binds the table's last rows
    scale: f32,   // 1, or √C for Gemma
    _p0: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;       // [N] token ids
@group(0) @binding(2) var<storage, read> wq: array<WQ>;        // [rows, C], rows lo.. of E [V, C]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // [N, C]
@group(0) @binding(4) var<storage, read> wq4: array<WQ4>;     // E as vec4 (the weights snippet's wload4; unused here)

@compute @workgroup_size(64)
fn embedding_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.tokens * p.cols) {
        return;
    }
    let t = i / p.cols;
    let c = i % p.cols;
    let id = ids[t];
    if (id >= p.lo && id - p.lo < p.rows) {
        y[i] = p.scale * wload((id - p.lo) * p.cols + c);
    } else if (p.last != 0u && id >= p.vocab) {
        y[i] = 0.0;
    }
}

// Row scatter, the adjoint of the gather for distinct ids: y[id[t]] = x[t] for every
// t with id[t] < R (the rows of y); larger ids (padding) are skipped. The bindings are
// the gather's with x [K, C] in `table` and y [R, C]; `tokens` is K, `vocab` is R. The
// caller zeroes y first, so rows no id names stay zero. Ids must be distinct: two
// writes to one row would race.
@compute @workgroup_size(64)
fn rows_scatter(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.tokens * p.cols) {
        return;
    }
    let id = ids[i / p.cols];
    if (id < p.vocab) {
        y[id * p.cols + i % p.cols] = wload(i);
    }
}
