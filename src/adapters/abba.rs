//! ABBA (Singhal et al., 2025): ΔW = s·(B1A1) ⊙ (B2A2), two independently learnable
//! low-rank pairs of rank h = r/2 each, so that ABBA r/2 per pair has LoRA r's budget
//! (see [`super::pair`] for how it runs and is stored). s = √α₁·√α₂ in the authors' code
//! (CERT-Lab/abba), i.e. `--alpha`; 1 by default.
//!
//! Initialised as the authors' code does: B1 = U√S, A1 = √S·Vᵀ from the top-h singular
//! triplets of W0 (so B1A1 is W0's best rank-h approximation), A2 Kaiming-uniform
//! (a = 0: bound √(6/d_in)) and B2 = 0, so ΔW = 0 at step 0. The SVD is a randomized
//! subspace iteration (as their `torch.svd_lowrank(W0, q = h, niter = 10)`), with 8
//! extra columns of oversampling, in f64.
//!
//! Written as PEFT LoHa files with s folded into alpha: they load back (in boha and in
//! PEFT) as LoHa, the same function.

use nalgebra::DMatrix;

use super::kind::{AdapterFormat, AdapterKind, HostW0, Kernels};
use super::{formats, pair};
use super::{AdapterSpec, Update};
use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::shaders::{Shader, KIND_PAIR};

pub struct Abba;

/// Power iterations of the randomized SVD (torch's `svd_lowrank` default is 2; the
/// authors ask for 10).
const NITER: usize = 10;
const OVERSAMPLE: usize = 8;

/// (U \[m, k\], S \[k\], Vᵀ \[k, n\]) of the top k singular triplets of the row-major m × n
/// `w`, k ≤ min(m, n).
pub fn top_svd(
    w: &[f32],
    m: usize,
    n: usize,
    k: usize,
    seed: u64,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let w = DMatrix::from_row_iterator(m, n, w.iter().map(|&v| v as f64));
    let q = (k + OVERSAMPLE).min(m.min(n));
    let mut rng = Rng::new(seed);
    let omega = DMatrix::from_fn(n, q, |_, _| rng.normal());
    let mut basis = (&w * omega).qr().q();
    for _ in 0..NITER {
        let z = (w.transpose() * &basis).qr().q();
        basis = (&w * z).qr().q();
    }
    let small = basis.transpose() * &w; // q × n
    let svd = small.svd(true, true);
    let (u_s, s, vt) = (
        svd.u.expect("asked for U"),
        svd.singular_values,
        svd.v_t.expect("asked for Vᵀ"),
    );
    // nalgebra does not promise an order: take the k largest.
    let mut order: Vec<usize> = (0..s.len()).collect();
    order.sort_by(|&i, &j| s[j].total_cmp(&s[i]));
    order.truncate(k);
    let u_full = &basis * u_s; // m × q
    let mut u = vec![0.0; m * k];
    let mut vt_out = vec![0.0; k * n];
    let mut sv = vec![0.0; k];
    for (c, &i) in order.iter().enumerate() {
        sv[c] = s[i];
        for r in 0..m {
            u[r * k + c] = u_full[(r, i)];
        }
        for col in 0..n {
            vt_out[c * n + col] = vt[(i, col)];
        }
    }
    (u, sv, vt_out)
}

impl AdapterKind for Abba {
    fn name(&self) -> &'static str {
        "abba"
    }
    fn label(&self, spec: &AdapterSpec) -> String {
        format!("ABBA r = {} per pair", pair::half(spec))
    }
    /// s = alpha (ABBA's √α₁·√α₂ with α₁ = α₂), or 1.
    fn scale(&self, _block_rank: usize, alpha: Option<f32>) -> f32 {
        alpha.unwrap_or(1.0)
    }
    fn init_reads_w0(&self) -> bool {
        true
    }
    fn init(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        seed: u64,
        w0: HostW0<'_>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let h = pair::half(spec);
        let w0 = w0()?;
        if w0.len() != d_out * d_in {
            return Err(Error::shape(
                "abba init",
                format!("W0 has {} values for {d_out}×{d_in}", w0.len()),
            ));
        }
        // Past W0's rank the extra pairs start at zero (tiny models only).
        let k = h.min(d_out.min(d_in));
        let (u, s, vt) = top_svd(&w0, d_out, d_in, k, seed ^ 0xABBA);
        let mut a = vec![0.0f32; 2 * h * d_in];
        let mut b = vec![0.0f32; d_out * 2 * h];
        for c in 0..k {
            let rs = s[c].sqrt();
            for o in 0..d_out {
                b[o * 2 * h + c] = (u[o * k + c] * rs) as f32;
            }
            for i in 0..d_in {
                a[c * d_in + i] = (rs * vt[c * d_in + i]) as f32;
            }
        }
        let bound = (6.0 / d_in as f64).sqrt();
        let mut rng = Rng::new(seed);
        for v in &mut a[h * d_in..] {
            *v = rng.range(-bound, bound) as f32;
        }
        Ok((a, b))
    }
    fn groups(&self) -> usize {
        2
    }
    fn snippet(&self) -> Shader {
        KIND_PAIR
    }
    fn update(&self) -> Update {
        Update::Additive
    }
    fn kernels(&self) -> &'static dyn Kernels {
        &pair::Pair
    }
    fn format(&self) -> &'static dyn AdapterFormat {
        &formats::Loha
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randomized_svd_finds_the_top_triplets() {
        // W = Σ_c σ_c u_c v_cᵀ with known σ (orthonormal u, v from a permutation).
        let (m, n) = (12, 9);
        let sig = [5.0, 3.0, 2.0, 0.5];
        let mut w = vec![0.0f32; m * n];
        for (c, &sv) in sig.iter().enumerate() {
            w[(2 * c) * n + (c + 1)] = sv as f32;
        }
        let (u, s, vt) = top_svd(&w, m, n, 3, 1);
        for c in 0..3 {
            assert!((s[c] - sig[c]).abs() < 1e-9, "{s:?}");
        }
        // U S Vᵀ is W's best rank-3 approximation: W minus the σ = 0.5 term.
        for r in 0..m {
            for col in 0..n {
                let v: f64 = (0..3).map(|c| u[r * 3 + c] * s[c] * vt[c * n + col]).sum();
                let want = if (r, col) == (6, 4) {
                    0.0
                } else {
                    w[r * n + col] as f64
                };
                assert!((v - want).abs() < 1e-9, "({r}, {col}): {v} vs {want}");
            }
        }
    }
}
