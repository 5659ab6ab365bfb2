//! `boha continual`: the continual-learning diagnostic (see [`boha::train::continual`]).

use std::path::PathBuf;

use clap::Args;

use boha::adapters::Method;
use boha::loaders::load_checkpoint;
use boha::train::continual::{base_row, continual, ContinualConfig, ContinualRow, Progress};
use boha::train::{Event, FinetuneConfig, Schedule};
use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct ContinualArgs {
    /// A Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Training data of the first task (JSONL).
    #[arg(long)]
    pub first: PathBuf,
    /// Training data of the second task.
    #[arg(long)]
    pub second: PathBuf,
    /// Test data of the first task (records with `task` fields, or answers by --task).
    #[arg(long)]
    pub eval_first: PathBuf,
    #[arg(long)]
    pub eval_second: PathBuf,
    /// Comma-separated: boha, additive, lora, hira.
    #[arg(long, default_value = "boha,additive,lora,hira")]
    pub methods: String,
    /// The matched rank r = b·r_b every method gets.
    #[arg(long, default_value_t = 8)]
    pub rank: usize,
    /// b for boha and additive.
    #[arg(long, default_value_t = 4)]
    pub blocks: usize,
    /// Projections to adapt: comma-separated of q,k,v,o,gate,up,down, or `all`.
    #[arg(long, default_value = "all")]
    pub targets: String,
    /// Learning rate of every method...
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    /// ...unless given here per method, e.g. `lora=3e-4,hira=1e-3`.
    #[arg(long)]
    pub lrs: Option<String>,
    /// Optimizer steps per stage (default: one epoch).
    #[arg(long)]
    pub steps: Option<usize>,
    #[arg(long, default_value_t = 1.0)]
    pub epochs: f64,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    #[arg(long, default_value = "cosine")]
    pub schedule: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Tokens generated per test answer.
    #[arg(long, default_value_t = 32)]
    pub max_new_tokens: usize,
    /// Also measure the base model (a "base" row).
    #[arg(long)]
    pub with_base: bool,
    /// Where the stage runs go (OUT/{method}/stage{1,2}); finished stages are reused.
    #[arg(long)]
    pub out: PathBuf,
    /// Print one JSON object: {"results": [{method, first_after_1, first_after_2,
    /// second_after_2, second_after_1}]}.
    #[arg(long)]
    pub json: bool,
}

fn parse_methods(s: &str) -> Result<Vec<Method>> {
    s.split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(Method::parse)
        .collect()
}

fn parse_lrs(s: &str) -> Result<Vec<(Method, f32)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (m, v) = p
                .split_once('=')
                .ok_or_else(|| Error::Invalid(format!("--lrs: '{p}' is not method=rate")))?;
            let v: f32 = v
                .parse()
                .map_err(|_| Error::Invalid(format!("--lrs: '{v}' is not a number")))?;
            Ok((Method::parse(m)?, v))
        })
        .collect()
}

/// The rows as a text table.
pub fn table(rows: &[ContinualRow]) -> String {
    let mut s = String::from(
        "| method | first after 1 | second after 1 | first after 2 | second after 2 | retention |\n\
         | --- | --- | --- | --- | --- | --- |\n",
    );
    for r in rows {
        s.push_str(&format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:+.3} |\n",
            r.method,
            r.first_after_1,
            r.second_after_1,
            r.first_after_2,
            r.second_after_2,
            r.first_after_2 - r.first_after_1
        ));
    }
    s
}

pub fn run(dev: &DeviceArgs, a: &ContinualArgs) -> Result<()> {
    let cfg = ContinualConfig {
        first: a.first.clone(),
        second: a.second.clone(),
        eval_first: a.eval_first.clone(),
        eval_second: a.eval_second.clone(),
        methods: parse_methods(&a.methods)?,
        rank: a.rank,
        blocks: a.blocks,
        train: FinetuneConfig {
            lr: a.lr,
            steps: a.steps,
            epochs: a.epochs,
            batch: a.batch,
            max_len: a.max_len,
            warmup: a.warmup,
            schedule: Schedule::parse(&a.schedule)?,
            seed: a.seed,
            targets: vec![a.targets.clone()],
            ..FinetuneConfig::default()
        },
        lrs: a
            .lrs
            .as_deref()
            .map(parse_lrs)
            .transpose()?
            .unwrap_or_default(),
        max_new_tokens: a.max_new_tokens,
        out: a.out.clone(),
    };
    let gpu = dev.open()?;
    let ck = load_checkpoint(&a.model)?;
    let mut rows = Vec::new();
    if a.with_base {
        rows.push(base_row(&gpu, &ck, &cfg)?);
    }
    rows.extend(continual(&gpu, &ck, &cfg, &mut |p| match p {
        Progress::Train {
            method,
            stage,
            event:
                Event::Step {
                    step,
                    total_steps,
                    loss,
                    ..
                },
        } if step == total_steps => {
            eprintln!(
                "{} stage {stage}: {total_steps} steps, last loss {loss:.4}",
                method.name()
            );
        }
        Progress::Accuracy {
            method,
            stage,
            task,
            report,
        } => {
            eprintln!(
                "{method} after stage {stage}: task {task} accuracy {:.3} (n = {})",
                report.accuracy, report.n
            );
        }
        _ => {}
    })?);
    if a.json {
        println!("{}", serde_json::json!({ "results": rows }));
    } else {
        print!("{}", table(&rows));
    }
    Ok(())
}
