// Frozen-weight storage: ggml's Q5_K super-blocks as the GGUF file holds them, 256 values
// of a row in 176 bytes { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }: Q4_K's
// layout with a fifth bit per value. Value j of a block lies in sub-block s = j / 32 with
// a 6-bit scale sc and min m packed as in Q4_K (llama.cpp's get_scale_min_k4); its low
// four bits are the nibble of qs[32·(j / 64) + j mod 32] (low for even s, high for odd)
// and its fifth is bit s of qh[j mod 32]: x = (d·sc)·q − dmin·m. Blocks are whole words:
// d and dmin share the first, the scales fill the next three, qh eight, qs 32.
alias WQ = u32;
alias WQ4 = u32;

const WQ_BLOCK_WORDS: u32 = 44u;

// (d·sc, dmin·m) of sub-block s, from the block's first four words (as in Q4_K).
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
    let l = j & 31u;
    let dm = wq_k_scale_min(wq[base], wq[base + 1u], wq[base + 2u], wq[base + 3u], s);
    let b = 32u * (j >> 6u) + l;
    let lo = (wq[base + 12u + (b >> 2u)] >> ((b & 3u) * 8u + (s & 1u) * 4u)) & 15u;
    let hi = (wq[base + 4u + (l >> 2u)] >> ((l & 3u) * 8u + s)) & 1u;
    return dm.x * f32(lo | (hi << 4u)) - dm.y;
}

// Elements 4·i4 .. 4·i4 + 3: one sub-block (they hold 32), so one scale and min, one
// word of qs and one of qh.
fn wload4(i4: u32) -> vec4<f32> {
    let i = i4 * 4u;
    let base = (i >> 8u) * WQ_BLOCK_WORDS;
    let j = i & 255u;
    let s = j >> 5u;
    let l = j & 31u;
    let dm = wq_k_scale_min(wq4[base], wq4[base + 1u], wq4[base + 2u], wq4[base + 3u], s);
    let lw = wq4[base + 12u + 8u * (j >> 6u) + (l >> 2u)];
    let hw = wq4[base + 4u + (l >> 2u)];
    let bytes = vec4<u32>(0u, 8u, 16u, 24u);
    let lo = (vec4<u32>(lw) >> (bytes + (s & 1u) * 4u)) & vec4<u32>(15u);
    let hi = (vec4<u32>(hw) >> (bytes + s)) & vec4<u32>(1u);
    return dm.x * vec4<f32>(lo | (hi << vec4<u32>(4u))) - dm.y;
}
