//! The slow, dense CPU reference for every adapter kind, in f64.
//!
//! It builds M and W' explicitly — exactly what the fused kernels avoid — so that the GPU
//! kernels, and the gradients, have something simple to be checked against.
//!
//! ```text
//! M_ij = F_B(B)_ij F_A(A)_ij           (block (i, j) of M, p × q; F the kind's
//!                                       `m_factors`: the identity, or Khatri–Rao products)
//! W'   = W0 ⊙ (1 + s·M)   (Hadamard)    W' = W0 + s·M   (Additive)
//! y    = x W'ᵀ                          x: T × d_in, y: T × d_out
//! Ĝ    = Gᵀ X;  H_ij = s·(W0_ij ⊙ Ĝ_ij)  (Additive: H_ij = s·Ĝ_ij)
//! dF_B_ij = H_ij F_A_ijᵀ    dF_A_ij = F_B_ijᵀ H_ij    dX = G W'
//! ```
//!
//! and dA, dB from dF_A, dF_B by the kind's `m_factor_grads` (the chain rule).
//!
//! Shapes are inferred from the slice lengths (A: [b, b, r_b, q], B: [b, b, p, r_b],
//! W0: [d_out, d_in]) and checked; a mismatch is an error, not a panic.

use super::{AdapterSpec, Update};
use crate::error::{Error, Result};

/// Widens an f32 slice for the reference.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Narrows a reference result to f32 for comparison with the GPU.
pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// (d_out, d_in) from the lengths of A and B, checked against each other.
pub fn dims(spec: &AdapterSpec, a: &[f64], b: &[f64]) -> Result<(usize, usize)> {
    let per = spec.blocks * spec.blocks * spec.block_rank;
    if per == 0
        || !a.len().is_multiple_of(per)
        || !b.len().is_multiple_of(per)
        || a.is_empty()
        || b.is_empty()
    {
        return Err(Error::shape(
            "adapter reference",
            format!(
                "A has {} and B {} values, not multiples of b²·r_b = {per}",
                a.len(),
                b.len()
            ),
        ));
    }
    Ok((spec.blocks * (b.len() / per), spec.blocks * (a.len() / per)))
}

fn check_len(what: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::shape(
            "adapter reference",
            format!("{what} has {got} values, expected {want}"),
        ));
    }
    Ok(())
}

/// M (d_out × d_in, row-major) assembled from the blocks F_B(B)_ij F_A(A)_ij.
pub fn dense_m(spec: &AdapterSpec, a: &[f64], b: &[f64]) -> Result<Vec<f64>> {
    let (d_out, d_in) = dims(spec, a, b)?;
    let (rb, fa, fb) = spec
        .method
        .kind()
        .kernels()
        .m_factors(spec, d_out, d_in, a, b)?;
    let nb = spec.blocks;
    let (p, q) = (d_out / nb, d_in / nb);
    let mut m = vec![0.0; d_out * d_in];
    for bi in 0..nb {
        for bj in 0..nb {
            let ab = &fa[(bi * nb + bj) * rb * q..][..rb * q];
            let bb = &fb[(bi * nb + bj) * p * rb..][..p * rb];
            for o in 0..p {
                for c in 0..q {
                    let v: f64 = (0..rb).map(|k| bb[o * rb + k] * ab[k * q + c]).sum();
                    m[(bi * p + o) * d_in + bj * q + c] = v;
                }
            }
        }
    }
    Ok(m)
}

/// W' = W0 ⊙ (1 + s·M) (Hadamard) or W0 + s·M (Additive), d_out × d_in.
pub fn merged_weight(spec: &AdapterSpec, w0: &[f64], a: &[f64], b: &[f64]) -> Result<Vec<f64>> {
    let (d_out, d_in) = dims(spec, a, b)?;
    check_len("W0", w0.len(), d_out * d_in)?;
    let s = spec.scale as f64;
    let m = dense_m(spec, a, b)?;
    Ok(match spec.update() {
        Update::Hadamard => w0.iter().zip(&m).map(|(w, m)| w * (1.0 + s * m)).collect(),
        Update::Additive => w0.iter().zip(&m).map(|(w, m)| w + s * m).collect(),
    })
}

/// C[r, c] = Σ_k X[r, k]·W[c, k]  (X: rows × k, W: cols × k).
fn matmul_nt(x: &[f64], w: &[f64], rows: usize, cols: usize, k: usize) -> Vec<f64> {
    let mut y = vec![0.0; rows * cols];
    for r in 0..rows {
        let xr = &x[r * k..][..k];
        for c in 0..cols {
            y[r * cols + c] = xr.iter().zip(&w[c * k..][..k]).map(|(a, b)| a * b).sum();
        }
    }
    y
}

/// y = x W'ᵀ for `tokens` rows of x (tokens × d_in); returns tokens × d_out.
pub fn forward(
    spec: &AdapterSpec,
    w0: &[f64],
    a: &[f64],
    b: &[f64],
    x: &[f64],
    tokens: usize,
) -> Result<Vec<f64>> {
    let (d_out, d_in) = dims(spec, a, b)?;
    check_len("x", x.len(), tokens * d_in)?;
    let w = merged_weight(spec, w0, a, b)?;
    Ok(matmul_nt(x, &w, tokens, d_out, d_in))
}

/// Gradients of L with ∂L/∂y = g (tokens × d_out): returns (dX, dA, dB) in the layouts
/// of x, A and B.
pub fn backward(
    spec: &AdapterSpec,
    w0: &[f64],
    a: &[f64],
    b: &[f64],
    x: &[f64],
    g: &[f64],
) -> Result<(Vec<f64>, Vec<f64>, Vec<f64>)> {
    let (d_out, d_in) = dims(spec, a, b)?;
    check_len("W0", w0.len(), d_out * d_in)?;
    let tokens = g.len() / d_out;
    check_len("dy", g.len(), tokens * d_out)?;
    check_len("x", x.len(), tokens * d_in)?;
    let s = spec.scale as f64;
    let w = merged_weight(spec, w0, a, b)?;
    // dX = G W'
    let mut dx = vec![0.0; tokens * d_in];
    for t in 0..tokens {
        for o in 0..d_out {
            let gv = g[t * d_out + o];
            for i in 0..d_in {
                dx[t * d_in + i] += gv * w[o * d_in + i];
            }
        }
    }
    // H = s·(W0 ⊙ Ĝ) or s·Ĝ, with Ĝ = Gᵀ X
    let mut h = vec![0.0; d_out * d_in];
    for t in 0..tokens {
        for o in 0..d_out {
            let gv = g[t * d_out + o];
            for i in 0..d_in {
                h[o * d_in + i] += gv * x[t * d_in + i];
            }
        }
    }
    for (hv, w0v) in h.iter_mut().zip(w0) {
        *hv *= match spec.update() {
            Update::Hadamard => s * w0v,
            Update::Additive => s,
        };
    }
    let kind = spec.method.kind().kernels();
    let (rb, fa, fb) = kind.m_factors(spec, d_out, d_in, a, b)?;
    let nb = spec.blocks;
    let (p, q) = (d_out / nb, d_in / nb);
    let mut da = vec![0.0; fa.len()];
    let mut db = vec![0.0; fb.len()];
    for bi in 0..nb {
        for bj in 0..nb {
            let ao = (bi * nb + bj) * rb * q;
            let bo = (bi * nb + bj) * p * rb;
            for o in 0..p {
                for c in 0..q {
                    let hv = h[(bi * p + o) * d_in + bj * q + c];
                    for k in 0..rb {
                        db[bo + o * rb + k] += hv * fa[ao + k * q + c];
                        da[ao + k * q + c] += fb[bo + o * rb + k] * hv;
                    }
                }
            }
        }
    }
    let (da, db) = kind.m_factor_grads(spec, d_out, d_in, a, b, da, db)?;
    Ok((dx, da, db))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Method;
    use crate::rng::Rng;

    fn spec(method: Method, blocks: usize, block_rank: usize, scale: f32) -> AdapterSpec {
        AdapterSpec {
            method,
            blocks,
            block_rank,
            scale,
        }
    }

    fn rand(rng: &mut Rng, n: usize) -> Vec<f64> {
        (0..n).map(|_| rng.range(-1.0, 1.0)).collect()
    }

    /// L = Σ y ⊙ R, so ∂L/∂y = R.
    fn loss(
        s: &AdapterSpec,
        w0: &[f64],
        a: &[f64],
        b: &[f64],
        x: &[f64],
        t: usize,
        r: &[f64],
    ) -> f64 {
        let y = forward(s, w0, a, b, x, t).unwrap();
        y.iter().zip(r).map(|(y, r)| y * r).sum()
    }

    fn max_abs(v: &[f64]) -> f64 {
        v.iter().fold(0.0, |m, x| m.max(x.abs()))
    }

    /// Central differences of L in every coordinate of one argument (0: x, 1: A, 2: B).
    #[allow(clippy::too_many_arguments)]
    fn numeric(
        s: &AdapterSpec,
        w0: &[f64],
        a: &[f64],
        b: &[f64],
        x: &[f64],
        t: usize,
        r: &[f64],
        which: usize,
    ) -> Vec<f64> {
        let h = 1e-4;
        let base = [x.to_vec(), a.to_vec(), b.to_vec()];
        (0..base[which].len())
            .map(|i| {
                let mut lp = base.clone();
                let mut lm = base.clone();
                lp[which][i] += h;
                lm[which][i] -= h;
                let fp = loss(s, w0, &lp[1], &lp[2], &lp[0], t, r);
                let fm = loss(s, w0, &lm[1], &lm[2], &lm[0], t, r);
                (fp - fm) / (2.0 * h)
            })
            .collect()
    }

    #[test]
    fn finite_differences_match_all_methods() {
        let (d_out, d_in, t) = (6, 4, 3);
        let cases = [
            spec(Method::Boha, 2, 2, 0.7),
            spec(Method::Hira, 1, 3, 1.0),
            spec(Method::Lora, 1, 2, 1.5),
            spec(Method::Additive, 2, 1, 1.3),
            spec(Method::Abba, 1, 4, 0.9),
            spec(Method::Loha, 1, 2, 1.1),
        ];
        for (n, s) in cases.iter().enumerate() {
            let mut rng = Rng::new(11 + n as u64);
            let w0 = rand(&mut rng, d_out * d_in);
            let a = rand(&mut rng, s.a_shape(d_in).iter().product());
            let b = rand(&mut rng, s.b_shape(d_out).iter().product());
            let x = rand(&mut rng, t * d_in);
            let r = rand(&mut rng, t * d_out);
            let (dx, da, db) = backward(s, &w0, &a, &b, &x, &r).unwrap();
            for (which, got) in [(0, &dx), (1, &da), (2, &db)] {
                let want = numeric(s, &w0, &a, &b, &x, t, &r, which);
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(g, w)| (g - w).abs())
                    .fold(0.0, f64::max);
                assert!(
                    max_abs(&want) > 1e-3,
                    "{:?} arg {which}: degenerate",
                    s.method
                );
                assert!(
                    err <= 1e-7 * max_abs(&want).max(1.0),
                    "{:?} arg {which}: error {err}",
                    s.method
                );
            }
        }
    }

    #[test]
    fn merged_weight_follows_the_update() {
        let mut rng = Rng::new(5);
        let s = spec(Method::Boha, 2, 1, 0.5);
        let (d_out, d_in) = (4, 6);
        let w0 = rand(&mut rng, d_out * d_in);
        let a = rand(&mut rng, s.a_shape(d_in).iter().product());
        let b = rand(&mut rng, s.b_shape(d_out).iter().product());
        assert_eq!(dims(&s, &a, &b).unwrap(), (d_out, d_in));
        let m = dense_m(&s, &a, &b).unwrap();
        // Block (1, 0), local row 1, local column 2: B[1,0,1,0]·A[1,0,0,2].
        let want = b[2 * 2 + 1] * a[2 * 3 + 2];
        assert!((m[3 * d_in + 2] - want).abs() < 1e-15);
        let w = merged_weight(&s, &w0, &a, &b).unwrap();
        assert!((w[3 * d_in + 2] - w0[3 * d_in + 2] * (1.0 + 0.5 * want)).abs() < 1e-15);
        let add = spec(Method::Additive, 2, 1, 0.5);
        let w = merged_weight(&add, &w0, &a, &b).unwrap();
        assert!((w[3 * d_in + 2] - (w0[3 * d_in + 2] + 0.5 * want)).abs() < 1e-15);
        assert!(merged_weight(&s, &w0[1..], &a, &b).is_err());
        assert!(dims(&s, &a[1..], &b).is_err());
    }
}
