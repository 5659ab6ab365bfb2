//! `boha data --task arith|choice|find --n N --seed S [--format alpaca|compact] --out FILE.jsonl`

use std::path::PathBuf;

use clap::Args;

use boha::data::jsonl::write_jsonl;
use boha::data::tasks::{generate, TaskKind, PARTS};
use boha::{Error, Result};

/// `boha data --help`: what the tasks are and the rule of `choice`.
pub const LONG_ABOUT: &str = "\
Write a generated task as JSONL, deterministic in --seed: Alpaca-shaped records
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
share no item (e.g. --seed 1 for train, --seed 2 for test).";

#[derive(Args, Debug)]
pub struct DataArgs {
    /// arith, choice or find.
    #[arg(long)]
    pub task: String,
    /// `alpaca` (instruction/input/output with a worked answer) or `compact`
    /// (prompt/completion holding just the answer).
    #[arg(long, default_value = "alpaca")]
    pub format: String,
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
