//! The memory a training step needs, estimated before anything is allocated, so a run
//! that cannot fit is refused up front with a suggestion, not half-way with an
//! out-of-memory error. The estimate counts what the allocator's meter counts (see
//! `gpu::tensor::MemoryMeter`), so it can be checked against the measured peak
//! (`tests/memory_estimate.rs`: within 5% on the tiny models, and `boha bench step`
//! reports both for a real model).
//!
//! In f32 elements (every buffer at least one), with N = batch·seq tokens, R the loss
//! rows (N, or `loss_rows`), C hidden, F intermediate, Q / K the query and key-value
//! widths, H heads, HS head size, L layers, L′ = L (or 1 with gradient checkpointing),
//! P adapter parameters, m the adapted matrices:
//!
//! ```text
//! weights      every checkpoint tensor (tied embeddings once) + HS/2 RoPE frequencies
//!              [+ N ones for the q/k/v biases]
//! activations  (L + 1)·N·C residuals + 2N ids and targets + N·C final norm
//!              + L′·N·(5C + 2Q + 2K + H + 3F  [+ 2C with post-norms, else 2])
//!              + R·(4 [+ C with gathered rows]) + 2R loss statistics and row lists
//!              + the backward's scratch: `step_scratch`'s values through the same
//!                liveness planner as the trainer, the loss's R·chunk logits included
//!              + L·N·H attention deltas (layers whose backward reaches attention)
//!              + 5 one-element buffers per layer and a few per step (the loss's
//!                read-back staging among them)
//! adapters     4·P: factors, gradients, two AdamW moments
//!              + the scratch all adapted matrices share (`adapters::grad`): the
//!                largest matrix's gradient partials, or LoRA's N·r intermediate
//!              + one sum-of-squares partial per 128 gradient elements
//! dispatches   one uniform buffer per prepared dispatch (16–80 bytes), counted op by
//!              op and per adapted matrix for its method (`graph::uniforms`)
//! ```
//!
//! Before this counted everything, LoRA's per-matrix U and dU (2·N·r per matrix, kept
//! alive by the dispatch lists) and the loss's two N·chunk scratch buffers were outside
//! both the planner and the estimate.

use crate::adapters::grad::shared_scratch_bytes;
use crate::adapters::AdapterSpec;
use crate::gpu::Gpu;
use crate::graph::plan::Planner;
use crate::graph::uniforms::step_uniform_bytes;
use crate::graph::{step_scratch, TrainOptions};
use crate::model::ModelConfig;
use crate::ops::cross_entropy::{self, CrossEntropy};

/// The estimate, in bytes, by part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepMemory {
    pub weights: u64,
    pub activations: u64,
    pub adapters: u64,
    /// Uniform buffers of the prepared dispatches.
    pub dispatches: u64,
    /// The largest single buffer (checked against the device's buffer-size limit).
    pub largest_buffer: u64,
}

impl StepMemory {
    /// The estimated peak: the sum of the parts.
    pub fn total(&self) -> u64 {
        self.weights + self.activations + self.adapters + self.dispatches
    }

    /// What a run must find free: the peak plus 5% and 1 MiB for what the meter does not
    /// see (the driver's pipelines, bind groups and allocation padding).
    pub fn with_headroom(&self) -> u64 {
        let t = self.total();
        t + t / 20 + (1 << 20)
    }
}

/// (d_out, d_in) of projection `proj` (a name of [`crate::model::transformer::PROJECTIONS`]).
pub(crate) fn shape(cfg: &ModelConfig, proj: &str) -> (usize, usize) {
    let (c, f, q, k) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.q_dim(),
        cfg.kv_dim(),
    );
    match proj {
        "q" => (q, c),
        "k" | "v" => (k, c),
        "o" => (c, q),
        "gate" | "up" => (f, c),
        "down" => (c, f),
        _ => (0, 0),
    }
}

/// (d_out, d_in) of every adapted matrix of one layer.
fn shapes(cfg: &ModelConfig, targets: &[String]) -> Vec<(usize, usize)> {
    targets.iter().map(|t| shape(cfg, t)).collect()
}

/// Adapter parameters on `targets` (projection names) of every layer.
pub fn adapter_params(cfg: &ModelConfig, spec: &AdapterSpec, targets: &[String]) -> usize {
    let per_layer: usize = shapes(cfg, targets)
        .iter()
        .map(|&(o, i)| spec.param_count(o, i))
        .sum();
    per_layer * cfg.num_layers
}

/// Estimates a training step of `batch` × `seq` tokens on `gpu` with default options
/// but `recompute` (see [`estimate`]).
pub fn estimate_step(
    gpu: &Gpu,
    cfg: &ModelConfig,
    spec: &AdapterSpec,
    targets: &[String],
    batch: usize,
    seq: usize,
    recompute: bool,
) -> StepMemory {
    let opts = TrainOptions {
        recompute,
        ..TrainOptions::default()
    };
    estimate(gpu, cfg, spec, targets, batch, seq, &opts)
}

/// Elements of a buffer of `n` elements as allocated (at least one).
fn buf(n: u64) -> u64 {
    n.max(1)
}

/// Estimates the peak bytes of a [`crate::graph::Trainer`] of `batch` × `seq` tokens with
/// `opts` on `gpu`, from its construction through its steps (see the module docs).
pub fn estimate(
    gpu: &Gpu,
    cfg: &ModelConfig,
    spec: &AdapterSpec,
    targets: &[String],
    batch: usize,
    seq: usize,
    opts: &TrainOptions,
) -> StepMemory {
    let n = batch * seq;
    let (c, f, q, k, h, l) = (
        cfg.hidden_size as u64,
        cfg.intermediate_size as u64,
        cfg.q_dim() as u64,
        cfg.kv_dim() as u64,
        cfg.num_heads as u64,
        cfg.num_layers as u64,
    );
    let nn = n as u64;

    // Weights.
    let tensors = cfg.expected_tensors();
    let len = |t: &crate::model::TensorSpec| t.shape.iter().product::<usize>() as u64;
    let weights: u64 = tensors.iter().map(|t| buf(len(t))).sum::<u64>()
        + buf(cfg.rope_inv_freq().len() as u64)
        + if cfg.qkv_bias { nn } else { 0 };
    let largest_weight = tensors.iter().map(len).max().unwrap_or(0);

    // Activations, loss and the backward's scratch.
    let rows = match opts.loss_rows {
        Some(r) if r < n => Some(r.max(1)),
        _ => None,
    };
    let r = rows.unwrap_or(n);
    let ce = CrossEntropy {
        chunk: opts.ce_chunk.max(1),
        softcap: cfg.final_logit_softcapping,
    };
    let logits = cross_entropy::scratch_len(gpu, &ce, r, cfg.hidden_size, cfg.vocab_size);
    let mut planner = Planner::new();
    step_scratch::declare(&mut planner, cfg, n, logits);
    planner.assign();
    let scratch = planner.planned_bytes() / 4;
    let kept = if opts.recompute { 1 } else { l };
    let post = if cfg.post_norms { 2 * nn * c } else { 2 };
    let per_layer = nn * (5 * c + 2 * q + 2 * k + h + 3 * f) + post;
    // Layers whose backward runs attention's (and RoPE's): all but the first, which
    // stops below its lowest adapted projection unless q, k or v carry adapters.
    let qkv_adapted = targets
        .iter()
        .any(|t| matches!(t.as_str(), "q" | "k" | "v"));
    let attn_back = l.saturating_sub(1) + u64::from(qkv_adapted);
    let gathered = match rows {
        // rows and targets [R], gathered hidden states and their gradient [R, C]
        Some(r) => 2 * r as u64 + 2 * r as u64 * c,
        None => 0,
    };
    let activations = (l + 1) * nn * c
        + 2 * nn
        + 1
        + kept * per_layer
        + nn * c
        + gathered
        + r as u64 * 4
        + 1
        + scratch
        + attn_back * (nn * h + 2)
        + 3 * l
        // the loss's read-back staging, alive during the read at the step's end
        + 1;

    // Adapters, their shared scratch and the optimizer.
    let shapes = shapes(cfg, targets);
    let p = adapter_params(cfg, spec, targets) as u64;
    let grad_scratch = shared_scratch_bytes(gpu, shapes.iter().map(|&(o, i)| (spec, n, o, i)));
    let per_tensor: u64 = shapes
        .iter()
        .map(|&(o, i)| {
            let r = spec.rank() as u64;
            (r * i as u64).div_ceil(128) + (r * o as u64).div_ceil(128)
        })
        .sum();
    let norm = if opts.max_grad_norm.is_some() {
        1 + buf(per_tensor * l)
    } else {
        0
    };
    let optimizer = crate::ops::adamw::SCALARS as u64 + norm;
    let adapters = 4 * (4 * p + optimizer) + grad_scratch;

    let chunks = cfg.vocab_size.div_ceil((logits / r).max(1));
    let dispatches = step_uniform_bytes(gpu, cfg, spec, targets, n, chunks, opts);
    let largest = largest_weight.max(nn * f).max(logits as u64);
    StepMemory {
        weights: 4 * weights,
        activations: 4 * activations,
        adapters,
        dispatches,
        largest_buffer: 4 * largest,
    }
}

/// Refuses a step that does not fit `budget` bytes (and the device's `max_buffer`
/// bytes per buffer), with what to reduce. The budget must hold the estimate with
/// headroom ([`StepMemory::with_headroom`]).
pub fn check_fits(
    m: &StepMemory,
    budget: Option<u64>,
    max_buffer: u64,
    recompute: bool,
) -> crate::Result<()> {
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    let advice = if recompute {
        "reduce --batch or --max-len"
    } else {
        "reduce --batch or --max-len, or add --gradient-checkpointing"
    };
    if m.largest_buffer > max_buffer {
        return Err(crate::Error::Invalid(format!(
            "a training step needs a {:.2} GiB buffer, the device allows {:.2} GiB: {advice}",
            gib(m.largest_buffer),
            gib(max_buffer)
        )));
    }
    if let Some(b) = budget {
        if m.with_headroom() > b {
            return Err(crate::Error::Invalid(format!(
                "a training step needs about {:.2} GiB (weights {:.2}, activations {:.2}, \
                 adapters {:.2}), {:.2} GiB is available: {advice}",
                gib(m.with_headroom()),
                gib(m.weights),
                gib(m.activations),
                gib(m.adapters),
                gib(b)
            )));
        }
    }
    Ok(())
}

/// Memory the system reports available (`MemAvailable` in /proc/meminfo), in bytes:
/// the budget of CPU adapters such as lavapipe, whose buffers live in system memory.
pub fn system_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
