// Frozen-weight storage: ggml's Q4_1 blocks as the GGUF file holds them, 32 values of a
// row in 20 bytes { f16 d; f16 m; u8 qs[16] }, x = q·d + m with value j in the low
// nibble of qs[j mod 16] for j < 16 and the high nibble for j ≥ 16. Blocks are whole
// words: d and m share the first, the nibbles fill the next four.
alias WQ = u32;
alias WQ4 = u32;

const WQ_BLOCK_WORDS: u32 = 5u;

// Element i.
fn wload(i: u32) -> f32 {
    let base = (i >> 5u) * WQ_BLOCK_WORDS;
    let dmw = wq[base];
    let dm = vec2<f32>(wq_f16(dmw), wq_f16(dmw >> 16u));
    let j = i & 31u;
    let b = j & 15u;
    let q = (wq[base + 1u + (b >> 2u)] >> ((b & 3u) * 8u + (j >> 4u) * 4u)) & 15u;
    return f32(q) * dm.x + dm.y;
}

// Elements 4·i4 .. 4·i4 + 3 (one block: blocks hold 32).
fn wload4(i4: u32) -> vec4<f32> {
    let i = i4 * 4u;
    let base = (i >> 5u) * WQ_BLOCK_WORDS;
    let dmw = wq4[base];
    let dm = vec2<f32>(wq_f16(dmw), wq_f16(dmw >> 16u));
    let j = i & 31u;
    let w = wq4[base + 1u + ((j & 15u) >> 2u)];
    let s = (j >> 4u) * 4u;
    let q = (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + s)) & vec4<u32>(15u);
    return vec4<f32>(q) * dm.x + dm.y;
}
