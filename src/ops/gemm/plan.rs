//! Splitting a GEMM so that every bound view fits the storage-binding limit.
//!
//! A dimension whose index selects rows of a stored operand (m for C and for A when not
//! transposed, and so on) can be cut into ranges; each operand over the limit is then
//! bound as the rows of its ranges, and the other dimensions' range starts become
//! offsets inside the view (an operand within the limit is bound whole, every range start
//! an offset inside it). Range starts are multiples of a step that keeps every view's
//! byte offset aligned and every range a multiple of 4 rows (so offsets inside views keep
//! vec4 loads aligned).

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

/// Smallest multiplier of a `bytes`-long unit whose size is a multiple of `align` (1 when
/// the unit is empty).
fn aligned_step(bytes: usize, align: u64) -> u64 {
    let bytes = bytes as u64;
    if bytes == 0 {
        1
    } else {
        align / gcd(align, bytes)
    }
}

/// Cuts `total` rows into `(start, len)` ranges such that, for every entry `r` of
/// `row_bytes` (the byte length of a row of an operand bound by rows of this dimension),
/// `len · r` bytes fit `max_bytes` and `start · r` is a multiple of `align`. One range (which
/// may be empty) when everything fits at once.
pub fn split(
    total: usize,
    row_bytes: &[usize],
    max_bytes: u64,
    align: u64,
    op: &str,
) -> Result<Vec<(usize, usize)>> {
    let max_rows = row_bytes
        .iter()
        .filter(|&&r| r > 0)
        .map(|&r| max_bytes / r as u64)
        .min()
        .unwrap_or(u64::MAX);
    if total as u64 <= max_rows {
        return Ok(vec![(0, total)]);
    }
    let step = row_bytes
        .iter()
        .fold(4, |s, &r| lcm(s, aligned_step(r, align)));
    let per = max_rows / step * step;
    if per == 0 {
        return Err(Error::shape(
            op,
            format!(
                "{step} rows of {:?} bytes exceed the {max_bytes}-byte storage binding limit",
                row_bytes
            ),
        ));
    }
    let per = per as usize;
    Ok((0..total)
        .step_by(per)
        .map(|s| (s, per.min(total - s)))
        .collect())
}

/// Cuts `batch` entries into ranges whose views (entries `stride_i` bytes apart, each
/// `size_i` bytes long) fit `max_bytes`, start aligned, and span at most `max_count`
/// entries (the z workgroup limit).
pub fn split_batch(
    batch: usize,
    operands: &[(usize, usize)],
    max_bytes: u64,
    align: u64,
    max_count: usize,
    op: &str,
) -> Result<Vec<(usize, usize)>> {
    let max_elems = max_bytes;
    let mut per = max_count.max(1) as u64;
    let mut step = 1u64;
    for &(stride, size) in operands {
        if size as u64 > max_elems {
            return Err(Error::shape(
                op,
                format!("one batch entry of {size} bytes exceeds the {max_bytes}-byte storage binding limit"),
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
            (1000usize, vec![12usize, 20], 4096u64, 16u64),
            (37, vec![64], 1024, 16),
            (130, vec![268, 516], 4096, 16),
            (1000, vec![12, 20], 1 << 14, 256),
            (1000, vec![6, 10], 1 << 13, 256),
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
                    assert!((n * e) as u64 <= max);
                    assert_eq!((s * e) as u64 % align, 0);
                }
                assert_eq!(s % 4, 0);
                next += n;
            }
            assert_eq!(next, total);
        }
        assert_eq!(split(10, &[], 16, 256, "t").unwrap(), vec![(0, 10)]);
        assert_eq!(split(0, &[28], 16, 256, "t").unwrap(), vec![(0, 0)]);
        assert!(split(100, &[4000], 4096, 256, "t").is_err());
    }

    #[test]
    fn split_batch_respects_limits() {
        let r = split_batch(10, &[(48, 48), (0, 20)], 256, 64, 65535, "t").unwrap();
        let mut next = 0;
        for &(s, n) in &r {
            assert_eq!(s, next);
            assert_eq!((s * 48) % 64, 0);
            assert!((n - 1) * 48 + 48 <= 256);
            next += n;
        }
        assert_eq!(next, 10);
        assert_eq!(
            split_batch(5, &[(256, 256)], 1 << 20, 256, 2, "t")
                .unwrap()
                .len(),
            3
        );
        assert!(split_batch(5, &[(400, 400)], 256, 256, 9, "t").is_err());
    }
}
