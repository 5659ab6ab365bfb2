// Frozen-weight storage: ggml's Q8_0 blocks as the GGUF file holds them, 32 values of a
// row in 34 bytes { f16 d; i8 q[32] }, x = q·d. The bytes are read as u32 words: a
// block starts at an even byte, so d sits in one word, and four values in one or two.
alias WQ = u32;
alias WQ4 = u32;

const WQ_BLOCK_BYTES: u32 = 34u;

// The f16 at even byte offset b.
fn wq_half(b: u32) -> f32 {
    return wq_f16(wq[b >> 2u] >> ((b & 2u) * 8u));
}

// Byte b as a signed value.
fn wq_i8(b: u32) -> f32 {
    let w = wq[b >> 2u] >> ((b & 3u) * 8u);
    return f32(bitcast<i32>(w << 24u) >> 24u);
}

// Element i.
fn wload(i: u32) -> f32 {
    let base = (i >> 5u) * WQ_BLOCK_BYTES;
    return wq_half(base) * wq_i8(base + 2u + (i & 31u));
}

// Elements 4·i4 .. 4·i4 + 3 (one block: blocks hold 32).
fn wload4(i4: u32) -> vec4<f32> {
    let i = i4 * 4u;
    let base = (i >> 5u) * WQ_BLOCK_BYTES;
    let d = wq_f16(wq4[base >> 2u] >> ((base & 2u) * 8u));
    // The four bytes start at an even offset: one word, or the top half of one and the
    // bottom half of the next.
    let off = base + 2u + (i & 31u);
    var w = wq4[off >> 2u];
    if ((off & 2u) != 0u) {
        w = (w >> 16u) | (wq4[(off >> 2u) + 1u] << 16u);
    }
    let q = vec4<i32>(bitcast<i32>(w << 24u), bitcast<i32>(w << 16u), bitcast<i32>(w << 8u), bitcast<i32>(w)) >> vec4<u32>(24u);
    return d * vec4<f32>(q);
}
