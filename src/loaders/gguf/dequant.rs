//! ggml tensor types and their dequantization to f32, written to match ggml's
//! `dequantize_row_*` (ggml-quants.c) operation for operation, so that results are
//! bit-identical where the C compiler does not contract `a*b + c` into an FMA.
//!
//! Blocks run along `ne[0]` (a row): a row of n values is n / block_size blocks.

use half::{bf16, f16};

/// A ggml storage type that boha knows the block layout of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum GgmlType {
    F32,
    F16,
    BF16,
    F64,
    I8,
    I16,
    I32,
    I64,
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q8_1,
    Q2_K,
    Q3_K,
    Q4_K,
    Q5_K,
    Q6_K,
    Q8_K,
}

const QK_K: usize = 256;

impl GgmlType {
    /// The device dtype `--base-dtype keep` stores a tensor of this type in: F32, F16,
    /// BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and Q6_K as they are (the blocks uploaded as the
    /// file holds them), F16 for the other block types (Q2_K, Q3_K, Q5_0, Q5_1), whose
    /// kernels do not exist yet (the codes of 2- to 5-bit blocks widen to F16 with at
    /// most its rounding).
    pub fn kept(self) -> crate::gpu::DType {
        use crate::gpu::DType;
        match self {
            GgmlType::F32 => DType::F32,
            GgmlType::BF16 => DType::BF16,
            GgmlType::Q8_0 => DType::Q8_0,
            GgmlType::Q4_0 => DType::Q4_0,
            GgmlType::Q4_1 => DType::Q4_1,
            GgmlType::Q4_K => DType::Q4_K,
            GgmlType::Q5_K => DType::Q5_K,
            GgmlType::Q6_K => DType::Q6_K,
            _ => DType::F16,
        }
    }

    /// The type for a ggml type id (`enum ggml_type`), if boha knows its layout.
    pub fn from_id(id: u32) -> Option<GgmlType> {
        use GgmlType::*;
        Some(match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            30 => BF16,
            _ => return None,
        })
    }

    /// The ggml type id.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            BF16 => 30,
        }
    }

    /// ggml's name for the type.
    pub fn name(self) -> &'static str {
        use GgmlType::*;
        match self {
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            F64 => "F64",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
        }
    }

    /// Values per block.
    pub fn block_size(self) -> usize {
        use GgmlType::*;
        match self {
            F32 | F16 | BF16 | F64 | I8 | I16 | I32 | I64 => 1,
            Q4_0 | Q4_1 | Q5_0 | Q5_1 | Q8_0 | Q8_1 => 32,
            Q2_K | Q3_K | Q4_K | Q5_K | Q6_K | Q8_K => QK_K,
        }
    }

    /// Bytes per block.
    pub fn type_size(self) -> usize {
        use GgmlType::*;
        match self {
            I8 => 1,
            F16 | BF16 | I16 => 2,
            F32 | I32 => 4,
            F64 | I64 => 8,
            Q4_0 => 18,
            Q4_1 => 20,
            Q5_0 => 22,
            Q5_1 => 24,
            Q8_0 => 34,
            Q8_1 => 36,
            Q2_K => 84,
            Q3_K => 110,
            Q4_K => 144,
            Q5_K => 176,
            Q6_K => 210,
            Q8_K => 292,
        }
    }
}

/// Dequantizes `n` values of type `t` from `bytes` (which must hold exactly n values).
pub fn dequantize(t: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>, String> {
    use GgmlType::*;
    let bs = t.block_size();
    if !n.is_multiple_of(bs) || bytes.len() != n / bs * t.type_size() {
        return Err(format!(
            "{} bytes do not hold {n} {} values",
            bytes.len(),
            t.name()
        ));
    }
    let blocks = bytes.chunks_exact(t.type_size());
    let mut y = Vec::with_capacity(n);
    match t {
        F32 => y.extend(blocks.map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))),
        F16 => y.extend(blocks.map(|b| half(b, 0))),
        BF16 => y.extend(blocks.map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())),
        F64 => y.extend(blocks.map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)),
        I8 => y.extend(blocks.map(|b| b[0] as i8 as f32)),
        I16 => y.extend(blocks.map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)),
        I32 => y.extend(blocks.map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)),
        I64 => y.extend(blocks.map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)),
        Q4_0 => blocks.for_each(|b| q4_0(b, &mut y)),
        Q4_1 => blocks.for_each(|b| q4_1(b, &mut y)),
        Q5_0 => blocks.for_each(|b| q5_0(b, &mut y)),
        Q5_1 => blocks.for_each(|b| q5_1(b, &mut y)),
        Q8_0 => blocks.for_each(|b| q8_0(b, &mut y)),
        Q2_K => blocks.for_each(|b| q2_k(b, &mut y)),
        Q3_K => blocks.for_each(|b| q3_k(b, &mut y)),
        Q4_K => blocks.for_each(|b| q4_k(b, &mut y)),
        Q5_K => blocks.for_each(|b| q5_k(b, &mut y)),
        Q6_K => blocks.for_each(|b| q6_k(b, &mut y)),
        Q8_1 | Q8_K => {
            return Err(format!(
                "type {} is an activation format boha does not dequantize",
                t.name()
            ))
        }
    }
    Ok(y)
}

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// block_q4_0 { f16 d; u8 qs[16] }: low nibbles are values 0..16, high nibbles 16..32.
fn q4_0(b: &[u8], y: &mut Vec<f32>) {
    let d = half(b, 0);
    let qs = &b[2..18];
    y.extend(qs.iter().map(|&q| ((q & 0x0f) as i32 - 8) as f32 * d));
    y.extend(qs.iter().map(|&q| ((q >> 4) as i32 - 8) as f32 * d));
}

/// block_q4_1 { f16 d; f16 m; u8 qs[16] }: x = q·d + m.
fn q4_1(b: &[u8], y: &mut Vec<f32>) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qs = &b[4..20];
    y.extend(qs.iter().map(|&q| (q & 0x0f) as f32 * d + m));
    y.extend(qs.iter().map(|&q| (q >> 4) as f32 * d + m));
}

/// block_q5_0 { f16 d; u8 qh[4]; u8 qs[16] }: the 5th bit of value j is bit j of qh.
fn q5_0(b: &[u8], y: &mut Vec<f32>) {
    let d = half(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    let mut hi = [0f32; 16];
    for j in 0..16 {
        let xh0 = (((qh >> j) << 4) & 0x10) as i32;
        let xh1 = ((qh >> (j + 12)) & 0x10) as i32;
        y.push((((qs[j] & 0x0f) as i32 | xh0) - 16) as f32 * d);
        hi[j] = (((qs[j] >> 4) as i32 | xh1) - 16) as f32 * d;
    }
    y.extend_from_slice(&hi);
}

/// block_q5_1 { f16 d; f16 m; u8 qh[4]; u8 qs[16] }.
fn q5_1(b: &[u8], y: &mut Vec<f32>) {
    let (d, m) = (half(b, 0), half(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    let mut hi = [0f32; 16];
    for j in 0..16 {
        let xh0 = ((qh >> j) << 4) & 0x10;
        let xh1 = (qh >> (j + 12)) & 0x10;
        y.push(((qs[j] & 0x0f) as u32 | xh0) as f32 * d + m);
        hi[j] = ((qs[j] >> 4) as u32 | xh1) as f32 * d + m;
    }
    y.extend_from_slice(&hi);
}

/// block_q8_0 { f16 d; i8 qs[32] }.
fn q8_0(b: &[u8], y: &mut Vec<f32>) {
    let d = half(b, 0);
    y.extend(b[2..34].iter().map(|&q| q as i8 as f32 * d));
}

/// The 6-bit scale and min of sub-block j from the packed 12 bytes of Q4_K / Q5_K.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// block_q2_K { u8 scales[16]; u8 qs[64]; f16 d; f16 dmin }.
fn q2_k(b: &[u8], y: &mut Vec<f32>) {
    let (sc, qs) = (&b[0..16], &b[16..80]);
    let (d, min) = (half(b, 80), half(b, 82));
    let mut is = 0;
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half_ in 0..2 {
                let s = sc[is];
                is += 1;
                let dl = d * (s & 0x0f) as f32;
                let ml = min * (s >> 4) as f32;
                for l in 0..16 {
                    y.push(dl * ((q[l + 16 * half_] >> shift) & 3) as f32 - ml);
                }
            }
        }
    }
}

/// block_q3_K { u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d }.
fn q3_k(b: &[u8], y: &mut Vec<f32>) {
    let (hm, qs, packed) = (&b[0..32], &b[32..96], &b[96..108]);
    let d_all = half(b, 108);
    // Unpack sixteen 6-bit scales exactly as ggml's kmask shuffle does.
    let mut aux = [0u32; 4];
    for (i, a) in aux.iter_mut().take(3).enumerate() {
        *a = u32::from_le_bytes([
            packed[4 * i],
            packed[4 * i + 1],
            packed[4 * i + 2],
            packed[4 * i + 3],
        ]);
    }
    let (k1, k2) = (0x0303_0303u32, 0x0f0f_0f0fu32);
    let tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & k2) | (((tmp >> 4) & k1) << 4);
    aux[3] = ((aux[1] >> 4) & k2) | (((tmp >> 6) & k1) << 4);
    aux[0] = (aux[0] & k2) | ((tmp & k1) << 4);
    aux[1] = (aux[1] & k2) | (((tmp >> 2) & k1) << 4);
    let scales: Vec<i8> = aux
        .iter()
        .flat_map(|a| a.to_le_bytes())
        .map(|v| v as i8)
        .collect();
    let mut is = 0;
    let mut m = 1u8;
    for n in 0..2 {
        let q = &qs[32 * n..32 * n + 32];
        for shift in [0, 2, 4, 6] {
            for half_ in 0..2 {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 16 * half_..16 * half_ + 16 {
                    let low = ((q[l] >> shift) & 3) as i32;
                    let v = low - if hm[l] & m != 0 { 0 } else { 4 };
                    y.push(dl * v as f32);
                }
            }
            m = m.wrapping_shl(1);
        }
    }
}

/// block_q4_K { f16 d; f16 dmin; u8 scales[12]; u8 qs[128] }.
fn q4_k(b: &[u8], y: &mut Vec<f32>) {
    let (d, min) = (half(b, 0), half(b, 2));
    let (sc, qs) = (&b[4..16], &b[16..144]);
    for j in 0..4 {
        let q = &qs[32 * j..32 * j + 32];
        let (s1, m1) = scale_min_k4(2 * j, sc);
        let (s2, m2) = scale_min_k4(2 * j + 1, sc);
        let (d1, m1) = (d * s1 as f32, min * m1 as f32);
        let (d2, m2) = (d * s2 as f32, min * m2 as f32);
        y.extend(q.iter().map(|&v| d1 * (v & 0x0f) as f32 - m1));
        y.extend(q.iter().map(|&v| d2 * (v >> 4) as f32 - m2));
    }
}

/// block_q5_K { f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128] }.
fn q5_k(b: &[u8], y: &mut Vec<f32>) {
    let (d, min) = (half(b, 0), half(b, 2));
    let (sc, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    let (mut u1, mut u2) = (1u8, 2u8);
    for j in 0..4 {
        let ql = &qs[32 * j..32 * j + 32];
        let (s1, m1) = scale_min_k4(2 * j, sc);
        let (s2, m2) = scale_min_k4(2 * j + 1, sc);
        let (d1, m1) = (d * s1 as f32, min * m1 as f32);
        let (d2, m2) = (d * s2 as f32, min * m2 as f32);
        for l in 0..32 {
            let h = if qh[l] & u1 != 0 { 16 } else { 0 };
            y.push(d1 * ((ql[l] & 0x0f) + h) as f32 - m1);
        }
        for l in 0..32 {
            let h = if qh[l] & u2 != 0 { 16 } else { 0 };
            y.push(d2 * ((ql[l] >> 4) + h) as f32 - m2);
        }
        u1 = u1.wrapping_shl(2);
        u2 = u2.wrapping_shl(2);
    }
}

/// block_q6_K { u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d }.
fn q6_k(b: &[u8], y: &mut Vec<f32>) {
    let d = half(b, 208);
    for n in 0..2 {
        let ql = &b[64 * n..64 * n + 64];
        let qh = &b[128 + 32 * n..128 + 32 * n + 32];
        let sc = &b[192 + 8 * n..192 + 8 * n + 8];
        let mut out = [0f32; 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0f) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| sc[is + k] as i8 as f32;
            out[l] = d * s(0) * q1 as f32;
            out[l + 32] = d * s(2) * q2 as f32;
            out[l + 64] = d * s(4) * q3 as f32;
            out[l + 96] = d * s(6) * q4 as f32;
        }
        y.extend_from_slice(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Q4_K block built byte by byte, decoded to values worked out by hand from
    /// llama.cpp's dequantize_row_q4_K: x = d·sc·q − dmin·m.
    #[test]
    fn q4_k_reference_values() {
        let mut b = [0u8; 144];
        b[0..4].copy_from_slice(&[0x00, 0x38, 0x00, 0x34]); // d = 0.5, dmin = 0.25
        let sc = &mut b[4..16];
        // Sub-block 0: sc 2, m 4. Sub-block 1: sc 3, m 0. Sub-block 5: sc 21 = 0b01_0101,
        // m 38 = 0b10_0110: low nibbles in scales[9], top bits in bits 6-7 of scales[1]
        // and scales[5]. The others: 0.
        sc[0] = 2;
        sc[4] = 4;
        sc[1] = 3 | (1 << 6);
        sc[5] = 2 << 6;
        sc[9] = 5 | (6 << 4);
        let qs = &mut b[16..144];
        qs[0] = 0x7a; // value 0: q 10 (sub-block 0); value 32: q 7 (sub-block 1)
        qs[31] = 0x0f; // value 31: q 15; value 63: q 0
        qs[69] = 0xc0; // value 133: q 0 (sub-block 4); value 165: q 12 (sub-block 5)
        let mut want = [0f32; 256];
        want[..32].fill(-1.0); // 0.5·2·0 − 0.25·4
        want[160..192].fill(-9.5); // 0.5·21·0 − 0.25·38
        want[0] = 9.0; // 0.5·2·10 − 1
        want[31] = 14.0; // 0.5·2·15 − 1
        want[32] = 10.5; // 0.5·3·7
        want[165] = 116.5; // 0.5·21·12 − 0.25·38
        assert_eq!(dequantize(GgmlType::Q4_K, &b, 256).unwrap(), want);
    }

    /// A Q6_K block built byte by byte, decoded to values worked out by hand from
    /// llama.cpp's dequantize_row_q6_K: x = d·sc·(q − 32), q's low nibble in ql and top
    /// two bits in qh.
    #[test]
    fn q6_k_reference_values() {
        let mut b = [0u8; 210];
        b[208..210].copy_from_slice(&[0x00, 0x34]); // d = 0.25
        b[192] = 2; // scale of values 0..16
        b[192 + 2] = (-3i8) as u8; // values 32..48
        b[192 + 13] = 5; // values 208..224
        b[0] = 0x05; // ql[0]: low nibble of value 0
        b[128] = 0x02; // qh[0], bits 0-1: value 0's top bits, q = 5 + 32
        b[40] = 0x01; // ql[40]: low nibble of value 40 (k = 1, l = 8)
        b[128 + 8] = 0x0c; // qh[8], bits 2-3: value 40, q = 1 + 48
        b[88] = 0xf0; // ql[88], high nibble: value 216 (h = 1, k = 2, l = 24)
        b[128 + 56] = 0x10; // qh[56], bits 4-5: value 216, q = 15 + 16
        let mut want = [0f32; 256];
        want[..16].fill(-16.0); // 0.25·2·(0 − 32)
        want[32..48].fill(24.0); // 0.25·(−3)·(0 − 32)
        want[208..224].fill(-40.0); // 0.25·5·(0 − 32)
        want[0] = 2.5; // 0.25·2·(37 − 32)
        want[40] = -12.75; // 0.25·(−3)·(49 − 32)
        want[216] = -1.25; // 0.25·5·(31 − 32)
        assert_eq!(dequantize(GgmlType::Q6_K, &b, 256).unwrap(), want);
    }

    #[test]
    fn k_quants_are_kept_and_the_other_blocks_widen_to_f16() {
        use crate::gpu::DType;
        assert_eq!(GgmlType::Q4_K.kept(), DType::Q4_K);
        assert_eq!(GgmlType::Q5_K.kept(), DType::Q5_K);
        assert_eq!(GgmlType::Q6_K.kept(), DType::Q6_K);
        for t in [
            GgmlType::Q2_K,
            GgmlType::Q3_K,
            GgmlType::Q5_0,
            GgmlType::Q5_1,
        ] {
            assert_eq!(t.kept(), DType::F16, "{}", t.name());
        }
        for t in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let d = t.kept();
            assert_eq!(
                (d.block(), d.bytes_for(512)),
                (t.block_size(), 2 * t.type_size())
            );
        }
    }
}
