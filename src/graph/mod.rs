//! The training graph of a decoder with adapters: forward to the chunked cross-entropy
//! loss, reverse-mode backward through exactly the ops on the path to adapter
//! parameters, and the AdamW update — all prepared once (buffers, pipelines, bind
//! groups) and replayed as one submit per step.
//!
//! Reverse mode, per layer l from the top (dres = ∂L/∂x_{l+1} on entry, ∂L/∂x_l on exit):
//!
//! ```text
//! dd   = rmsnorm'(d; dres) (post-norm) or dres       dm = dd·W'down      (+ dA, dB)
//! dg, du = glu'(g, u; dm)                             dh2 = dg·W'gate + du·W'up
//! dres += rmsnorm'(xmid; dh2)
//! da   = rmsnorm'(a; dres) or dres                    datt = da·W'o
//! dq, dk, dv = attention'(q, k, v, att, lse; datt);   dq, dk ← rope⁻¹
//! dh1  = dq·W'q + dk·W'k + dv·W'v                     dres += rmsnorm'(x_l; dh1)
//! ```
//!
//! Frozen weights get no gradient buffers; a product whose result nothing below needs is
//! not recorded (layer 0 stops at its lowest adapted projection). Gradient scratch is
//! shared by all layers, and its buffers are assigned by liveness ([`plan`],
//! [`step_scratch`]); the loss's logits chunk takes a room there too, since nothing in
//! it is live during the forward. The adapted matrices share one
//! [`GradScratch`] for the gradient kernels' partials and LoRA's U. With
//! `recompute`, layer activations are one shared set: each layer's forward is recorded
//! again right before its backward (gradient checkpointing; only the residual stream is
//! kept per layer).

pub mod forward;
pub mod memory;
pub mod plan;
mod step_scratch;
pub(crate) mod uniforms;

use crate::adapters::grad::GradScratch;
use crate::adapters::AdapterSpec;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Recorder, Tensor};
use crate::loaders::Checkpoint;
use crate::model::transformer::{embed, layer_forward, Adapters, AttnMode, LayerActs, Weights};
use crate::ops::adamw::{AdamW, Optimizer};
use crate::ops::attention;
use crate::ops::cross_entropy::{self, CrossEntropy};
use crate::ops::elementwise::fill;
use crate::ops::embedding;
use crate::ops::gemm::matmul_nn;
use crate::ops::{activation, rmsnorm, rope};
use plan::Planner;

/// A target id that is ignored by the loss (any id ≥ V is).
pub const IGNORE: u32 = u32::MAX;

/// Training options.
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub adamw: AdamW,
    /// Clip the global gradient norm to this value.
    pub max_grad_norm: Option<f32>,
    /// Per-layer activation recomputation (gradient checkpointing).
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
    /// forward + loss
    eval_pass: Vec<Dispatch>,
    /// grad_a = grad_b = 0 for every adapter
    zero_grads: Vec<Dispatch>,
    /// forward + loss + backward, accumulated (+=) into the adapter gradients
    grad_pass: Vec<Dispatch>,
    /// Bytes of gradient scratch after liveness planning, and before.
    pub scratch_bytes: (u64, u64),
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

/// What the backward of one layer must produce.
struct Needs {
    /// ∂L/∂x_l for the layer below.
    input: bool,
    /// the attention half at all (dres through the MLP's norm)
    attn: bool,
    /// ∂L/∂att (for q, k, v adapters or the layers below)
    qkv: bool,
    /// ∂L/∂m (for gate/up adapters or anything below)
    mlp_inner: bool,
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
        let (n, c, layers) = (batch * seq, cfg.hidden_size, cfg.num_layers);
        let ids = gpu.zeros(&[n])?;
        let tgt = gpu.zeros(&[n])?;
        let loss = gpu.zeros(&[1])?;
        let xs: Vec<Tensor> = (0..=layers)
            .map(|_| gpu.zeros(&[n, c]))
            .collect::<Result<_>>()?;
        let acts: Vec<LayerActs> = (0..if opts.recompute { 1 } else { layers })
            .map(|_| LayerActs::new(gpu, &cfg, n))
            .collect::<Result<_>>()?;
        let act = |l: usize| &acts[if opts.recompute { 0 } else { l }];
        let norm = weights.norm();
        let ce = CrossEntropy {
            chunk: opts.ce_chunk.max(1),
            softcap: cfg.final_logit_softcapping,
        };
        let loss_rows = match opts.loss_rows {
            Some(k) if k < n => Some(LossRows {
                k: k.max(1),
                rows: gpu.zeros(&[k.max(1)])?,
                targets: gpu.zeros(&[k.max(1)])?,
            }),
            _ => None,
        };
        let ce_rows = loss_rows.as_ref().map_or(n, |g| g.k);

        // Gradient scratch: every buffer's live range over the backward's steps, then
        // one shared buffer per class of non-overlapping ranges.
        let mut planner = Planner::new();
        let logits_len = cross_entropy::scratch_len(gpu, &ce, ce_rows, c, cfg.vocab_size);
        let slot = step_scratch::declare(&mut planner, &cfg, n, logits_len);
        let scratch = planner.allocate(gpu)?;
        let scratch_bytes = (planner.planned_bytes(), planner.unplanned_bytes());
        let logits = scratch[slot.logits].clone();
        let (f, qd, kvd) = (cfg.intermediate_size, cfg.q_dim(), cfg.kv_dim());
        let t = |id: usize, cols: usize| -> Result<Tensor> { scratch[id].reshape(&[n, cols]) };
        let (dres, dhf, ddn, dm, dg, du) = (
            t(slot.dres, c)?,
            t(slot.dhf, c)?,
            t(slot.dd, c)?,
            t(slot.dm, f)?,
            t(slot.dg, f)?,
            t(slot.du, f)?,
        );
        let (dh2, da, datt, dq, dk, dv, dh1) = (
            t(slot.dh2, c)?,
            t(slot.da, c)?,
            t(slot.datt, qd)?,
            t(slot.dq, qd)?,
            t(slot.dk, kvd)?,
            t(slot.dv, kvd)?,
            t(slot.dh1, c)?,
        );

        // One room for every adapted matrix's intermediates, the forward's included.
        let grad_scratch = GradScratch::new(
            gpu,
            adapters
                .iter()
                .map(|(_, ad)| (&ad.spec, n, ad.d_out, ad.d_in)),
        )?;
        for layer in adapters.layers.iter_mut() {
            for ad in layer.values_mut() {
                ad.share_scratch(&grad_scratch);
            }
        }

        let mut fwd = Vec::with_capacity(layers);
        for l in 0..layers {
            fwd.push(layer_forward(
                gpu,
                &weights,
                Some(&adapters),
                l,
                batch,
                seq,
                &xs[l],
                act(l),
                &xs[l + 1],
                AttnMode::Train,
            )?);
        }
        let hf = gpu.zeros(&[n, c])?;
        // The loss's input: every position's hidden state, or the gathered ones.
        let (ce_h, ce_t) = match &loss_rows {
            Some(g) => (gpu.zeros(&[g.k, c])?, g.targets.clone()),
            None => (hf.clone(), tgt.clone()),
        };
        let lse = gpu.zeros(&[ce_rows])?;
        let mut eval_pass = embed(gpu, &weights, &ids, &xs[0])?;
        fwd.iter().for_each(|f| eval_pass.extend(f.iter().cloned()));
        eval_pass.extend(rmsnorm::forward(
            gpu,
            &norm,
            &xs[layers],
            &weights.final_norm,
            &hf,
        )?);
        if let Some(g) = &loss_rows {
            eval_pass.extend(embedding::forward(gpu, &hf, &g.rows, &ce_h, 1.0)?);
        }
        eval_pass.extend(cross_entropy::forward_with(
            gpu,
            &ce,
            &ce_h,
            &weights.lm_head,
            &ce_t,
            &loss,
            &lse,
            Some(&logits),
        )?);

        let mut zero_grads = Vec::new();
        for (_, ad) in adapters.iter() {
            zero_grads.extend(fill(gpu, 0.0, &ad.grad_a)?);
            zero_grads.extend(fill(gpu, 0.0, &ad.grad_b)?);
        }
        let mut grad_pass = eval_pass.clone();
        match &loss_rows {
            Some(g) => {
                let dh = gpu.zeros(&[g.k, c])?;
                grad_pass.extend(cross_entropy::backward_with(
                    gpu,
                    &ce,
                    &ce_h,
                    &weights.lm_head,
                    &ce_t,
                    &lse,
                    &dh,
                    1.0,
                    Some(&logits),
                )?);
                grad_pass.extend(fill(gpu, 0.0, &dhf)?);
                grad_pass.extend(embedding::scatter(gpu, &dh, &g.rows, &dhf)?);
            }
            None => grad_pass.extend(cross_entropy::backward_with(
                gpu,
                &ce,
                &hf,
                &weights.lm_head,
                &tgt,
                &lse,
                &dhf,
                1.0,
                Some(&logits),
            )?),
        }
        grad_pass.extend(rmsnorm::backward(
            gpu,
            &norm,
            &xs[layers],
            &weights.final_norm,
            &dhf,
            &dres,
            false,
        )?);
        let has = |p: &str| adapters.has(p);
        let attn_adapted = ["q", "k", "v", "o"].iter().any(|p| has(p));
        let qkv_adapted = ["q", "k", "v"].iter().any(|p| has(p));
        for l in (0..layers).rev() {
            let needs = Needs {
                input: l > 0,
                attn: l > 0 || attn_adapted,
                qkv: l > 0 || qkv_adapted,
                mlp_inner: l > 0 || attn_adapted || has("gate") || has("up"),
            };
            if opts.recompute && l + 1 != layers {
                grad_pass.extend(fwd[l].iter().cloned());
            }
            let bufs = Scratch {
                dres: &dres,
                dd: &ddn,
                dm: &dm,
                dg: &dg,
                du: &du,
                dh2: &dh2,
                da: &da,
                datt: &datt,
                dq: &dq,
                dk: &dk,
                dv: &dv,
                dh1: &dh1,
                grads: &grad_scratch,
            };
            grad_pass.extend(layer_backward(
                gpu,
                &weights,
                &adapters,
                l,
                batch,
                seq,
                &xs[l],
                act(l),
                &bufs,
                &needs,
            )?);
        }

        let mut params = Vec::new();
        for (_, ad) in adapters.iter() {
            params.push((&ad.a, &ad.grad_a));
            params.push((&ad.b, &ad.grad_b));
        }
        let optimizer = Optimizer::new(gpu, opts.adamw, &params, opts.max_grad_norm)?;
        Ok(Trainer {
            weights,
            adapters,
            batch,
            seq,
            ids,
            targets: tgt,
            loss,
            optimizer,
            steps: 0,
            eval_pass,
            zero_grads,
            grad_pass,
            scratch_bytes,
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
        rec.run_all(&self.grad_pass);
        rec.run_all(self.optimizer.dispatches());
        gpu.submit(&rec)?;
        self.steps += 1;
        if read_loss {
            Ok(Some(gpu.download(&self.loss)?[0]))
        } else {
            Ok(None)
        }
    }

    /// Forward and backward only: the loss, with every adapter's grad_a / grad_b holding
    /// its gradient (no update).
    pub fn gradients(&mut self, gpu: &Gpu, tokens: &[u32], targets: &[u32]) -> Result<f32> {
        self.load(gpu, tokens, targets)?;
        let mut rec = Recorder::new();
        rec.run_all(&self.zero_grads);
        rec.run_all(&self.grad_pass);
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
        rec.run_all(&self.grad_pass);
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
        rec.run_all(&self.eval_pass);
        gpu.run(&rec)?;
        Ok(gpu.download(&self.loss)?[0])
    }

    /// Diagnostics: runs the forward + backward one dispatch per submit and returns the
    /// wall time per kernel entry point, largest first (tokens and targets as last
    /// loaded). Slow; for finding the op that dominates a step.
    pub fn profile(&self, gpu: &Gpu) -> Result<Vec<(&'static str, usize, f64)>> {
        let mut by: Vec<(&'static str, usize, f64)> = Vec::new();
        for d in &self.grad_pass {
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

/// Shared gradient scratch, [N, ·] each.
struct Scratch<'a> {
    dres: &'a Tensor,
    dd: &'a Tensor,
    dm: &'a Tensor,
    dg: &'a Tensor,
    du: &'a Tensor,
    dh2: &'a Tensor,
    da: &'a Tensor,
    datt: &'a Tensor,
    dq: &'a Tensor,
    dk: &'a Tensor,
    dv: &'a Tensor,
    dh1: &'a Tensor,
    /// The adapter-gradient kernels' partial slots, one room for every matrix.
    grads: &'a GradScratch,
}

/// dx (+)= dy·W' for projection `p` of layer `l`, and its adapter's gradients. `dx` is
/// None when nothing below needs it; `first` overwrites dx instead of adding.
#[allow(clippy::too_many_arguments)]
fn linear_backward(
    gpu: &Gpu,
    w: &Weights,
    adapters: &Adapters,
    grads: &GradScratch,
    l: usize,
    p: &str,
    x: &Tensor,
    dy: &Tensor,
    dx: Option<&Tensor>,
    first: bool,
) -> Result<Vec<Dispatch>> {
    let w0 = w.layers[l].projection(p)?;
    match adapters.get(l, p) {
        Some(ad) => {
            let mut ds = Vec::new();
            if let (Some(dx), true) = (dx, first) {
                ds.extend(fill(gpu, 0.0, dx)?);
            }
            ds.extend(ad.backward(gpu, w0, x, dy, dx, Some(grads))?);
            Ok(ds)
        }
        None => match dx {
            Some(dx) => matmul_nn(gpu, dy, w0, dx, if first { 0.0 } else { 1.0 }),
            None => Ok(Vec::new()),
        },
    }
}

#[allow(clippy::too_many_arguments)]
fn layer_backward(
    gpu: &Gpu,
    w: &Weights,
    adapters: &Adapters,
    l: usize,
    batch: usize,
    seq: usize,
    x: &Tensor,
    acts: &LayerActs,
    s: &Scratch,
    needs: &Needs,
) -> Result<Vec<Dispatch>> {
    let cfg = &w.config;
    let lw = &w.layers[l];
    let norm = w.norm();
    let mut ds = Vec::new();
    // MLP half.
    let dd = match &lw.post_mlp_norm {
        Some(pn) => {
            ds.extend(rmsnorm::backward(
                gpu, &norm, &acts.d, pn, s.dres, s.dd, false,
            )?);
            s.dd
        }
        None => s.dres,
    };
    let inner = needs.mlp_inner;
    ds.extend(linear_backward(
        gpu,
        w,
        adapters,
        s.grads,
        l,
        "down",
        &acts.m,
        dd,
        inner.then_some(s.dm),
        true,
    )?);
    if !inner {
        return Ok(ds);
    }
    ds.extend(activation::glu_backward(
        gpu,
        cfg.hidden_activation,
        &acts.g,
        &acts.u,
        s.dm,
        s.dg,
        s.du,
    )?);
    let dh2 = needs.attn.then_some(s.dh2);
    ds.extend(linear_backward(
        gpu, w, adapters, s.grads, l, "gate", &acts.h2, s.dg, dh2, true,
    )?);
    ds.extend(linear_backward(
        gpu, w, adapters, s.grads, l, "up", &acts.h2, s.du, dh2, false,
    )?);
    if !needs.attn {
        return Ok(ds);
    }
    ds.extend(rmsnorm::backward(
        gpu,
        &norm,
        &acts.xmid,
        &lw.mlp_norm,
        s.dh2,
        s.dres,
        true,
    )?);
    // Attention half.
    let da = match &lw.post_attn_norm {
        Some(pn) => {
            ds.extend(rmsnorm::backward(
                gpu, &norm, &acts.a, pn, s.dres, s.da, false,
            )?);
            s.da
        }
        None => s.dres,
    };
    let datt = needs.qkv.then_some(s.datt);
    ds.extend(linear_backward(
        gpu, w, adapters, s.grads, l, "o", &acts.att, da, datt, true,
    )?);
    if !needs.qkv {
        return Ok(ds);
    }
    let att = w.attention(l, batch, seq);
    ds.extend(attention::backward(
        gpu, &att, &acts.q, &acts.k, &acts.v, &acts.att, &acts.lse, s.datt, s.dq, s.dk, s.dv,
    )?);
    let hs = cfg.head_dim;
    ds.extend(rope::backward(gpu, s.dq, &w.inv_freq, None, seq, hs)?);
    ds.extend(rope::backward(gpu, s.dk, &w.inv_freq, None, seq, hs)?);
    let dh1 = needs.input.then_some(s.dh1);
    ds.extend(linear_backward(
        gpu, w, adapters, s.grads, l, "q", &acts.h1, s.dq, dh1, true,
    )?);
    ds.extend(linear_backward(
        gpu, w, adapters, s.grads, l, "k", &acts.h1, s.dk, dh1, false,
    )?);
    ds.extend(linear_backward(
        gpu, w, adapters, s.grads, l, "v", &acts.h1, s.dv, dh1, false,
    )?);
    if needs.input {
        ds.extend(rmsnorm::backward(
            gpu,
            &norm,
            x,
            &lw.attn_norm,
            s.dh1,
            s.dres,
            true,
        )?);
    }
    Ok(ds)
}
