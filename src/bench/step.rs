//! `boha bench step`: one real training step (forward, backward, AdamW) of a model, for
//! every kind at LoRA r = 32's budget (BoHA and the additive control b = 4, r_b = 8;
//! HiRA, LoRA r = 32; ABBA, LoHa 16 per pair) and BoHA again with gradient
//! checkpointing, all on the seven projections of every layer, timed in one run; plus
//! a forward-only pass of the base model and of the model with the BoHA adapter merged.
//!
//! Each method's peak is the most buffer bytes the allocator's meter saw alive while
//! its trainer was built and stepped: weights, activations, adapters, gradients,
//! moments, the shared scratch (the gradient kernels' partials or LoRA's U), op
//! temporaries, every dispatch's uniform and the loss's read-back. Beside it stands the
//! closed-form estimate that `finetune` checks before allocating
//! (`graph::memory::estimate`) and estimate / measured. Ratios (BoHA step / LoRA step,
//! BoHA peak / LoRA peak, merged forward / base forward) come from the same run.
//!
//! With `--base-dtypes`, BoHA's step also runs with the frozen weights stored in each
//! listed dtype (`boha@f16`, …), and each one's step time and peak are given over the
//! first listed dtype's, from the same run.

use serde::Serialize;

use super::timing::median;
use crate::adapters::{AdapterSpec, Method};
use crate::error::Result;
use crate::gpu::{BaseDType, DType, Gpu};
use crate::graph::forward::ForwardPass;
use crate::graph::memory::estimate;
use crate::graph::{TrainOptions, Trainer};
use crate::loaders::Checkpoint;
use crate::model::transformer::{Adapters, Weights};
use crate::rng::Rng;

/// One method's step.
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub method: String,
    pub step_ms: f64,
    pub tokens_per_s: f64,
    /// Model FLOPs per second: tokens_per_s · the report's model_flops_per_token
    pub model_gflops: f64,
    /// model_gflops / the FMA peak measured right before this method's steps (MFU)
    pub mfu: f64,
    /// Measured: the meter's peak over building the trainer and its steps.
    pub peak_bytes: u64,
    /// `graph::memory::estimate` for the same trainer.
    pub estimate_bytes: u64,
    /// estimate_bytes / peak_bytes (target within 1 ± 0.05)
    pub estimate_over_measured: f64,
    /// The step graph's planned buffers (activations, gradients, op temporaries, the
    /// adapters' shared scratch), part of the estimate.
    pub planned_bytes: u64,
    /// With `--profile`: the step's forward and backward run one dispatch per submit,
    /// wall time per kernel entry point, largest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub profile: Vec<KernelTime>,
}

/// One kernel entry point's share of a profiled step.
#[derive(Clone, Debug, Serialize)]
pub struct KernelTime {
    pub kernel: String,
    pub dispatches: usize,
    pub ms: f64,
}

/// The report `boha bench step --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub model: String,
    pub device: String,
    pub tokens_per_step: usize,
    /// Model FLOPs per trained token, [`model_flops_per_token`]
    pub model_flops_per_token: f64,
    /// The device's FMA peak (GFLOP/s), median of the measurements before each method
    pub fma_peak_gflops: f64,
    pub results: Vec<StepResult>,
    pub base_fwd_ms: f64,
    pub merged_fwd_ms: f64,
    /// BoHA step / LoRA step (target ≤ 1.3)
    pub boha_step_over_lora: f64,
    /// BoHA peak / LoRA peak (target ≤ 1.05)
    pub boha_peak_over_lora: f64,
    /// merged forward / base forward (target 1, within noise)
    pub merged_fwd_over_base: f64,
    /// BoHA with gradient checkpointing: step / BoHA's step (target about 1.3)
    pub checkpointing_step_over_plain: f64,
    /// BoHA with gradient checkpointing: planned buffers / BoHA's (activations drop to
    /// about one layer's worth)
    pub checkpointing_planned_over_plain: f64,
    /// BoHA with the frozen weights in each `--base-dtypes` entry, over the first entry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub base_dtypes: Vec<DTypeRow>,
}

/// BoHA's step with the frozen weights stored in one dtype.
#[derive(Clone, Debug, Serialize)]
pub struct DTypeRow {
    pub dtype: DType,
    /// Its step time over the first listed dtype's (target ≤ 1.1 on lavapipe).
    pub step_over_first: f64,
    /// Its peak memory over the first listed dtype's.
    pub peak_over_first: f64,
}

/// The budget-matched spec of each method: LoRA's rank 32 (grid kinds b = 4, r_b = 8;
/// the pair kinds 16 per pair).
pub fn bench_spec(method: Method) -> Result<AdapterSpec> {
    if method.kind().has_grid() {
        AdapterSpec::from_options(method, Some(4), None, Some(8), None)
    } else {
        AdapterSpec::from_options(method, None, Some(32), None, None)
    }
}

/// Model FLOPs of one trained token with the base weights frozen, at `seq` tokens per
/// sequence: PaLM's count (6·N + 12·L·d_attn·T, N the parameters of the matrix products,
/// the LM head included) without the weight-gradient third of the matrix term, since W0
/// gets no gradient: 4·N for the forward and the input gradients, plus attention's
/// 4·T·d_attn per layer forward (q·kᵀ, P·v; causal masking not discounted, as PaLM) and
/// twice that backward. Adapter work is not counted: the figure is what the model itself
/// asks of the device, so methods compare on it.
pub fn model_flops_per_token(cfg: &crate::model::ModelConfig, seq: usize) -> f64 {
    let (c, f, q, kv) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.q_dim(),
        cfg.kv_dim(),
    );
    let per_layer = q * c + 2 * kv * c + c * q + 3 * c * f;
    let n = (cfg.num_layers * per_layer + cfg.vocab_size * c) as f64;
    4.0 * n + 12.0 * (cfg.num_layers * q * seq) as f64
}

fn batch_tokens(vocab: usize, n: usize, seed: u64) -> (Vec<u32>, Vec<u32>) {
    let mut rng = Rng::new(seed);
    let t: Vec<u32> = (0..n).map(|_| rng.below(vocab) as u32).collect();
    let y: Vec<u32> = (0..n).map(|_| rng.below(vocab) as u32).collect();
    (t, y)
}

/// Times the step of each of `methods` (`runs` timed steps after one warm-up; BoHA also
/// with gradient checkpointing, and with the frozen weights in each of `dtypes`) and the
/// forward passes (base and merged in ABBA order, an even number ≥ 4 of rounds), on
/// `batch` × `seq` random tokens. `profile` adds each method's time per kernel (see
/// [`StepResult::profile`]). Ratios whose methods were not run are NaN (null in JSON).
#[allow(clippy::too_many_arguments)]
pub fn bench_step(
    gpu: &Gpu,
    ck: &Checkpoint,
    methods: &[Method],
    dtypes: &[DType],
    batch: usize,
    seq: usize,
    runs: usize,
    profile: bool,
    on_result: &mut dyn FnMut(&str, f64),
) -> Result<StepReport> {
    let n = batch * seq;
    let (tokens, targets) = batch_tokens(ck.config.vocab_size, n, 1);
    let all = Adapters::parse_targets(&["all"])?;
    let flops = model_flops_per_token(&ck.config, seq);
    let mut peaks = Vec::new();
    let mut results = Vec::new();
    // Every kind, then BoHA again with gradient checkpointing, then BoHA in each dtype.
    let device_base = gpu.base_dtype();
    let runs_of = methods
        .iter()
        .map(|&m| (m, false, None))
        .chain(
            methods
                .contains(&Method::Boha)
                .then_some((Method::Boha, true, None)),
        )
        .chain(dtypes.iter().map(|&d| (Method::Boha, false, Some(d))));
    for (method, recompute, dtype) in runs_of {
        gpu.set_base_dtype(dtype.map_or(device_base, BaseDType::Fixed));
        let spec = bench_spec(method)?;
        let opts = TrainOptions {
            recompute,
            ..TrainOptions::default()
        };
        let label = match (recompute, dtype) {
            (true, _) => format!("{}+checkpointing", method.name()),
            (false, Some(d)) => format!("{}@{d}", method.name()),
            (false, None) => method.name().to_string(),
        };
        let est = estimate(
            gpu,
            &ck.config,
            &ck.frozen_dtypes(gpu.base_dtype()),
            &spec,
            &all,
            batch,
            seq,
            &opts,
        )?;
        // The peak right before the steps it is compared with (a shared host's load drifts).
        let peak = super::gemm::fma_peak_gflops(gpu)?;
        peaks.push(peak);
        gpu.wait()?;
        let base = gpu.live_bytes();
        gpu.reset_peak();
        let mut tr = Trainer::new(gpu, ck, spec, &["all"], batch, seq, opts)?;
        tr.step(gpu, &tokens, &targets, 1e-4, true)?;
        let mut times = Vec::new();
        for _ in 0..runs.max(1) {
            let t0 = std::time::Instant::now();
            tr.step(gpu, &tokens, &targets, 1e-4, true)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let ms = median(&mut times);
        on_result(&label, ms);
        let peak_bytes = gpu.peak_bytes() - base;
        let profile = if profile {
            tr.profile(gpu)?
                .into_iter()
                .map(|(kernel, dispatches, s)| KernelTime {
                    kernel: kernel.into(),
                    dispatches,
                    ms: s * 1e3,
                })
                .collect()
        } else {
            Vec::new()
        };
        results.push(StepResult {
            method: label,
            step_ms: ms,
            tokens_per_s: n as f64 / (ms / 1e3),
            model_gflops: flops * n as f64 / (ms / 1e3) / 1e9,
            mfu: flops * n as f64 / (ms / 1e3) / 1e9 / peak,
            peak_bytes,
            estimate_bytes: est.total(),
            estimate_over_measured: est.total() as f64 / peak_bytes as f64,
            planned_bytes: est.activations,
            profile,
        });
    }
    gpu.set_base_dtype(device_base);
    // Base and merged passes alternate, so drift on a shared machine hits both alike.
    let base_w = Weights::upload(gpu, ck)?;
    let mut merged_w = Weights::upload(gpu, ck)?;
    let mut adapters = Adapters::new(gpu, &merged_w, bench_spec(Method::Boha)?, &["all"], 3)?;
    // Non-zero B, so the merge really changes the weights.
    let mut rng = Rng::new(5);
    for m in adapters.layers.iter_mut() {
        for ad in m.values() {
            gpu.write(&ad.b, &rng.vec_f32(ad.b.len(), -0.01, 0.01))?;
        }
    }
    merged_w.merge(gpu, &adapters)?;
    drop(adapters);
    let base = ForwardPass::new(gpu, &base_w, None, batch, seq, 8192)?;
    let merged = ForwardPass::new(gpu, &merged_w, None, batch, seq, 8192)?;
    base.loss(gpu, &tokens, &targets)?;
    merged.loss(gpu, &tokens, &targets)?;
    let (mut tb, mut tm) = (Vec::new(), Vec::new());
    // ABBA order: whatever favours the first (or second) pass of a round favours each
    // model equally often.
    for round in 0..runs.max(4).next_multiple_of(2) {
        let mut order = [(&base, &mut tb), (&merged, &mut tm)];
        if round % 2 == 1 {
            order.reverse();
        }
        for (pass, times) in order {
            let t0 = std::time::Instant::now();
            pass.loss(gpu, &tokens, &targets)?;
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
    }
    let base_fwd_ms = median(&mut tb);
    let merged_fwd_ms = median(&mut tm);
    on_result("base forward", base_fwd_ms);
    on_result("merged forward", merged_fwd_ms);
    let get = |m: &str| results.iter().find(|r| r.method == m);
    let ratio = |x: &str, y: &str, f: fn(&StepResult) -> f64| match (get(x), get(y)) {
        (Some(a), Some(b)) => f(a) / f(b),
        _ => f64::NAN,
    };
    let step = |r: &StepResult| r.step_ms;
    let peak = |r: &StepResult| r.peak_bytes as f64;
    let planned = |r: &StepResult| r.planned_bytes as f64;
    let first = dtypes.first().map(|d| format!("boha@{d}"));
    let base_dtypes = dtypes
        .iter()
        .map(|d| {
            let label = format!("boha@{d}");
            let first = first.as_deref().unwrap_or(&label);
            DTypeRow {
                dtype: *d,
                step_over_first: ratio(&label, first, step),
                peak_over_first: ratio(&label, first, peak),
            }
        })
        .collect();
    Ok(StepReport {
        model: ck.source.display().to_string(),
        device: gpu.info().name.clone(),
        tokens_per_step: n,
        model_flops_per_token: flops,
        fma_peak_gflops: median(&mut peaks),
        boha_step_over_lora: ratio("boha", "lora", step),
        boha_peak_over_lora: ratio("boha", "lora", peak),
        merged_fwd_over_base: merged_fwd_ms / base_fwd_ms,
        checkpointing_step_over_plain: ratio("boha+checkpointing", "boha", step),
        checkpointing_planned_over_plain: ratio("boha+checkpointing", "boha", planned),
        results,
        base_fwd_ms,
        merged_fwd_ms,
        base_dtypes,
    })
}

/// The report as a table.
pub fn print_table(r: &StepReport) {
    println!(
        "{} on {}, {} tokens per step, {:.3} GFLOP per token, FMA peak {:.1} GFLOP/s",
        r.model,
        r.device,
        r.tokens_per_step,
        r.model_flops_per_token / 1e9,
        r.fma_peak_gflops
    );
    println!(
        "| method | step ms | tokens/s | model GFLOP/s | MFU | peak MiB | estimate MiB | estimate/peak |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |"
    );
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    for x in &r.results {
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.2}% | {:.1} | {:.1} | {:.3} |",
            x.method,
            x.step_ms,
            x.tokens_per_s,
            x.model_gflops,
            100.0 * x.mfu,
            mib(x.peak_bytes),
            mib(x.estimate_bytes),
            x.estimate_over_measured
        );
    }
    println!(
        "base forward {:.0} ms, merged forward {:.0} ms (ratio {:.3})\nBoHA/LoRA: step {:.3}, peak {:.3}\n\
         BoHA with gradient checkpointing / without: step {:.3}, planned buffers {:.3}",
        r.base_fwd_ms,
        r.merged_fwd_ms,
        r.merged_fwd_over_base,
        r.boha_step_over_lora,
        r.boha_peak_over_lora,
        r.checkpointing_step_over_plain,
        r.checkpointing_planned_over_plain
    );
    if let Some(first) = r.base_dtypes.first() {
        println!(
            "BoHA with the frozen weights in each dtype, over {}:",
            first.dtype
        );
        println!("| dtype | step ratio | peak ratio |\n| --- | --- | --- |");
        for d in &r.base_dtypes {
            println!(
                "| {} | {:.3} | {:.3} |",
                d.dtype, d.step_over_first, d.peak_over_first
            );
        }
    }
    for x in r.results.iter().filter(|x| !x.profile.is_empty()) {
        let total: f64 = x.profile.iter().map(|k| k.ms).sum();
        println!(
            "\n{} profile, one dispatch per submit ({total:.0} ms in all):",
            x.method
        );
        println!("| kernel | dispatches | ms | share |\n| --- | --- | --- | --- |");
        for k in &x.profile {
            println!(
                "| {} | {} | {:.1} | {:.1}% |",
                k.kernel,
                k.dispatches,
                k.ms,
                100.0 * k.ms / total
            );
        }
    }
}
