//! Answer extraction and accuracy, as LLM-Adapters scores its benchmarks
//! (commonsense_evaluate.py and evaluate.py):
//!
//! | format       | tasks                                         | prediction                    |
//! |--------------|-----------------------------------------------|-------------------------------|
//! | `boolq`      | boolq                                         | first `true` / `false`        |
//! | `piqa`       | piqa                                          | first `solution1`/`solution2` |
//! | `answer`     | siqa, arc, obqa, choice                       | first `answer1` … `answer5`   |
//! | `hellaswag`  | hellaswag                                     | first `ending1` … `ending4`   |
//! | `winogrande` | winogrande                                    | first `option1` / `option2`   |
//! | `number`     | arith, gsm8k, svamp, multiarith, addsub, ... | last number (commas removed)  |
//!
//! Labels match case-sensitively, as the Python regexes do. A label is correct when it
//! equals the gold label; a number when |predicted − gold| ≤ 0.001.

use std::collections::BTreeMap;

use crate::{Error, Result};

/// How a task's answers are written and found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnswerFormat {
    BoolQ,
    Piqa,
    /// answer1 … answer5 (SIQA, ARC, OBQA and boha's `choice` task).
    Answer,
    HellaSwag,
    WinoGrande,
    /// The last number in the text.
    Number,
}

/// Absolute tolerance for numeric answers (LLM-Adapters' evaluate.py).
pub const NUMBER_TOLERANCE: f64 = 1e-3;

impl AnswerFormat {
    /// The format of a task name (case-insensitive; LLM-Adapters' dataset names and
    /// short forms are both accepted).
    pub fn for_task(task: &str) -> Result<AnswerFormat> {
        let t = task.to_ascii_lowercase().replace('-', "_");
        Ok(match t.as_str() {
            "boolq" => AnswerFormat::BoolQ,
            "piqa" => AnswerFormat::Piqa,
            "siqa" | "social_i_qa" | "arc" | "arc_c" | "arc_e" | "arc_challenge" | "arc_easy"
            | "obqa" | "openbookqa" | "choice" | "find" => AnswerFormat::Answer,
            "hellaswag" => AnswerFormat::HellaSwag,
            "winogrande" => AnswerFormat::WinoGrande,
            "arith" | "arithmetic" | "math" | "gsm8k" | "svamp" | "multiarith" | "addsub"
            | "singleeq" | "mawps" => AnswerFormat::Number,
            _ => {
                return Err(Error::Invalid(format!(
                    "unknown task '{task}' (expected boolq, piqa, siqa, arc, obqa, hellaswag, \
                     winogrande, choice, find, arith, gsm8k, svamp, multiarith, addsub, singleeq \
                     or mawps)"
                )))
            }
        })
    }

    /// The labels of a label format, in order (none for `Number`).
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            AnswerFormat::BoolQ => &["true", "false"],
            AnswerFormat::Piqa => &["solution1", "solution2"],
            AnswerFormat::Answer => &["answer1", "answer2", "answer3", "answer4", "answer5"],
            AnswerFormat::HellaSwag => &["ending1", "ending2", "ending3", "ending4"],
            AnswerFormat::WinoGrande => &["option1", "option2"],
            AnswerFormat::Number => &[],
        }
    }
}

/// An extracted answer.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    Label(&'static str),
    Number(f64),
}

/// The answer in `text` under `format`, or `None` when there is none.
pub fn extract(format: AnswerFormat, text: &str) -> Option<Answer> {
    match format {
        AnswerFormat::Number => last_number(text).map(Answer::Number),
        _ => first_label(format.labels(), text.trim()).map(Answer::Label),
    }
}

/// The leftmost occurrence of any label (a regex alternation's first match).
fn first_label(labels: &[&'static str], text: &str) -> Option<&'static str> {
    (0..text.len())
        .filter(|&i| text.is_char_boundary(i))
        .find_map(|i| labels.iter().find(|l| text[i..].starts_with(**l)).copied())
}

/// The last match of `-?\d+\.?\d*` after removing commas, as a float.
pub fn last_number(text: &str) -> Option<f64> {
    let s: Vec<u8> = text.bytes().filter(|&b| b != b',').collect();
    let mut last = None;
    let mut i = 0;
    while i < s.len() {
        if !s[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = if i > 0 && s[i - 1] == b'-' { i - 1 } else { i };
        let mut j = i;
        while j < s.len() && s[j].is_ascii_digit() {
            j += 1;
        }
        if j < s.len() && s[j] == b'.' {
            j += 1;
            while j < s.len() && s[j].is_ascii_digit() {
                j += 1;
            }
        }
        let tok = std::str::from_utf8(&s[start..j]).ok()?;
        last = tok.trim_end_matches('.').parse::<f64>().ok().or(last);
        i = j;
    }
    last
}

/// Whether the generated `text` answers `gold` (a label such as `answer3`, or a number
/// as text; a gold text that is not a plain number is read by the same extractor).
pub fn is_correct(format: AnswerFormat, text: &str, gold: &str) -> bool {
    match (extract(format, text), format) {
        (Some(Answer::Number(p)), AnswerFormat::Number) => match gold_number(gold) {
            Some(g) => (p - g).abs() <= NUMBER_TOLERANCE,
            None => false,
        },
        // A gold text such as "the correct answer is answer2" is read like a prediction.
        (Some(Answer::Label(p)), _) => first_label(format.labels(), gold.trim()) == Some(p),
        _ => false,
    }
}

fn gold_number(gold: &str) -> Option<f64> {
    gold.trim()
        .replace(',', "")
        .parse::<f64>()
        .ok()
        .or_else(|| last_number(gold))
}

/// Accuracy over a set of records.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct TaskScore {
    pub accuracy: f64,
    pub n: usize,
}

/// `{"accuracy": f, "n": u, "per_task": {name: {"accuracy": f, "n": u}}}`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AccuracyReport {
    pub accuracy: f64,
    pub n: usize,
    pub per_task: BTreeMap<String, TaskScore>,
}

/// Counts correct answers per task.
#[derive(Clone, Debug, Default)]
pub struct Scorer {
    counts: BTreeMap<String, (usize, usize)>,
}

impl Scorer {
    pub fn new() -> Scorer {
        Scorer::default()
    }

    /// Scores one generation of `task` against `gold`; returns whether it was correct.
    pub fn add(&mut self, task: &str, generated: &str, gold: &str) -> Result<bool> {
        let ok = is_correct(AnswerFormat::for_task(task)?, generated, gold);
        self.record(task, ok);
        Ok(ok)
    }

    /// Records an already-judged answer.
    pub fn record(&mut self, task: &str, correct: bool) {
        let e = self.counts.entry(task.to_string()).or_default();
        e.0 += correct as usize;
        e.1 += 1;
    }

    /// Overall and per-task accuracy (0 for an empty set).
    pub fn report(&self) -> AccuracyReport {
        let ratio = |c: usize, n: usize| if n == 0 { 0.0 } else { c as f64 / n as f64 };
        let (c, n) = self
            .counts
            .values()
            .fold((0, 0), |(c, n), (ci, ni)| (c + ci, n + ni));
        AccuracyReport {
            accuracy: ratio(c, n),
            n,
            per_task: self
                .counts
                .iter()
                .map(|(k, &(ci, ni))| {
                    (
                        k.clone(),
                        TaskScore {
                            accuracy: ratio(ci, ni),
                            n: ni,
                        },
                    )
                })
                .collect(),
        }
    }
}
