// AdamW with decoupled weight decay, and the sum of squares behind global-norm clipping.
//
// The step-dependent scalars (learning rate, bias corrections, gradient scale) live in a
// small storage tensor written each step, so one prepared dispatch list serves every
// step; the uniform holds only sizes and the constant hyper-parameters.
//
// Dispatch: one invocation per element (adamw_step) or per partial sum, workgroups of
// 64, folded into a 2-D grid past 65535 workgroups: id = gid.x + gid.y * nwg.x * 64.

struct Params {
    n: u32,          // elements in this range (adamw_step, sumsq_partial) / partials (sumsq_final)
    parts: u32,      // partial sums this range writes (sumsq_partial)
    out_at: u32,     // first partial this range writes (sumsq_partial)
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    max_norm: f32,   // clip_scale: largest allowed global gradient norm (≤ 0: no clipping)
}

@group(0) @binding(0) var<uniform> p: Params;
// [8]: lr, 1/(1−β1ᵗ), 1/(1−β2ᵗ), grad_scale, grad_norm (written by clip_scale), unused ×3
@group(0) @binding(1) var<storage, read_write> scalars: array<f32>;
@group(0) @binding(2) var<storage, read_write> theta: array<f32>;   // [n] parameter
@group(0) @binding(3) var<storage, read> grad: array<f32>;          // [n] gradient
@group(0) @binding(4) var<storage, read_write> m: array<f32>;       // [n] first moment
@group(0) @binding(5) var<storage, read_write> v: array<f32>;       // [n] second moment
@group(0) @binding(6) var<storage, read> x: array<f32>;             // [n] tensor to square-sum
@group(0) @binding(7) var<storage, read_write> partials: array<f32>; // [total parts] partial sums
@group(0) @binding(8) var<storage, read_write> total: array<f32>;   // [1] Σ of the partials

const WG: u32 = 64u;
const FINAL_WG: u32 = 256u;

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// g = grad_scale·grad;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²
// θ ← θ − lr·( m̂ / (√v̂ + ε) + wd·θ ),  m̂ = m/(1−β1ᵗ), v̂ = v/(1−β2ᵗ)
@compute @workgroup_size(64)
fn adamw_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    let lr = scalars[0];
    let g = scalars[3] * grad[i];
    let mi = p.beta1 * m[i] + (1.0 - p.beta1) * g;
    let vi = p.beta2 * v[i] + (1.0 - p.beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    let mhat = mi * scalars[1];
    let vhat = vi * scalars[2];
    let t = theta[i];
    theta[i] = t - lr * (mhat / (sqrt(vhat) + p.eps) + p.weight_decay * t);
}

// partials[out_at + k] = Σ_{j ≡ k (mod parts)} x[j]²: invocation k strides by `parts`,
// so neighbouring invocations read neighbouring elements and no barrier is needed.
@compute @workgroup_size(64)
fn sumsq_partial(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let k = linear_id(gid, nwg);
    if (k >= p.parts) { return; }
    var s = 0.0;
    for (var j = k; j < p.n; j += p.parts) {
        let e = x[j];
        s += e * e;
    }
    partials[p.out_at + k] = s;
}

var<workgroup> tree: array<f32, FINAL_WG>;

// total[0] = Σ partials[0..n]: one workgroup, strided sums then a tree in shared memory.
@compute @workgroup_size(256)
fn sumsq_final(@builtin(local_invocation_index) li: u32) {
    var s = 0.0;
    for (var j = li; j < p.n; j += FINAL_WG) {
        s += partials[j];
    }
    tree[li] = s;
    workgroupBarrier();
    for (var w = FINAL_WG / 2u; w > 0u; w = w / 2u) {
        if (li < w) {
            tree[li] += tree[li + w];
        }
        workgroupBarrier();
    }
    if (li == 0u) {
        total[0] = tree[0];
    }
}

// From the global sum of squares S of the unscaled gradients (total[0]), with g0 the
// grad_scale the host wrote: norm = g0·√S, recorded in scalars[4], and
// grad_scale = g0 · min(1, max_norm / (norm + 1e-6))  (PyTorch's clip_grad_norm_ rule).
@compute @workgroup_size(1)
fn clip_scale() {
    let g0 = scalars[3];
    let norm = abs(g0) * sqrt(max(total[0], 0.0));
    scalars[4] = norm;
    if (p.max_norm > 0.0) {
        scalars[3] = g0 * min(1.0, p.max_norm / (norm + 1e-6));
    }
}
