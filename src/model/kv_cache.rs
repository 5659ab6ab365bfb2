//! Inference with a KV cache: a [`Model`] (weights plus optional unmerged adapters) and a
//! [`Session`] that prefills a prompt and decodes one token at a time.
//!
//! Each layer's cache is [1, Tmax, NKV·HS] for keys and for values; the new tokens of a
//! call sit at positions `len..len + T`, with `len` in a small GPU tensor (`starts`) so
//! that the decode step's dispatch list (T = 1) is prepared once and replayed.

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Recorder, Tensor};
use crate::loaders::Checkpoint;
use crate::model::transformer::{embed, layer_forward, Adapters, AttnMode, LayerActs, Weights};
use crate::ops::cross_entropy;
use crate::ops::rmsnorm;

/// A model ready for inference.
pub struct Model {
    pub weights: Weights,
    /// Adapters applied unmerged (None: plain or merged weights).
    pub adapters: Option<Adapters>,
}

impl Model {
    /// Uploads the checkpoint's weights.
    pub fn load(gpu: &Gpu, ck: &Checkpoint) -> Result<Model> {
        Ok(Model {
            weights: Weights::upload(gpu, ck)?,
            adapters: None,
        })
    }

    /// Attaches adapters: unmerged (every projection call runs the adapter) or merged
    /// into new weight tensors.
    pub fn attach(&mut self, gpu: &Gpu, adapters: Adapters, merged: bool) -> Result<()> {
        if merged {
            self.weights.merge(gpu, &adapters)?;
            self.adapters = None;
        } else {
            self.adapters = Some(adapters);
        }
        Ok(())
    }
}

/// Per-layer key and value caches of one sequence.
pub struct KvCache {
    pub k: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Tmax
    pub capacity: usize,
    /// Positions filled.
    pub len: usize,
}

impl KvCache {
    pub fn new(gpu: &Gpu, w: &Weights, capacity: usize) -> Result<KvCache> {
        let kvd = w.config.kv_dim();
        let mut k = Vec::new();
        let mut v = Vec::new();
        for _ in 0..w.config.num_layers {
            k.push(gpu.zeros(&[1, capacity, kvd])?);
            v.push(gpu.zeros(&[1, capacity, kvd])?);
        }
        Ok(KvCache {
            k,
            v,
            capacity,
            len: 0,
        })
    }
}

/// The prepared dispatches of one call shape (T new tokens).
struct Plan {
    seq: usize,
    all_logits: bool,
    ids: Tensor,
    logits: Tensor,
    dispatches: Vec<Dispatch>,
}

/// A generation session: a KV cache and the prepared decode step.
pub struct Session<'m> {
    model: &'m Model,
    pub cache: KvCache,
    starts: Tensor,
    plans: Vec<Plan>,
}

impl<'m> Session<'m> {
    /// A session with room for `capacity` positions.
    pub fn new(gpu: &Gpu, model: &'m Model, capacity: usize) -> Result<Session<'m>> {
        if capacity == 0 {
            return Err(Error::Invalid("the KV cache needs room for a token".into()));
        }
        Ok(Session {
            model,
            cache: KvCache::new(gpu, &model.weights, capacity)?,
            starts: gpu.upload_u32(&[1], &[0])?,
            plans: Vec::new(),
        })
    }

    fn plan(&self, gpu: &Gpu, seq: usize, all_logits: bool) -> Result<Plan> {
        let w = &self.model.weights;
        let cfg = &w.config;
        let c = cfg.hidden_size;
        let ids = gpu.zeros(&[seq])?;
        let x = [gpu.zeros(&[seq, c])?, gpu.zeros(&[seq, c])?];
        let acts = LayerActs::new(gpu, cfg, seq)?;
        let mut ds = embed(gpu, w, &ids, &x[0])?;
        for l in 0..cfg.num_layers {
            let mode = AttnMode::Cached {
                k_cache: &self.cache.k[l],
                v_cache: &self.cache.v[l],
                starts: &self.starts,
            };
            ds.extend(layer_forward(
                gpu,
                w,
                self.model.adapters.as_ref(),
                l,
                1,
                seq,
                &x[l % 2],
                &acts,
                &x[(l + 1) % 2],
                mode,
            )?);
        }
        let last = &x[cfg.num_layers % 2];
        let rows = if all_logits { seq } else { 1 };
        let hin = last.rows(seq - rows, rows)?;
        let hf = gpu.zeros(&[rows, c])?;
        ds.extend(rmsnorm::forward(gpu, &w.norm(), &hin, &w.final_norm, &hf)?);
        let logits = gpu.zeros(&[rows, cfg.vocab_size])?;
        ds.extend(cross_entropy::logits(
            gpu,
            &hf,
            &w.lm_head,
            &logits,
            cfg.final_logit_softcapping,
        )?);
        Ok(Plan {
            seq,
            all_logits,
            ids,
            logits,
            dispatches: ds,
        })
    }

    /// Prepares (once) the dispatches for calls of `seq` tokens, so that the first such
    /// call does not pay for pipeline and bind-group creation.
    pub fn prepare(&mut self, gpu: &Gpu, seq: usize, all_logits: bool) -> Result<()> {
        self.plan_index(gpu, seq, all_logits).map(|_| ())
    }

    fn plan_index(&mut self, gpu: &Gpu, seq: usize, all_logits: bool) -> Result<usize> {
        if seq == 0 {
            return Err(Error::Invalid("no tokens to run".into()));
        }
        if let Some(i) = self
            .plans
            .iter()
            .position(|p| p.seq == seq && p.all_logits == all_logits)
        {
            return Ok(i);
        }
        let p = self.plan(gpu, seq, all_logits)?;
        self.plans.push(p);
        Ok(self.plans.len() - 1)
    }

    /// Runs `tokens` at the next positions and returns their logits: [T, V] with
    /// `all_logits`, else the last row's [V]. Plans are prepared once per (T, all_logits).
    pub fn forward(&mut self, gpu: &Gpu, tokens: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        let t = tokens.len();
        if t == 0 {
            return Err(Error::Invalid("no tokens to run".into()));
        }
        if self.cache.len + t > self.cache.capacity {
            return Err(Error::Invalid(format!(
                "{} positions exceed the KV cache's {}",
                self.cache.len + t,
                self.cache.capacity
            )));
        }
        let v = self.model.weights.config.vocab_size;
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= v) {
            return Err(Error::Invalid(format!("token id {bad} ≥ vocabulary {v}")));
        }
        let idx = self.plan_index(gpu, t, all_logits)?;
        let plan = &self.plans[idx];
        let bits: Vec<f32> = tokens.iter().map(|&i| f32::from_bits(i)).collect();
        gpu.write(&plan.ids, &bits)?;
        gpu.write(&self.starts, &[f32::from_bits(self.cache.len as u32)])?;
        let mut rec = Recorder::new();
        rec.run_all(&plan.dispatches);
        gpu.run(&rec)?;
        self.cache.len += t;
        gpu.download(&plan.logits)
    }

    /// Forgets the cached positions (the caches are overwritten from position 0).
    pub fn reset(&mut self) {
        self.cache.len = 0;
    }
}
