//! The memory a training step needs, estimated before anything is allocated, so a run
//! that cannot fit is refused up front with a suggestion, not half-way with an
//! out-of-memory error. The estimate counts what the allocator's meter counts (see
//! `gpu::tensor::MemoryMeter`), so it can be checked against the measured peak
//! (`tests/memory_estimate.rs`: within 5% on the tiny models, and `boha bench step`
//! reports both for a real model).
//!
//! The step's own memory is the plan of its graph: the trainer builds the same graph
//! ([`crate::graph::train_graph`]) and the same liveness planner assigns it the same
//! buffers, so the estimate plans without allocating. In f32 elements, with P adapter
//! parameters and m adapted matrices:
//!
//! ```text
//! weights      every checkpoint tensor (tied embeddings once) + HS/2 RoPE frequencies
//!              [+ N ones for the q/k/v biases]; the frozen weights (linear layers,
//!              embedding, LM head) at their device dtype's size, each buffer rounded up
//!              to 4 bytes
//! activations  the planned buffers: ids, targets, the loss, every activation the
//!              backward reads (or one layer's with gradient checkpointing), gradients,
//!              op temporaries (attention's deltas, the loss's chunk and statistics) and
//!              the adapters' shared scratch (gradient partials, bottleneck U)
//!              + the loss's read-back staging (one element, alive during the read)
//! adapters     4·P: factors, gradients, two AdamW moments
//!              + one sum-of-squares partial per 128 gradient elements
//! dispatches   one uniform buffer per prepared dispatch (16–80 bytes), node by node
//!              (`graph::uniforms`)
//! ```

use crate::adapters::AdapterSpec;
use crate::gpu::{DType, Gpu};
use crate::graph::liveness;
use crate::graph::uniforms::step_uniform_bytes;
use crate::graph::{train_graph, TrainOptions};
use crate::model::ModelConfig;
use crate::Result;

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

/// True for a tensor of [`ModelConfig::expected_tensors`] that is a frozen weight (stored
/// in the `--base-dtype`; see `model::transformer::Weights::upload`).
pub fn is_frozen_weight(name: &str) -> bool {
    name == "embed"
        || name == "lm_head"
        || name
            .rsplit('.')
            .next()
            .is_some_and(|p| crate::model::transformer::PROJECTIONS.contains(&p))
}

/// Estimates a training step of `batch` × `seq` tokens on `gpu` with default options
/// but `recompute`, frozen weights in f32 (see [`estimate`]).
pub fn estimate_step(
    gpu: &Gpu,
    cfg: &ModelConfig,
    spec: &AdapterSpec,
    targets: &[String],
    batch: usize,
    seq: usize,
    recompute: bool,
) -> Result<StepMemory> {
    let opts = TrainOptions {
        recompute,
        ..TrainOptions::default()
    };
    estimate(gpu, cfg, &|_| DType::F32, spec, targets, batch, seq, &opts)
}

/// Elements of a buffer of `n` elements as allocated (at least one).
fn buf(n: u64) -> u64 {
    n.max(1)
}

/// Estimates the peak bytes of a [`crate::graph::Trainer`] of `batch` × `seq` tokens with
/// `opts` on `gpu`, each frozen weight stored as `frozen` gives for its name (see
/// `loaders::Checkpoint::frozen_dtypes`), from its construction through its steps (see
/// the module docs).
#[allow(clippy::too_many_arguments)]
pub fn estimate(
    gpu: &Gpu,
    cfg: &ModelConfig,
    frozen: &dyn Fn(&str) -> DType,
    spec: &AdapterSpec,
    targets: &[String],
    batch: usize,
    seq: usize,
    opts: &TrainOptions,
) -> Result<StepMemory> {
    let nn = (batch * seq) as u64;
    let l = cfg.num_layers as u64;

    // Weights.
    let tensors = cfg.expected_tensors();
    let len = |t: &crate::model::TensorSpec| t.shape.iter().product::<usize>() as u64;
    let bytes = |t: &crate::model::TensorSpec| {
        if is_frozen_weight(&t.name) {
            (frozen(&t.name).bytes_for(len(t) as usize) as u64)
                .max(1)
                .div_ceil(4)
                * 4
        } else {
            4 * buf(len(t))
        }
    };
    let weights: u64 = tensors.iter().map(bytes).sum::<u64>()
        + 4 * buf(cfg.rope_inv_freq().len() as u64)
        + if cfg.qkv_bias { 4 * nn } else { 0 };
    let largest_weight = tensors.iter().map(bytes).max().unwrap_or(0);

    // The step's graph and its planned buffers.
    let g = train_graph(gpu, cfg, spec, targets, batch, seq, opts)?;
    let plan = liveness::plan(&g);
    let largest_value = plan.buffers.iter().copied().max().unwrap_or(0) as u64;
    // + the loss's read-back staging, alive during the read at the step's end
    let activations = plan.bytes() + 4;

    // Adapters and the optimizer.
    let shapes = shapes(cfg, targets);
    let p = adapter_params(cfg, spec, targets) as u64;
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
    let adapters = 4 * (4 * p + optimizer);

    let dispatches = step_uniform_bytes(gpu, &g, spec, opts);
    Ok(StepMemory {
        weights,
        activations,
        adapters,
        dispatches,
        largest_buffer: largest_weight.max(4 * largest_value),
    })
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
