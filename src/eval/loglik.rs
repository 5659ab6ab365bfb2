//! Log-likelihood scoring (`boha eval --scoring loglik`): for a multiple-choice record,
//! the answer is the candidate continuation the model finds most likely, with no
//! generation. It is cheaper than greedy decoding and still sensitive when a small
//! model's free-form answers are mostly off-format.
//!
//! ## Ranked choices
//!
//! A record with an `rc` field ([`crate::data::ranked`]; `boha data --benchmark` writes
//! one for every multiple-choice item) is scored as OLMo's evaluation scores its "rc"
//! tasks: each choice's text after its raw zero-shot context ("Question: …\nAnswer:"),
//! by its summed log-likelihood, per character where the norm says so ([`score_ranked`]).
//! The instruction template plays no part, so this measures what the model knows rather
//! than whether it learned the label format: SmolLM2-135M ranks ARC or PIQA answers well
//! above chance zero-shot, while it picks LLM-Adapters' labels at chance. A choice is
//! reported by the label the record's prompt gives it.
//!
//! ## Label candidates
//!
//! Without `rc`, the record's target text holds its gold label (e.g. "the correct answer is
//! answer3"); candidate k is that text with the label replaced by label k. The labels
//! are those listed after the prompt's last "Answer format:" (LLM-Adapters' prompts list
//! exactly the record's options, e.g. three for a three-choice ARC question), else every
//! label of the task's format. Number tasks (GSM8K) have no candidates and are always
//! scored by generation.
//!
//! ## Label score
//!
//! With prompt ids p and a candidate's continuation ids c_0 … c_{m−1} (the response as
//! training encodes it, without EOS),
//!
//!   score = (1/m) · Σ_j log softmax(z_j)\[c_j\],
//!
//! where z_j are the logits after p c_0 … c_{j−1}: the log-likelihood per continuation
//! token. The highest score wins; a tie goes to the earlier label.
//!
//! ## Cost
//!
//! The prompt and the continuation tokens every candidate shares ("the correct answer is
//! answer") run once, as one sequence, and only from where it stops sharing the previous
//! item's tokens (a test set's prompts share their chat template and instruction, which
//! stay in the KV cache); only the shared part's rows go through the LM head. Then each
//! candidate runs only its own remaining tokens, after rewinding the KV cache to the end
//! of the shared part. For LLM-Adapters' labels that remainder is a single token whose
//! probability the shared part's last logits already give, so an item costs one partial
//! prefill and no decode step.

use crate::data::answer::AnswerFormat;
use crate::data::jsonl::{Record, Sample};
use crate::data::ranked::Ranked;
use crate::data::template::{render, TextCodec};
use crate::gpu::Gpu;
use crate::loaders::Checkpoint;
use crate::model::kv_cache::Session;
use crate::{Error, Result};

/// Prompt tokens run per forward: an evaluation set's many prompt lengths then share
/// at most this many prepared plans ([`Session::prefill`]).
pub const PREFILL_CHUNK: usize = 128;

/// The labels a record offers: those after the prompt's last "Answer format:" that
/// belong to `format`, else all of `format`'s labels.
pub fn offered_labels(format: AnswerFormat, prompt: &str) -> Vec<&'static str> {
    let all = format.labels();
    let listed: Vec<&'static str> = prompt
        .rsplit_once("Answer format:")
        .map(|(_, rest)| rest.lines().next().unwrap_or(""))
        .map(|line| {
            line.split('/')
                .filter_map(|w| all.iter().copied().find(|l| *l == w.trim()))
                .collect()
        })
        .unwrap_or_default();
    if listed.len() >= 2 {
        listed
    } else {
        all.to_vec()
    }
}

/// The gold label of `sample` under `format` (its `answer` field, or the first label
/// in its target text).
fn gold_label(format: AnswerFormat, sample: &Sample) -> Option<&'static str> {
    let gold = sample.gold().trim();
    format
        .labels()
        .iter()
        .copied()
        .filter_map(|l| gold.find(l).map(|at| (at, l)))
        .min_by_key(|&(at, l)| (at, std::cmp::Reverse(l.len())))
        .map(|(_, l)| l)
}

/// The record with its target text set to `output`.
fn with_output(record: &Record, output: String) -> Record {
    match record {
        Record::Alpaca {
            instruction, input, ..
        } => Record::Alpaca {
            instruction: instruction.clone(),
            input: input.clone(),
            output,
        },
        Record::Completion { prompt, .. } => Record::Completion {
            prompt: prompt.clone(),
            completion: output,
        },
        Record::Chat { messages } => {
            let mut m = messages.clone();
            if let Some(last) = m.last_mut() {
                last.content = output;
            }
            Record::Chat { messages: m }
        }
    }
}

/// One record's candidates: (label, continuation ids), in label order.
pub struct Candidates {
    pub labels: Vec<&'static str>,
    pub gold: &'static str,
    pub continuations: Vec<Vec<u32>>,
}

/// The candidates of a label-task `sample` (see the module docs), or an error saying
/// why there are none.
pub fn candidates(ck: &Checkpoint, format: AnswerFormat, sample: &Sample) -> Result<Candidates> {
    if format == AnswerFormat::Number {
        return Err(Error::Invalid(
            "a number task has no answer choices to score".into(),
        ));
    }
    let gold = gold_label(format, sample).ok_or_else(|| {
        Error::Invalid(format!(
            "the gold answer {:?} holds none of the labels {}",
            sample.gold(),
            format.labels().join("/")
        ))
    })?;
    let target = sample.target_text();
    if !target.contains(gold) {
        return Err(Error::Invalid(format!(
            "the record's output {target:?} does not hold its answer label {gold}"
        )));
    }
    let prompt = render(ck, &sample.record)?.prompt;
    let mut labels = offered_labels(format, &prompt);
    if !labels.contains(&gold) {
        labels = format.labels().to_vec();
    }
    let continuations = labels
        .iter()
        .map(|l| {
            let r = render(
                ck,
                &with_output(&sample.record, target.replacen(gold, l, 1)),
            )?;
            let ids = TextCodec::encode(ck, &r.response)?;
            if ids.is_empty() {
                return Err(Error::Invalid(format!(
                    "candidate '{l}' encodes to no tokens"
                )));
            }
            Ok(ids)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Candidates {
        labels,
        gold,
        continuations,
    })
}

/// The ids of `sample`'s gold response as training encodes them (without EOS): what
/// [`EvalOptions::gold_loglik`](super::EvalOptions::gold_loglik) scores.
pub fn gold_ids(ck: &Checkpoint, sample: &Sample) -> Result<Vec<u32>> {
    let ids = TextCodec::encode(ck, &render(ck, &sample.record)?.response)?;
    if ids.is_empty() {
        return Err(Error::Invalid(
            "the gold response encodes to no tokens".into(),
        ));
    }
    Ok(ids)
}

/// log softmax(z)[t], in f64.
fn log_prob(z: &[f32], t: u32) -> f64 {
    let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
    let lse = m + z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    z[t as usize] as f64 - lse
}

/// Number of leading ids every continuation shares, leaving each at least one own id.
fn shared_len(conts: &[Vec<u32>]) -> usize {
    let min = conts.iter().map(Vec::len).min().unwrap_or(0);
    let mut s = 0;
    while s + 1 < min && conts.iter().all(|c| c[s] == conts[0][s]) {
        s += 1;
    }
    s
}

/// The summed log-likelihood Σ_j log p(c_j | prompt c_<j) of every candidate c after
/// `prompt` (ids as training encodes them, BOS included). The prompt runs from position
/// 0, keeping the cached prefix it shares with the session's previous sequence
/// ([`Session::prefill_reusing`]); the cache must hold the prompt plus the longest
/// continuation.
pub fn score_candidates(
    gpu: &Gpu,
    session: &mut Session<'_>,
    prompt: &[u32],
    conts: &[Vec<u32>],
) -> Result<Vec<f64>> {
    let v = session.vocab();
    let s = shared_len(conts);
    // The prompt and the shared continuation run as one sequence; its last s + 1 rows
    // of logits predict the shared ids and then each candidate's own first id.
    let mut seq = prompt.to_vec();
    seq.extend_from_slice(&conts[0][..s]);
    let rows = session.prefill_reusing(gpu, &seq, s + 1, PREFILL_CHUNK)?;
    let shared: f64 = (0..s)
        .map(|j| log_prob(&rows[j * v..(j + 1) * v], conts[0][j]))
        .sum();
    let next = &rows[s * v..];
    let base = session.cache.len;
    conts
        .iter()
        .map(|c| {
            let own = &c[s..];
            let mut lp = shared + log_prob(next, own[0]);
            if own.len() > 1 {
                session.rewind(base);
                let rows = session.forward(gpu, &own[..own.len() - 1], true)?;
                for j in 1..own.len() {
                    lp += log_prob(&rows[(j - 1) * v..j * v], own[j]);
                }
            }
            Ok(lp)
        })
        .collect()
}

/// [`score_candidates`] per continuation token: a label candidate's score, and the
/// gold response's log-likelihood per token.
pub fn per_token(
    gpu: &Gpu,
    session: &mut Session<'_>,
    prompt: &[u32],
    conts: &[Vec<u32>],
) -> Result<Vec<f64>> {
    let sums = score_candidates(gpu, session, prompt, conts)?;
    Ok(sums
        .iter()
        .zip(conts)
        .map(|(s, c)| s / c.len() as f64)
        .collect())
}

/// A record's ranked-classification choices ([`crate::data::ranked`]) as ids.
pub struct RankedIds {
    pub rc: Ranked,
    /// Per choice, `[BOS] context` (BOS when the model puts one before raw text).
    pub contexts: Vec<Vec<u32>>,
    /// Per choice, the continuation's ids.
    pub continuations: Vec<Vec<u32>>,
    /// Per choice, the label the record's prompt gives it ("answer2", "true", …), or
    /// "choiceK" when the prompt lists no label per choice.
    pub labels: Vec<String>,
}

impl RankedIds {
    /// The cache length the longest choice needs.
    pub fn capacity(&self) -> usize {
        self.contexts
            .iter()
            .zip(&self.continuations)
            .map(|(a, b)| a.len() + b.len())
            .max()
            .unwrap_or(0)
    }
}

/// Encodes `rc`'s choices; `labels` are the record's offered labels, in choice order.
pub fn ranked_ids(ck: &Checkpoint, rc: &Ranked, labels: &[&str]) -> Result<RankedIds> {
    let bos = TextCodec::bos_for_raw_text(ck);
    let mut contexts = Vec::new();
    let mut continuations = Vec::new();
    for (i, c) in rc.choices.iter().enumerate() {
        let mut ids: Vec<u32> = bos.into_iter().collect();
        ids.extend(TextCodec::encode(ck, &c.context)?);
        let cont = TextCodec::encode(ck, &c.continuation)?;
        if ids.is_empty() || cont.is_empty() {
            return Err(Error::Invalid(format!(
                "choice {} encodes to no context or no continuation tokens",
                i + 1
            )));
        }
        contexts.push(ids);
        continuations.push(cont);
    }
    let labels = if labels.len() == rc.choices.len() {
        labels.iter().map(|l| l.to_string()).collect()
    } else {
        (1..=rc.choices.len())
            .map(|k| format!("choice{k}"))
            .collect()
    };
    Ok(RankedIds {
        rc: rc.clone(),
        contexts,
        continuations,
        labels,
    })
}

/// Every choice's normalised score ([`Ranked::normalise`] of its summed
/// log-likelihood). Choices with the same context run as one [`score_candidates`]
/// call, so a shared context is prefilled once.
pub fn score_ranked(gpu: &Gpu, session: &mut Session<'_>, r: &RankedIds) -> Result<Vec<f64>> {
    let n = r.contexts.len();
    let mut scores = vec![0.0; n];
    let mut done = vec![false; n];
    for i in 0..n {
        if done[i] {
            continue;
        }
        let group: Vec<usize> = (i..n).filter(|&j| r.contexts[j] == r.contexts[i]).collect();
        let conts: Vec<Vec<u32>> = group.iter().map(|&j| r.continuations[j].clone()).collect();
        let sums = score_candidates(gpu, session, &r.contexts[i], &conts)?;
        for (&j, s) in group.iter().zip(sums) {
            scores[j] = r.rc.normalise(j, s);
            done[j] = true;
        }
    }
    Ok(scores)
}

/// Index of the best score (the first on ties).
pub fn best(scores: &[f64]) -> usize {
    let mut b = 0;
    for (i, &s) in scores.iter().enumerate() {
        if s > scores[b] {
            b = i;
        }
    }
    b
}

/// The loglik verdict: (chosen label, correct).
pub fn judge(c: &Candidates, scores: &[f64]) -> (&'static str, bool) {
    let chosen = c.labels[best(scores)];
    (chosen, chosen == c.gold)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_the_answer_format_line() {
        let p = "Please choose …\n\nAnswer1: a Answer2: b Answer3: c\n\nAnswer format: answer1/answer2/answer3\n\n### Response:\n";
        assert_eq!(
            offered_labels(AnswerFormat::Answer, p),
            ["answer1", "answer2", "answer3"]
        );
        assert_eq!(
            offered_labels(
                AnswerFormat::BoolQ,
                "question: is it?\n\nAnswer format: true/false"
            ),
            ["true", "false"]
        );
        // No list: every label of the format.
        assert_eq!(
            offered_labels(AnswerFormat::WinoGrande, "fill in"),
            ["option1", "option2"]
        );
    }

    #[test]
    fn shared_part_leaves_each_candidate_a_token() {
        assert_eq!(shared_len(&[vec![1, 2, 3], vec![1, 2, 4]]), 2);
        assert_eq!(shared_len(&[vec![1, 2], vec![1, 2, 4]]), 1);
        assert_eq!(shared_len(&[vec![5], vec![6]]), 0);
    }

    #[test]
    fn best_takes_the_first_of_equals() {
        assert_eq!(best(&[-1.0, -0.5, -0.5]), 1);
        assert_eq!(best(&[-2.0]), 0);
    }
}
