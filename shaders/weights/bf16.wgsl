// Frozen-weight storage: bfloat16, two to a u32 (element 2j in the low half). A bf16 is
// the top 16 bits of an f32, so widening is a shift: bf16(h) = bitcast<f32>(h << 16).
alias WQ = u32;
alias WQ4 = vec2<u32>;

fn bf16_pair(u: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(u << 16u), bitcast<f32>(u & 0xffff0000u));
}

// Element i.
fn wload(i: u32) -> f32 {
    return bf16_pair(wq[i >> 1u])[i & 1u];
}

// Elements 4·i4 .. 4·i4 + 3.
fn wload4(i4: u32) -> vec4<f32> {
    let u = wq4[i4];
    return vec4<f32>(bf16_pair(u.x), bf16_pair(u.y));
}
