//! The uniform buffers of a training step's prepared dispatches, counted node by node
//! over the step's graph: one buffer per dispatch, its `Params` rounded up to 16
//! bytes. Small next to a real model's step (about 0.1 MB of 600 MB on SmolLM2), a few
//! percent of a tiny test model's, which is why the estimate counts them at all.
//!
//! An estimate: every GEMM counts as one dispatch (a product over the binding limit, or
//! a dW = dYᵀ·X at a token count that is not a multiple of 4 on the register family,
//! takes two or more), and every sum-of-squares and AdamW kernel as one per tensor.

use crate::adapters::kind::Pass;
use crate::adapters::AdapterSpec;
use crate::gpu::Gpu;
use crate::graph::ir::{Graph, Op, Phase};
use crate::graph::memory::shape;
use crate::graph::TrainOptions;
use crate::ops::cross_entropy::{self, CrossEntropy};

// Bytes of each op's uniform: its Params words rounded up to 4.
/// gemm (13–16 words)
pub(crate) const GEMM: u64 = 64;
/// fused BoHA forward / dx (12 words)
pub(crate) const FUSED: u64 = 48;
/// adapter-gradient kernels and their reduce (17 words)
pub(crate) const GRAD: u64 = 80;
/// rmsnorm, rope, loss, embedding, sum of squares, AdamW (5–8 words)
pub(crate) const SMALL: u64 = 32;
/// attention (9–12 words)
pub(crate) const ATTN: u64 = 48;
/// fill, add, GLU (≤ 4 words)
pub(crate) const ELEM: u64 = 16;

/// Uniform bytes of a [`crate::graph::Trainer`]'s dispatches: each node of its graph
/// `g`, zeroing the adapter gradients, clipping and AdamW (see the module docs).
pub(crate) fn step_uniform_bytes(
    gpu: &Gpu,
    g: &Graph,
    spec: &AdapterSpec,
    opts: &TrainOptions,
) -> u64 {
    let cfg = &g.config;
    let kind = spec.method.kind().kernels();
    let chunks = |ce: &CrossEntropy, rows: usize| -> u64 {
        let logits = cross_entropy::scratch_len(gpu, ce, rows, cfg.hidden_size, cfg.vocab_size);
        cfg.vocab_size.div_ceil((logits / rows.max(1)).max(1)) as u64
    };
    let mut total = 0;
    let mut matrices = 0u64;
    for n in &g.nodes {
        let rows = |v: usize| g.values[v].shape.first().copied().unwrap_or(1);
        total += match &n.op {
            Op::Embed { .. } | Op::RmsNorm { .. } | Op::Rope { .. } => SMALL,
            Op::RmsNormBackward { .. } | Op::RopeBackward { .. } | Op::Gather => SMALL,
            Op::Linear { proj } => {
                let bias = if n.inputs.len() > 2 { GEMM } else { 0 };
                bias + if proj.adapted {
                    if n.phase == Phase::Forward {
                        matrices += 1;
                    }
                    let (d_out, d_in) = shape(cfg, proj.name);
                    kind.uniform_bytes(gpu, spec, rows(n.inputs[0]), d_out, d_in, Pass::Forward)
                } else {
                    GEMM
                }
            }
            Op::LinearBackward { proj } => {
                let dx = !n.outputs.is_empty();
                if proj.adapted {
                    let fill = if dx && !n.accumulate { ELEM } else { 0 };
                    let (d_out, d_in) = shape(cfg, proj.name);
                    let t = rows(n.inputs[0]);
                    fill + kind.uniform_bytes(gpu, spec, t, d_out, d_in, Pass::Backward { dx })
                } else if dx {
                    GEMM
                } else {
                    0
                }
            }
            Op::Attention { .. } | Op::AttentionCached { .. } | Op::CacheWrite { .. } => ATTN,
            Op::AttentionBackward { .. } => 3 * ATTN,
            Op::Glu { .. } | Op::GluBackward { .. } | Op::Add => ELEM,
            Op::Scatter => ELEM + SMALL,
            Op::Rows { .. } => 0,
            Op::Logits { .. } => GEMM,
            Op::Loss { ce } => chunks(ce, rows(n.inputs[0])) * (GEMM + SMALL) + SMALL,
            Op::LossBackward { ce } => SMALL + chunks(ce, rows(n.inputs[0])) * (2 * GEMM + SMALL),
        };
    }
    let zero_grads = 2 * matrices * ELEM;
    let optimizer = 2 * matrices * SMALL
        + if opts.max_grad_norm.is_some() {
            2 * matrices * SMALL + 2 * SMALL
        } else {
            0
        };
    total + zero_grads + optimizer
}
