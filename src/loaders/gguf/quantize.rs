//! ggml's reference quantizers for the block types boha stores on the device
//! (`--base-dtype q8_0|q4_0|q4_1`), as llama.cpp's `quantize_row_*_ref` write them, so a
//! weight quantized here decodes (`dequantize`) to what llama.cpp would give it. Blocks
//! are 32 consecutive values of a row:
//!
//! - Q8_0 { f16 d; i8 q\[32\] }: d = max|x| / 127, q = round(x / d); x ≈ q·d
//! - Q4_0 { f16 d; u8 qs\[16\] }: m = the x of largest |x|, d = m / −8,
//!   q = min(15, ⌊x / d + 8.5⌋); x ≈ (q − 8)·d; value j in the low nibble of qs[j mod
//!   16] for j < 16, the high nibble for j ≥ 16
//! - Q4_1 { f16 d; f16 m; u8 qs\[16\] }: m = min x, d = (max x − m) / 15,
//!   q = min(15, ⌊(x − m) / d + 0.5⌋); x ≈ q·d + m; nibbles as Q4_0

use half::f16;

use super::GgmlType;

/// Values per block.
pub const BLOCK: usize = 32;

/// `x` (a multiple of 32 values) as blocks of `t` (Q8_0, Q4_0 or Q4_1); `None` for
/// another type or a length that is not whole blocks.
pub fn quantize(t: GgmlType, x: &[f32]) -> Option<Vec<u8>> {
    if !x.len().is_multiple_of(BLOCK) {
        return None;
    }
    let mut out = Vec::with_capacity(x.len() / BLOCK * t.type_size());
    for b in x.chunks_exact(BLOCK) {
        match t {
            GgmlType::Q8_0 => q8_0(b, &mut out),
            GgmlType::Q4_0 => q4_0(b, &mut out),
            GgmlType::Q4_1 => q4_1(b, &mut out),
            _ => return None,
        }
    }
    Some(out)
}

fn inverse(d: f32) -> f32 {
    if d != 0.0 {
        1.0 / d
    } else {
        0.0
    }
}

fn q8_0(x: &[f32], out: &mut Vec<u8>) {
    let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(x.iter().map(|&v| (v * id).round() as i8 as u8));
}

fn nibbles(q: impl Fn(f32) -> u8, x: &[f32], out: &mut Vec<u8>) {
    out.extend((0..16).map(|j| q(x[j]) | (q(x[j + 16]) << 4)));
}

fn q4_0(x: &[f32], out: &mut Vec<u8>) {
    let max = x
        .iter()
        .copied()
        .fold(0f32, |m, v| if v.abs() > m.abs() { v } else { m });
    let d = max / -8.0;
    let id = inverse(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    nibbles(|v| ((v * id + 8.5) as i8).clamp(0, 15) as u8, x, out);
}

fn q4_1(x: &[f32], out: &mut Vec<u8>) {
    let min = x.iter().copied().fold(f32::INFINITY, f32::min);
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let d = (max - min) / 15.0;
    let id = inverse(d);
    out.extend(f16::from_f32(d).to_le_bytes());
    out.extend(f16::from_f32(min).to_le_bytes());
    nibbles(
        |v| (((v - min) * id + 0.5) as i8).clamp(0, 15) as u8,
        x,
        out,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loaders::gguf::dequantize;

    /// Each type's round trip stays within half a step of its grid (plus f16's rounding
    /// of the scale; Q4_0's grid reaches only 7/8 of the extreme on the other side, where
    /// values clamp), and a block of small multiples of its scale comes back exactly.
    #[test]
    fn round_trips_stay_within_half_a_step() {
        let x: Vec<f32> = (0..96)
            .map(|i| ((i * 37 % 97) as f32 - 48.0) / 17.0)
            .collect();
        for (t, steps) in [
            (GgmlType::Q8_0, 254.0),
            (GgmlType::Q4_0, 16.0),
            (GgmlType::Q4_1, 15.0),
        ] {
            let q = quantize(t, &x).unwrap();
            assert_eq!(q.len(), 3 * t.type_size());
            let y = dequantize(t, &q, x.len()).unwrap();
            for (b, (xb, yb)) in x.chunks(32).zip(y.chunks(32)).enumerate() {
                let lo = xb.iter().copied().fold(f32::INFINITY, f32::min);
                let hi = xb.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let span = if t == GgmlType::Q4_1 {
                    hi - lo
                } else {
                    2.0 * lo.abs().max(hi.abs())
                };
                let step = span / steps;
                for (a, b2) in xb.iter().zip(yb) {
                    let clamp = if t == GgmlType::Q4_0 {
                        (a.abs() - 7.0 * step).max(0.0)
                    } else {
                        0.0
                    };
                    assert!(
                        (a - b2).abs() <= 0.5 * step * 1.01 + clamp + 1e-3 * span,
                        "{t:?} block {b}: {a} → {b2}"
                    );
                }
            }
        }
        // -120..=120 in steps of 8, and 127: Q8_0's scale is exactly 1.
        let mut x: Vec<f32> = (0..31).map(|i| (i * 8) as f32 - 120.0).collect();
        x.push(127.0);
        let y = dequantize(GgmlType::Q8_0, &quantize(GgmlType::Q8_0, &x).unwrap(), 32).unwrap();
        assert_eq!(x, y);
        assert!(quantize(GgmlType::Q8_0, &x[..31]).is_none());
        assert!(quantize(GgmlType::F16, &x).is_none());
    }
}
