//! A model with trainable adapters and its training step, compiled once from the op
//! graph: the decoder's forward ([`builder`]), the chunked loss, reverse mode from the
//! ops' rules ([`autodiff`]), optionally per-layer recomputation, every intermediate in
//! planned buffers ([`liveness`]); then zeroing the gradients, global-norm clipping and
//! AdamW outside the graph. One submit per step.

use super::autodiff;
use super::builder::{self, Attn, BuildOptions, Head};
use super::compile::{emit, Allocation, Compiled};
use super::forward;
use super::ir::Graph;
use crate::adapters::AdapterSpec;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Recorder, Tensor};
use crate::loaders::Checkpoint;
use crate::model::transformer::{Adapters, Weights};
use crate::model::ModelConfig;
use crate::ops::adamw::{AdamW, Optimizer};
use crate::ops::cross_entropy::CrossEntropy;
use crate::ops::elementwise::fill;

/// A target id that is ignored by the loss (any id ≥ V is).
pub const IGNORE: u32 = u32::MAX;

/// Training options.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub adamw: AdamW,
    /// Clip the global gradient norm to this value.
    pub max_grad_norm: Option<f32>,
    /// Gradient checkpointing: each layer's forward is replayed before its backward,
    /// so only the residual stream is kept between the passes (a planner option, see
    /// [`autodiff::checkpoint`]).
    pub recompute: bool,
    /// Vocabulary columns per cross-entropy chunk.
    pub ce_chunk: usize,
    /// Seed of the adapters' initialisation.
    pub seed: u64,
    /// At most this many positions of a batch carry a loss target: only their hidden
    /// states go through the LM head and the loss (gathered into [k, C], and their
    /// gradients scattered back). With the loss on responses only this is a small part
    /// of batch × seq, and the LM head is the largest matrix of a small model. None (or
    /// ≥ batch × seq): every position.
    pub loss_rows: Option<usize>,
}

impl Default for TrainOptions {
    fn default() -> TrainOptions {
        TrainOptions {
            adamw: AdamW::default(),
            max_grad_norm: Some(1.0),
            recompute: false,
            ce_chunk: 8192,
            seed: 0,
            loss_rows: None,
        }
    }
}

/// The training graph of `batch` × `seq` tokens with `spec` adapters on `targets`
/// (projection names, comma lists or "all"): forward, loss and backward (with per-layer
/// recomputation when `opts.recompute`).
pub fn train_graph(
    gpu: &Gpu,
    cfg: &ModelConfig,
    spec: &AdapterSpec,
    targets: &[String],
    batch: usize,
    seq: usize,
    opts: &TrainOptions,
) -> Result<Graph> {
    let names: Vec<&str> = targets.iter().map(String::as_str).collect();
    let o = BuildOptions {
        batch,
        seq,
        targets: Adapters::parse_targets(&names)?,
        attn: Attn::Train,
        head: Head::Loss {
            ce: CrossEntropy {
                chunk: opts.ce_chunk.max(1),
                softcap: cfg.final_logit_softcapping,
            },
            loss_rows: opts.loss_rows,
        },
        adapter_scratch: Some(*spec),
    };
    let mut g = builder::decoder(gpu, cfg, &o);
    autodiff::differentiate(&mut g)?;
    if opts.recompute {
        autodiff::checkpoint(&mut g);
    }
    Ok(g)
}

/// A model with trainable adapters and its prepared training step.
pub struct Trainer {
    pub weights: Weights,
    pub adapters: Adapters,
    batch: usize,
    seq: usize,
    ids: Tensor,
    targets: Tensor,
    loss: Tensor,
    optimizer: Optimizer,
    steps: u32,
    /// The step's graph, its buffers and its dispatches (forward nodes first).
    pub graph: Graph,
    pub alloc: Allocation,
    compiled: Compiled,
    /// How many of the graph's first nodes are the forward and the loss.
    forward_nodes: usize,
    /// grad_a = grad_b = 0 for every adapter
    zero_grads: Vec<Dispatch>,
    /// The positions that go through the loss, when gathered (see
    /// [`TrainOptions::loss_rows`]).
    loss_rows: Option<LossRows>,
}

/// The gathered loss positions: `rows` [k] (indices into batch × seq, u32::MAX for
/// unused slots) and their targets [k].
struct LossRows {
    k: usize,
    rows: Tensor,
    targets: Tensor,
}

impl Trainer {
    /// Uploads `ck`, attaches fresh adapters (`spec`) to `targets` (projection names or
    /// "all") of every layer, and prepares a step on `batch` sequences of `seq` tokens.
    pub fn new(
        gpu: &Gpu,
        ck: &Checkpoint,
        spec: AdapterSpec,
        targets: &[&str],
        batch: usize,
        seq: usize,
        opts: TrainOptions,
    ) -> Result<Trainer> {
        let weights = Weights::upload(gpu, ck)?;
        let adapters = Adapters::new(gpu, &weights, spec, targets, opts.seed)?;
        Trainer::from_parts(gpu, weights, adapters, batch, seq, opts)
    }

    /// [`Trainer::new`] for callers that cannot block (the browser): ABBA's
    /// initialisation reads W0 back, which there must be awaited.
    pub async fn new_async(
        gpu: &Gpu,
        ck: &Checkpoint,
        spec: AdapterSpec,
        targets: &[&str],
        batch: usize,
        seq: usize,
        opts: TrainOptions,
    ) -> Result<Trainer> {
        let weights = Weights::upload(gpu, ck)?;
        let adapters = Adapters::new_async(gpu, &weights, spec, targets, opts.seed).await?;
        Trainer::from_parts(gpu, weights, adapters, batch, seq, opts)
    }

    /// Prepares a step on `batch` × `seq` tokens for given weights and adapters (fresh,
    /// or loaded to continue training them).
    pub fn from_parts(
        gpu: &Gpu,
        weights: Weights,
        mut adapters: Adapters,
        batch: usize,
        seq: usize,
        opts: TrainOptions,
    ) -> Result<Trainer> {
        if batch == 0 || seq == 0 {
            return Err(Error::Invalid(format!(
                "batch {batch} × sequence {seq} must be positive"
            )));
        }
        opts.adamw.validate()?;
        let cfg = weights.config.clone();
        let graph = train_graph(
            gpu,
            &cfg,
            &adapters.spec,
            &adapters.targets,
            batch,
            seq,
            &opts,
        )?;
        let alloc = Allocation::new(gpu, &graph)?;
        // One room for every adapted matrix's intermediates, the forward's included.
        if let Some(room) = alloc.adapter_scratch(&graph) {
            for layer in adapters.layers.iter_mut() {
                for ad in layer.values_mut() {
                    ad.share_scratch(&room);
                }
            }
        }
        let compiled = emit(gpu, &graph, &alloc, &weights, Some(&adapters), &[])?;
        let forward_nodes = graph
            .nodes
            .iter()
            .take_while(|n| n.phase == super::ir::Phase::Forward)
            .count();
        let loss_rows = match (
            alloc.get(&graph, "loss_rows"),
            alloc.get(&graph, "loss_targets"),
        ) {
            (Ok(rows), Ok(targets)) => Some(LossRows {
                k: rows.len(),
                rows,
                targets,
            }),
            _ => None,
        };
        let mut zero_grads = Vec::new();
        for (_, ad) in adapters.iter() {
            zero_grads.extend(fill(gpu, 0.0, &ad.grad_a)?);
            zero_grads.extend(fill(gpu, 0.0, &ad.grad_b)?);
        }
        let mut params = Vec::new();
        for (_, ad) in adapters.iter() {
            params.push((&ad.a, &ad.grad_a));
            params.push((&ad.b, &ad.grad_b));
        }
        let optimizer = Optimizer::new(gpu, opts.adamw, &params, opts.max_grad_norm)?;
        Ok(Trainer {
            ids: alloc.get(&graph, "ids")?,
            targets: alloc.get(&graph, "targets")?,
            loss: alloc.get(&graph, "loss")?,
            weights,
            adapters,
            batch,
            seq,
            optimizer,
            steps: 0,
            graph,
            alloc,
            compiled,
            forward_nodes,
            zero_grads,
            loss_rows,
        })
    }

    /// (batch, seq) of a step.
    pub fn shape(&self) -> (usize, usize) {
        (self.batch, self.seq)
    }

    /// Steps taken.
    pub fn steps(&self) -> u32 {
        self.steps
    }

    fn load(&self, gpu: &Gpu, tokens: &[u32], targets: &[u32]) -> Result<()> {
        forward::write_batch(
            gpu,
            (&self.ids, &self.targets),
            (self.batch, self.seq),
            self.weights.config.vocab_size,
            tokens,
            targets,
        )?;
        if let Some(g) = &self.loss_rows {
            let vocab = self.weights.config.vocab_size;
            let kept: Vec<usize> = (0..targets.len())
                .filter(|&i| (targets[i] as usize) < vocab)
                .collect();
            if kept.len() > g.k {
                return Err(Error::Invalid(format!(
                    "the batch has {} positions with a loss target; the step was prepared \
                     for at most {}",
                    kept.len(),
                    g.k
                )));
            }
            let mut rows = vec![f32::from_bits(u32::MAX); g.k];
            let mut tk = vec![f32::from_bits(IGNORE); g.k];
            for (slot, &i) in kept.iter().enumerate() {
                rows[slot] = f32::from_bits(i as u32);
                tk[slot] = f32::from_bits(targets[i]);
            }
            gpu.write(&g.rows, &rows)?;
            gpu.write(&g.targets, &tk)?;
        }
        Ok(())
    }

    /// One AdamW step at learning rate `lr` on `tokens` [batch·seq] with `targets`
    /// (ids ≥ V, e.g. [`IGNORE`], are left out of the loss): one submit. The mean loss
    /// (before the update) is read back only with `read_loss`.
    pub fn step(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        targets: &[u32],
        lr: f32,
        read_loss: bool,
    ) -> Result<Option<f32>> {
        self.load(gpu, tokens, targets)?;
        self.optimizer.set_step(gpu, self.steps + 1, lr, 1.0)?;
        let mut rec = Recorder::new();
        rec.run_all(&self.zero_grads);
        rec.run_all(&self.compiled.dispatches);
        rec.run_all(self.optimizer.dispatches());
        gpu.submit(&rec)?;
        self.steps += 1;
        if read_loss {
            Ok(Some(gpu.download(&self.loss)?[0]))
        } else {
            Ok(None)
        }
    }

    /// [`Trainer::step`] for callers that cannot block (the browser): the same submit,
    /// then the mean loss (before the update) read back through an awaited mapping.
    /// Between two calls the caller's event loop runs, which keeps a page responsive.
    pub async fn step_async(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        targets: &[u32],
        lr: f32,
    ) -> Result<f32> {
        self.step(gpu, tokens, targets, lr, false)?;
        Ok(gpu.download_async(&self.loss).await?[0])
    }

    /// Forward and backward only: the loss, with every adapter's grad_a / grad_b holding
    /// its gradient (no update).
    pub fn gradients(&mut self, gpu: &Gpu, tokens: &[u32], targets: &[u32]) -> Result<f32> {
        self.load(gpu, tokens, targets)?;
        let mut rec = Recorder::new();
        rec.run_all(&self.zero_grads);
        rec.run_all(&self.compiled.dispatches);
        gpu.run(&rec)?;
        Ok(gpu.download(&self.loss)?[0])
    }

    /// Gradient accumulation, part one: forward and backward on one micro-batch, adding
    /// its gradient of the mean loss to grad_a / grad_b (`zero` first clears them: the
    /// first micro-batch of a step). One submit; the micro-batch's mean loss is read
    /// back only with `read_loss`.
    pub fn accumulate(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        targets: &[u32],
        zero: bool,
        read_loss: bool,
    ) -> Result<Option<f32>> {
        self.load(gpu, tokens, targets)?;
        let mut rec = Recorder::new();
        if zero {
            rec.run_all(&self.zero_grads);
        }
        rec.run_all(&self.compiled.dispatches);
        gpu.submit(&rec)?;
        if read_loss {
            Ok(Some(gpu.download(&self.loss)?[0]))
        } else {
            Ok(None)
        }
    }

    /// Gradient accumulation, part two: one AdamW update from the accumulated gradient
    /// scaled by `grad_scale` (1/k after k micro-batches, for the mean of their losses),
    /// clipped by its global norm when the options say so.
    pub fn apply(&mut self, gpu: &Gpu, lr: f32, grad_scale: f32) -> Result<()> {
        self.optimizer
            .set_step(gpu, self.steps + 1, lr, grad_scale)?;
        let mut rec = Recorder::new();
        rec.run_all(self.optimizer.dispatches());
        gpu.submit(&rec)?;
        self.steps += 1;
        Ok(())
    }

    /// Sets the count of steps taken (AdamW's bias correction depends on it): for a
    /// run resumed from a checkpoint.
    pub fn set_steps(&mut self, steps: u32) {
        self.steps = steps;
    }

    /// AdamW's moment estimates, in the order of [`Trainer::parameters`].
    pub fn optimizer_states(&self) -> &[crate::ops::adamw::AdamState] {
        &self.optimizer.states
    }

    /// Every trainable tensor with a stable name (`layers.{i}.{proj}.A` / `.B`), in the
    /// optimizer's order.
    pub fn parameters(&self) -> Vec<(String, &Tensor)> {
        let mut out = Vec::new();
        for (name, ad) in self.adapters.iter() {
            out.push((format!("{name}.A"), &ad.a));
            out.push((format!("{name}.B"), &ad.b));
        }
        out
    }

    /// The mean loss without gradients.
    pub fn eval_loss(&mut self, gpu: &Gpu, tokens: &[u32], targets: &[u32]) -> Result<f32> {
        self.load(gpu, tokens, targets)?;
        let mut rec = Recorder::new();
        rec.run_all(self.compiled.slice(0..self.forward_nodes));
        gpu.run(&rec)?;
        Ok(gpu.download(&self.loss)?[0])
    }

    /// Diagnostics: runs the forward + backward one dispatch per submit and returns the
    /// wall time per kernel entry point, largest first (tokens and targets as last
    /// loaded). Slow; for finding the op that dominates a step.
    pub fn profile(&self, gpu: &Gpu) -> Result<Vec<(&'static str, usize, f64)>> {
        let mut by: Vec<(&'static str, usize, f64)> = Vec::new();
        for d in &self.compiled.dispatches {
            let mut rec = Recorder::new();
            rec.run(d);
            let t0 = std::time::Instant::now();
            gpu.run(&rec)?;
            let dt = t0.elapsed().as_secs_f64();
            match by.iter_mut().find(|e| e.0 == d.label()) {
                Some(e) => {
                    e.1 += 1;
                    e.2 += dt;
                }
                None => by.push((d.label(), 1, dt)),
            }
        }
        by.sort_by(|a, b| b.2.total_cmp(&a.2));
        Ok(by)
    }

    /// The global gradient norm of the last step (before clipping).
    pub fn grad_norm(&self, gpu: &Gpu) -> Result<f32> {
        self.optimizer.scalars.grad_norm(gpu)
    }
}
