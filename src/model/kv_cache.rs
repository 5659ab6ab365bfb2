//! Inference with a KV cache: a [`Model`] (weights plus optional unmerged adapters) and a
//! [`Session`] that prefills a prompt and decodes one token at a time.
//!
//! Each layer's cache is [1, Tmax, NKV·HS] for keys and for values; the new tokens of a
//! call sit at positions `len..len + T`, with `len` in a small GPU tensor (`starts`) so
//! that the decode step's dispatch list (T = 1) is prepared once and replayed.

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Recorder, Tensor};
use crate::graph::builder::{self, Attn, BuildOptions, Head};
use crate::graph::compile::{emit, Allocation};
use crate::loaders::Checkpoint;
use crate::model::transformer::{Adapters, Weights};

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

/// Per-layer key and value caches of `slots` sequences ([slots, Tmax, NKV·HS] each).
pub struct KvCache {
    pub k: Vec<Tensor>,
    pub v: Vec<Tensor>,
    /// Tmax
    pub capacity: usize,
    /// Positions filled.
    pub len: usize,
}

impl KvCache {
    /// The caches of one sequence.
    pub fn new(gpu: &Gpu, w: &Weights, capacity: usize) -> Result<KvCache> {
        Self::with_slots(gpu, w, 1, capacity)
    }

    /// The caches of `slots` sequences of `capacity` positions each; `len` counts the
    /// first slot's positions (a [`crate::model::decode_batch::DecodeBatch`] keeps one
    /// length per slot).
    pub fn with_slots(gpu: &Gpu, w: &Weights, slots: usize, capacity: usize) -> Result<KvCache> {
        let kvd = w.config.kv_dim();
        let mut k = Vec::new();
        let mut v = Vec::new();
        for _ in 0..w.config.num_layers {
            k.push(gpu.zeros(&[slots, capacity, kvd])?);
            v.push(gpu.zeros(&[slots, capacity, kvd])?);
        }
        Ok(KvCache {
            k,
            v,
            capacity,
            len: 0,
        })
    }
}

/// Compiles the forward graph of `batch` sequences of `seq` new tokens each over
/// `cache` (whose tensors are [batch, Tmax, NKV·HS]) at the positions in `starts` [batch],
/// ending in the logits of the last `logit_rows` rows. Returns the ids and logits tensors
/// and the dispatch list.
pub(crate) fn compile_cached(
    gpu: &Gpu,
    model: &Model,
    cache: &KvCache,
    starts: &Tensor,
    batch: usize,
    seq: usize,
    logit_rows: usize,
) -> Result<(Tensor, Tensor, Vec<Dispatch>)> {
    let w = &model.weights;
    let adapters = model.adapters.as_ref();
    let o = BuildOptions {
        batch,
        seq,
        targets: adapters.map(|a| a.targets.clone()).unwrap_or_default(),
        attn: Attn::Cached {
            capacity: cache.capacity,
        },
        head: Head::Logits { rows: logit_rows },
        adapter_scratch: None,
    };
    let g = builder::decoder(gpu, &w.config, &o);
    let alloc = Allocation::new(gpu, &g)?;
    let mut caches = vec![("starts".to_string(), starts.clone())];
    for l in 0..w.config.num_layers {
        caches.push((format!("layers.{l}.k_cache"), cache.k[l].clone()));
        caches.push((format!("layers.{l}.v_cache"), cache.v[l].clone()));
    }
    let compiled = emit(gpu, &g, &alloc, w, adapters, &caches)?;
    Ok((
        alloc.get(&g, "ids")?,
        alloc.get(&g, "logits")?,
        compiled.dispatches,
    ))
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

    /// Compiles the forward graph for calls of `seq` new tokens over the caches.
    fn plan(&self, gpu: &Gpu, seq: usize, all_logits: bool) -> Result<Plan> {
        let rows = if all_logits { seq } else { 1 };
        let (ids, logits, dispatches) =
            compile_cached(gpu, self.model, &self.cache, &self.starts, 1, seq, rows)?;
        Ok(Plan {
            seq,
            all_logits,
            ids,
            logits,
            dispatches,
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
        let logits = self.submit(gpu, tokens, all_logits)?;
        gpu.download(&logits)
    }

    /// [`Session::forward`] for callers that cannot block (the browser): the same
    /// submit, then the logits read back through an awaited mapping.
    pub async fn forward_async(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        all_logits: bool,
    ) -> Result<Vec<f32>> {
        let logits = self.submit(gpu, tokens, all_logits)?;
        gpu.download_async(&logits).await
    }

    /// Writes `tokens`, submits their plan and returns the tensor its logits land in.
    fn submit(&mut self, gpu: &Gpu, tokens: &[u32], all_logits: bool) -> Result<Tensor> {
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
        Ok(plan.logits.clone())
    }

    /// Runs `tokens` in pieces of at most `chunk` and returns the last position's logits.
    /// Each piece length has its own prepared plan, so prompts of many lengths (an
    /// evaluation set) share at most `chunk` plans instead of one per length, and the
    /// cost of creating pipelines and bind groups is paid once.
    pub fn prefill(&mut self, gpu: &Gpu, tokens: &[u32], chunk: usize) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::Invalid("no tokens to run".into()));
        }
        let mut last = Vec::new();
        for piece in tokens.chunks(chunk.max(1)) {
            last = self.forward(gpu, piece, false)?;
        }
        Ok(last)
    }

    /// The vocabulary size (the width of a logits row).
    pub fn vocab(&self) -> usize {
        self.model.weights.config.vocab_size
    }

    /// Forgets the cached positions (the caches are overwritten from position 0).
    pub fn reset(&mut self) {
        self.cache.len = 0;
    }
}
