// Frozen-weight storage: ggml's Q6_K super-blocks as the GGUF file holds them, 256 values
// of a row in 210 bytes { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }. Value j of a
// block, with h = j / 128, l = j mod 32 and k = (j mod 128) / 32, has its low four bits
// in ql[64·h + 32·(k mod 2) + l] (the low nibble for k < 2, the high one for k ≥ 2) and
// its top two at bit 2k of qh[32·h + l]; its scale is scales[j / 16]:
// x = (d·sc)·(q − 32). 210 bytes are not whole words: a block starts at an even byte, so
// d sits in one word and four consecutive bytes in one or two.
alias WQ = u32;
alias WQ4 = u32;

const WQ_BLOCK_BYTES: u32 = 210u;

// Element i.
fn wload(i: u32) -> f32 {
    let base = (i >> 8u) * WQ_BLOCK_BYTES;
    let j = i & 255u;
    let l = j & 31u;
    let k = (j >> 5u) & 3u;
    let d = wq_f16(wq[(base + 208u) >> 2u] >> (((base + 208u) & 2u) * 8u));
    let bs = base + 192u + (j >> 4u);
    let sc = bitcast<i32>(wq[bs >> 2u] << (24u - (bs & 3u) * 8u)) >> 24u;
    let bl = base + 64u * (j >> 7u) + 32u * (k & 1u) + l;
    let bh = base + 128u + 32u * (j >> 7u) + l;
    let lo = (wq[bl >> 2u] >> ((bl & 3u) * 8u + (k >> 1u) * 4u)) & 15u;
    let hi = (wq[bh >> 2u] >> ((bh & 3u) * 8u + 2u * k)) & 3u;
    return (d * f32(sc)) * f32(i32(lo | (hi << 4u)) - 32);
}

// The four bytes at even offset b: one word, or the top half of one and the bottom half
// of the next.
fn wq_bytes4(b: u32) -> u32 {
    var w = wq4[b >> 2u];
    if ((b & 2u) != 0u) {
        w = (w >> 16u) | (wq4[(b >> 2u) + 1u] << 16u);
    }
    return w;
}

// Elements 4·i4 .. 4·i4 + 3: one 16-value scale group (l is a multiple of 4, so the four
// share h, k and j / 16), four consecutive bytes of ql and of qh.
fn wload4(i4: u32) -> vec4<f32> {
    let i = i4 * 4u;
    let base = (i >> 8u) * WQ_BLOCK_BYTES;
    let j = i & 255u;
    let l = j & 31u;
    let k = (j >> 5u) & 3u;
    let d = wq_f16(wq4[(base + 208u) >> 2u] >> (((base + 208u) & 2u) * 8u));
    let bs = base + 192u + (j >> 4u);
    let sc = bitcast<i32>(wq4[bs >> 2u] << (24u - (bs & 3u) * 8u)) >> 24u;
    let lw = wq_bytes4(base + 64u * (j >> 7u) + 32u * (k & 1u) + l);
    let hw = wq_bytes4(base + 128u + 32u * (j >> 7u) + l);
    let bytes = vec4<u32>(0u, 8u, 16u, 24u);
    let lo = (vec4<u32>(lw) >> (bytes + (k >> 1u) * 4u)) & vec4<u32>(15u);
    let hi = (vec4<u32>(hw) >> (bytes + 2u * k)) & vec4<u32>(3u);
    return (d * f32(sc)) * vec4<f32>(vec4<i32>(lo | (hi << vec4<u32>(4u))) - vec4<i32>(32));
}
