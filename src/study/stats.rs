//! The report's statistics.
//!
//! - Over seeds: the mean and Student's t 95 % interval, mean ± t_{0.975, n−1} · s/√n
//!   with s the sample standard deviation (none for one seed).
//! - Between two methods on the same items: the paired bootstrap. Per item, each
//!   method's correctness is averaged over its seeds; the difference of the two means,
//!   d_i, is resampled with replacement `B` times (per task, with the task's own item
//!   count, so that an average over tasks is resampled task by task), and the 2.5 % and
//!   97.5 % quantiles of the resampled mean are the interval. The generator is seeded,
//!   so a report is rebuilt bit for bit.

use crate::rng::Rng;

/// Resamples of the paired bootstrap.
pub const BOOTSTRAP_SAMPLES: usize = 2000;

/// t_{0.975, df} for df = 1 … 30; beyond, 1.96 + 2.4/df is within 0.002.
fn t975(df: usize) -> f64 {
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    match df {
        0 => f64::NAN,
        d if d <= 30 => T[d - 1],
        d => 1.96 + 2.4 / d as f64,
    }
}

/// Mean and 95 % half-width (NaN for fewer than two values).
pub fn mean_ci(xs: &[f64]) -> (f64, f64) {
    let n = xs.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n as f64;
    if n < 2 {
        return (mean, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    (mean, t975(n - 1) * (var / n as f64).sqrt())
}

/// The paired bootstrap of the mean over tasks of the mean per-item difference: `tasks`
/// holds, per task, the d_i of its items. Returns (observed, low, high).
pub fn paired_bootstrap(tasks: &[Vec<f64>], samples: usize, seed: u64) -> (f64, f64, f64) {
    let used: Vec<&Vec<f64>> = tasks.iter().filter(|d| !d.is_empty()).collect();
    if used.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let mean = |d: &[f64]| d.iter().sum::<f64>() / d.len() as f64;
    let observed = used.iter().map(|d| mean(d)).sum::<f64>() / used.len() as f64;
    let mut rng = Rng::new(seed);
    let mut stats: Vec<f64> = (0..samples)
        .map(|_| {
            used.iter()
                .map(|d| (0..d.len()).map(|_| d[rng.below(d.len())]).sum::<f64>() / d.len() as f64)
                .sum::<f64>()
                / used.len() as f64
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let q = |p: f64| stats[((p * (samples - 1) as f64).round() as usize).min(samples - 1)];
    (observed, q(0.025), q(0.975))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_interval_of_known_values() {
        let (m, h) = mean_ci(&[1.0, 2.0, 3.0]);
        assert_eq!(m, 2.0);
        // s = 1, n = 3: 4.303 / √3.
        assert!((h - 4.303 / 3f64.sqrt()).abs() < 1e-12);
        assert!(mean_ci(&[0.5]).1.is_nan());
    }

    #[test]
    fn bootstrap_brackets_the_observed_difference() {
        let d: Vec<f64> = (0..200)
            .map(|i| if i % 4 == 0 { 1.0 } else { 0.0 })
            .collect();
        let (obs, lo, hi) = paired_bootstrap(std::slice::from_ref(&d), 2000, 7);
        assert!((obs - 0.25).abs() < 1e-12);
        assert!(lo < obs && obs < hi && lo > 0.15 && hi < 0.35, "{lo} {hi}");
        // Same seed, same interval.
        assert_eq!(paired_bootstrap(&[d], 2000, 7), (obs, lo, hi));
        // No difference at all: a zero-width interval at 0.
        assert_eq!(paired_bootstrap(&[vec![0.0; 50]], 100, 1), (0.0, 0.0, 0.0));
    }
}
