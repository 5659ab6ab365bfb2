// Elementwise ops and row reductions on flat f32 arrays.
//
// Dispatch: one invocation per element (or per row for reductions), workgroups of 64,
// folded into a 2-D grid when there are more than 65535 workgroups: the linear id is
// gid.x + gid.y * num_workgroups.x * 64.

struct Params {
    n: u32,        // elements (or rows, for the reductions)
    cols: u32,     // row length, for the reductions
    alpha: f32,    // scalar for scale / fill / axpy
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;        // [n] (or [n, cols])
@group(0) @binding(2) var<storage, read> b: array<f32>;        // [n]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;  // [n]

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// y = a + b
@compute @workgroup_size(64)
fn add_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = a[i] + b[i];
}

// y = a ⊙ b
@compute @workgroup_size(64)
fn mul_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = a[i] * b[i];
}

// y = alpha · a
@compute @workgroup_size(64)
fn scale_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = p.alpha * a[i];
}

// y = alpha
@compute @workgroup_size(64)
fn fill_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = p.alpha;
}

// y = a
@compute @workgroup_size(64)
fn copy_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = a[i];
}

// y += alpha · a
@compute @workgroup_size(64)
fn axpy_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = y[i] + p.alpha * a[i];
}

// y[r] = Σ_j a[r, j]   (one invocation per row; pairwise-free running sum in f32)
@compute @workgroup_size(64)
fn row_sum_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_id(gid, nwg);
    if (r >= p.n) { return; }
    let base = r * p.cols;
    var s = 0.0;
    for (var j = 0u; j < p.cols; j++) {
        s += a[base + j];
    }
    y[r] = s;
}

// y[r] = max_j a[r, j]
@compute @workgroup_size(64)
fn row_max_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let r = linear_id(gid, nwg);
    if (r >= p.n) { return; }
    let base = r * p.cols;
    var m = -3.402823e38;
    for (var j = 0u; j < p.cols; j++) {
        m = max(m, a[base + j]);
    }
    y[r] = m;
}
