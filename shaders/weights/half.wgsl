// Shared by every weights snippet (prepended before it): f16 bits (the low half of h) as
// f32 with integer ops only. The exponent and mantissa move into f32's places and are
// rebased by 2^112 (which also turns f16 subnormals into f32 normals), then the sign is
// put back. unpack2x16float is a scalar call per lane on llvmpipe; this is a few vector
// integer ops. Frozen weights are finite (loaders refuse Inf/NaN), the only inputs this
// does not map.
fn wq_f16(h: u32) -> f32 {
    let mag = bitcast<f32>((h & 0x7fffu) << 13u) * bitcast<f32>(0x77800000u);
    return bitcast<f32>(bitcast<u32>(mag) | ((h & 0x8000u) << 16u));
}

// wq_f16 of each lane.
fn wq_f16x4(h: vec4<u32>) -> vec4<f32> {
    let mag = bitcast<vec4<f32>>((h & vec4<u32>(0x7fffu)) << vec4<u32>(13u)) * bitcast<f32>(0x77800000u);
    return bitcast<vec4<f32>>(bitcast<vec4<u32>>(mag) | ((h & vec4<u32>(0x8000u)) << vec4<u32>(16u)));
}
