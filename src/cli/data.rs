//! `boha data --task arith|choice --n N --seed S --out FILE.jsonl`

use std::path::PathBuf;

use clap::Args;

use boha::data::jsonl::write_jsonl;
use boha::data::tasks::{generate, TaskKind, PARTS};
use boha::Result;

/// `boha data --help`: what the tasks are and the rule of `choice`.
pub const LONG_ABOUT: &str = "\
Write a generated task as JSONL: Alpaca-shaped records (instruction, input, output) with
`task` and `answer` fields, deterministic in --seed.

arith:  multi-step integer word problems in math_10k style (six templates, small
        numbers); the output is a short worked solution ending with \"The answer is N.\".
choice: multiple choice in commonsense_170k style with 3 to 5 options, answered
        \"the correct answer is answerK\". The rule: the options are distinct whole
        numbers from 1 to 99 and the question asks for the largest or the smallest of
        them; the correct option is the one holding that number.

Seeds that differ modulo 16 draw from disjoint parts of the item space, so their sets
share no item (e.g. --seed 1 for train, --seed 2 for test).";

#[derive(Args, Debug)]
pub struct DataArgs {
    /// arith or choice.
    #[arg(long)]
    pub task: String,
    /// Number of records.
    #[arg(long)]
    pub n: usize,
    /// Seed; sets from seeds that differ modulo 16 share no item.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output JSONL file (written atomically).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(a: &DataArgs) -> Result<()> {
    let task = TaskKind::parse(&a.task)?;
    let items = generate(task, a.n, a.seed)?;
    let records: Vec<_> = items.iter().map(|i| i.to_json(task)).collect();
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
