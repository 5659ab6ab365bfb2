//! The learning-rate sweep of one method on one suite, as a walk over result files.
//!
//! The walk starts with the preset's grid. Once every rate tried has its final
//! validation loss, the lowest loss chooses (the first such rate on ties; a diverged
//! run's loss counts as infinite). When that rate is the highest tried, the grid is
//! extended one step up (×3), when it is the lowest, one step down (÷3), at most
//! [`Preset::sweep_extensions`] steps on each side; the walk goes on until the choice
//! lies inside the rates tried or the extensions are spent. A sweep whose best rate sits
//! at the end of a fixed grid has not bracketed the optimum, and the method compared at
//! that rate is handicapped by the grid rather than by itself; extending only the grid
//! keeps every finished run valid.
//!
//! The walk is a pure function of which runs have a result and their losses, so the
//! study (which trains the next rate), the continual diagnostic (which runs stage 2 at
//! every rate tried) and the report (which tabulates them) all see the same rates.

use super::preset::Preset;
use crate::adapters::Method;
use crate::Result;

/// The factor between a grid end and the rate an extension adds beyond it.
pub const STEP: f32 = 3.0;

/// Where a sweep stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Next {
    /// This rate has no result yet and is the next to train.
    Train(f32),
    /// Every rate needed is done; this one has the lowest validation loss.
    Chosen(f32),
}

/// A sweep's rates (the grid, then its extensions, in the order they were added) and
/// where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Walk {
    pub rates: Vec<f32>,
    pub next: Next,
}

/// Walks the sweep of `grid` with up to `extensions` added rates per side; `loss(lr)` is
/// the final validation loss of the run at `lr` (None: not run yet; infinite: diverged).
pub fn walk(
    grid: &[f32],
    extensions: usize,
    mut loss: impl FnMut(f32) -> Result<Option<f64>>,
) -> Result<Walk> {
    let mut rates = grid.to_vec();
    let (mut up, mut down) = (0, 0);
    loop {
        let mut best: Option<(f64, f32)> = None;
        for &lr in &rates {
            let Some(l) = loss(lr)? else {
                return Ok(Walk {
                    rates,
                    next: Next::Train(lr),
                });
            };
            let l = if l.is_finite() { l } else { f64::INFINITY };
            if best.is_none_or(|(b, _)| l < b) {
                best = Some((l, lr));
            }
        }
        let Some((_, lr)) = best else {
            return Err(crate::Error::Invalid(
                "a sweep needs at least one rate".into(),
            ));
        };
        let hi = rates.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lo = rates.iter().copied().fold(f32::INFINITY, f32::min);
        let beyond = if rates.len() < 2 {
            None
        } else if lr == hi && up < extensions {
            up += 1;
            Some(lr * STEP)
        } else if lr == lo && down < extensions {
            down += 1;
            Some(lr / STEP)
        } else {
            None
        };
        match beyond {
            Some(next) => rates.push(next),
            None => {
                return Ok(Walk {
                    rates,
                    next: Next::Chosen(lr),
                })
            }
        }
    }
}

/// Whether `lr` is the highest or lowest of `rates` (a sweep that stopped there did not
/// bracket the best rate): Some("highest") or Some("lowest").
pub fn edge(lr: f32, rates: &[f32]) -> Option<&'static str> {
    if rates.len() < 2 {
        return None;
    }
    let hi = rates.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let lo = rates.iter().copied().fold(f32::INFINITY, f32::min);
    if lr == hi {
        Some("highest")
    } else if lr == lo {
        Some("lowest")
    } else {
        None
    }
}

impl Preset {
    /// The sweep walk of `method` with the losses `loss` reports.
    pub fn sweep(
        &self,
        method: Method,
        loss: impl FnMut(f32) -> Result<Option<f64>>,
    ) -> Result<Walk> {
        walk(self.lrs_of(method), self.sweep_extensions, loss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(grid: &[f32], ext: usize, losses: &[(f32, f64)]) -> Walk {
        walk(grid, ext, |lr| {
            Ok(losses
                .iter()
                .find(|(l, _)| (l / lr - 1.0).abs() < 1e-4)
                .map(|&(_, v)| v))
        })
        .unwrap()
    }

    #[test]
    fn an_inside_choice_ends_the_walk() {
        let w = run(
            &[1e-3, 3e-3, 1e-2],
            2,
            &[(1e-3, 2.0), (3e-3, 1.0), (1e-2, 1.5)],
        );
        assert_eq!(w.rates, [1e-3, 3e-3, 1e-2]);
        assert_eq!(w.next, Next::Chosen(3e-3));
    }

    #[test]
    fn the_first_missing_rate_is_trained_next() {
        let w = run(&[1e-3, 3e-3, 1e-2], 2, &[(1e-3, 2.0)]);
        assert_eq!(w.next, Next::Train(3e-3));
    }

    #[test]
    fn an_edge_choice_extends_the_grid_until_bracketed_or_spent() {
        let grid = [3e-3, 9e-3, 3e-2];
        let base = [(3e-3, 2.6), (9e-3, 0.19), (3e-2, 0.16)];
        let w = run(&grid, 2, &base);
        assert_eq!(w.next, Next::Train(3e-2 * STEP));
        assert_eq!(w.rates.len(), 4);
        // The rate above is worse: the choice is now inside.
        let mut l = base.to_vec();
        l.push((9e-2, 0.3));
        let w = run(&grid, 2, &l);
        assert_eq!(w.next, Next::Chosen(3e-2));
        assert_eq!(edge(3e-2, &w.rates), None);
        // Better again and again: two steps, then the edge choice stands.
        let l = [&base[..], &[(9e-2, 0.1), (2.7e-1, 0.05)]].concat();
        let w = run(&grid, 2, &l);
        assert_eq!(w.next, Next::Chosen(3e-2 * STEP * STEP));
        assert_eq!(w.rates.len(), 5);
        assert_eq!(edge(3e-2 * STEP * STEP, &w.rates), Some("highest"));
        // No extensions: the grid alone.
        let w = run(&grid, 0, &base);
        assert_eq!(w.next, Next::Chosen(3e-2));
        assert_eq!(edge(3e-2, &w.rates), Some("highest"));
    }

    #[test]
    fn a_low_choice_extends_down_and_diverged_runs_lose() {
        let grid = [1e-3, 3e-3, 1e-2];
        let l = [
            (1e-3, 0.5),
            (3e-3, 0.9),
            (1e-2, f64::NAN),
            (1e-3 / STEP, 0.7),
        ];
        let w = run(&grid, 1, &l);
        assert_eq!(w.next, Next::Chosen(1e-3));
        assert_eq!(w.rates.len(), 4);
        assert_eq!(edge(1e-3, &w.rates), None);
    }
}
