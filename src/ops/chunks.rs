//! Splitting work so that every bound range fits the storage-binding limit.
//!
//! A tensor larger than `max_storage_buffer_binding_size` is bound as several views, one
//! dispatch each. Views must start at a multiple of the binding offset alignment, so
//! chunks are a whole number of "steps" of rows.

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu};

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Splits `rows` rows of `row_elems` f32 elements into `(first_row, rows)` ranges whose
/// bytes fit `gpu`'s binding limit, each starting at an aligned byte offset (given an
/// aligned start of the whole tensor). One range when it all fits.
pub fn row_ranges(
    gpu: &Gpu,
    rows: usize,
    row_elems: usize,
    op: &str,
) -> Result<Vec<(usize, usize)>> {
    row_ranges_of(gpu, rows, row_elems, DType::F32, op)
}

/// [`row_ranges`] for rows stored as `dtype` (a frozen weight's rows).
pub fn row_ranges_of(
    gpu: &Gpu,
    rows: usize,
    row_elems: usize,
    dtype: DType,
    op: &str,
) -> Result<Vec<(usize, usize)>> {
    row_ranges_with(
        gpu.max_binding_bytes(),
        gpu.binding_offset_align(),
        rows,
        dtype.bytes_for(row_elems.max(1)) as u64,
        op,
    )
}

/// [`row_ranges`] with explicit limits (unit-testable without a device).
pub fn row_ranges_with(
    max_bytes: u64,
    align: u64,
    rows: usize,
    row_bytes: u64,
    op: &str,
) -> Result<Vec<(usize, usize)>> {
    if rows as u64 * row_bytes <= max_bytes {
        return Ok(vec![(0, rows)]);
    }
    // Rows per aligned step: the smallest row count whose byte size is a multiple of align.
    let step = align / gcd(align, row_bytes);
    let per_chunk = (max_bytes / row_bytes) / step * step;
    if per_chunk == 0 {
        return Err(Error::shape(
            op,
            format!(
                "{step} row(s) of {row_bytes} bytes exceed the {max_bytes}-byte storage binding limit"
            ),
        ));
    }
    let per_chunk = per_chunk as usize;
    let mut out = Vec::new();
    let mut r = 0;
    while r < rows {
        let n = per_chunk.min(rows - r);
        out.push((r, n));
        r += n;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_all_rows_aligned_and_within_limit() {
        for &(rows, elems) in &[(1000usize, 3usize), (37, 16), (5, 1), (129, 64)] {
            let r = row_ranges_with(1024, 256, rows, (elems * 4) as u64, "t").unwrap();
            let mut next = 0;
            for &(s, n) in &r {
                assert_eq!(s, next);
                assert!((n * elems * 4) as u64 <= 1024);
                assert_eq!((s * elems * 4) % 256, 0);
                next += n;
            }
            assert_eq!(next, rows);
        }
        assert!(row_ranges_with(1024, 256, 10, 1200, "t").is_err());
        assert_eq!(
            row_ranges_with(1 << 20, 256, 10, 12, "t").unwrap(),
            vec![(0, 10)]
        );
    }
}
