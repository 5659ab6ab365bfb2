//! A forward-only pass to the mean loss (no gradients): embeddings, every layer with
//! one shared set of activations and two residual buffers used in turn, the final norm
//! and the chunked cross-entropy. Memory is one layer's activations, not all of them;
//! for scoring batches and for timing the base or merged model against training.

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Recorder, Tensor};
use crate::model::transformer::{embed, layer_forward, Adapters, AttnMode, LayerActs, Weights};
use crate::ops::cross_entropy::{self, CrossEntropy};
use crate::ops::rmsnorm;

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
        let (n, c) = (batch * seq, cfg.hidden_size);
        let ids = gpu.zeros(&[n])?;
        let targets = gpu.zeros(&[n])?;
        let loss = gpu.zeros(&[1])?;
        let xs = [gpu.zeros(&[n, c])?, gpu.zeros(&[n, c])?];
        let acts = LayerActs::new(gpu, cfg, n)?;
        let mut ds = embed(gpu, weights, &ids, &xs[0])?;
        for l in 0..cfg.num_layers {
            let (x, y) = (&xs[l % 2], &xs[(l + 1) % 2]);
            ds.extend(layer_forward(
                gpu,
                weights,
                adapters,
                l,
                batch,
                seq,
                x,
                &acts,
                y,
                AttnMode::Train,
            )?);
        }
        let hf = gpu.zeros(&[n, c])?;
        let lse = gpu.zeros(&[n])?;
        ds.extend(rmsnorm::forward(
            gpu,
            &weights.norm(),
            &xs[cfg.num_layers % 2],
            &weights.final_norm,
            &hf,
        )?);
        let ce = CrossEntropy {
            chunk: ce_chunk.max(1),
            softcap: cfg.final_logit_softcapping,
        };
        ds.extend(cross_entropy::forward(
            gpu,
            &ce,
            &hf,
            &weights.lm_head,
            &targets,
            &loss,
            &lse,
        )?);
        Ok(ForwardPass {
            batch,
            seq,
            ids,
            targets,
            loss,
            vocab: cfg.vocab_size,
            dispatches: ds,
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
