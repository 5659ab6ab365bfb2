//! The uniform buffers of a training step's prepared dispatches, counted op by op as
//! the trainer records them: one buffer per dispatch, its `Params` rounded up to 16
//! bytes. Small next to a real model's step (about 0.1 MB of 600 MB on SmolLM2), a few
//! percent of a tiny test model's, which is why the estimate counts them at all.
//!
//! An estimate: every GEMM counts as one dispatch (a product over the binding limit, or
//! a dW = dYᵀ·X at a token count that is not a multiple of 4 on the register family,
//! takes two or more), and every sum-of-squares and AdamW kernel as one per tensor.

use crate::adapters::kind::Pass;
use crate::adapters::AdapterSpec;
use crate::gpu::Gpu;
use crate::graph::memory::shape;
use crate::graph::TrainOptions;
use crate::model::ModelConfig;

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

/// What the trainer's backward computes through one layer, as `graph::Needs`.
struct LayerNeeds {
    input: bool,
    attn: bool,
    qkv: bool,
    inner: bool,
}

/// Uniform bytes of a [`crate::graph::Trainer`]'s dispatches for `n` tokens, `chunks`
/// vocabulary chunks of the loss and `targets` adapted (see the module docs).
pub(crate) fn step_uniform_bytes(
    gpu: &Gpu,
    cfg: &ModelConfig,
    spec: &AdapterSpec,
    targets: &[String],
    n: usize,
    chunks: usize,
    opts: &TrainOptions,
) -> u64 {
    let has = |p: &str| targets.iter().any(|t| t == p);
    let kind = spec.method.kind().kernels();
    let fwd = |p: &str| {
        if !has(p) {
            return GEMM;
        }
        let (d_out, d_in) = shape(cfg, p);
        kind.uniform_bytes(gpu, spec, n, d_out, d_in, Pass::Forward)
    };
    // dx (+)= dy·W' and the adapter's gradients; `first` overwrites dx (a fill first).
    let bwd = |p: &str, dx: bool, first: bool| -> u64 {
        if !has(p) {
            return if dx { GEMM } else { 0 };
        }
        let fill = if dx && first { ELEM } else { 0 };
        let (d_out, d_in) = shape(cfg, p);
        fill + kind.uniform_bytes(gpu, spec, n, d_out, d_in, Pass::Backward { dx })
    };
    let post = u64::from(cfg.post_norms);

    let layer_fwd = SMALL
        + fwd("q")
        + fwd("k")
        + fwd("v")
        + if cfg.qkv_bias { 3 * GEMM } else { 0 }
        + 2 * SMALL
        + ATTN
        + fwd("o")
        + post * SMALL
        + ELEM
        + SMALL
        + fwd("gate")
        + fwd("up")
        + ELEM
        + fwd("down")
        + post * SMALL
        + ELEM;
    let layer_bwd = |nd: &LayerNeeds| -> u64 {
        let mut b = post * SMALL + bwd("down", nd.inner, true);
        if !nd.inner {
            return b;
        }
        b += ELEM + bwd("gate", nd.attn, true) + bwd("up", nd.attn, false);
        if !nd.attn {
            return b;
        }
        b += SMALL + post * SMALL + bwd("o", nd.qkv, true);
        if !nd.qkv {
            return b;
        }
        b += 3 * ATTN + 2 * SMALL;
        b += bwd("q", nd.input, true) + bwd("k", nd.input, false) + bwd("v", nd.input, false);
        b + if nd.input { SMALL } else { 0 }
    };
    let attn_adapted = ["q", "k", "v", "o"].iter().any(|p| has(p));
    let qkv_adapted = ["q", "k", "v"].iter().any(|p| has(p));
    let layers = cfg.num_layers;
    let backward: u64 = (0..layers)
        .map(|l| {
            layer_bwd(&LayerNeeds {
                input: l > 0,
                attn: l > 0 || attn_adapted,
                qkv: l > 0 || qkv_adapted,
                inner: l > 0 || attn_adapted || has("gate") || has("up"),
            })
        })
        .sum();

    let chunks = chunks as u64;
    let gathered = match opts.loss_rows {
        // gather, then the gradient's fill and scatter
        Some(k) if k < n => 2 * SMALL + ELEM,
        _ => 0,
    };
    let loss = chunks * (GEMM + SMALL) + SMALL + SMALL + chunks * (2 * GEMM + SMALL);
    // embedding, final norm forward and backward
    let ends = 3 * SMALL;
    let matrices = (targets.len() * layers) as u64;
    let zero_grads = 2 * matrices * ELEM;
    let optimizer = 2 * matrices * SMALL
        + if opts.max_grad_norm.is_some() {
            2 * matrices * SMALL + 2 * SMALL
        } else {
            0
        };
    layers as u64 * layer_fwd + backward + loss + gathered + ends + zero_grads + optimizer
}
