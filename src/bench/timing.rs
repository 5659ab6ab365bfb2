//! Timing dispatch lists: warm-up first, several repetitions per submit (to amortise the
//! submit), the median of several submits. Device time comes from timestamp queries
//! where the adapter has them (see `Gpu::run_timed`).

use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Recorder};

/// Median milliseconds of one run of `dispatches`, over `runs` submits of `reps`
/// back-to-back repetitions each, after one warm-up submit.
pub fn median_ms(gpu: &Gpu, dispatches: &[Dispatch], reps: usize, runs: usize) -> Result<f64> {
    let reps = reps.max(1);
    let mut rec = Recorder::new();
    for _ in 0..reps {
        rec.run_all(dispatches);
    }
    gpu.run(&rec)?;
    let mut times = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        times.push(gpu.run_timed(&rec)? * 1e3 / reps as f64);
    }
    Ok(median(&mut times))
}

/// Median of a non-empty list (sorts it).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}
