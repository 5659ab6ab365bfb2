//! The study's data files, made once from the benchmark package
//! ([`crate::data::benchmarks`]): per suite a validation slice and a training set taken
//! from the training parts, and per task a test set taken from its test part.
//!
//! - Training parts are put in the fixed shuffled order of [`mix`] (a single benchmark
//!   too, so that a slice of GSM8K is not a run of neighbouring doc ids); the first
//!   `val_items` records (at most half the part) are the validation slice, the next
//!   `train_items` the training set. The slice never meets the test part, which is split off first.
//! - A test set is the `test_items` items of the test part with the smallest split
//!   hashes ([`split_hash`], the order that chose the test part), written in doc id
//!   order.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::preset::{Preset, Suite};
use crate::data::benchmarks::{load, mix, split_hash, split_items, Benchmark, Item, Split};
use crate::data::jsonl::write_jsonl;
use crate::Result;

/// `DIR/SUITE.train.jsonl`.
pub fn train_file(dir: &Path, suite: &Suite) -> PathBuf {
    dir.join(format!("{}.train.jsonl", suite.name))
}

/// `DIR/SUITE.val.jsonl`.
pub fn val_file(dir: &Path, suite: &Suite) -> PathBuf {
    dir.join(format!("{}.val.jsonl", suite.name))
}

/// `DIR/TASK.test.jsonl`.
pub fn test_file(dir: &Path, task: Benchmark) -> PathBuf {
    dir.join(format!("{}.test.jsonl", task.name()))
}

fn write(path: &Path, items: &[Item]) -> Result<()> {
    let lines: Vec<Value> = items.iter().map(Item::to_json).collect();
    write_jsonl(path, &lines)
}

/// Writes every file of `preset` into `dir` from the unpacked package at `root` and
/// returns their sizes as `{"FILE": n}`. Files are written atomically, so a file that
/// exists is whole.
pub fn prepare(preset: &Preset, root: &Path, dir: &Path) -> Result<Value> {
    std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    let mut sizes = serde_json::Map::new();
    let mut tests = Vec::new();
    for suite in &preset.suites {
        let mut train = Vec::new();
        for &t in &suite.train {
            train.extend(split_items(load(t, root)?, Split::Train));
        }
        let mut train = mix(train);
        let val: Vec<Item> = train
            .drain(..preset.val_items.min(train.len() / 2))
            .collect();
        train.truncate(preset.train_items);
        for (path, items) in [
            (val_file(dir, suite), &val),
            (train_file(dir, suite), &train),
        ] {
            write(&path, items)?;
            sizes.insert(file_name(&path), json!(items.len()));
        }
        for &t in &suite.tests {
            if !tests.contains(&t) {
                tests.push(t);
            }
        }
    }
    for t in tests {
        let mut part = split_items(load(t, root)?, Split::Test);
        part.sort_by_key(|i| (split_hash(i.task, i.doc_id), i.doc_id));
        part.truncate(preset.test_items);
        part.sort_by_key(|i| i.doc_id);
        let path = test_file(dir, t);
        write(&path, &part)?;
        sizes.insert(file_name(&path), json!(part.len()));
    }
    Ok(Value::Object(sizes))
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}
