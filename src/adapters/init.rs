//! Adapter initialisation: B = 0 and A Kaiming-uniform (a = √5) with fan_in = q, so that
//! ΔW = 0 at step 0 while A already carries signal for B's first gradient.
//!
//! Kaiming-uniform with a = √5 draws from U(−bound, bound) with
//! bound = gain·√(3 / fan_in), gain = √(2 / (1 + a²)) = √(1/3), i.e. bound = 1/√q
//! (PyTorch's default `Linear` init, which LoRA and HiRA use for A).

use super::AdapterSpec;
use crate::rng::Rng;

/// (A, B) for a d_out × d_in layer, in the layouts A: [b, b, r_b, q], B: [b, b, p, r_b].
/// A ~ U(−1/√q, 1/√q) from `seed`; B = 0. Assumes `spec.check_shape` passed (otherwise
/// q and p are the truncated quotients).
pub fn init_params(
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    seed: u64,
) -> (Vec<f32>, Vec<f32>) {
    let a_len: usize = spec.a_shape(d_in).iter().product();
    let b_len: usize = spec.b_shape(d_out).iter().product();
    let q = (d_in / spec.blocks.max(1)).max(1);
    let bound = 1.0 / (q as f64).sqrt();
    let mut rng = Rng::new(seed);
    let a = (0..a_len)
        .map(|_| rng.range(-bound, bound) as f32)
        .collect();
    (a, vec![0.0; b_len])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Method;

    #[test]
    fn kaiming_uniform_a_and_zero_b() {
        let spec = AdapterSpec {
            method: Method::Boha,
            blocks: 4,
            block_rank: 8,
            scale: 1.0,
        };
        let (d_out, d_in) = (192, 320);
        let q = d_in / 4;
        let (a, b) = init_params(&spec, d_out, d_in, 7);
        assert_eq!(a.len(), 4 * 4 * 8 * q);
        assert_eq!(b.len(), 4 * 4 * (d_out / 4) * 8);
        assert!(b.iter().all(|&v| v == 0.0));
        let bound = 1.0 / (q as f32).sqrt();
        assert!(a.iter().all(|&v| v.abs() <= bound));
        let n = a.len() as f64;
        let mean = a.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = a.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
        let want_var = 1.0 / (3.0 * q as f64);
        // n = 10240: the mean's standard error is √(var/n) ≈ 0.0007, the variance's ~1%.
        assert!(mean.abs() < 5.0 * (want_var / n).sqrt(), "mean {mean}");
        assert!(
            (var / want_var - 1.0).abs() < 0.05,
            "variance {var} vs {want_var}"
        );
        // The extremes come close to the bound (the range is really used).
        let max = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.99 * bound);
        assert_eq!(init_params(&spec, d_out, d_in, 7).0, a);
        assert_ne!(init_params(&spec, d_out, d_in, 8).0, a);
    }
}
