// Gated MLP activations and soft-capping, elementwise on flat arrays.
//   swiglu: h = silu(gate) ⊙ up,       silu(x) = x·σ(x)
//   geglu:  h = gelu_tanh(gate) ⊙ up,  gelu_tanh(x) = ½x(1 + tanh(√(2/π)(x + 0.044715x³)))
//   softcap: y = cap · tanh(x / cap)
// Backwards: d_gate = dh ⊙ up ⊙ act'(gate), d_up = dh ⊙ act(gate);
//            dx = dy ⊙ (1 − tanh²(x / cap)).
//
// Dispatch: one invocation per element, workgroups of 64, folded 2-D.

struct Params {
    n: u32,     // elements bound in this dispatch
    cap: f32,   // softcap only
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;          // [n] gate (or x)
@group(0) @binding(2) var<storage, read> b: array<f32>;          // [n] up
@group(0) @binding(3) var<storage, read> dy: array<f32>;         // [n] gradient of the output
@group(0) @binding(4) var<storage, read_write> y: array<f32>;    // [n] output
@group(0) @binding(5) var<storage, read_write> da: array<f32>;   // [n] d_gate (or dx)
@group(0) @binding(6) var<storage, read_write> db: array<f32>;   // [n] d_up

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// tanh with the argument clamped: some backends build tanh from exp and overflow to NaN.
fn tanh_safe(x: f32) -> f32 {
    return tanh(clamp(x, -15.0, 15.0));
}

fn sigmoid(x: f32) -> f32 {
    return 1.0 / (1.0 + exp(-x));
}

const GELU_K: f32 = 0.7978845608028654;  // √(2/π)
const GELU_C: f32 = 0.044715;

fn gelu_tanh(x: f32) -> f32 {
    return 0.5 * x * (1.0 + tanh_safe(GELU_K * (x + GELU_C * x * x * x)));
}

fn gelu_tanh_grad(x: f32) -> f32 {
    let t = tanh_safe(GELU_K * (x + GELU_C * x * x * x));
    return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * GELU_K * (1.0 + 3.0 * GELU_C * x * x);
}

@compute @workgroup_size(64)
fn swiglu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    let g = a[i];
    y[i] = g * sigmoid(g) * b[i];
}

@compute @workgroup_size(64)
fn swiglu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    let g = a[i];
    let s = sigmoid(g);
    let d = dy[i];
    da[i] = d * b[i] * s * (1.0 + g * (1.0 - s));
    db[i] = d * g * s;
}

@compute @workgroup_size(64)
fn geglu_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = gelu_tanh(a[i]) * b[i];
}

@compute @workgroup_size(64)
fn geglu_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    let g = a[i];
    let d = dy[i];
    da[i] = d * b[i] * gelu_tanh_grad(g);
    db[i] = d * gelu_tanh(g);
}

@compute @workgroup_size(64)
fn softcap_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = p.cap * tanh_safe(a[i] / p.cap);
}

@compute @workgroup_size(64)
fn softcap_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    let t = tanh_safe(a[i] / p.cap);
    da[i] = dy[i] * (1.0 - t * t);
}

// y ← cap · tanh(y / cap), in place (generation logits straight from the LM-head GEMM).
@compute @workgroup_size(64)
fn softcap_inplace_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    y[i] = p.cap * tanh_safe(y[i] / p.cap);
}
