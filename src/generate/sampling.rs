//! Choosing the next token from logits: greedy (argmax), or sampling from
//! softmax(z / T) restricted to the k most likely tokens (top-k) and then to the smallest
//! set whose probability reaches p (top-p, nucleus), renormalised, with a seeded
//! generator so a seed reproduces a generation.

use crate::error::{Error, Result};
use crate::rng::Rng;

/// How to pick tokens. No temperature (or 0) is greedy.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Sampling {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub seed: u64,
}

impl Sampling {
    pub fn check(&self) -> Result<()> {
        if let Some(t) = self.temperature {
            if !(t.is_finite() && t >= 0.0) {
                return Err(Error::Invalid(format!("temperature {t} must be ≥ 0")));
            }
        }
        if self.top_k == Some(0) {
            return Err(Error::Invalid("top-k must be at least 1".into()));
        }
        if let Some(p) = self.top_p {
            if !(p > 0.0 && p <= 1.0) {
                return Err(Error::Invalid(format!("top-p {p} must be in (0, 1]")));
            }
        }
        Ok(())
    }

    /// True when no randomness is involved.
    pub fn is_greedy(&self) -> bool {
        self.temperature.is_none_or(|t| t == 0.0)
    }
}

/// The index of the largest logit (the first on ties; NaNs never win).
pub fn greedy(logits: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (i, &z) in logits.iter().enumerate() {
        if z > best.1 {
            best = (i, z);
        }
    }
    best.0 as u32
}

/// The distribution sampling draws from: (token, probability) by decreasing
/// probability, after temperature, top-k and top-p, renormalised to sum to 1.
pub fn distribution(
    logits: &[f32],
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
) -> Vec<(u32, f64)> {
    let t = temperature as f64;
    let mut order: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .filter(|(_, z)| z.is_finite())
        .map(|(i, &z)| (i as u32, z as f64 / t))
        .collect();
    order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    if let Some(k) = top_k {
        order.truncate(k.max(1));
    }
    let m = order.first().map_or(0.0, |x| x.1);
    let mut total = 0.0;
    for x in order.iter_mut() {
        x.1 = (x.1 - m).exp();
        total += x.1;
    }
    order.iter_mut().for_each(|x| x.1 /= total);
    if let Some(p) = top_p {
        let mut acc = 0.0;
        let mut keep = order.len();
        for (i, x) in order.iter().enumerate() {
            acc += x.1;
            if acc >= p as f64 {
                keep = i + 1;
                break;
            }
        }
        order.truncate(keep);
        let total: f64 = order.iter().map(|x| x.1).sum();
        order.iter_mut().for_each(|x| x.1 /= total);
    }
    order
}

/// A seeded token picker.
pub struct Sampler {
    pub sampling: Sampling,
    rng: Rng,
}

impl Sampler {
    pub fn new(sampling: Sampling) -> Result<Sampler> {
        sampling.check()?;
        Ok(Sampler {
            rng: Rng::new(sampling.seed),
            sampling,
        })
    }

    /// The next token.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        let s = self.sampling;
        if s.is_greedy() {
            return greedy(logits);
        }
        let dist = distribution(logits, s.temperature.unwrap_or(1.0), s.top_k, s.top_p);
        let u = self.rng.uniform();
        let mut acc = 0.0;
        for &(tok, p) in &dist {
            acc += p;
            if u < acc {
                return tok;
            }
        }
        dist.last().map_or_else(|| greedy(logits), |x| x.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_top_k_top_p_and_seeds() {
        let z = [0.5f32, 3.0, -1.0, 2.0, 2.9, f32::NAN];
        assert_eq!(greedy(&z), 1);
        let d = distribution(&z, 1.0, Some(3), None);
        assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 4, 3]);
        let e: Vec<f64> = [3.0f64, 2.9, 2.0].iter().map(|v| v.exp()).collect();
        let sum: f64 = e.iter().sum();
        for (x, ev) in d.iter().zip(&e) {
            assert!((x.1 - ev / sum).abs() < 1e-6);
        }
        // Top-p keeps the smallest prefix reaching p.
        let d = distribution(&z, 1.0, None, Some(0.5));
        assert_eq!(d.iter().map(|x| x.0).collect::<Vec<_>>(), vec![1, 4]);
        // A low temperature concentrates; a seed reproduces.
        let s = Sampling {
            temperature: Some(0.8),
            top_k: Some(4),
            top_p: Some(0.95),
            seed: 3,
        };
        let draw = |seed| {
            let mut sm = Sampler::new(Sampling { seed, ..s }).unwrap();
            (0..200).map(|_| sm.sample(&z)).collect::<Vec<u32>>()
        };
        let a = draw(3);
        assert_eq!(a, draw(3));
        assert_ne!(a, draw(4));
        let allowed: Vec<u32> = distribution(&z, 0.8, Some(4), Some(0.95))
            .iter()
            .map(|x| x.0)
            .collect();
        assert!(a.iter().all(|t| allowed.contains(t)));
        let ones = a.iter().filter(|&&t| t == 1).count();
        assert!(ones > 40 && ones < 160, "{ones}");
        assert!(Sampler::new(Sampling {
            top_p: Some(0.0),
            ..s
        })
        .is_err());
        assert!(Sampler::new(Sampling {
            temperature: Some(-1.0),
            ..s
        })
        .is_err());
    }
}
