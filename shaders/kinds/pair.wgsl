// Adapter-kind snippet: the Hadamard pairs ABBA and LoHa, W' = W0 + s·(B1A1) ⊙ (B2A2),
// with B = [B1 | B2] and A = [A1; A2]: two rank groups of h = r_b / 2 whose products
// multiply elementwise (see kinds/hadamard.wgsl for what a snippet provides). In the
// gradients, group g's share of ∂L/∂M is Ĝ·s times the other group's product.

const GROUPS: u32 = 2u;
const SLOPE_READS_W0: bool = false;

fn modulate(w: f32, m: f32, s: f32) -> f32 {
    return fma(s, m, w);
}

fn modulate4(w: vec4<f32>, m: vec4<f32>, s: f32) -> vec4<f32> {
    return fma(vec4<f32>(s), m, w);
}

fn slope4(w: vec4<f32>, s: f32) -> vec4<f32> {
    return vec4<f32>(s);
}
