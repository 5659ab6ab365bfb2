//! Deterministic task generators (`boha data`), so everything can be tried without
//! downloading data. Records are Alpaca-shaped (`instruction`, `input` = "", `output`)
//! with `task` and `answer` fields for evaluation.
//!
//! - `arith`: multi-step integer word problems in math_10k style, from six templates
//!   (add then subtract; rows × columns minus some; a daily rate times days plus extra;
//!   an equal share minus some; two products summed; a stock minus two sales plus a
//!   delivery). Numbers stay small (≤ 99 before the arithmetic), every intermediate
//!   result is a non-negative integer, and the output is a short worked solution that
//!   ends with "The answer is N.".
//! - `choice`: multiple choice in commonsense_170k style, 3 to 5 options. **The rule:**
//!   the options are distinct whole numbers from 1 to 99 and the question asks for
//!   either the largest or the smallest of them; the correct option is the one holding
//!   that number. Output: "the correct answer is answerK".
//! - `find`: multiple choice with an easier rule, for short runs (the demo): the question
//!   names a number and the correct option is the one holding it ("Which of these is the
//!   number 42?"). The options are written number first ("17 is answer1, 42 is
//!   answer2"), and the answer repeats the named option before the label ("42 is
//!   answer2"), so a pretrained model can find the number and copy the label after it:
//!   a few steps of fine-tuning teach both the answer format and the rule.
//!
//! ## Train and test never share an item
//!
//! An item is identified by its content that matters for the answer (the template or
//! question kind and the numbers in order; names and objects are decoration and do not
//! count). The item space is split in [`PARTS`] parts by a hash of that key, and seed `S`
//! only draws items of part `S mod PARTS`: sets made with seeds that differ modulo
//! [`PARTS`] (e.g. 1 for train and 2 for test) are disjoint by construction. Within a
//! set every item is distinct.

use std::collections::HashSet;

use serde_json::{json, Value};

use crate::rng::Rng;
use crate::{Error, Result};

/// Number of disjoint parts of each task's item space.
pub const PARTS: u64 = 16;

/// Consecutive draws without a new item after which the part counts as exhausted.
const STALE_LIMIT: usize = 200_000;

/// The generated tasks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskKind {
    Arith,
    Choice,
    Find,
}

impl TaskKind {
    pub fn parse(s: &str) -> Result<TaskKind> {
        match s {
            "arith" => Ok(TaskKind::Arith),
            "choice" => Ok(TaskKind::Choice),
            "find" => Ok(TaskKind::Find),
            _ => Err(Error::Invalid(format!(
                "unknown task '{s}' (expected arith, choice or find)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Arith => "arith",
            TaskKind::Choice => "choice",
            TaskKind::Find => "find",
        }
    }
}

/// One generated problem.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// What identifies the item (see the module docs).
    pub key: String,
    pub instruction: String,
    pub output: String,
    /// The gold answer: a number for `arith`, `answerK` for `choice` and `find`.
    pub answer: String,
    /// The completion of a compact record: the bare answer, except for `find`, where it
    /// first repeats the named number's option ("42 is answer3").
    pub completion: String,
}

impl Item {
    /// The JSONL record.
    pub fn to_json(&self, task: TaskKind) -> Value {
        json!({
            "instruction": self.instruction,
            "input": "",
            "output": self.output,
            "answer": self.answer,
            "task": task.name(),
        })
    }

    /// A short `{"prompt", "completion"}` record: the question, its options and the
    /// answer-format line as the prompt, [`Item::completion`] as the completion, for runs
    /// where every token costs (the demo). The instruction's fixed preamble and blank
    /// lines are dropped.
    pub fn to_compact_json(&self, task: TaskKind) -> Value {
        let q = self
            .instruction
            .strip_prefix(CHOICE_PREAMBLE)
            .unwrap_or(&self.instruction);
        json!({
            "prompt": format!("{}\n", q.replace("\n\n", "\n")),
            "completion": self.completion,
            "answer": self.answer,
            "task": task.name(),
        })
    }
}

/// The opening words of every `choice` instruction.
const CHOICE_PREAMBLE: &str = "Please choose the correct answer to the question: ";

/// Which part of the item space `key` lies in (FNV-1a, stable across versions).
pub fn part_of(key: &str) -> u64 {
    fnv1a(key) % PARTS
}

/// FNV-1a, 64-bit, of `bytes`: a fixed hash (no seed, the same on every platform and
/// version), for splits that must never move and for naming the file a result came from.
pub fn fnv1a(bytes: impl AsRef<[u8]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes.as_ref() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// `n` distinct items of `task` for `seed`, all in part `seed mod PARTS`.
pub fn generate(task: TaskKind, n: usize, seed: u64) -> Result<Vec<Item>> {
    let part = seed % PARTS;
    let mut rng = Rng::new(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    // About 1 draw in PARTS lands in the part; give up once new items stop coming.
    let mut stale = 0;
    while out.len() < n && stale < STALE_LIMIT {
        let item = match task {
            TaskKind::Arith => arith_item(&mut rng),
            TaskKind::Choice => choice_item(&mut rng),
            TaskKind::Find => find_item(&mut rng),
        };
        if part_of(&item.key) == part && seen.insert(item.key.clone()) {
            out.push(item);
            stale = 0;
        } else {
            stale += 1;
        }
    }
    if out.len() < n {
        return Err(Error::Invalid(format!(
            "could only make {} distinct {} items for seed {seed} (asked for {n})",
            out.len(),
            task.name()
        )));
    }
    Ok(out)
}

const NAMES: &[&str] = &[
    "Anna", "Ben", "Carla", "David", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jack", "Lena",
    "Marco", "Nora", "Omar", "Paula", "Sam",
];
const THINGS: &[&str] = &[
    "apples", "pencils", "marbles", "stickers", "cookies", "cards", "books", "shells", "coins",
    "stamps",
];

fn pick<'a>(rng: &mut Rng, list: &[&'a str]) -> &'a str {
    list[rng.below(list.len())]
}

/// Uniform integer in [lo, hi].
fn int(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    lo + rng.below((hi - lo + 1) as usize) as i64
}

fn arith_item(rng: &mut Rng) -> Item {
    let name = pick(rng, NAMES);
    let friend = pick(rng, NAMES);
    let things = pick(rng, THINGS);
    let template = rng.below(6);
    let (nums, instruction, output, answer): (Vec<i64>, String, String, i64) = match template {
        0 => {
            let (a, b) = (int(rng, 2, 60), int(rng, 2, 40));
            let c = int(rng, 1, a + b - 1);
            let (x, y) = (a + b, a + b - c);
            (
                vec![a, b, c],
                format!(
                    "{name} has {a} {things}. {name} buys {b} more and then gives {c} to {friend}. \
                     How many {things} does {name} have now?"
                ),
                format!(
                    "{name} starts with {a} {things}. After buying {b} more, {name} has {a} + {b} = {x}. \
                     After giving {c} away, {name} has {x} - {c} = {y}. The answer is {y}."
                ),
                y,
            )
        }
        1 => {
            let (a, b) = (int(rng, 2, 12), int(rng, 2, 12));
            let c = int(rng, 1, a * b - 1);
            let (x, y) = (a * b, a * b - c);
            (
                vec![a, b, c],
                format!(
                    "A box holds {a} rows of {b} {things}. {name} takes {c} {things} out of the box. \
                     How many {things} are left in the box?"
                ),
                format!(
                    "The box holds {a} * {b} = {x} {things}. After {c} are taken out, {x} - {c} = {y} \
                     are left. The answer is {y}."
                ),
                y,
            )
        }
        2 => {
            let (a, b, c) = (int(rng, 2, 30), int(rng, 2, 9), int(rng, 1, 40));
            let (x, y) = (a * b, a * b + c);
            (
                vec![a, b, c],
                format!(
                    "{name} reads {a} pages every day for {b} days and then reads {c} more pages. \
                     How many pages does {name} read in total?"
                ),
                format!(
                    "In {b} days {name} reads {a} * {b} = {x} pages. Adding {c} more gives {x} + {c} = {y} \
                     pages. The answer is {y}."
                ),
                y,
            )
        }
        3 => {
            let (b, k) = (int(rng, 2, 9), int(rng, 2, 11));
            let a = b * k;
            let c = int(rng, 1, k - 1);
            let y = k - c;
            (
                vec![a, b, c],
                format!(
                    "{name} shares {a} {things} equally among {b} friends. Each friend then gives {c} \
                     of them away. How many {things} does each friend have left?"
                ),
                format!(
                    "Each friend gets {a} / {b} = {k} {things}. After giving {c} away, each has {k} - {c} \
                     = {y}. The answer is {y}."
                ),
                y,
            )
        }
        4 => {
            let (a, b, c, d) = (
                int(rng, 2, 9),
                int(rng, 2, 12),
                int(rng, 2, 9),
                int(rng, 2, 12),
            );
            let (x, z, y) = (a * b, c * d, a * b + c * d);
            (
                vec![a, b, c, d],
                format!(
                    "{name} buys {a} packs of {b} {things} and {c} packs of {d} {things}. How many \
                     {things} does {name} buy in all?"
                ),
                format!(
                    "The first packs hold {a} * {b} = {x} {things} and the second {c} * {d} = {z}. \
                     Together that is {x} + {z} = {y}. The answer is {y}."
                ),
                y,
            )
        }
        _ => {
            let a = int(rng, 20, 99);
            let b = int(rng, 1, a / 2);
            let c = int(rng, 1, a - b);
            let d = int(rng, 2, 40);
            let (x, z, y) = (a - b, a - b - c, a - b - c + d);
            (
                vec![a, b, c, d],
                format!(
                    "A shop has {a} {things}. It sells {b} of them in the morning and {c} in the \
                     afternoon, then receives a delivery of {d} more. How many {things} does the shop \
                     have now?"
                ),
                format!(
                    "After the morning the shop has {a} - {b} = {x}. After the afternoon it has {x} - {c} \
                     = {z}. The delivery brings it to {z} + {d} = {y}. The answer is {y}."
                ),
                y,
            )
        }
    };
    let key = format!(
        "arith{template}:{}",
        nums.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    Item {
        key,
        instruction,
        output,
        answer: answer.to_string(),
        completion: answer.to_string(),
    }
}

/// `k` distinct whole numbers from 1 to 99.
fn options(rng: &mut Rng, k: usize) -> Vec<i64> {
    let mut opts: Vec<i64> = Vec::with_capacity(k);
    while opts.len() < k {
        let v = int(rng, 1, 99);
        if !opts.contains(&v) {
            opts.push(v);
        }
    }
    opts
}

/// How the options of a multiple-choice item are written.
#[derive(Clone, Copy)]
enum Layout {
    /// `Answer1: 17 Answer2: 42 …` (commonsense_170k's form; `choice`).
    Labels,
    /// `17 is answer1, 42 is answer2, …` (`find`): the label follows its number, so a
    /// model can find the named number and copy what comes after it. The question is
    /// asked again after the answer-format line.
    Pairs,
}

/// A multiple-choice item asking `question` over `opts`, whose answer is option
/// `correct` (1-based); `kind` names the rule in the item's key.
fn choice_form(kind: &str, question: &str, opts: &[i64], correct: usize, layout: Layout) -> Item {
    let options = match layout {
        Layout::Labels => opts
            .iter()
            .enumerate()
            .map(|(i, v)| format!("Answer{}: {v}", i + 1))
            .collect::<Vec<_>>()
            .join(" "),
        Layout::Pairs => opts
            .iter()
            .enumerate()
            .map(|(i, v)| format!("{v} is answer{}", i + 1))
            .collect::<Vec<_>>()
            .join(", "),
    };
    let format_line: Vec<String> = (1..=opts.len()).map(|i| format!("answer{i}")).collect();
    let mut instruction = format!(
        "{CHOICE_PREAMBLE}{question}\n\n{options}\n\nAnswer format: {}",
        format_line.join("/")
    );
    if let Layout::Pairs = layout {
        // Asked again last, next to where the answer starts: the number to copy is then
        // the nearest one.
        instruction = format!("{instruction}\n\n{question}");
    }
    let answer = format!("answer{correct}");
    let (output, completion) = match layout {
        Layout::Labels => (format!("the correct answer is {answer}"), answer.clone()),
        Layout::Pairs => {
            let pair = format!("{} is {answer}", opts[correct - 1]);
            (format!("{pair}, so the correct answer is {answer}"), pair)
        }
    };
    let key = format!(
        "{kind}:{}",
        opts.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(",")
    );
    Item {
        key,
        instruction,
        output,
        answer,
        completion,
    }
}

fn find_item(rng: &mut Rng) -> Item {
    let k = int(rng, 3, 5) as usize;
    let opts = options(rng, k);
    let correct = rng.below(opts.len()) + 1;
    let t = opts[correct - 1];
    choice_form(
        &format!("find:{t}"),
        &format!("Which of these is the number {t}?"),
        &opts,
        correct,
        Layout::Pairs,
    )
}

fn choice_item(rng: &mut Rng) -> Item {
    let k = int(rng, 3, 5) as usize;
    let largest = rng.below(2) == 0;
    let opts = options(rng, k);
    let target = if largest {
        *opts.iter().max().expect("k ≥ 3")
    } else {
        *opts.iter().min().expect("k ≥ 3")
    };
    let correct = opts.iter().position(|&v| v == target).expect("present") + 1;
    let word = if largest { "largest" } else { "smallest" };
    choice_form(
        &format!("choice:{word}"),
        &format!("Which of these numbers is the {word}?"),
        &opts,
        correct,
        Layout::Labels,
    )
}
