//! `boha eval --model PATH [--adapter DIR [--merged]] --data FILE.jsonl [--task NAME]
//! [--scoring generate|loglik] [--max-new-tokens N] [--gold-loglik] [--limit N] [--json]
//! [--out FILE.jsonl]`: greedy answers to a JSONL dataset, scored as LLM-Adapters does, or the
//! most likely answer choice (see [`boha::eval`] for the rules).
//!
//! The summary goes to stdout (with `--json`, exactly `{"accuracy", "n", "per_task"}`);
//! progress goes to stderr when it is a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use boha::data::jsonl::{read_jsonl, write_jsonl};
use boha::eval::{
    check_tasks, evaluate, EvalOptions, Scoring, DEFAULT_BATCH, DEFAULT_MAX_NEW_TOKENS,
};
use boha::loaders::load_checkpoint;
use boha::{Error, Result};

use super::generate::{load_model, AdapterArgs};
use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// A Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// The dataset: JSONL records (Alpaca, prompt/completion or messages) with `task`
    /// and optionally `answer` fields.
    #[arg(long)]
    pub data: PathBuf,
    /// Score every record as this task (overrides the records' `task` fields).
    #[arg(long)]
    pub task: Option<String>,
    /// `generate`: greedy answers, extracted as LLM-Adapters does (comparable with its
    /// papers). `loglik`: the answer choice with the highest log-likelihood per token,
    /// as OLMo's evaluation scores; number tasks are still generated.
    #[arg(long, default_value = "generate")]
    pub scoring: String,
    /// Most tokens generated per record (label tasks stop at the first label).
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Records whose answers are decoded together: faster on every device (one GEMM
    /// per projection for all of them); 1 decodes one at a time, exactly as `generate`.
    /// Larger batches agree with it up to rounding, which may flip a greedy near-tie.
    #[arg(long, default_value_t = DEFAULT_BATCH)]
    pub batch: usize,
    /// Also score each generated record's gold response by its log-likelihood per token
    /// after the prompt (a measure that moves with training where a small model's
    /// accuracy sits at the floor, as on GSM8K): printed as a mean, and written to
    /// `--out` lines as `gold_loglik`.
    #[arg(long)]
    pub gold_loglik: bool,
    /// Evaluate only the first N records.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print one JSON object: {"accuracy", "n", "per_task": {name: {"accuracy", "n"}}}.
    #[arg(long)]
    pub json: bool,
    /// Write one JSON line per record: {line, task, prompt, generated, gold, correct}.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(dev: &DeviceArgs, a: &EvalArgs) -> Result<()> {
    if a.max_new_tokens == 0 {
        return Err(Error::Invalid("--max-new-tokens must be at least 1".into()));
    }
    if a.batch == 0 {
        return Err(Error::Invalid("--batch must be at least 1".into()));
    }
    let mut samples = read_jsonl(&a.data)?;
    if let Some(n) = a.limit {
        if n == 0 {
            return Err(Error::Invalid("--limit must be at least 1".into()));
        }
        samples.truncate(n);
    }
    let opts = EvalOptions {
        max_new_tokens: a.max_new_tokens,
        task: a.task.clone(),
        source: Some(a.data.clone()),
        scoring: Scoring::parse(&a.scoring)?,
        batch: a.batch,
        gold_loglik: a.gold_loglik,
    };
    // Everything that can fail on the host fails before the device work.
    check_tasks(&samples, &opts)?;
    let ck = load_checkpoint(&a.model)?;
    let adapter = a.adapter.read()?;
    let gpu = dev.open()?;
    let model = load_model(&gpu, &ck, adapter.as_ref())?;

    let total = samples.len();
    let progress = std::io::stderr().is_terminal();
    let (mut done, mut right) = (0usize, 0usize);
    let t0 = Instant::now();
    let (report, results) = evaluate(&gpu, &model, &ck, &samples, &opts, &mut |r| {
        done += 1;
        right += r.correct as usize;
        if progress {
            eprint!(
                "\r{done}/{total} records, {right} correct ({:.1} s)",
                t0.elapsed().as_secs_f64()
            );
        }
    })?;
    if progress {
        eprintln!();
    }
    let seconds = t0.elapsed().as_secs_f64();
    if let Some(out) = &a.out {
        let lines: Vec<_> = results.iter().map(|r| r.to_json()).collect();
        write_jsonl(out, &lines)?;
    }
    if a.json {
        let v = serde_json::to_string(&report).map_err(|e| Error::Invalid(e.to_string()))?;
        println!("{v}");
        return Ok(());
    }
    let correct = results.iter().filter(|r| r.correct).count();
    println!(
        "accuracy: {:.4} ({correct}/{} correct)",
        report.accuracy, report.n
    );
    for (task, s) in &report.per_task {
        let c = results
            .iter()
            .filter(|r| &r.task == task && r.correct)
            .count();
        println!("  {task}: {:.4} ({c}/{})", s.accuracy, s.n);
    }
    let gold: Vec<f64> = results.iter().filter_map(|r| r.gold_loglik).collect();
    if !gold.is_empty() {
        println!(
            "gold log-likelihood: {:.4} nats per token (mean over {} generated records)",
            gold.iter().sum::<f64>() / gold.len() as f64,
            gold.len()
        );
    }
    let prompt_tokens: usize = results.iter().map(|r| r.prompt_tokens).sum();
    let new_tokens: usize = results.iter().map(|r| r.new_tokens).sum();
    println!(
        "time: {seconds:.2} s, {:.3} s per record ({prompt_tokens} prompt tokens, {new_tokens} generated)",
        seconds / total.max(1) as f64
    );
    Ok(())
}
