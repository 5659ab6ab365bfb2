//! Splitting a GEMM so that every bound view fits the storage-binding limit.
//!
//! A dimension whose index selects rows of a stored operand (m for C and for A when not
//! transposed, and so on) can be cut into ranges; each operand is then bound as the rows
//! of its ranges, and the other dimensions' range starts become offsets inside the view.
//! Range starts are multiples of a step that keeps every view's byte offset aligned and
//! every range a multiple of 4 rows (so offsets inside views keep vec4 loads aligned).

use crate::error::{Error, Result};

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

fn lcm(a: u64, b: u64) -> u64 {
    a / gcd(a, b) * b
}

/// Smallest multiplier of `unit_elems` f32 elements whose byte size is a multiple of
/// `align` (1 when the unit is empty).
fn aligned_step(unit_elems: usize, align: u64) -> u64 {
    let bytes = unit_elems as u64 * 4;
    if bytes == 0 {
        1
    } else {
        align / gcd(align, bytes)
    }
}

/// Cuts `total` rows into `(start, len)` ranges such that, for every entry `r` of
/// `row_elems` (the row length of an operand bound by rows of this dimension), `len · r`
/// elements fit `max_bytes` and `start · r · 4` is a multiple of `align`. One range (which
/// may be empty) when everything fits at once.
pub fn split(
    total: usize,
    row_elems: &[usize],
    max_bytes: u64,
    align: u64,
    op: &str,
) -> Result<Vec<(usize, usize)>> {
    let max_rows = row_elems
        .iter()
        .filter(|&&r| r > 0)
        .map(|&r| max_bytes / (r as u64 * 4))
        .min()
        .unwrap_or(u64::MAX);
    if total as u64 <= max_rows {
        return Ok(vec![(0, total)]);
    }
    let step = row_elems
        .iter()
        .fold(4, |s, &r| lcm(s, aligned_step(r, align)));
    let per = max_rows / step * step;
    if per == 0 {
        return Err(Error::shape(
            op,
            format!(
                "{step} rows of {:?} elements exceed the {max_bytes}-byte storage binding limit",
                row_elems
            ),
        ));
    }
    let per = per as usize;
    Ok((0..total)
        .step_by(per)
        .map(|s| (s, per.min(total - s)))
        .collect())
}

/// Cuts `batch` entries into ranges whose views (entries `stride_i` elements apart, each
/// `size_i` elements long) fit `max_bytes`, start aligned, and span at most `max_count`
/// entries (the z workgroup limit).
pub fn split_batch(
    batch: usize,
    operands: &[(usize, usize)],
    max_bytes: u64,
    align: u64,
    max_count: usize,
    op: &str,
) -> Result<Vec<(usize, usize)>> {
    let max_elems = max_bytes / 4;
    let mut per = max_count.max(1) as u64;
    let mut step = 1u64;
    for &(stride, size) in operands {
        if size as u64 > max_elems {
            return Err(Error::shape(
                op,
                format!("one batch entry of {size} elements exceeds the {max_bytes}-byte storage binding limit"),
            ));
        }
        if stride > 0 {
            per = per.min((max_elems - size as u64) / stride as u64 + 1);
            step = lcm(step, aligned_step(stride, align));
        }
    }
    if batch as u64 <= per {
        return Ok(vec![(0, batch)]);
    }
    let per = per / step * step;
    if per == 0 {
        return Err(Error::shape(
            op,
            format!("batch entries cannot be bound at {align}-byte aligned offsets within {max_bytes} bytes"),
        ));
    }
    let per = per as usize;
    Ok((0..batch)
        .step_by(per)
        .map(|s| (s, per.min(batch - s)))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_rows_with_aligned_starts_within_limit() {
        let cases = [
            (1000usize, vec![3usize, 5], 4096u64, 16u64),
            (37, vec![16], 1024, 16),
            (130, vec![67, 129], 4096, 16),
            (1000, vec![3, 5], 1 << 14, 256),
        ];
        for (total, rows, max, align) in cases {
            let r = split(total, &rows, max, align, "t").unwrap();
            assert!(
                r.len() > 1,
                "{total} rows of {rows:?} should need several ranges"
            );
            let mut next = 0;
            for &(s, n) in &r {
                assert_eq!(s, next);
                for &e in &rows {
                    assert!((n * e * 4) as u64 <= max);
                    assert_eq!((s * e * 4) as u64 % align, 0);
                }
                assert_eq!(s % 4, 0);
                next += n;
            }
            assert_eq!(next, total);
        }
        assert_eq!(split(10, &[], 16, 256, "t").unwrap(), vec![(0, 10)]);
        assert_eq!(split(0, &[7], 16, 256, "t").unwrap(), vec![(0, 0)]);
        assert!(split(100, &[1000], 4096, 256, "t").is_err());
    }

    #[test]
    fn split_batch_respects_limits() {
        let r = split_batch(10, &[(12, 12), (0, 5)], 256, 64, 65535, "t").unwrap();
        let mut next = 0;
        for &(s, n) in &r {
            assert_eq!(s, next);
            assert_eq!((s * 12 * 4) % 64, 0);
            assert!(((n - 1) * 12 + 12) * 4 <= 256);
            next += n;
        }
        assert_eq!(next, 10);
        assert_eq!(
            split_batch(5, &[(64, 64)], 1 << 20, 256, 2, "t")
                .unwrap()
                .len(),
            3
        );
        assert!(split_batch(5, &[(100, 100)], 256, 256, 9, "t").is_err());
    }
}
