// Frozen-weight storage: IEEE half, two to a u32 (element 2j in the low half), widened
// with core WGSL integer ops, so no optional device feature is needed. Products and
// sums stay f32: only the load narrows.
alias WQ = u32;
alias WQ4 = vec2<u32>;

// Element i.
fn wload(i: u32) -> f32 {
    return wq_f16(wq[i >> 1u] >> ((i & 1u) * 16u));
}

// Elements 4·i4 .. 4·i4 + 3.
fn wload4(i4: u32) -> vec4<f32> {
    let u = wq4[i4];
    return wq_f16x4(vec4<u32>(u.x, u.x >> 16u, u.y, u.y >> 16u));
}
