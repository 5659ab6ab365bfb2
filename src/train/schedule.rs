//! Learning-rate schedules with linear warmup.
//!
//! For the 0-based step s of a run of S steps with W warmup steps and peak rate η:
//!
//! ```text
//! s < W:  η·(s + 1)/W                                   (never 0: every step learns)
//! s ≥ W:  p = (s − W)/max(1, S − W),  η·f(p)
//!         cosine: f = ½(1 + cos πp)   linear: f = 1 − p   constant: f = 1
//! ```

use crate::{Error, Result};

/// How the rate decays after warmup.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Cosine,
    Linear,
    Constant,
}

impl Schedule {
    pub fn parse(s: &str) -> Result<Schedule> {
        match s {
            "cosine" => Ok(Schedule::Cosine),
            "linear" => Ok(Schedule::Linear),
            "constant" => Ok(Schedule::Constant),
            _ => Err(Error::Invalid(format!(
                "unknown schedule '{s}' (cosine, linear or constant)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Schedule::Cosine => "cosine",
            Schedule::Linear => "linear",
            Schedule::Constant => "constant",
        }
    }

    /// The rate of 0-based step `step` of `total`, with `warmup` steps and peak `peak`.
    pub fn lr(self, peak: f32, warmup: usize, total: usize, step: usize) -> f32 {
        if step < warmup {
            return peak * (step + 1) as f32 / warmup as f32;
        }
        let p = ((step - warmup) as f64 / (total.saturating_sub(warmup)).max(1) as f64).min(1.0);
        let f = match self {
            Schedule::Cosine => 0.5 * (1.0 + (std::f64::consts::PI * p).cos()),
            Schedule::Linear => 1.0 - p,
            Schedule::Constant => 1.0,
        };
        (peak as f64 * f) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_decay() {
        let s = Schedule::Cosine;
        assert_eq!(s.lr(1.0, 4, 14, 0), 0.25);
        assert_eq!(s.lr(1.0, 4, 14, 3), 1.0);
        assert_eq!(s.lr(1.0, 4, 14, 4), 1.0);
        assert!((s.lr(1.0, 4, 14, 9) - 0.5).abs() < 1e-6);
        assert!(s.lr(1.0, 4, 14, 14).abs() < 1e-6);
        assert!((Schedule::Linear.lr(2.0, 0, 10, 5) - 1.0).abs() < 1e-6);
        assert_eq!(Schedule::Constant.lr(3.0, 0, 10, 9), 3.0);
        assert!(Schedule::parse("step").is_err());
    }
}
