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

/// Logits of `rows` positions can be asked of a call of `n` tokens.
fn check_rows(rows: usize, n: usize) -> Result<()> {
    if rows == 0 || rows > n {
        return Err(Error::Invalid(format!(
            "logits of {rows} rows asked of {n} tokens"
        )));
    }
    Ok(())
}

/// The prepared dispatches of one call shape (T new tokens, logits of the last `rows`).
struct Plan {
    seq: usize,
    rows: usize,
    ids: Tensor,
    logits: Tensor,
    dispatches: Vec<Dispatch>,
}

/// Total length (in tokens) of the prepared dispatch lists a session keeps: each list
/// holds activations sized by its length, so past this the lists are dropped (the KV
/// cache is kept) and prepared again as they are needed.
pub const PLAN_ROWS_BUDGET: usize = 4096;

/// A generation session: a KV cache and the prepared decode step.
pub struct Session<'m> {
    model: &'m Model,
    pub cache: KvCache,
    starts: Tensor,
    plans: Vec<Plan>,
    /// The ids at cache positions `0..` as far as they are known (at most `cache.len`
    /// of them are valid), so that [`Session::prefill_reusing`] can keep a shared prefix.
    ids: Vec<u32>,
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
            ids: Vec::new(),
        })
    }

    /// Compiles the forward graph for calls of `seq` new tokens over the caches, ending
    /// in the logits of the last `rows`.
    fn plan(&self, gpu: &Gpu, seq: usize, rows: usize) -> Result<Plan> {
        let (ids, logits, dispatches) =
            compile_cached(gpu, self.model, &self.cache, &self.starts, 1, seq, rows)?;
        Ok(Plan {
            seq,
            rows,
            ids,
            logits,
            dispatches,
        })
    }

    /// Prepares (once) the dispatches for calls of `seq` tokens, so that the first such
    /// call does not pay for pipeline and bind-group creation.
    pub fn prepare(&mut self, gpu: &Gpu, seq: usize, all_logits: bool) -> Result<()> {
        let rows = if all_logits { seq } else { 1 };
        self.plan_index(gpu, seq, rows).map(|_| ())
    }

    fn plan_index(&mut self, gpu: &Gpu, seq: usize, rows: usize) -> Result<usize> {
        if seq == 0 {
            return Err(Error::Invalid("no tokens to run".into()));
        }
        check_rows(rows, seq)?;
        if let Some(i) = self
            .plans
            .iter()
            .position(|p| p.seq == seq && p.rows == rows)
        {
            return Ok(i);
        }
        let held: usize = self.plans.iter().map(|p| p.seq).sum();
        if held + seq > PLAN_ROWS_BUDGET {
            self.plans.clear();
        }
        let p = self.plan(gpu, seq, rows)?;
        self.plans.push(p);
        Ok(self.plans.len() - 1)
    }

    /// Runs `tokens` at the next positions and returns their logits: [T, V] with
    /// `all_logits`, else the last row's \[V\]. Plans are prepared once per call shape.
    pub fn forward(&mut self, gpu: &Gpu, tokens: &[u32], all_logits: bool) -> Result<Vec<f32>> {
        let rows = if all_logits { tokens.len() } else { 1 };
        self.forward_rows(gpu, tokens, rows)
    }

    /// Runs `tokens` at the next positions and returns the logits of the last `rows`
    /// of them, [rows, V]; only those rows go through the LM head.
    pub fn forward_rows(&mut self, gpu: &Gpu, tokens: &[u32], rows: usize) -> Result<Vec<f32>> {
        let logits = self.submit(gpu, tokens, rows)?;
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
        let rows = if all_logits { tokens.len() } else { 1 };
        let logits = self.submit(gpu, tokens, rows)?;
        gpu.download_async(&logits).await
    }

    /// Writes `tokens`, submits their plan and returns the tensor its logits land in.
    fn submit(&mut self, gpu: &Gpu, tokens: &[u32], rows: usize) -> Result<Tensor> {
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
        let idx = self.plan_index(gpu, t, rows)?;
        let plan = &self.plans[idx];
        let bits: Vec<f32> = tokens.iter().map(|&i| f32::from_bits(i)).collect();
        gpu.write(&plan.ids, &bits)?;
        gpu.write(&self.starts, &[f32::from_bits(self.cache.len as u32)])?;
        let mut rec = Recorder::new();
        rec.run_all(&plan.dispatches);
        self.ids.truncate(self.cache.len);
        gpu.run(&rec)?;
        if self.ids.len() == self.cache.len {
            self.ids.extend_from_slice(tokens);
        }
        self.cache.len += t;
        Ok(plan.logits.clone())
    }

    /// Runs `tokens` in pieces of at most `chunk` and returns the last position's logits.
    /// Each piece length has its own prepared plan, so prompts of many lengths (an
    /// evaluation set) share at most `chunk` plans instead of one per length, and the
    /// cost of creating pipelines and bind groups is paid once.
    pub fn prefill(&mut self, gpu: &Gpu, tokens: &[u32], chunk: usize) -> Result<Vec<f32>> {
        self.prefill_rows(gpu, tokens, 1, chunk)
    }

    /// [`Session::prefill`] returning the logits of the last `rows` positions [rows, V]
    /// (the last piece is made at least `rows` long, so one call computes them all).
    pub fn prefill_rows(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        rows: usize,
        chunk: usize,
    ) -> Result<Vec<f32>> {
        let n = tokens.len();
        check_rows(rows, n)?;
        let chunk = chunk.max(1);
        let last = ((n - 1) % chunk + 1).max(rows);
        for piece in tokens[..n - last].chunks(chunk) {
            self.submit(gpu, piece, 1)?;
        }
        self.forward_rows(gpu, &tokens[n - last..], rows)
    }

    /// Runs the whole sequence `tokens` from position 0 (as [`Session::reset`] then
    /// [`Session::prefill_rows`] would) and returns the logits of its last `rows`
    /// positions, but keeps the cached positions the sequence before shares with it:
    /// only `tokens[p..]` runs, p the common prefix's length (at most len − rows, so
    /// that the asked logits are computed). Prompts of one evaluation set share their
    /// chat template and instruction, often half their tokens. A position's keys and
    /// values depend only on the ids up to it, so the kept ones are those a full prefill
    /// would write; the logits agree with it up to the rounding of other piece lengths.
    pub fn prefill_reusing(
        &mut self,
        gpu: &Gpu,
        tokens: &[u32],
        rows: usize,
        chunk: usize,
    ) -> Result<Vec<f32>> {
        check_rows(rows, tokens.len())?;
        let keep = self.shared_prefix(tokens).min(tokens.len() - rows);
        self.rewind(keep);
        self.prefill_rows(gpu, &tokens[keep..], rows, chunk)
    }

    /// How many leading ids of `tokens` the cache holds at the same positions (what
    /// [`Session::prefill_reusing`] keeps, but for the last token, which it always runs).
    pub fn shared_prefix(&self, tokens: &[u32]) -> usize {
        let known = &self.ids[..self.ids.len().min(self.cache.len)];
        known.iter().zip(tokens).take_while(|(a, b)| a == b).count()
    }

    /// Forgets the positions from `len` on (their cache entries are overwritten by the
    /// next call).
    pub fn rewind(&mut self, len: usize) {
        self.cache.len = self.cache.len.min(len);
        self.ids.truncate(self.cache.len);
    }

    /// The vocabulary size (the width of a logits row).
    pub fn vocab(&self) -> usize {
        self.model.weights.config.vocab_size
    }

    /// Forgets the cached positions (the caches are overwritten from position 0).
    pub fn reset(&mut self) {
        self.rewind(0);
    }
}
