// Frozen-weight storage: ggml's Q4_K super-blocks as the GGUF file holds them, 256 values
// of a row in 144 bytes { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }. Value j of a
// block lies in sub-block s = j / 32, which has a 6-bit scale sc and min m packed in
// `scales` (llama.cpp's get_scale_min_k4: for s < 4, sc = scales[s] & 63 and
// m = scales[s + 4] & 63; for s ≥ 4, the low four bits in the nibbles of scales[s + 4]
// and the top two in bits 6-7 of scales[s − 4] and scales[s]), and its 4-bit q in
// qs[32·(j / 64) + j mod 32], the low nibble for even s and the high one for odd s:
// x = (d·sc)·q − dmin·m. Blocks are whole words: d and dmin share the first, the scales
// fill the next three, the nibbles the other 32.
alias WQ = u32;
alias WQ4 = u32;

const WQ_BLOCK_WORDS: u32 = 36u;

// (d·sc, dmin·m) of sub-block s, from the block's first four words. The snippets read
// through one binding each, so the words come in as values.
fn wq_k_scale_min(dmw: u32, s0: u32, s1: u32, s2: u32, s: u32) -> vec2<f32> {
    let sh = (s & 3u) * 8u;
    let b0 = (s0 >> sh) & 0xffu;
    let b1 = (s1 >> sh) & 0xffu;
    let b2 = (s2 >> sh) & 0xffu;
    let lo = vec2<u32>(b0 & 63u, b1 & 63u);
    let hi = vec2<u32>((b2 & 15u) | ((b0 >> 6u) << 4u), (b2 >> 4u) | ((b1 >> 6u) << 4u));
    let sm = select(lo, hi, s >= 4u);
    return vec2<f32>(wq_f16(dmw), wq_f16(dmw >> 16u)) * vec2<f32>(sm);
}

// Element i.
fn wload(i: u32) -> f32 {
    let base = (i >> 8u) * WQ_BLOCK_WORDS;
    let j = i & 255u;
    let s = j >> 5u;
    let dm = wq_k_scale_min(wq[base], wq[base + 1u], wq[base + 2u], wq[base + 3u], s);
    let b = 32u * (j >> 6u) + (j & 31u);
    let q = (wq[base + 4u + (b >> 2u)] >> ((b & 3u) * 8u + (s & 1u) * 4u)) & 15u;
    return dm.x * f32(q) - dm.y;
}

// Elements 4·i4 .. 4·i4 + 3: one sub-block (they hold 32), so one scale and min, and
// four consecutive bytes of qs, one word.
fn wload4(i4: u32) -> vec4<f32> {
    let i = i4 * 4u;
    let base = (i >> 8u) * WQ_BLOCK_WORDS;
    let j = i & 255u;
    let s = j >> 5u;
    let dm = wq_k_scale_min(wq4[base], wq4[base + 1u], wq4[base + 2u], wq4[base + 3u], s);
    let w = wq4[base + 4u + 8u * (j >> 6u) + ((j & 31u) >> 2u)];
    let q = (vec4<u32>(w) >> (vec4<u32>(0u, 8u, 16u, 24u) + (s & 1u) * 4u)) & vec4<u32>(15u);
    return dm.x * vec4<f32>(q) - dm.y;
}
