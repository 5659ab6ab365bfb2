// Frozen-weight storage: ggml's Q4_0 blocks as the GGUF file holds them, 32 values of a
// row in 18 bytes { f16 d; u8 qs[16] }, x = (q − 8)·d with value j in the low nibble of
// qs[j mod 16] for j < 16 and the high nibble for j ≥ 16. A block starts at an even byte.
alias WQ = u32;
alias WQ4 = u32;

const WQ_BLOCK_BYTES: u32 = 18u;

// Element i.
fn wload(i: u32) -> f32 {
    let base = (i >> 5u) * WQ_BLOCK_BYTES;
    let d = wq_f16(wq[base >> 2u] >> ((base & 2u) * 8u));
    let j = i & 31u;
    let b = base + 2u + (j & 15u);
    let q = (wq[b >> 2u] >> ((b & 3u) * 8u + (j >> 4u) * 4u)) & 15u;
    return (f32(q) - 8.0) * d;
}

// Elements 4·i4 .. 4·i4 + 3 (one block: blocks hold 32).
fn wload4(i4: u32) -> vec4<f32> {
    let i = i4 * 4u;
    let base = (i >> 5u) * WQ_BLOCK_BYTES;
    let d = wq_f16(wq4[base >> 2u] >> ((base & 2u) * 8u));
    let j = i & 31u;
    let off = base + 2u + (j & 15u);
    var w = wq4[off >> 2u];
    if ((off & 2u) != 0u) {
        w = (w >> 16u) | (wq4[(off >> 2u) + 1u] << 16u);
    }
    let s = (j >> 4u) * 4u;
    let q = (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + s)) & vec4<u32>(15u);
    return (vec4<f32>(q) - 8.0) * d;
}
