//! The study's data files, made once from the benchmark package
//! ([`crate::data::benchmarks`]): per suite a validation slice and a training set taken
//! from the training parts, and per task a test set taken from its test part.
//!
//! - Training parts are put in the fixed shuffled order of [`mix`] (a single benchmark
//!   too, so that a slice of GSM8K is not a run of neighbouring doc ids); the first
//!   `val_items` records (at most half the part) are the validation slice, the next
//!   `train_items` the training set. The slice never meets the test part, which is split off first.
//! - A test set is the `test_items` items of the test part with the smallest split
//!   hashes ([`Item::split_hash`], the order that chose the test part), the test set's
//!   items before a validation set's (OpenBookQA's, [`Benchmark::validation_variant`]),
//!   written in [`Item::doc_order`].
//!
//! `results/data.json` records each file's size and FNV-1a. A study that finds the files
//! this build makes differ from those it began with ([`changed`]) redoes the tests of a
//! changed test set and refuses changed training data, whose trained runs would no
//! longer match it.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::preset::{Preset, Suite};
use crate::data::benchmarks::{load, mix, split_items, Benchmark, Item, Split};
use crate::data::jsonl::write_atomic;
use crate::data::tasks::fnv1a;
use crate::{Error, Result};

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

/// One of a study's data files, made in memory.
#[derive(Clone, Debug)]
pub struct DataFile {
    /// Its name in the data folder (`commonsense.train.jsonl`, `obqa.test.jsonl`, …).
    pub name: String,
    /// The JSONL text.
    pub text: String,
    /// How many records it holds.
    pub items: usize,
    /// The task of a test set; `None` for training and validation files.
    pub test_of: Option<Benchmark>,
    /// For a test set of ranked choices, the accuracy of guessing: uniformly (the mean
    /// of 1/choices) and always taking the most frequent gold position.
    pub baselines: Option<(f64, f64)>,
}

impl DataFile {
    /// The file of `items`; training and validation records leave out the ranked
    /// choices (`rc`), which only testing reads, so that a change to how tests are
    /// posed leaves the training data, and every trained run, as they were.
    fn new(path: &Path, items: &[Item], test_of: Option<Benchmark>) -> Result<DataFile> {
        let mut text = String::new();
        for i in items {
            let mut v = i.to_json();
            if test_of.is_none() {
                if let Some(o) = v.as_object_mut() {
                    o.remove("rc");
                }
            }
            text.push_str(&serde_json::to_string(&v).map_err(|e| Error::Invalid(e.to_string()))?);
            text.push('\n');
        }
        let ranked: Vec<_> = items.iter().filter_map(|i| i.rc.as_ref()).collect();
        let baselines = (test_of.is_some() && !ranked.is_empty() && ranked.len() == items.len())
            .then(|| {
                let n = ranked.len() as f64;
                let uniform = ranked
                    .iter()
                    .map(|r| 1.0 / r.choices.len() as f64)
                    .sum::<f64>()
                    / n;
                let most = ranked.iter().map(|r| r.choices.len()).max().unwrap_or(0);
                let majority = (0..most)
                    .map(|k| ranked.iter().filter(|r| r.gold == k).count())
                    .max()
                    .unwrap_or(0) as f64
                    / n;
                (uniform, majority)
            });
        Ok(DataFile {
            name: file_name(path),
            text,
            items: items.len(),
            test_of,
            baselines,
        })
    }

    /// FNV-1a of its text, as data.json records it.
    pub fn fnv1a(&self) -> String {
        format!("{:016x}", fnv1a(&self.text))
    }
}

/// Every data file of `preset`, made from the unpacked package at `root`.
pub fn data_files(preset: &Preset, root: &Path) -> Result<Vec<DataFile>> {
    let dir = Path::new("");
    let mut files = Vec::new();
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
        files.push(DataFile::new(&val_file(dir, suite), &val, None)?);
        files.push(DataFile::new(&train_file(dir, suite), &train, None)?);
        for &t in &suite.tests {
            if !tests.contains(&t) {
                tests.push(t);
            }
        }
    }
    for t in tests {
        let mut part = split_items(load(t, root)?, Split::Test);
        part.sort_by_key(|i| (i.validation, i.split_hash(), i.doc_id));
        part.truncate(preset.test_items);
        part.sort_by_key(Item::doc_order);
        files.push(DataFile::new(&test_file(dir, t), &part, Some(t))?);
    }
    Ok(files)
}

/// Writes `files` into `dir`, each atomically (a file that exists is whole), and
/// returns what data.json records of them: `{"files": {NAME: n}, "fnv1a": {NAME: hex},
/// "baselines": {TASK: {"uniform": p, "majority": p}}}`.
pub fn write_files(files: &[DataFile], dir: &Path) -> Result<Value> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let mut sizes = serde_json::Map::new();
    let mut hashes = serde_json::Map::new();
    let mut baselines = serde_json::Map::new();
    for f in files {
        write_atomic(&dir.join(&f.name), f.text.as_bytes())?;
        sizes.insert(f.name.clone(), json!(f.items));
        hashes.insert(f.name.clone(), json!(f.fnv1a()));
        if let (Some(t), Some((uniform, majority))) = (f.test_of, f.baselines) {
            baselines.insert(
                t.name().to_string(),
                json!({"uniform": uniform, "majority": majority}),
            );
        }
    }
    Ok(json!({ "files": sizes, "fnv1a": hashes, "baselines": baselines }))
}

/// A data file that differs from the one a study began with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    pub name: String,
    pub test_of: Option<Benchmark>,
    /// Its size then (`None` when data.json did not list it) and now.
    pub was: Option<usize>,
    pub now: usize,
}

/// The files of `files` that differ from those `recorded` (a data.json) lists: by the
/// recorded FNV-1a where there is one, else by the copy in `dir` where it exists, else
/// by size.
pub fn changed(files: &[DataFile], recorded: &Value, dir: &Path) -> Vec<Change> {
    files
        .iter()
        .filter_map(|f| {
            let was = recorded["files"][&f.name].as_u64().map(|n| n as usize);
            let same = match (recorded["fnv1a"][&f.name].as_str(), was) {
                (Some(h), _) => h == f.fnv1a(),
                (None, None) => false,
                (None, Some(n)) => match std::fs::read(dir.join(&f.name)) {
                    Ok(bytes) => bytes == f.text.as_bytes(),
                    Err(_) => n == f.items,
                },
            };
            (!same).then(|| Change {
                name: f.name.clone(),
                test_of: f.test_of,
                was,
                now: f.items,
            })
        })
        .collect()
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default()
}
