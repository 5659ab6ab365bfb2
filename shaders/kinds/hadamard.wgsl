// Adapter-kind snippet: BoHA and HiRA, W' = W0 ⊙ (1 + s·M), M = B·A block by block.
//
// The fused kernels (boha_forward, boha_grad, merge) are templates that a kind's snippet
// completes; a snippet says how M is formed from rank sums and how it enters W':
//   GROUPS          M = Π_g B_g·A_g over GROUPS equal slices of the r_b ranks
//   SLOPE_READS_W0  whether ∂W'/∂m needs W0 (the gradient kernels load it only then)
//   modulate*(w, m, s)  the W' element from the W0 element w and the M element m
//   slope4(w, s)        ∂W'/∂m, which turns Ĝ = dYᵀX into the gradient of M

const GROUPS: u32 = 1u;
const SLOPE_READS_W0: bool = true;

fn modulate(w: f32, m: f32, s: f32) -> f32 {
    return fma(w * s, m, w);
}

fn modulate4(w: vec4<f32>, m: vec4<f32>, s: f32) -> vec4<f32> {
    return fma(w * s, m, w);
}

fn slope4(w: vec4<f32>, s: f32) -> vec4<f32> {
    return w * s;
}
