//! Small dense linear algebra on the CPU, for experiment reports: singular values and
//! numerical rank (through `nalgebra`'s SVD, in f64).

use crate::error::{Error, Result};
use nalgebra::DMatrix;

/// Relative threshold of [`numerical_rank`]: a singular value counts when it exceeds this
/// fraction of the largest. Far above f64 round-off (~1e-15·σ_max for matrices built as
/// products of f32 factors in f64) and far below any direction a fit actually uses.
pub const RANK_RTOL: f64 = 1e-6;

fn matrix(rows: usize, cols: usize, data: &[f64]) -> Result<DMatrix<f64>> {
    if data.len() != rows * cols {
        return Err(Error::shape(
            "singular_values",
            format!(
                "{rows}×{cols} needs {} values, got {}",
                rows * cols,
                data.len()
            ),
        ));
    }
    if data.iter().any(|v| !v.is_finite()) {
        return Err(Error::Invalid(
            "singular values of a matrix with non-finite entries".into(),
        ));
    }
    Ok(DMatrix::from_row_slice(rows, cols, data))
}

/// The singular values of a row-major `rows × cols` matrix, largest first.
pub fn singular_values(rows: usize, cols: usize, data: &[f64]) -> Result<Vec<f64>> {
    if rows == 0 || cols == 0 {
        return Ok(Vec::new());
    }
    let m = matrix(rows, cols, data)?;
    let mut s: Vec<f64> = m.singular_values().iter().copied().collect();
    s.sort_by(|a, b| b.total_cmp(a));
    Ok(s)
}

/// Number of singular values above `rtol`·σ_max (0 for a zero or empty matrix).
pub fn rank_with(rows: usize, cols: usize, data: &[f64], rtol: f64) -> Result<usize> {
    let s = singular_values(rows, cols, data)?;
    let Some(&max) = s.first() else { return Ok(0) };
    if max == 0.0 {
        return Ok(0);
    }
    Ok(s.iter().filter(|&&v| v > rtol * max).count())
}

/// Numerical rank with the default threshold [`RANK_RTOL`].
pub fn numerical_rank(rows: usize, cols: usize, data: &[f64]) -> Result<usize> {
    rank_with(rows, cols, data, RANK_RTOL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// A rows × cols matrix of rank k: a sum of k random outer products.
    fn random_rank(rng: &mut Rng, rows: usize, cols: usize, k: usize) -> Vec<f64> {
        let mut m = vec![0.0; rows * cols];
        for _ in 0..k {
            let u: Vec<f64> = (0..rows).map(|_| rng.normal()).collect();
            let v: Vec<f64> = (0..cols).map(|_| rng.normal()).collect();
            for i in 0..rows {
                for j in 0..cols {
                    m[i * cols + j] += u[i] * v[j];
                }
            }
        }
        m
    }

    #[test]
    fn rank_of_known_rank_matrices() {
        let mut rng = Rng::new(11);
        for &(r, c, k) in &[
            (37, 23, 0),
            (37, 23, 1),
            (37, 23, 5),
            (23, 37, 23),
            (40, 41, 17),
            (1, 9, 1),
        ] {
            let m = random_rank(&mut rng, r, c, k);
            assert_eq!(numerical_rank(r, c, &m).unwrap(), k, "{r}×{c} of rank {k}");
        }
        // A tiny but real direction counts; one below the threshold does not.
        let mut m = random_rank(&mut rng, 20, 20, 3);
        let big = singular_values(20, 20, &m).unwrap()[0];
        let tiny = random_rank(&mut rng, 20, 20, 1);
        let t_norm = singular_values(20, 20, &tiny).unwrap()[0];
        for (x, t) in m.iter_mut().zip(&tiny) {
            *x += t * big * 1e-4 / t_norm;
        }
        assert_eq!(numerical_rank(20, 20, &m).unwrap(), 4);
        assert_eq!(rank_with(20, 20, &m, 1e-3).unwrap(), 3);
    }

    #[test]
    fn singular_values_of_a_diagonal_and_bad_input() {
        let d = [3.0, 0.0, 0.0, 0.0, -5.0, 0.0];
        assert_eq!(singular_values(2, 3, &d).unwrap(), vec![5.0, 3.0]);
        assert!(singular_values(2, 3, &d[..5]).is_err());
        assert!(singular_values(1, 1, &[f64::NAN]).is_err());
        assert_eq!(numerical_rank(0, 4, &[]).unwrap(), 0);
    }
}
