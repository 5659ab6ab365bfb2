//! Decoding several sequences at once: a [`DecodeBatch`] holds `B` slots of KV cache and
//! one prepared dispatch list that advances every slot by one token.
//!
//! A step runs the forward graph on N = B rows (one new token per slot, slot b at
//! position len_b): every projection is then a GEMM of B rows instead of B GEMVs, so the
//! frozen weights are read once per step for all slots and the per-dispatch cost is paid
//! once. A prompt is prefilled in an ordinary single-sequence [`Session`] and its cache
//! rows 0..n are copied into a free slot ([`DecodeBatch::load`]); slots are refilled as
//! their sequences end, so a long evaluation set keeps every slot busy.
//!
//! Row b of a step's logits equals what a single-sequence session would give for slot
//! b's sequence up to rounding: the GEMM sums in another order than the GEMV, so greedy
//! decoding may part ways at a near-tie (one batch of 1 reproduces the GEMV path).

use super::kv_cache::{compile_cached, KvCache, Model, Session};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Recorder, Tensor};

/// `B` sequences decoded together, one token each per [`DecodeBatch::step`].
pub struct DecodeBatch {
    cache: KvCache,
    /// Positions filled in each slot.
    lens: Vec<usize>,
    /// `lens` on the GPU (u32 bits), where the step writes and attends.
    starts: Tensor,
    ids: Tensor,
    logits: Tensor,
    dispatches: Vec<Dispatch>,
    vocab: usize,
}

impl DecodeBatch {
    /// `slots` empty sequences of `capacity` positions each, with the decode step
    /// prepared.
    pub fn new(gpu: &Gpu, model: &Model, slots: usize, capacity: usize) -> Result<DecodeBatch> {
        if slots == 0 || capacity == 0 {
            return Err(Error::Invalid(format!(
                "a decode batch needs at least one slot and one position (got {slots} × {capacity})"
            )));
        }
        let cache = KvCache::with_slots(gpu, &model.weights, slots, capacity)?;
        let starts = gpu.upload_u32(&[slots], &vec![0; slots])?;
        let (ids, logits, dispatches) =
            compile_cached(gpu, model, &cache, &starts, slots, 1, slots)?;
        Ok(DecodeBatch {
            cache,
            lens: vec![0; slots],
            starts,
            ids,
            logits,
            dispatches,
            vocab: model.weights.config.vocab_size,
        })
    }

    pub fn slots(&self) -> usize {
        self.lens.len()
    }

    /// Positions of each slot's cache.
    pub fn capacity(&self) -> usize {
        self.cache.capacity
    }

    /// Device bytes of the batch's KV cache (keys and values, every layer).
    pub fn cache_bytes(&self) -> u64 {
        self.cache
            .k
            .iter()
            .chain(&self.cache.v)
            .map(|t| t.bytes())
            .sum()
    }

    /// Positions filled in `slot`.
    pub fn len(&self, slot: usize) -> usize {
        self.lens[slot]
    }

    /// Whether every slot is empty.
    pub fn is_empty(&self) -> bool {
        self.lens.iter().all(|&l| l == 0)
    }

    /// Puts the sequence `session` holds (its filled positions) into `slot`, replacing
    /// what the slot held.
    pub fn load(&mut self, gpu: &Gpu, slot: usize, session: &Session<'_>) -> Result<()> {
        let from = &session.cache;
        if slot >= self.slots() {
            return Err(Error::Invalid(format!(
                "slot {slot} of a {}-slot decode batch",
                self.slots()
            )));
        }
        if from.len > self.cache.capacity || from.k.len() != self.cache.k.len() {
            return Err(Error::Invalid(format!(
                "a {}-position cache of {} layers does not fit a slot of {} positions and {} layers",
                from.len,
                from.k.len(),
                self.cache.capacity,
                self.cache.k.len()
            )));
        }
        if from.len > 0 {
            let row = from.k[0].len() / from.capacity;
            let n = from.len * row;
            let at = slot * self.cache.capacity * row;
            let mut rec = Recorder::new();
            for (src, dst) in from.k.iter().zip(&self.cache.k) {
                rec.copy(&src.view(0, n)?, &dst.view(at, n)?)?;
            }
            for (src, dst) in from.v.iter().zip(&self.cache.v) {
                rec.copy(&src.view(0, n)?, &dst.view(at, n)?)?;
            }
            gpu.run(&rec)?;
        }
        self.lens[slot] = from.len;
        Ok(())
    }

    /// Runs `tokens[b]` at position len_b of every slot b and returns the logits
    /// [B, V]. A slot that is full keeps its length: its row is computed but not cached
    /// (and is meaningless), so idle slots may be stepped along with the busy ones.
    pub fn step(&mut self, gpu: &Gpu, tokens: &[u32]) -> Result<Vec<f32>> {
        if tokens.len() != self.slots() {
            return Err(Error::Invalid(format!(
                "{} tokens for a {}-slot decode batch",
                tokens.len(),
                self.slots()
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(Error::Invalid(format!(
                "token id {bad} ≥ vocabulary {}",
                self.vocab
            )));
        }
        let bits: Vec<f32> = tokens.iter().map(|&i| f32::from_bits(i)).collect();
        let starts: Vec<f32> = self
            .lens
            .iter()
            .map(|&l| f32::from_bits(l as u32))
            .collect();
        gpu.write(&self.ids, &bits)?;
        gpu.write(&self.starts, &starts)?;
        let mut rec = Recorder::new();
        rec.run_all(&self.dispatches);
        gpu.run(&rec)?;
        let cap = self.cache.capacity;
        for l in &mut self.lens {
            *l = (*l + 1).min(cap);
        }
        gpu.download(&self.logits)
    }
}
