//! A forward-only pass to the mean loss (no gradients): the decoder's graph with the
//! chunked loss and no backward, so the planner lets every layer's activations share
//! the buffers of the layer before. For scoring batches and for timing the base or
//! merged model against training.

use super::builder::{self, Attn, BuildOptions, Head};
use super::compile::{emit, Allocation};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Recorder, Tensor};
use crate::model::transformer::{Adapters, Weights};
use crate::ops::cross_entropy::CrossEntropy;

/// A prepared forward pass on `batch` × `seq` tokens.
pub struct ForwardPass {
    pub batch: usize,
    pub seq: usize,
    ids: Tensor,
    targets: Tensor,
    loss: Tensor,
    vocab: usize,
    pub dispatches: Vec<Dispatch>,
}

impl ForwardPass {
    /// Prepares the pass over `weights`, through `adapters` when given (unmerged).
    pub fn new(
        gpu: &Gpu,
        weights: &Weights,
        adapters: Option<&Adapters>,
        batch: usize,
        seq: usize,
        ce_chunk: usize,
    ) -> Result<ForwardPass> {
        if batch == 0 || seq == 0 {
            return Err(Error::Invalid(format!(
                "batch {batch} × sequence {seq} must be positive"
            )));
        }
        let cfg = &weights.config;
        let o = BuildOptions {
            batch,
            seq,
            targets: adapters.map(|a| a.targets.clone()).unwrap_or_default(),
            attn: Attn::Train,
            head: Head::Loss {
                ce: CrossEntropy {
                    chunk: ce_chunk.max(1),
                    softcap: cfg.final_logit_softcapping,
                },
                loss_rows: None,
            },
            adapter_scratch: None,
        };
        let g = builder::decoder(gpu, cfg, &o);
        let alloc = Allocation::new(gpu, &g)?;
        let compiled = emit(gpu, &g, &alloc, weights, adapters, &[])?;
        Ok(ForwardPass {
            batch,
            seq,
            ids: alloc.get(&g, "ids")?,
            targets: alloc.get(&g, "targets")?,
            loss: alloc.get(&g, "loss")?,
            vocab: cfg.vocab_size,
            dispatches: compiled.dispatches,
        })
    }

    /// The mean loss of `tokens` [batch·seq] against `targets` (ids ≥ V are ignored).
    pub fn loss(&self, gpu: &Gpu, tokens: &[u32], targets: &[u32]) -> Result<f32> {
        write_batch(
            gpu,
            (&self.ids, &self.targets),
            (self.batch, self.seq),
            self.vocab,
            tokens,
            targets,
        )?;
        let mut rec = Recorder::new();
        rec.run_all(&self.dispatches);
        gpu.run(&rec)?;
        Ok(gpu.download(&self.loss)?[0])
    }
}

/// Checks a batch (`tokens`, `targets` of batch × seq ids, tokens below `vocab`) and
/// writes it into the prepared id and target tensors (ids as f32 bit patterns).
pub(crate) fn write_batch(
    gpu: &Gpu,
    (ids, tgt): (&Tensor, &Tensor),
    (batch, seq): (usize, usize),
    vocab: usize,
    tokens: &[u32],
    targets: &[u32],
) -> Result<()> {
    let n = batch * seq;
    if tokens.len() != n || targets.len() != n {
        return Err(Error::Invalid(format!(
            "{} tokens and {} targets for a {batch}×{seq} batch",
            tokens.len(),
            targets.len()
        )));
    }
    if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
        return Err(Error::Invalid(format!(
            "token id {bad} ≥ vocabulary {vocab}"
        )));
    }
    let bits = |v: &[u32]| v.iter().map(|&i| f32::from_bits(i)).collect::<Vec<f32>>();
    gpu.write(ids, &bits(tokens))?;
    gpu.write(tgt, &bits(targets))
}
