// RMSNorm over the rows of x:  y = x · r ⊙ w',  r = 1 / sqrt(mean(x²) + eps),
// w' = w + offset (offset 1 gives Gemma's (1 + w) form).
// Backward (input gradient only; the norm weight is frozen):
//   dx = r · (g − x̂ · mean(g ⊙ x̂)),  g = dy ⊙ w',  x̂ = x · r.
//
// Dispatch: workgroups of 64 invocations; TPR invocations share a row (1 on llvmpipe,
// where a barrier costs a coroutine switch, so each invocation walks a whole row; 64 on
// GPUs, which reduce in workgroup memory). Rows per workgroup = 64 / TPR; the workgroup id
// is folded as wg.x + wg.y · num_workgroups.x.

struct Params {
    rows: u32,        // rows bound in this dispatch
    cols: u32,        // C
    eps: f32,
    offset: f32,      // 0: w' = w;  1: w' = 1 + w
    accumulate: u32,  // backward: 1 adds into dx, 0 overwrites it
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

override TPR: u32 = 1u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;         // [rows, C]
@group(0) @binding(2) var<storage, read> w: array<f32>;         // [C]
@group(0) @binding(3) var<storage, read_write> y: array<f32>;   // [rows, C]
@group(0) @binding(4) var<storage, read> dy: array<f32>;        // [rows, C]
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;  // [rows, C]

var<workgroup> red: array<vec2<f32>, 64>;

// Sum of v over the TPR invocations of a row (every invocation gets it).
fn row_total(local: u32, lane: u32, v: vec2<f32>) -> vec2<f32> {
    if (TPR == 1u) {
        return v;
    }
    red[local] = v;
    workgroupBarrier();
    for (var s = TPR / 2u; s > 0u; s = s >> 1u) {
        if (lane < s) {
            red[local] = red[local] + red[local + s];
        }
        workgroupBarrier();
    }
    let t = red[local - lane];
    workgroupBarrier();
    return t;
}

@compute @workgroup_size(64)
fn rmsnorm_forward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) local: u32) {
    let row = (wg.x + wg.y * nwg.x) * (64u / TPR) + local / TPR;
    let lane = local % TPR;
    let valid = row < p.rows;
    let base = row * p.cols;
    var ss = 0.0;
    if (valid) {
        for (var c = lane; c < p.cols; c += TPR) {
            let v = x[base + c];
            ss += v * v;
        }
    }
    let tot = row_total(local, lane, vec2<f32>(ss, 0.0)).x;
    if (!valid) {
        return;
    }
    let r = inverseSqrt(tot / f32(p.cols) + p.eps);
    for (var c = lane; c < p.cols; c += TPR) {
        y[base + c] = x[base + c] * r * (w[c] + p.offset);
    }
}

@compute @workgroup_size(64)
fn rmsnorm_backward(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                    @builtin(local_invocation_index) local: u32) {
    let row = (wg.x + wg.y * nwg.x) * (64u / TPR) + local / TPR;
    let lane = local % TPR;
    let valid = row < p.rows;
    let base = row * p.cols;
    // Σ x² and Σ g·x in one pass.
    var acc = vec2<f32>(0.0, 0.0);
    if (valid) {
        for (var c = lane; c < p.cols; c += TPR) {
            let v = x[base + c];
            let g = dy[base + c] * (w[c] + p.offset);
            acc += vec2<f32>(v * v, g * v);
        }
    }
    let tot = row_total(local, lane, acc);
    if (!valid) {
        return;
    }
    let n = f32(p.cols);
    let r = inverseSqrt(tot.x / n + p.eps);
    // mean(g ⊙ x̂) = r · Σ g·x / C; x̂ · that = x · r² · Σ g·x / C.
    let k = r * r * tot.y / n;
    for (var c = lane; c < p.cols; c += TPR) {
        let g = dy[base + c] * (w[c] + p.offset);
        var d = r * (g - x[base + c] * k);
        if (p.accumulate != 0u) {
            d += dx[base + c];
        }
        dx[base + c] = d;
    }
}
