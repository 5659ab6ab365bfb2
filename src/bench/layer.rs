//! `boha bench layer`: one adapted linear layer at transformer shapes (512 tokens;
//! 576→1536, 1536→576, 2048→2048), timed in one run:
//!
//! - forward: the base GEMM y = x·W0ᵀ, BoHA's fused forward, LoRA's forward;
//! - a training step (forward, backward to X, adapter gradients) for BoHA (b = 4,
//!   r_b = 8), HiRA (r = 32), LoRA (r = 32), ABBA and LoHa (16 per pair), all at the
//!   same parameter budget; ABBA also on each of its two paths, forced (the fused
//!   kernels and the Khatri–Rao bottleneck, see [`crate::adapters::pair`]), so that
//!   the rule that picks between them can be checked on the device;
//! - the peak buffer bytes of each training step, as the allocator's meter counts them
//!   (W0, X, Y, dY, dX, the adapter, its gradients, the dispatches' uniforms and the
//!   scratch: the gradient kernels' partials or LoRA's U, from one [`GradScratch`] as
//!   in a trainer).
//!
//! Ratios (BoHA forward / base, BoHA step / LoRA step, BoHA peak / LoRA peak) come from
//! the same run, so they hold on a noisy shared machine.

use serde::Serialize;

use super::timing::median_ms;
use crate::adapters::fused_kernels::Fused;
use crate::adapters::grad::GradScratch;
use crate::adapters::kind::Kernels;
use crate::adapters::layer::AdaptedLinear;
use crate::adapters::pair::{self, KhatriRao};
use crate::adapters::{AdapterSpec, Method};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu};
use crate::ops::gemm::matmul_nt;
use crate::rng::Rng;

/// One layer shape's figures.
#[derive(Clone, Debug, Serialize)]
pub struct LayerResult {
    pub tokens: usize,
    pub d_in: usize,
    pub d_out: usize,
    pub base_fwd_ms: f64,
    pub boha_fwd_ms: f64,
    pub lora_fwd_ms: f64,
    pub boha_step_ms: f64,
    pub hira_step_ms: f64,
    pub lora_step_ms: f64,
    pub boha_peak_bytes: u64,
    pub lora_peak_bytes: u64,
    pub hira_peak_bytes: u64,
    /// boha_fwd_ms / base_fwd_ms (target ≤ 1.15)
    pub boha_fwd_over_base: f64,
    /// boha_step_ms / lora_step_ms (target ≤ 1.5)
    pub boha_step_over_lora: f64,
    /// boha_peak_bytes / lora_peak_bytes (target ≤ 1.05)
    pub boha_peak_over_lora: f64,
    pub abba_step_ms: f64,
    pub loha_step_ms: f64,
    /// abba_step_ms / lora_step_ms (no target)
    pub abba_step_over_lora: f64,
    /// ABBA's step on the fused kernels, forced
    pub abba_fused_step_ms: f64,
    /// ABBA's step on the Khatri–Rao bottleneck, forced
    pub abba_khatri_rao_step_ms: f64,
    /// abba_fused_step_ms / abba_khatri_rao_step_ms: below 1 where the fused path is
    /// faster
    pub abba_fused_over_khatri_rao: f64,
    /// Whether `pair::runs_fused` picks the fused kernels for this shape (ABBA's default)
    pub abba_picks_fused: bool,
}

/// The whole report, printed as JSON by `boha bench layer --json`.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub device: String,
    pub layers: Vec<LayerResult>,
}

/// The shapes the benchmark runs by default: (tokens, d_in, d_out).
pub const DEFAULT_SHAPES: &[(usize, usize, usize)] =
    &[(512, 576, 1536), (512, 1536, 576), (512, 2048, 2048)];

fn spec(method: Method) -> Result<AdapterSpec> {
    super::step::bench_spec(method)
}

/// A layer with random non-zero factors (timing must not depend on B = 0 shortcuts).
fn random_layer(
    gpu: &Gpu,
    method: Method,
    d_out: usize,
    d_in: usize,
    rng: &mut Rng,
) -> Result<AdaptedLinear> {
    let s = spec(method)?;
    let na: usize = s.a_shape(d_in).iter().product();
    let nb: usize = s.b_shape(d_out).iter().product();
    let a = rng.vec_f32(na, -0.05, 0.05);
    let b = rng.vec_f32(nb, -0.05, 0.05);
    AdaptedLinear::from_host(gpu, s, method.name(), d_out, d_in, &a, &b)
}

struct Inputs {
    x: crate::gpu::Tensor,
    w0: crate::gpu::Tensor,
    y: crate::gpu::Tensor,
}

fn inputs(gpu: &Gpu, t: usize, d_in: usize, d_out: usize, rng: &mut Rng) -> Result<Inputs> {
    Ok(Inputs {
        x: gpu.upload(&[t, d_in], &rng.vec_f32(t * d_in, -1.0, 1.0))?,
        w0: gpu.upload(&[d_out, d_in], &rng.vec_f32(d_out * d_in, -0.05, 0.05))?,
        y: gpu.zeros(&[t, d_out])?,
    })
}

/// Times one training step of `method` and measures the bytes it holds at its peak;
/// with `kernels`, on those instead of the kind's own choice (and without the shared
/// scratch, which is sized for that choice).
#[allow(clippy::too_many_arguments)]
fn step(
    gpu: &Gpu,
    method: Method,
    kernels: Option<&dyn Kernels>,
    t: usize,
    d_in: usize,
    d_out: usize,
    reps: usize,
    runs: usize,
) -> Result<(f64, u64)> {
    let mut rng = Rng::new(7);
    gpu.wait()?;
    let base = gpu.live_bytes();
    gpu.reset_peak();
    let io = inputs(gpu, t, d_in, d_out, &mut rng)?;
    let dy = gpu.upload(&[t, d_out], &rng.vec_f32(t * d_out, -1.0, 1.0))?;
    let dx = gpu.zeros(&[t, d_in])?;
    let mut layer = random_layer(gpu, method, d_out, d_in, &mut rng)?;
    let ds: Vec<Dispatch> = match kernels {
        None => {
            let scratch = GradScratch::new(gpu, [(&layer.spec, t, d_out, d_in)])?;
            layer.share_scratch(&scratch);
            let mut ds = layer.forward(gpu, &io.w0, &io.x, &io.y)?;
            ds.extend(layer.backward(gpu, &io.w0, &io.x, &dy, Some(&dx), None)?);
            ds
        }
        Some(k) => {
            let mut ds = k.forward(gpu, &layer, &io.w0, &io.x, &io.y)?;
            ds.extend(k.backward(gpu, &layer, &io.w0, &io.x, &dy, Some(&dx), None)?);
            ds
        }
    };
    let ms = median_ms(gpu, &ds, reps, runs)?;
    let peak = gpu.peak_bytes().saturating_sub(base);
    Ok((ms, peak))
}

/// ABBA's layer step (forward and backward) on `kernels`, forced: what `boha tune`
/// compares the pair paths by.
pub(crate) fn pair_step_ms(
    gpu: &Gpu,
    kernels: &dyn Kernels,
    tokens: usize,
    d_in: usize,
    d_out: usize,
    runs: usize,
) -> Result<f64> {
    Ok(step(
        gpu,
        Method::Abba,
        Some(kernels),
        tokens,
        d_in,
        d_out,
        1,
        runs,
    )?
    .0)
}

/// Runs the benchmark over `shapes`.
pub fn bench_layer(gpu: &Gpu, shapes: &[(usize, usize, usize)]) -> Result<LayerReport> {
    let (reps, runs) = (2, 3);
    let mut layers = Vec::new();
    for &(t, d_in, d_out) in shapes {
        let mut rng = Rng::new(1);
        let (base_fwd_ms, boha_fwd_ms, lora_fwd_ms) = {
            let io = inputs(gpu, t, d_in, d_out, &mut rng)?;
            let base = matmul_nt(gpu, &io.x, &io.w0, &io.y, 0.0)?;
            let boha = random_layer(gpu, Method::Boha, d_out, d_in, &mut rng)?;
            let lora = random_layer(gpu, Method::Lora, d_out, d_in, &mut rng)?;
            let boha_fwd = boha.forward(gpu, &io.w0, &io.x, &io.y)?;
            let lora_fwd = lora.forward(gpu, &io.w0, &io.x, &io.y)?;
            (
                median_ms(gpu, &base, reps, runs)?,
                median_ms(gpu, &boha_fwd, reps, runs)?,
                median_ms(gpu, &lora_fwd, reps, runs)?,
            )
        };
        let (boha_step_ms, boha_peak) = step(gpu, Method::Boha, None, t, d_in, d_out, reps, runs)?;
        let (hira_step_ms, hira_peak) = step(gpu, Method::Hira, None, t, d_in, d_out, reps, runs)?;
        let (lora_step_ms, lora_peak) = step(gpu, Method::Lora, None, t, d_in, d_out, reps, runs)?;
        let (abba_step_ms, _) = step(gpu, Method::Abba, None, t, d_in, d_out, reps, runs)?;
        let (loha_step_ms, _) = step(gpu, Method::Loha, None, t, d_in, d_out, reps, runs)?;
        let (abba_fused_step_ms, _) =
            step(gpu, Method::Abba, Some(&Fused), t, d_in, d_out, reps, runs)?;
        let (abba_khatri_rao_step_ms, _) = step(
            gpu,
            Method::Abba,
            Some(&KhatriRao),
            t,
            d_in,
            d_out,
            reps,
            runs,
        )?;
        layers.push(LayerResult {
            tokens: t,
            d_in,
            d_out,
            base_fwd_ms,
            boha_fwd_ms,
            lora_fwd_ms,
            boha_step_ms,
            hira_step_ms,
            lora_step_ms,
            boha_peak_bytes: boha_peak,
            lora_peak_bytes: lora_peak,
            hira_peak_bytes: hira_peak,
            boha_fwd_over_base: boha_fwd_ms / base_fwd_ms,
            boha_step_over_lora: boha_step_ms / lora_step_ms,
            boha_peak_over_lora: boha_peak as f64 / lora_peak as f64,
            abba_step_ms,
            loha_step_ms,
            abba_step_over_lora: abba_step_ms / lora_step_ms,
            abba_fused_step_ms,
            abba_khatri_rao_step_ms,
            abba_fused_over_khatri_rao: abba_fused_step_ms / abba_khatri_rao_step_ms,
            abba_picks_fused: pair::runs_fused(gpu, &spec(Method::Abba)?, d_out, d_in),
        });
    }
    Ok(LayerReport {
        device: format!("{} ({})", gpu.info().name, gpu.info().backend),
        layers,
    })
}

/// Prints the report as a table.
pub fn print_table(r: &LayerReport) {
    println!("device: {}", r.device);
    println!(
        "{:>6} {:>5} {:>5} | {:>8} {:>8} {:>8} | {:>9} {:>9} {:>9} {:>9} {:>9} | {:>10} {:>10} | {:>8} {:>9} {:>9} | {:>13}",
        "tokens", "d_in", "d_out", "base ms", "boha ms", "lora ms", "boha step", "hira step",
        "lora step", "abba step", "loha step", "boha peak", "lora peak", "fwd/base", "step/lora",
        "peak/lora", "abba fused/kr"
    );
    for l in &r.layers {
        println!(
            "{:>6} {:>5} {:>5} | {:>8.2} {:>8.2} {:>8.2} | {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>9.2} | {:>10} {:>10} | {:>8.2} {:>9.2} {:>9.3} | {:>13.2}",
            l.tokens, l.d_in, l.d_out, l.base_fwd_ms, l.boha_fwd_ms, l.lora_fwd_ms,
            l.boha_step_ms, l.hira_step_ms, l.lora_step_ms, l.abba_step_ms, l.loha_step_ms,
            l.boha_peak_bytes,
            l.lora_peak_bytes, l.boha_fwd_over_base, l.boha_step_over_lora, l.boha_peak_over_lora,
            l.abba_fused_over_khatri_rao
        );
    }
}
