//! `boha bench decode`: greedy decoding of B sequences at once
//! ([`crate::model::decode_batch`]) against decoding one at a time, in one run.
//!
//! For each batch size B, every slot holds the same `prompt_len`-token prompt (random
//! ids, prefilled once and copied in), then `steps` decode steps are timed one by one as
//! an evaluation runs them: write B ids, run the step, read the [B, V] logits back and
//! take each row's argmax. A step's time is the median; tokens/s = B / step time; the
//! speedup is tokens/s over B = 1's from the same run, so a noisy machine moves both.

use std::time::Instant;

use serde::Serialize;

use super::timing::median;
use crate::error::{Error, Result};
use crate::generate::greedy;
use crate::gpu::Gpu;
use crate::loaders::Checkpoint;
use crate::model::decode_batch::DecodeBatch;
use crate::model::kv_cache::{Model, Session};
use crate::rng::Rng;

/// One batch size.
#[derive(Clone, Debug, Serialize)]
pub struct DecodeResult {
    pub batch: usize,
    /// Median wall time of one step (all B tokens), host work included.
    pub step_ms: f64,
    pub tokens_per_s: f64,
    /// tokens_per_s / tokens_per_s at B = 1
    pub speedup: f64,
    /// The batch's KV cache (keys and values, every layer).
    pub cache_bytes: u64,
}

/// The report `boha bench decode --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct DecodeReport {
    pub model: String,
    pub device: String,
    pub prompt_len: usize,
    pub steps: usize,
    pub results: Vec<DecodeResult>,
}

/// Times `steps` decode steps after a `prompt_len`-token prompt at each batch size in
/// `batches` (B = 1 is added first when missing: every speedup is over it).
pub fn bench_decode(
    gpu: &Gpu,
    ck: &Checkpoint,
    model_name: &str,
    batches: &[usize],
    prompt_len: usize,
    steps: usize,
) -> Result<DecodeReport> {
    if prompt_len == 0 || steps < 2 || batches.contains(&0) {
        return Err(Error::Invalid(
            "bench decode needs a prompt of at least 1 token, at least 2 steps (the first \
             warms up) and batch sizes of at least 1"
                .into(),
        ));
    }
    let mut sizes = vec![1];
    sizes.extend(batches.iter().copied().filter(|&b| b != 1));
    let model = Model::load(gpu, ck)?;
    let v = ck.config.vocab_size;
    let capacity = prompt_len + steps + 1;
    let mut rng = Rng::new(0);
    let prompt: Vec<u32> = (0..prompt_len).map(|_| rng.below(v) as u32).collect();
    let mut session = Session::new(gpu, &model, capacity)?;
    let first = greedy(&session.forward(gpu, &prompt, false)?);
    let mut results: Vec<DecodeResult> = Vec::new();
    for b in sizes {
        let mut batch = DecodeBatch::new(gpu, &model, b, capacity)?;
        for slot in 0..b {
            batch.load(gpu, slot, &session)?;
        }
        let mut tokens = vec![first; b];
        // The warm-up step pays for first-use costs (pipelines, buffers).
        let logits = batch.step(gpu, &tokens)?;
        tokens = logits.chunks(v).map(greedy).collect();
        let mut times = Vec::with_capacity(steps);
        for _ in 1..steps {
            let t0 = Instant::now();
            let logits = batch.step(gpu, &tokens)?;
            tokens = logits.chunks(v).map(greedy).collect();
            times.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        let step_ms = median(&mut times);
        let tokens_per_s = b as f64 * 1e3 / step_ms;
        let single = results.first().map_or(tokens_per_s, |r| r.tokens_per_s);
        results.push(DecodeResult {
            batch: b,
            step_ms,
            tokens_per_s,
            speedup: tokens_per_s / single,
            cache_bytes: batch.cache_bytes(),
        });
    }
    Ok(DecodeReport {
        model: model_name.to_string(),
        device: gpu.info().name.clone(),
        prompt_len,
        steps,
        results,
    })
}

pub fn print_table(r: &DecodeReport) {
    println!(
        "{} on {}: greedy decode after a {}-token prompt, median of {} steps",
        r.model,
        r.device,
        r.prompt_len,
        r.steps.saturating_sub(1)
    );
    println!("| batch | step ms | tokens/s | × batch 1 | KV cache MiB |\n| --- | --- | --- | --- | --- |");
    for x in &r.results {
        println!(
            "| {} | {:.1} | {:.1} | {:.2} | {:.1} |",
            x.batch,
            x.step_ms,
            x.tokens_per_s,
            x.speedup,
            x.cache_bytes as f64 / (1 << 20) as f64
        );
    }
}
