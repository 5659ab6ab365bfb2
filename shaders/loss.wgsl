// Squared-error residual, transposed: g = (a − b)ᵀ, the dY of L = ½‖Y − Y*‖² when
// Y = aᵀ and Y* = bᵀ (the synthetic experiment, where X = I makes Y = W'ᵀ).
//
// Dispatch: one invocation per element of g, workgroups of 64, folded into a 2-D grid
// past 65535 workgroups: id = gid.x + gid.y * nwg.x * 64. Writes are contiguous, reads
// strided by cols.

struct Params {
    rows: u32,   // rows of a and b (columns of g)
    cols: u32,   // columns of a and b (rows of g)
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;        // [rows, cols] prediction (e.g. W')
@group(0) @binding(2) var<storage, read> b: array<f32>;        // [rows, cols] target (e.g. W0 + T)
@group(0) @binding(3) var<storage, read_write> g: array<f32>;  // [cols, rows] (a − b)ᵀ

// g[c, r] = a[r, c] − b[r, c]
@compute @workgroup_size(64)
fn residual_t_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if (i >= p.rows * p.cols) { return; }
    let c = i / p.rows;
    let r = i % p.rows;
    let at = r * p.cols + c;
    g[i] = a[at] - b[at];
}
