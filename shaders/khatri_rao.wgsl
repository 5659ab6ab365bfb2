// Row-/column-wise Khatri–Rao products of paired rank-h factors (ABBA, LoHa).
//
// A factor tensor x holds, for every feature f in 0..d, 2h values x(f, c), c in 0..2h
// (the first h are factor 1, the last h factor 2). Its pair product kr holds h² values
// per feature:
//
//   kr(f, i·h + j) = x(f, i) · x(f, h + j)                          (forward)
//   dx(f, i)     += Σ_j dkr(f, i·h + j) · x(f, h + j)    i < h      (backward)
//   dx(f, h + j) += Σ_i dkr(f, i·h + j) · x(f, i)
//
// Both tensors are dense with strides given per dispatch:
//   x(f, c) at f·xs_f + c·xs_c       kr(f, p) at f·ks_f + p·ks_p
// B [d_out, 2h] → B_kr [d_out, h²]: xs = (2h, 1), ks = (h², 1);
// A [2h, d_in]  → A_kr [h², d_in]:  xs = (1, d), ks = (1, d).
// A flat index e of such a tensor decodes as f = (e / s_f) % d, column = (e / s_c) % n_c
// (one stride is 1, the other the extent of the inner index).
//
// kr may exceed one storage binding, so it is bound in flat ranges
// [e0, e0 + kr_n), one dispatch each; x and dx are always bound whole (2/h of kr's
// size). The forward writes the bound range of kr; the backward runs over all of dx in
// every dispatch and adds only the terms whose dkr element lies in the bound range.
// Loops are h long (lavapipe ends an invocation's loops after ~65k iterations; the host
// caps h far below that).
//
// Dispatch: one invocation per kr element of the range (forward) or per dx element
// (backward), workgroups of 64, folded 2-D: id = gid.x + gid.y · num_workgroups.x · 64.

struct Params {
    n: u32,      // invocations: kr elements in the range (forward), 2h·d (backward)
    e0: u32,     // first kr element bound
    kr_n: u32,   // kr elements bound
    h: u32,      // pairs
    d: u32,      // features
    xs_f: u32,   // x stride of f
    xs_c: u32,   // x stride of c
    ks_f: u32,   // kr stride of f
    ks_p: u32,   // kr stride of p
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // [2h·d]
@group(0) @binding(2) var<storage, read_write> kr: array<f32>;   // kr elements e0..e0 + kr_n
@group(0) @binding(3) var<storage, read> dkr: array<f32>;        // dkr elements e0..e0 + kr_n
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;   // [2h·d]

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

fn x_at(f: u32, c: u32) -> f32 {
    return x[f * p.xs_f + c * p.xs_c];
}

// kr(f, i·h + j) = x(f, i) · x(f, h + j) for the bound range of kr.
@compute @workgroup_size(64)
fn khatri_rao_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    if (t >= p.n) {
        return;
    }
    let e = p.e0 + t;
    let hh = p.h * p.h;
    let f = (e / p.ks_f) % p.d;
    let q = (e / p.ks_p) % hh;
    let i = q / p.h;
    let j = q % p.h;
    kr[t] = x_at(f, i) * x_at(f, p.h + j);
}

// dx(f, c) += Σ over the bound dkr terms of its h products (see the top).
@compute @workgroup_size(64)
fn khatri_rao_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let t = linear_id(gid, nwg);
    if (t >= p.n) {
        return;
    }
    let h = p.h;
    let f = (t / p.xs_f) % p.d;
    let c = (t / p.xs_c) % (2u * h);
    let e_end = p.e0 + p.kr_n;
    var s = 0.0;
    if (c < h) {
        // dx(f, i) += Σ_j dkr(f, i·h + j) · x(f, h + j)
        for (var j = 0u; j < h; j++) {
            let e = f * p.ks_f + (c * h + j) * p.ks_p;
            if (e >= p.e0 && e < e_end) {
                s += dkr[e - p.e0] * x_at(f, h + j);
            }
        }
    } else {
        // dx(f, h + j) += Σ_i dkr(f, i·h + j) · x(f, i)
        let j = c - h;
        for (var i = 0u; i < h; i++) {
            let e = f * p.ks_f + (i * h + j) * p.ks_p;
            if (e >= p.e0 && e < e_end) {
                s += dkr[e - p.e0] * x_at(f, i);
            }
        }
    }
    dx[t] = dx[t] + s;
}
