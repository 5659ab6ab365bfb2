// Micro-benchmarks that measure what a device can do at best: independent FMAs (the
// compute peak GEMM is compared against) and a vec4 copy (the memory bandwidth floor).
//
// Dispatch: workgroups of 64 invocations, a 1-D grid folded into x and y (linear id
// gid.x + gid.y * num_workgroups.x * 64), one invocation per output.

struct Params {
    n: u32,      // invocations that write (fma) / vec4 elements to copy (copy)
    iters: u32,  // loop trips of the FMA kernel (128 FMAs per invocation each)
    seed: f32,   // runtime value so that no FMA chain can be folded at compile time
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<f32>>;        // [n]
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<f32>>;  // [n]

fn linear_id(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return gid.x + gid.y * nwg.x * 64u;
}

// dst[i] = a0 + a1 after iters trips of 16 rounds of two independent vec4 FMA chains:
// 128 · iters FMAs per invocation. Two vec4 chains are 8 independent SIMD FMAs on
// llvmpipe (enough to hide the FMA latency) and still fit 16 vector registers with m and
// c; the unrolled body amortises llvmpipe's per-trip loop cost (several times an FMA's).
// The multiplier stays just under 1 so the values neither overflow nor become denormal.
@compute @workgroup_size(64)
fn fma_peak(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    let x = p.seed + f32(i & 255u) * 1e-6;
    let m = vec4<f32>(0.999999, 0.9999991, 0.9999992, 0.9999993);
    let c = vec4<f32>(x, x * 0.5, x * 0.25, x * 0.125);
    var a0 = c;
    var a1 = c + 1.0;
    for (var t = 0u; t < p.iters; t++) {
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
        a0 = fma(a0, m, c);
        a1 = fma(a1, m, c);
    }
    if (i < p.n) {
        dst[i] = a0 + a1;
    }
}

// dst = src, one vec4 per invocation.
@compute @workgroup_size(64)
fn copy_vec4(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = linear_id(gid, nwg);
    if (i >= p.n) { return; }
    dst[i] = src[i];
}
