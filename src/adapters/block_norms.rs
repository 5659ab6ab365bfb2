//! Per-block Frobenius norms of an adapter's M, computed from its factors on the host.
//!
//! M is d_out × d_in and is made of the b × b factor blocks M_ij = B_ij A_ij
//! (A_ij: r_b × q, B_ij: p × r_b, p = d_out / b, q = d_in / b; see [`super`]). The norms
//! are shown on a g × g display grid, g a multiple of b (g = b for BoHA and the additive
//! control; any g for LoRA and HiRA, whose single block is then cut into g × g cells).
//! Cell (I, J) lies inside factor block (i, j) = (I / (g/b), J / (g/b)) and is the
//! product of a band of rows of B_ij and a band of columns of A_ij:
//!
//! ```text
//! M_IJ = B_I A_J        B_I: p' × r_b rows of B_ij,  A_J: r_b × q' columns of A_ij
//! ‖M_IJ‖_F² = tr(A_Jᵀ B_Iᵀ B_I A_J) = tr((B_Iᵀ B_I)(A_J A_Jᵀ)) = Σ_kl G_B[k,l]·G_A[k,l]
//! ```
//!
//! with the r_b × r_b Gram matrices G_B = B_Iᵀ B_I and G_A = A_J A_Jᵀ (both symmetric,
//! so the trace of their product is the sum of their elementwise product). That costs
//! r_b²·(p' + q') per cell instead of the p'·q'·r_b of forming the cell, and M itself
//! never exists. The norm is of M, unscaled: ΔW is s·W0 ⊙ M for the Hadamard kinds and
//! s·M for the additive ones.

use super::AdapterSpec;
use crate::error::{Error, Result};

/// ‖M_IJ‖_F for every cell of a `grid` × `grid` partition of M (row-major, row I the
/// output band), from the factors `a` ([b, b, r_b, q]) and `b` ([b, b, p, r_b]) of one
/// adapted d_out × d_in matrix. `grid` must be a multiple of `spec.blocks` and divide
/// both dimensions.
pub fn block_norms(
    spec: &AdapterSpec,
    a: &[f32],
    b: &[f32],
    d_out: usize,
    d_in: usize,
    grid: usize,
) -> Result<Vec<f32>> {
    let (nb, r) = (spec.blocks, spec.block_rank);
    let bad = |m: String| Err(Error::shape("block norms", m));
    if nb == 0 || r == 0 || grid == 0 || !grid.is_multiple_of(nb) {
        return bad(format!(
            "grid {grid} is not a positive multiple of the adapter's {nb} blocks (rank {r})"
        ));
    }
    if !d_out.is_multiple_of(grid) || !d_in.is_multiple_of(grid) {
        return bad(format!("grid {grid} does not divide {d_out} × {d_in}"));
    }
    let (p, q) = (d_out / nb, d_in / nb);
    if a.len() != nb * nb * r * q || b.len() != nb * nb * p * r {
        return bad(format!(
            "A has {} and B {} values; a {d_out} × {d_in} matrix with b = {nb}, r_b = {r} \
             needs {} and {}",
            a.len(),
            b.len(),
            nb * nb * r * q,
            nb * nb * p * r
        ));
    }
    // M's own factors (the Khatri–Rao products for the pair kinds, rank h²).
    let to64 = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (r, a, b) =
        spec.method
            .kind()
            .kernels()
            .m_factors(spec, d_out, d_in, &to64(a), &to64(b))?;
    let sub = grid / nb;
    let (pc, qc) = (d_out / grid, d_in / grid);
    let mut out = Vec::with_capacity(grid * grid);
    let mut gb = vec![0.0f64; r * r];
    let mut ga = vec![0.0f64; r * r];
    for ci in 0..grid {
        for cj in 0..grid {
            let (bi, bj) = (ci / sub, cj / sub);
            let blk = bi * nb + bj;
            let bb = &b[blk * p * r..][..p * r];
            let ab = &a[blk * r * q..][..r * q];
            let rows = (ci % sub) * pc..(ci % sub + 1) * pc;
            let cols = (cj % sub) * qc..(cj % sub + 1) * qc;
            gb.fill(0.0);
            ga.fill(0.0);
            for o in rows {
                let row = &bb[o * r..][..r];
                for k in 0..r {
                    for l in 0..r {
                        gb[k * r + l] += row[k] * row[l];
                    }
                }
            }
            for k in 0..r {
                for l in 0..r {
                    let (ak, al) = (&ab[k * q..][..q], &ab[l * q..][..q]);
                    ga[k * r + l] += cols.clone().map(|c| ak[c] * al[c]).sum::<f64>();
                }
            }
            let sq: f64 = gb.iter().zip(&ga).map(|(x, y)| x * y).sum();
            // Rounding can leave a tiny negative where the cell is (nearly) zero.
            out.push(sq.max(0.0).sqrt() as f32);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::reference::{dense_m, f64s};
    use crate::adapters::Method;
    use crate::rng::Rng;

    fn dense_norms(m: &[f64], d_out: usize, d_in: usize, grid: usize) -> Vec<f32> {
        let (pc, qc) = (d_out / grid, d_in / grid);
        let mut out = Vec::new();
        for ci in 0..grid {
            for cj in 0..grid {
                let mut s = 0.0;
                for o in ci * pc..(ci + 1) * pc {
                    for c in cj * qc..(cj + 1) * qc {
                        s += m[o * d_in + c] * m[o * d_in + c];
                    }
                }
                out.push(s.sqrt() as f32);
            }
        }
        out
    }

    #[test]
    fn matches_the_dense_product() {
        let mut rng = Rng::new(7);
        for (method, blocks, rank, d_out, d_in, grid) in [
            (Method::Boha, 4, 2, 24, 16, 4),
            (Method::Boha, 2, 3, 12, 8, 4),
            (Method::Boha, 1, 5, 12, 20, 4),
            (Method::Boha, 1, 2, 6, 6, 1),
            (Method::Abba, 1, 4, 12, 8, 4),
        ] {
            let spec = AdapterSpec {
                method,
                blocks,
                block_rank: rank,
                scale: 1.0,
            };
            let a = rng.vec_f32(d_in * blocks * rank, -1.0, 1.0);
            let b = rng.vec_f32(d_out * blocks * rank, -1.0, 1.0);
            let got = block_norms(&spec, &a, &b, d_out, d_in, grid).unwrap();
            let m = dense_m(&spec, &f64s(&a), &f64s(&b)).unwrap();
            let want = dense_norms(&m, d_out, d_in, grid);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-5 * w.max(1.0), "{got:?} vs {want:?}");
            }
        }
    }

    #[test]
    fn refuses_grids_that_do_not_fit() {
        let spec = AdapterSpec {
            method: Method::Boha,
            blocks: 4,
            block_rank: 1,
            scale: 1.0,
        };
        let (a, b) = (vec![0.0; 16 * 2], vec![0.0; 16 * 2]);
        assert!(block_norms(&spec, &a, &b, 8, 8, 4).is_ok());
        assert!(block_norms(&spec, &a, &b, 8, 8, 2).is_err());
        assert!(block_norms(&spec, &a, &b, 8, 8, 6).is_err());
        assert!(block_norms(&spec, &a[1..], &b, 8, 8, 4).is_err());
    }
}
