//! The memory a training step needs, estimated before anything is allocated, so a run
//! that cannot fit is refused up front with a suggestion, not half-way with an
//! out-of-memory error.
//!
//! In f32 elements, with N = batch·seq tokens, C hidden, F intermediate, Q / K the query
//! and key-value widths, H heads, L layers, P adapter parameters, V vocabulary:
//!
//! ```text
//! weights      every checkpoint tensor (tied embeddings once)
//! residuals    (L + 1)·N·C
//! activations  L′·N·(5C + 2Q + 2K + H + 3F  [+ 2C with post-norms]),  L′ = L, or 1 with
//!              gradient checkpointing
//! loss         N·(C + 1) + N·min(V, 8192) logits chunk
//! gradients    N·(3C + 3F + 2Q + 2K)  (scratch shared by all layers, an upper bound)
//! adapters     5·P: factors, gradients, two moments
//!              + the gradient kernels' partial slots, one room that all adapted
//!              matrices share, the largest `adapters::grad::scratch_bytes` plans on
//!              the device (LoRA: its rank-r intermediates, 2·N·r per matrix)
//! ```

use crate::adapters::grad::scratch_bytes;
use crate::adapters::{AdapterSpec, Method};
use crate::gpu::Gpu;
use crate::model::ModelConfig;

/// The estimate, in bytes, by part.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepMemory {
    pub weights: u64,
    pub activations: u64,
    pub adapters: u64,
    /// The largest single buffer (checked against the device's buffer-size limit).
    pub largest_buffer: u64,
}

impl StepMemory {
    /// The sum, plus 5% and 1 MiB for what the parts leave out (per-dispatch uniforms,
    /// small per-op buffers).
    pub fn total(&self) -> u64 {
        let parts = self.weights + self.activations + self.adapters;
        parts + parts / 20 + (1 << 20)
    }
}

/// (d_out, d_in) of every adapted matrix of one layer.
fn shapes(cfg: &ModelConfig, targets: &[String]) -> Vec<(usize, usize)> {
    let (c, f, q, k) = (
        cfg.hidden_size,
        cfg.intermediate_size,
        cfg.q_dim(),
        cfg.kv_dim(),
    );
    targets
        .iter()
        .map(|t| match t.as_str() {
            "q" => (q, c),
            "k" | "v" => (k, c),
            "o" => (c, q),
            "gate" | "up" => (f, c),
            "down" => (c, f),
            _ => (0, 0),
        })
        .collect()
}

/// Adapter parameters on `targets` (projection names) of every layer.
pub fn adapter_params(cfg: &ModelConfig, spec: &AdapterSpec, targets: &[String]) -> usize {
    let per_layer: usize = shapes(cfg, targets)
        .iter()
        .map(|&(o, i)| spec.param_count(o, i))
        .sum();
    per_layer * cfg.num_layers
}

/// Estimates a training step of `batch` × `seq` tokens on `gpu` (see the module docs).
pub fn estimate_step(
    gpu: &Gpu,
    cfg: &ModelConfig,
    spec: &AdapterSpec,
    targets: &[String],
    batch: usize,
    seq: usize,
    recompute: bool,
) -> StepMemory {
    let n = (batch * seq) as u64;
    let (c, f, q, k, h, l) = (
        cfg.hidden_size as u64,
        cfg.intermediate_size as u64,
        cfg.q_dim() as u64,
        cfg.kv_dim() as u64,
        cfg.num_heads as u64,
        cfg.num_layers as u64,
    );
    let tensors = cfg.expected_tensors();
    let weights: u64 = tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .sum();
    let largest_weight = tensors
        .iter()
        .map(|t| t.shape.iter().product::<usize>() as u64)
        .max()
        .unwrap_or(0);
    let post = if cfg.post_norms { 2 * c } else { 0 };
    let per_layer = n * (5 * c + 2 * q + 2 * k + h + 3 * f + post);
    let kept = if recompute { 1 } else { l };
    let chunk = (cfg.vocab_size as u64).min(8192);
    let activations = (l + 1) * n * c
        + kept * per_layer
        + n * (c + 1)
        + n * chunk
        + n * (3 * c + 3 * f + 2 * q + 2 * k);
    let p = adapter_params(cfg, spec, targets) as u64;
    let shapes = shapes(cfg, targets);
    let scratch: u64 = match spec.method {
        Method::Lora => 4 * 2 * n * spec.rank() as u64 * shapes.len() as u64 * l,
        _ => shapes
            .iter()
            .map(|&(o, i)| scratch_bytes(gpu, spec, n as usize, o, i) as u64)
            .max()
            .unwrap_or(0),
    };
    let largest = largest_weight.max(n * f).max(n * chunk);
    StepMemory {
        weights: 4 * weights,
        activations: 4 * activations,
        adapters: 4 * 5 * p + scratch,
        largest_buffer: 4 * largest,
    }
}

/// Refuses a step that does not fit `budget` bytes (and the device's `max_buffer`
/// bytes per buffer), with what to reduce.
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
        if m.total() > b {
            return Err(crate::Error::Invalid(format!(
                "a training step needs about {:.2} GiB (weights {:.2}, activations {:.2}, \
                 adapters {:.2}), {:.2} GiB is available: {advice}",
                gib(m.total()),
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
