//! The generation loop: prefill the prompt through the KV cache, then decode one token
//! at a time until an end-of-sequence token, a stop string, the token budget or the
//! cache's capacity. Text is streamed as it becomes final: held back while it could
//! still be the start of a stop string or ends inside a multi-byte character.

use std::time::Instant;

use super::sampling::{Sampler, Sampling};
use crate::error::Result;
use crate::gpu::Gpu;
use crate::loaders::Checkpoint;
use crate::model::kv_cache::{Model, Session};

/// Generation options.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    pub sampling: Sampling,
    /// Generation stops before any of these strings appears in the output.
    pub stop_strings: Vec<String>,
    /// Token ids that end generation (not included in the output).
    pub eos: Vec<u32>,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    Eos,
    StopString,
    MaxTokens,
    CacheFull,
}

/// The result of a generation, with timings.
#[derive(Clone, Debug)]
pub struct Generation {
    /// Generated ids (without the stopping EOS).
    pub tokens: Vec<u32>,
    pub text: String,
    pub stop: StopReason,
    pub prompt_tokens: usize,
    pub prefill_seconds: f64,
    /// Decode steps run (each a forward of one token) and their time.
    pub decode_steps: usize,
    pub decode_seconds: f64,
}

/// EOS ids of a checkpoint: tokenizer/generation config and model config, deduplicated.
pub fn eos_ids(ck: &Checkpoint) -> Vec<u32> {
    let mut ids = ck.eos_tokens.clone();
    ids.extend(ck.config.eos_token_ids.iter().copied());
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Generates after `prompt` (token ids, BOS included where the model wants it), calling
/// `on_text` with each piece of final text.
pub fn generate(
    gpu: &Gpu,
    model: &Model,
    ck: &Checkpoint,
    prompt: &[u32],
    opts: &GenerateOptions,
    on_text: &mut dyn FnMut(&str),
) -> Result<Generation> {
    let mut sampler = Sampler::new(opts.sampling)?;
    let capacity = (prompt.len() + opts.max_new_tokens).min(
        model
            .weights
            .config
            .max_position_embeddings
            .max(prompt.len() + 1),
    );
    let mut session = Session::new(gpu, model, capacity)?;
    // Pipelines and bind groups are made before the clocks start.
    session.prepare(gpu, prompt.len(), false)?;
    if opts.max_new_tokens > 1 {
        session.prepare(gpu, 1, false)?;
    }
    let t0 = Instant::now();
    let mut logits = session.forward(gpu, prompt, false)?;
    let prefill_seconds = t0.elapsed().as_secs_f64();
    let hold = opts
        .stop_strings
        .iter()
        .map(|s| s.len().saturating_sub(1))
        .max()
        .unwrap_or(0);
    let mut tokens = Vec::new();
    let mut text = String::new();
    let mut emitted = 0usize;
    let mut decode_steps = 0;
    let t1 = Instant::now();
    let stop = loop {
        if tokens.len() >= opts.max_new_tokens {
            break StopReason::MaxTokens;
        }
        let next = sampler.sample(&logits);
        if opts.eos.contains(&next) {
            break StopReason::Eos;
        }
        tokens.push(next);
        text = ck.decode(&tokens)?;
        if let Some(at) = opts
            .stop_strings
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| text.find(s.as_str()))
            .min()
        {
            text.truncate(at);
            break StopReason::StopString;
        }
        let mut safe = text.len().saturating_sub(hold);
        while !text.is_char_boundary(safe) {
            safe -= 1;
        }
        if text[..safe].ends_with('\u{FFFD}') {
            safe -= '\u{FFFD}'.len_utf8();
        }
        if safe > emitted {
            on_text(&text[emitted..safe]);
            emitted = safe;
        }
        if tokens.len() >= opts.max_new_tokens {
            break StopReason::MaxTokens;
        }
        if session.cache.len >= session.cache.capacity {
            break StopReason::CacheFull;
        }
        logits = session.forward(gpu, &[next], false)?;
        decode_steps += 1;
    };
    if text.len() > emitted && text.is_char_boundary(emitted) {
        on_text(&text[emitted..]);
    }
    Ok(Generation {
        tokens,
        text,
        stop,
        prompt_tokens: prompt.len(),
        prefill_seconds,
        decode_steps,
        decode_seconds: t1.elapsed().as_secs_f64(),
    })
}
