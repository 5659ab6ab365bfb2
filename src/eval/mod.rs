//! Evaluation: greedy answers to a dataset's prompts, scored as LLM-Adapters scores its
//! benchmarks ([`crate::data::answer`]), or with [`Scoring::Loglik`] the answer choice
//! the model finds most likely ([`loglik`]: a record's ranked choices as OLMo scores
//! them, else its answer labels).
//!
//! Each [`Sample`] is rendered exactly as training renders it ([`render`]) and tokenized
//! by the same code ([`tokenize`]: BOS in front of raw-text prompts when the model wants
//! it, none for chat templates, which place their own); the model then decodes greedily
//! through the KV cache, and the task's [`AnswerFormat`] extracts and judges the answer
//! against [`Sample::gold`].
//!
//! ## When decoding stops
//!
//! - at an end-of-sequence token ([`eos_ids`]), which is not part of the text;
//! - after `max_new_tokens` tokens (or when the cache reaches the length that
//!   [`generate()`](crate::generate::generate()) would give it: the prompt plus the
//!   budget, no more than `max_position_embeddings` unless the prompt alone is longer);
//! - for Alpaca records, before the text [`ALPACA_STOP`] (`### Response:`): LLM-Adapters
//!   keeps only the text between the prompt's `### Response:` and the next one, so
//!   stopping there changes no answer;
//! - for label tasks (boolq, piqa, answer1–5, ending1–4, option1/2), as soon as the text
//!   holds a label: the extractor takes the leftmost label, which later tokens cannot
//!   change, so the verdict is the same as after a full decode. Number tasks take the
//!   *last* number, so they run to EOS or the budget.
//!
//! Apart from these two early stops, a record's `generated` text is exactly what
//! [`generate()`](crate::generate::generate()) returns for the same prompt ids with
//! greedy sampling.
//!
//! ## Speed
//!
//! One [`Session`] (KV cache and prepared dispatch lists) prefills every record, each
//! distinct piece length's dispatch list prepared once (the session drops its lists past
//! [`crate::model::kv_cache::PLAN_ROWS_BUDGET`] rows of activations). A record's prompt
//! keeps the cached prefix it shares with the record before
//! ([`Session::prefill_reusing`]): prompts of one task share their chat template and
//! instruction, often half their tokens. The logits agree with a fresh prefill up to
//! rounding, so with a batch of 1 (the exact mode) each prompt is prefilled whole from a
//! reset cache instead. Generated answers are then decoded [`EvalOptions::batch`] at a
//! time in a [`DecodeBatch`] (one GEMM of B rows per projection instead of B GEMVs), a
//! slot taking the next record as soon as its answer stops. With a batch of 1 the text
//! is exactly [`generate()`](crate::generate::generate())'s; with more it agrees up to
//! rounding (see [`crate::model::decode_batch`]).

mod decode;
pub mod loglik;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use crate::data::answer::{is_correct, AccuracyReport, AnswerFormat, Scorer};
use crate::data::batch::{tokenize, TokenizeOptions};
use crate::data::jsonl::{Record, Sample};
use crate::data::template::render;
use crate::generate::eos_ids;
use crate::gpu::Gpu;
use crate::loaders::Checkpoint;
use crate::model::decode_batch::DecodeBatch;
use crate::model::kv_cache::{Model, Session};
use crate::{Error, Result};
use decode::Decoding;

/// Default token budget per answer (LLM-Adapters' commonsense evaluation uses 32).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 32;

/// Default number of records decoded together: enough rows that every projection runs
/// as a GEMM (the frozen weights read once for all of them), few enough that the batch's
/// KV cache stays small next to the weights.
pub const DEFAULT_BATCH: usize = 16;

/// Stop string of Alpaca-template records (see the module docs).
pub const ALPACA_STOP: &str = "### Response:";

/// How a record's answer is found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scoring {
    /// Greedy generation and answer extraction (LLM-Adapters; comparable with its
    /// papers).
    #[default]
    Generate,
    /// The answer choice with the highest log-likelihood per continuation token
    /// ([`loglik`]); number tasks, which have no choices, are still generated.
    Loglik,
}

impl Scoring {
    pub fn parse(s: &str) -> Result<Scoring> {
        match s {
            "generate" => Ok(Scoring::Generate),
            "loglik" => Ok(Scoring::Loglik),
            _ => Err(Error::Invalid(format!(
                "unknown scoring '{s}' (expected generate or loglik)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Scoring::Generate => "generate",
            Scoring::Loglik => "loglik",
        }
    }
}

/// What to evaluate and how.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// Most tokens generated per record (at least 1).
    pub max_new_tokens: usize,
    /// The task of every record, overriding their `task` fields.
    pub task: Option<String>,
    /// The file the samples came from, named in per-record errors (`file:line: …`).
    pub source: Option<PathBuf>,
    pub scoring: Scoring,
    /// Records whose answers are decoded together (1 reproduces
    /// [`generate()`](crate::generate::generate()) exactly; more are faster and agree up
    /// to rounding, see [`crate::model::decode_batch`]).
    pub batch: usize,
    /// Also score each generated record's gold response by its log-likelihood per token
    /// ([`RecordResult::gold_loglik`]): where a small model's accuracy sits at the floor
    /// (GSM8K), this still moves with training.
    pub gold_loglik: bool,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            task: None,
            source: None,
            scoring: Scoring::Generate,
            batch: DEFAULT_BATCH,
            gold_loglik: false,
        }
    }
}

/// Why one record's decoding stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalStop {
    /// An end-of-sequence token.
    Eos,
    /// A stop string (the text ends before it).
    StopString,
    /// The text holds a label, which settles a label task's answer.
    Answer,
    /// The token budget.
    MaxTokens,
    /// The cache length `generate` would have had.
    CacheFull,
    /// Nothing was generated: the answer choices were scored ([`Scoring::Loglik`]).
    Scored,
}

impl EvalStop {
    /// A short lowercase name ("eos", "stop_string", "answer", "max_tokens", "cache_full").
    pub fn name(self) -> &'static str {
        match self {
            EvalStop::Eos => "eos",
            EvalStop::StopString => "stop_string",
            EvalStop::Answer => "answer",
            EvalStop::MaxTokens => "max_tokens",
            EvalStop::CacheFull => "cache_full",
            EvalStop::Scored => "scored",
        }
    }
}

/// One evaluated record.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordResult {
    /// Index of the sample in the slice given to [`evaluate`].
    pub index: usize,
    /// The sample's 1-based line in its file (0 when not read from a file).
    pub line: usize,
    /// The task it was scored as.
    pub task: String,
    /// The rendered prompt text.
    pub prompt: String,
    /// The generated text (without EOS, cut before a stop string); with loglik
    /// scoring, the chosen label.
    pub generated: String,
    /// The gold answer ([`Sample::gold`]).
    pub gold: String,
    /// Whether the extracted answer matches the gold one.
    pub correct: bool,
    /// Prompt length in tokens (BOS included).
    pub prompt_tokens: usize,
    /// Tokens generated (without the stopping EOS).
    pub new_tokens: usize,
    /// Why decoding stopped.
    pub stop: EvalStop,
    /// Wall-clock seconds for this record (prefill and decode).
    pub seconds: f64,
    /// With loglik scoring, each offered label and its score (log-likelihood per
    /// continuation token); empty when the answer was generated.
    pub choices: Vec<(String, f64)>,
    /// With [`EvalOptions::gold_loglik`], for a generated record: the gold response's
    /// log-likelihood per token after the prompt, (1/m) · Σ_j log p(g_j | prompt g_<j),
    /// as [`loglik::per_token`] scores a candidate.
    pub gold_loglik: Option<f64>,
}

impl RecordResult {
    /// The record as one `--out` JSONL line: `{line, task, prompt, generated, gold,
    /// correct}`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "line": self.line,
            "task": self.task,
            "prompt": self.prompt,
            "generated": self.generated,
            "gold": self.gold,
            "correct": self.correct,
        });
        if let Some(l) = self.gold_loglik {
            v["gold_loglik"] = json!(l);
        }
        if !self.choices.is_empty() {
            v["scores"] = self
                .choices
                .iter()
                .map(|(l, s)| (l.clone(), json!(s)))
                .collect::<serde_json::Map<_, _>>()
                .into();
        }
        v
    }
}

/// An error about the sample on `line` of `source` (`file:line: message`).
fn record_error(source: Option<&Path>, line: usize, message: String) -> Error {
    match (source, line) {
        (Some(p), l) if l > 0 => Error::BadFile {
            path: PathBuf::from(format!("{}:{l}", p.display())),
            message,
        },
        (Some(p), _) => Error::BadFile {
            path: p.to_path_buf(),
            message,
        },
        (None, l) if l > 0 => Error::Invalid(format!("line {l}: {message}")),
        (None, _) => Error::Invalid(message),
    }
}

/// The task a sample is scored as (`opts.task`, else its `task` field) and its answer
/// format. A sample with neither, or with an unknown task, is an error naming
/// `file:line`; an unknown `opts.task` is an error of its own.
pub fn record_task(sample: &Sample, opts: &EvalOptions) -> Result<(String, AnswerFormat)> {
    if let Some(t) = &opts.task {
        return Ok((t.clone(), AnswerFormat::for_task(t)?));
    }
    let err = |m: String| record_error(opts.source.as_deref(), sample.line, m);
    match &sample.task {
        Some(t) => match AnswerFormat::for_task(t) {
            Ok(f) => Ok((t.clone(), f)),
            Err(e) => Err(err(e.to_string())),
        },
        None => Err(err(
            "the record has no \"task\" field and no task was given for all records (--task)"
                .into(),
        )),
    }
}

/// Checks every sample's task (see [`record_task`]) without touching a model, so that a
/// bad dataset fails before any work.
pub fn check_tasks(samples: &[Sample], opts: &EvalOptions) -> Result<()> {
    if let Some(t) = &opts.task {
        AnswerFormat::for_task(t)?;
    }
    for s in samples {
        record_task(s, opts)?;
    }
    Ok(())
}

/// The stop strings decoding uses for `record` (see the module docs).
pub fn stop_strings(record: &Record) -> Vec<String> {
    match record {
        Record::Alpaca { .. } => vec![ALPACA_STOP.to_string()],
        _ => Vec::new(),
    }
}

/// A sample ready to run.
struct Prepared {
    task: String,
    format: AnswerFormat,
    prompt: String,
    ids: Vec<u32>,
    stops: Vec<String>,
    /// The cache length `generate` would allocate for this prompt.
    capacity: usize,
    /// The answer labels, when they are scored instead of generated.
    candidates: Option<loglik::Candidates>,
    /// The record's ranked choices, when they are scored (before any labels).
    ranked: Option<loglik::RankedIds>,
    /// The gold response's ids, when a generated record's gold is scored too.
    gold: Option<Vec<u32>>,
}

impl Prepared {
    fn limits<'a>(&'a self, eos: &'a [u32], opts: &EvalOptions) -> decode::Limits<'a> {
        decode::Limits {
            format: self.format,
            stops: &self.stops,
            eos,
            max_new_tokens: opts.max_new_tokens,
            capacity: self.capacity,
        }
    }
}

fn prepare(ck: &Checkpoint, sample: &Sample, opts: &EvalOptions) -> Result<Prepared> {
    let (task, format) = record_task(sample, opts)?;
    let err = |m: String| record_error(opts.source.as_deref(), sample.line, m);
    let rendered = render(ck, &sample.record).map_err(|e| err(e.to_string()))?;
    // The ids training sees before the response: [BOS] prompt.
    let tk = TokenizeOptions {
        max_len: usize::MAX,
        train_on_prompt: false,
    };
    let ex = tokenize(ck, sample, &tk).map_err(|e| err(e.to_string()))?;
    let mut ids = ex.ids;
    ids.truncate(ex.prompt_len);
    if ids.is_empty() {
        return Err(err("the prompt encodes to no tokens".into()));
    }
    let n = ids.len();
    let ranked = match (opts.scoring, &sample.rc) {
        (Scoring::Loglik, Some(rc)) => {
            let labels = loglik::offered_labels(format, &rendered.prompt);
            Some(loglik::ranked_ids(ck, rc, &labels).map_err(|e| err(e.to_string()))?)
        }
        _ => None,
    };
    let candidates = match (opts.scoring, format, &ranked) {
        (Scoring::Loglik, f, None) if f != AnswerFormat::Number => {
            Some(loglik::candidates(ck, f, sample).map_err(|e| err(e.to_string()))?)
        }
        _ => None,
    };
    let gold = match (&candidates, &ranked, opts.gold_loglik) {
        (None, None, true) => Some(loglik::gold_ids(ck, sample).map_err(|e| err(e.to_string()))?),
        _ => None,
    };
    let capacity = match (&candidates, &ranked) {
        (_, Some(r)) => r.capacity(),
        (Some(c), None) => n + c.continuations.iter().map(Vec::len).max().unwrap_or(0),
        (None, None) => (n + opts.max_new_tokens).min(ck.config.max_position_embeddings.max(n + 1)),
    };
    Ok(Prepared {
        task,
        format,
        prompt: rendered.prompt,
        ids,
        stops: stop_strings(&sample.record),
        capacity,
        candidates,
        ranked,
        gold,
    })
}

/// A record whose answer is being generated in a slot of the decode batch.
struct Active {
    index: usize,
    decoding: Decoding,
    /// The token to feed at the next step.
    next: u32,
    t0: Instant,
    gold_loglik: Option<f64>,
}

/// Evaluates `samples` with `model` (its adapters attached, if any) and returns the
/// accuracy report and every record's result, in order; `on_record` sees each result,
/// in order, as soon as it and those before it are done (for progress). Every sample's
/// task and prompt are checked before any generation, so a bad record fails fast.
///
/// Generated answers are decoded `opts.batch` records at a time (see
/// [`crate::model::decode_batch`]): each prompt is prefilled alone, then joins the
/// batch in a free slot, and a finished record's slot takes the next one.
pub fn evaluate(
    gpu: &Gpu,
    model: &Model,
    ck: &Checkpoint,
    samples: &[Sample],
    opts: &EvalOptions,
    on_record: &mut dyn FnMut(&RecordResult),
) -> Result<(AccuracyReport, Vec<RecordResult>)> {
    if opts.max_new_tokens == 0 {
        return Err(Error::Invalid(
            "max_new_tokens must be at least 1 to generate an answer".into(),
        ));
    }
    if opts.batch == 0 {
        return Err(Error::Invalid(
            "the decode batch needs at least one slot".into(),
        ));
    }
    check_tasks(samples, opts)?;
    let prepared = samples
        .iter()
        .map(|s| prepare(ck, s, opts))
        .collect::<Result<Vec<_>>>()?;
    // The cache also holds a scored gold response after its prompt.
    let capacity = prepared
        .iter()
        .map(|p| {
            p.capacity
                .max(p.ids.len() + p.gold.as_ref().map_or(0, Vec::len))
        })
        .max()
        .unwrap_or(1);
    let generated: Vec<&Prepared> = prepared
        .iter()
        .filter(|p| p.candidates.is_none() && p.ranked.is_none())
        .collect();
    let slots = opts.batch.min(generated.len());
    let batch_capacity = generated.iter().map(|p| p.capacity).max().unwrap_or(1);
    let eos = eos_ids(ck);
    let finish = |index: usize,
                  d: Decoding,
                  stop: EvalStop,
                  t0: Instant,
                  gold_loglik: Option<f64>|
     -> RecordResult {
        let (sample, p) = (&samples[index], &prepared[index]);
        let gold = sample.gold();
        RecordResult {
            index,
            line: sample.line,
            task: p.task.clone(),
            prompt: p.prompt.clone(),
            correct: is_correct(p.format, &d.text, gold),
            generated: d.text,
            gold: gold.to_string(),
            prompt_tokens: p.ids.len(),
            new_tokens: d.tokens.len(),
            stop,
            seconds: t0.elapsed().as_secs_f64(),
            choices: Vec::new(),
            gold_loglik,
        }
    };

    let mut session: Option<Session<'_>> = None;
    let mut batch: Option<DecodeBatch> = None;
    let mut active: Vec<Option<Active>> = (0..slots).map(|_| None).collect();
    let mut done: Vec<Option<RecordResult>> = (0..samples.len()).map(|_| None).collect();
    let mut emitted = 0;
    let mut pending = 0..samples.len();
    loop {
        // Take records until every slot is busy (loglik ones are scored on the way;
        // without generated records there are no slots and all of them are).
        while slots == 0 || active.iter().any(Option::is_none) {
            let Some(index) = pending.next() else { break };
            let p = &prepared[index];
            let n = p.ids.len();
            let s = match &mut session {
                Some(s) => s,
                None => session.insert(Session::new(gpu, model, capacity)?),
            };
            let t0 = Instant::now();
            if let Some(r) = &p.ranked {
                let scores = loglik::score_ranked(gpu, s, r)?;
                let chosen = loglik::best(&scores);
                done[index] = Some(RecordResult {
                    index,
                    line: samples[index].line,
                    task: p.task.clone(),
                    prompt: r.rc.choices[0].context.clone(),
                    generated: r.labels[chosen].clone(),
                    gold: r.labels[r.rc.gold].clone(),
                    correct: chosen == r.rc.gold,
                    prompt_tokens: r.contexts[0].len(),
                    new_tokens: 0,
                    stop: EvalStop::Scored,
                    seconds: t0.elapsed().as_secs_f64(),
                    choices: r.labels.iter().cloned().zip(scores).collect(),
                    gold_loglik: None,
                });
                continue;
            }
            if let Some(c) = &p.candidates {
                let scores = loglik::per_token(gpu, s, &p.ids, &c.continuations)?;
                let (chosen, correct) = loglik::judge(c, &scores);
                done[index] = Some(RecordResult {
                    index,
                    line: samples[index].line,
                    task: p.task.clone(),
                    prompt: p.prompt.clone(),
                    generated: chosen.to_string(),
                    gold: c.gold.to_string(),
                    correct,
                    prompt_tokens: n,
                    new_tokens: 0,
                    stop: EvalStop::Scored,
                    seconds: t0.elapsed().as_secs_f64(),
                    choices: c.labels.iter().map(|l| l.to_string()).zip(scores).collect(),
                    gold_loglik: None,
                });
                continue;
            }
            // The gold response runs after the prompt first; the prompt's cached prefix
            // then serves the answer's prefill.
            let gold_loglik = match &p.gold {
                Some(g) => Some(loglik::per_token(gpu, s, &p.ids, std::slice::from_ref(g))?[0]),
                None => None,
            };
            let logits = if opts.batch == 1 {
                s.reset();
                s.forward(gpu, &p.ids, false)?
            } else {
                s.prefill_reusing(gpu, &p.ids, 1, loglik::PREFILL_CHUNK)?
            };
            let mut decoding = Decoding::new(n);
            match decoding.advance(ck, &p.limits(&eos, opts), &logits)? {
                Err(stop) => done[index] = Some(finish(index, decoding, stop, t0, gold_loglik)),
                Ok(next) => {
                    let b = match &mut batch {
                        Some(b) => b,
                        None => batch.insert(DecodeBatch::new(gpu, model, slots, batch_capacity)?),
                    };
                    let slot = active
                        .iter()
                        .position(Option::is_none)
                        .expect("a free slot");
                    b.load(gpu, slot, s)?;
                    active[slot] = Some(Active {
                        index,
                        decoding,
                        next,
                        t0,
                        gold_loglik,
                    });
                }
            }
        }
        while let Some(r) = done.get(emitted).and_then(Option::as_ref) {
            on_record(r);
            emitted += 1;
        }
        let Some(b) = batch
            .as_mut()
            .filter(|_| active.iter().any(Option::is_some))
        else {
            break;
        };
        // Idle slots feed token 0 and their rows are ignored.
        let tokens: Vec<u32> = active
            .iter()
            .map(|a| a.as_ref().map_or(0, |a| a.next))
            .collect();
        let logits = b.step(gpu, &tokens)?;
        let v = logits.len() / slots;
        for (slot, entry) in active.iter_mut().enumerate() {
            let Some(a) = entry else { continue };
            let p = &prepared[a.index];
            match a.decoding.advance(
                ck,
                &p.limits(&eos, opts),
                &logits[slot * v..(slot + 1) * v],
            )? {
                Ok(next) => a.next = next,
                Err(stop) => {
                    let a = entry.take().expect("an active slot");
                    done[a.index] = Some(finish(a.index, a.decoding, stop, a.t0, a.gold_loglik));
                }
            }
        }
    }
    let results: Vec<RecordResult> = done
        .into_iter()
        .map(|r| r.expect("every record is evaluated"))
        .collect();
    let mut scorer = Scorer::new();
    for r in &results {
        scorer.record(&r.task, r.correct);
    }
    Ok((scorer.report(), results))
}
