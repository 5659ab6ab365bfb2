//! AdamW with decoupled weight decay, and global-norm gradient clipping
//! (`shaders/adamw.wgsl`).
//!
//! For each parameter θ with gradient ∇, at step t ≥ 1:
//!
//! ```text
//! g = grad_scale·∇
//! m ← β1·m + (1−β1)·g          v ← β2·v + (1−β2)·g²
//! m̂ = m / (1−β1ᵗ)              v̂ = v / (1−β2ᵗ)
//! θ ← θ − lr·( m̂ / (√v̂ + ε) + wd·θ )
//! ```
//!
//! Clipping follows PyTorch's `clip_grad_norm_`: with S = Σ over all gradients of ∇² and
//! g0 the grad_scale set for the step, norm = g0·√S and
//! grad_scale ← g0·min(1, max_norm / (norm + 1e-6)).
//!
//! The values that change every step (lr, the two bias corrections, grad_scale, and the
//! norm the clip pass computes) live in a small GPU tensor, [`StepScalars`], not in the
//! uniform: a dispatch list is prepared once and recorded every step, and the host only
//! writes 8 floats per step ([`StepScalars::set`]). To record several steps in one
//! submit, upload a table of [`AdamW::step_scalars`] rows and record a
//! `Recorder::copy` of step k's row into the scalars before step k's dispatches.

use super::chunks::row_ranges;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, Params, Tensor};
use crate::shaders::ADAMW;

const WG: usize = 64;
/// Floats in the scalars tensor: lr, 1/(1−β1ᵗ), 1/(1−β2ᵗ), grad_scale, grad_norm, 3 unused.
pub const SCALARS: usize = 8;
/// Elements each `sumsq_partial` invocation sums at least (fewer partials for small
/// tensors), and the most partials one range writes.
const PER_PART: usize = 128;
const MAX_PARTS: usize = 16384;

/// AdamW hyper-parameters. `lr` is the peak learning rate; a schedule passes each step's
/// rate to [`AdamW::step_scalars`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamW {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamW {
    /// lr 1e-3, β = (0.9, 0.999), ε = 1e-8, no weight decay (the usual choice for
    /// adapters, whose zero-initialised factors should not be pulled back to zero).
    fn default() -> AdamW {
        AdamW {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamW {
    /// Checks the hyper-parameters: β in [0, 1), ε > 0, finite lr and decay.
    pub fn validate(&self) -> Result<()> {
        let beta_ok = |b: f32| (0.0..1.0).contains(&b);
        if !beta_ok(self.beta1) || !beta_ok(self.beta2) {
            return Err(Error::Invalid(format!(
                "AdamW betas must lie in [0, 1): got ({}, {})",
                self.beta1, self.beta2
            )));
        }
        if self.eps.is_nan()
            || self.eps <= 0.0
            || !self.lr.is_finite()
            || !self.weight_decay.is_finite()
        {
            return Err(Error::Invalid(format!(
                "AdamW needs eps > 0 and finite lr / weight decay: got eps {}, lr {}, wd {}",
                self.eps, self.lr, self.weight_decay
            )));
        }
        Ok(())
    }

    /// The scalars row for step `step` (1-based) at learning rate `lr`:
    /// [lr, 1/(1−β1ᵗ), 1/(1−β2ᵗ), grad_scale, 0, 0, 0, 0].
    pub fn step_scalars(&self, step: u32, lr: f32, grad_scale: f32) -> Result<[f32; SCALARS]> {
        if step == 0 {
            return Err(Error::Invalid("AdamW steps count from 1".into()));
        }
        let bc = |beta: f32| 1.0 / (1.0 - (beta as f64).powi(step.min(i32::MAX as u32) as i32));
        Ok([
            lr,
            bc(self.beta1) as f32,
            bc(self.beta2) as f32,
            grad_scale,
            0.0,
            0.0,
            0.0,
            0.0,
        ])
    }
}

/// The per-step scalars on the GPU, `[8]`: see [`AdamW::step_scalars`]; element 4 holds
/// the global gradient norm after a clip pass.
#[derive(Clone, Debug)]
pub struct StepScalars {
    pub tensor: Tensor,
}

impl StepScalars {
    /// A zeroed scalars tensor.
    pub fn new(gpu: &Gpu) -> Result<StepScalars> {
        Ok(StepScalars {
            tensor: gpu.zeros(&[SCALARS])?,
        })
    }

    /// Writes step `step`'s row (takes effect for work submitted after this call).
    pub fn set(&self, gpu: &Gpu, opt: &AdamW, step: u32, lr: f32, grad_scale: f32) -> Result<()> {
        gpu.write(&self.tensor, &opt.step_scalars(step, lr, grad_scale)?)
    }

    /// Downloads the global gradient norm the last clip pass computed (before clipping).
    pub fn grad_norm(&self, gpu: &Gpu) -> Result<f32> {
        Ok(gpu.download(&self.tensor)?[4])
    }
}

/// First and second moments of one parameter tensor.
#[derive(Clone, Debug)]
pub struct AdamState {
    pub m: Tensor,
    pub v: Tensor,
}

impl AdamState {
    /// Zero moments shaped like `param`.
    pub fn new(gpu: &Gpu, param: &Tensor) -> Result<AdamState> {
        Ok(AdamState {
            m: gpu.zeros(param.shape())?,
            v: gpu.zeros(param.shape())?,
        })
    }
}

fn uniform(opt: &AdamW, n: usize, parts: usize, out_at: usize, max_norm: f32) -> Params {
    Params::new()
        .u(n)
        .u(parts)
        .u(out_at)
        .f(opt.beta1)
        .f(opt.beta2)
        .f(opt.eps)
        .f(opt.weight_decay)
        .f(max_norm)
}

/// One AdamW step on `param` (see the module doc), reading lr, bias corrections and
/// grad_scale from `scalars`: one dispatch per bound range.
pub fn adamw_step(
    gpu: &Gpu,
    opt: &AdamW,
    param: &Tensor,
    grad: &Tensor,
    state: &AdamState,
    scalars: &StepScalars,
) -> Result<Vec<Dispatch>> {
    opt.validate()?;
    let n = param.len();
    let lens = [grad.len(), state.m.len(), state.v.len()];
    if lens.iter().any(|&l| l != n) {
        return Err(Error::shape(
            "adamw_step",
            format!("param has {n} elements; grad, m, v have {lens:?}"),
        ));
    }
    let kernel = Kernel::new(ADAMW, "adamw_step");
    let mut out = Vec::new();
    for (start, len) in row_ranges(gpu, n, 1, "adamw_step")? {
        let views = [
            param.view(start, len)?,
            grad.view(start, len)?,
            state.m.view(start, len)?,
            state.v.view(start, len)?,
        ];
        let params = uniform(opt, len, 0, 0, 0.0);
        out.push(gpu.prepare(
            &kernel,
            &params,
            &[&scalars.tensor, &views[0], &views[1], &views[2], &views[3]],
            gpu.grid(len.div_ceil(WG)),
        )?);
    }
    Ok(out)
}

/// total\[0\] = Σ over all `tensors` of Σ x²: per-range partial sums into a scratch buffer
/// (kept alive by the dispatches), then one workgroup adds them. Empty tensors count 0.
pub fn sum_squares(gpu: &Gpu, tensors: &[&Tensor], total: &Tensor) -> Result<Vec<Dispatch>> {
    if total.len() != 1 {
        return Err(Error::shape(
            "sum_squares",
            format!("the total must have 1 element, has {}", total.len()),
        ));
    }
    let mut ranges = Vec::new();
    let mut parts_total = 0usize;
    for t in tensors {
        for (start, len) in row_ranges(gpu, t.len(), 1, "sum_squares")? {
            if len == 0 {
                continue;
            }
            let parts = len.div_ceil(PER_PART).clamp(1, MAX_PARTS);
            ranges.push((t.view(start, len)?, parts, parts_total));
            parts_total += parts;
        }
    }
    let partials = gpu.zeros(&[parts_total.max(1)])?;
    let partial = Kernel::new(ADAMW, "sumsq_partial");
    let opt = AdamW::default();
    let mut out = Vec::new();
    for (view, parts, at) in &ranges {
        let params = uniform(&opt, view.len(), *parts, *at, 0.0);
        out.push(gpu.prepare(
            &partial,
            &params,
            &[view, &partials],
            gpu.grid(parts.div_ceil(WG)),
        )?);
    }
    let params = uniform(&opt, parts_total, 0, 0, 0.0);
    out.push(gpu.prepare(
        &Kernel::new(ADAMW, "sumsq_final"),
        &params,
        &[&partials, total],
        [1, 1, 1],
    )?);
    Ok(out)
}

/// Global-norm clipping from `sumsq` (the [`sum_squares`] total of the unscaled
/// gradients): writes norm = g0·√S into scalars\[4\] and, when `max_norm` > 0, scales
/// scalars\[3\] = g0 by min(1, max_norm / (norm + 1e-6)). `max_norm` ≤ 0 only records the
/// norm.
pub fn clip_grad_norm(
    gpu: &Gpu,
    sumsq: &Tensor,
    max_norm: f32,
    scalars: &StepScalars,
) -> Result<Vec<Dispatch>> {
    if sumsq.len() != 1 || !max_norm.is_finite() {
        return Err(Error::shape(
            "clip_grad_norm",
            format!(
                "needs a 1-element sum and a finite max norm (got {} elements, {max_norm})",
                sumsq.len()
            ),
        ));
    }
    let params = uniform(&AdamW::default(), 0, 0, 0, max_norm);
    Ok(vec![gpu.prepare(
        &Kernel::new(ADAMW, "clip_scale"),
        &params,
        &[&scalars.tensor, sumsq],
        [1, 1, 1],
    )?])
}

/// AdamW over a list of (parameter, gradient) pairs: moments, scalars and one dispatch
/// list (optional norm + clip, then a step per tensor) prepared once. Gradients are read,
/// never cleared: zero them before each backward that accumulates.
pub struct Optimizer {
    pub opt: AdamW,
    pub scalars: StepScalars,
    pub states: Vec<AdamState>,
    dispatches: Vec<Dispatch>,
}

impl Optimizer {
    /// Prepares the step for `params`; `max_norm` = Some(c) clips the global gradient
    /// norm to c (Some(0.0) computes the norm without clipping).
    pub fn new(
        gpu: &Gpu,
        opt: AdamW,
        params: &[(&Tensor, &Tensor)],
        max_norm: Option<f32>,
    ) -> Result<Optimizer> {
        let scalars = StepScalars::new(gpu)?;
        let mut dispatches = Vec::new();
        if let Some(c) = max_norm {
            let sumsq = gpu.zeros(&[1])?;
            let grads: Vec<&Tensor> = params.iter().map(|p| p.1).collect();
            dispatches.extend(sum_squares(gpu, &grads, &sumsq)?);
            dispatches.extend(clip_grad_norm(gpu, &sumsq, c, &scalars)?);
        }
        let mut states = Vec::new();
        for (p, g) in params {
            let s = AdamState::new(gpu, p)?;
            dispatches.extend(adamw_step(gpu, &opt, p, g, &s, &scalars)?);
            states.push(s);
        }
        Ok(Optimizer {
            opt,
            scalars,
            states,
            dispatches,
        })
    }

    /// The step's dispatches, to record after the backward pass.
    pub fn dispatches(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// Writes step `step`'s scalars (1-based) at learning rate `lr`, before submitting.
    pub fn set_step(&self, gpu: &Gpu, step: u32, lr: f32, grad_scale: f32) -> Result<()> {
        self.scalars.set(gpu, &self.opt, step, lr, grad_scale)
    }
}

/// CPU references for the tests, in f64 internally.
pub mod reference {
    use super::AdamW;

    /// One AdamW step at `step` (1-based) and learning rate `lr` on host arrays.
    #[allow(clippy::too_many_arguments)]
    pub fn adamw_step(
        opt: &AdamW,
        step: u32,
        lr: f32,
        grad_scale: f32,
        theta: &mut [f32],
        grad: &[f32],
        m: &mut [f32],
        v: &mut [f32],
    ) {
        let (b1, b2) = (opt.beta1 as f64, opt.beta2 as f64);
        let bc1 = 1.0 - b1.powi(step as i32);
        let bc2 = 1.0 - b2.powi(step as i32);
        for i in 0..theta.len() {
            let g = grad_scale as f64 * grad[i] as f64;
            let mi = b1 * m[i] as f64 + (1.0 - b1) * g;
            let vi = b2 * v[i] as f64 + (1.0 - b2) * g * g;
            m[i] = mi as f32;
            v[i] = vi as f32;
            let t = theta[i] as f64;
            let upd =
                (mi / bc1) / ((vi / bc2).sqrt() + opt.eps as f64) + opt.weight_decay as f64 * t;
            theta[i] = (t - lr as f64 * upd) as f32;
        }
    }

    /// Σ x² in f64.
    pub fn sum_squares(xs: &[&[f32]]) -> f64 {
        xs.iter()
            .flat_map(|x| x.iter())
            .map(|&e| e as f64 * e as f64)
            .sum()
    }

    /// PyTorch's clip factor: min(1, max_norm / (norm + 1e-6)); 1 when max_norm ≤ 0.
    pub fn clip_factor(norm: f64, max_norm: f32) -> f64 {
        if max_norm <= 0.0 {
            1.0
        } else {
            (max_norm as f64 / (norm + 1e-6)).min(1.0)
        }
    }
}
