// Adapter-kind snippet: the W0-free control and LoRA, W' = W0 + s·M, M = B·A block by
// block (see kinds/hadamard.wgsl for what a snippet provides).

const GROUPS: u32 = 1u;
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
