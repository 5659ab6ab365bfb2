//! Running a study: every piece of work is a unit whose result is one JSON file under
//! `OUT/results/`, and a unit whose file exists is never run again. A study can thus be
//! stopped anywhere (`--max-minutes`, Ctrl-C, a lost machine) and continued by running
//! the same command again, in the same session or a later one.
//!
//! Units, in order:
//!
//! 1. the data files (`results/data.json`, files in `OUT/work/data/`);
//! 2. two phases, the first for the methods the headline verdicts compare ([`HEADLINE`]:
//!    BoHA, LoRA, the additive control), the second for the others, each with:
//!    - per suite (commonsense, then GSM8K), whole before the next:
//!      - the base model on its test sets (`results/eval/base/TASK.json`);
//!      - per method, in the preset's order, whole before the next: the sweep, each
//!        rate of the method's grid with the first seed
//!        (`results/train/SUITE/METHOD/lrLR_sSEED.json`, holding the final validation
//!        loss), and rates beyond an end of the grid while the best rate sits there
//!        ([`super::sweep`]); then the chosen rate (lowest validation loss) with every
//!        seed, and its test accuracy on each of the suite's tasks
//!        (`results/eval/SUITE/METHOD/lrLR_sSEED/TASK.json`); the first seed's run is
//!        the sweep's;
//!    - the continual diagnostic: each commonsense run at the chosen rate (stage 1) goes
//!      on training on GSM8K at the method's GSM8K rate (stage 2, `continual/…`), and is
//!      tested on every task; with the first seed, stage 2 also runs at each other rate
//!      of the method's GSM8K sweep, which traces retention against plasticity for the
//!      comparison at matched plasticity.
//!
//! Adapters and checkpoints live in `OUT/work/` (not meant to be committed). Training
//! is deterministic, so a unit that needs an adapter another session made and did not
//! keep trains it again from the same settings. A training run checkpoints every
//! `save_every` steps and is resumed from there when it was cut short; a test keeps its
//! finished chunks of items ([`super::partial`]) and goes on from the last one.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use super::data::{changed, data_files, test_file, train_file, val_file, write_files, Change};
use super::partial::{chunk_of, Partial};
use super::preset::{Preset, Suite};
use super::sweep::{Next, Walk};
use crate::adapters::files::{CONFIG_FILE, WEIGHTS_FILE};
use crate::adapters::Method;
use crate::bench::record::Record;
use crate::data::benchmarks::Benchmark;
use crate::data::jsonl::{read_jsonl, write_atomic};
use crate::data::tasks::fnv1a;
use crate::eval::{evaluate, EvalOptions};
use crate::gpu::Gpu;
use crate::loaders::Checkpoint;
use crate::model::kv_cache::Model;
use crate::model::transformer::Adapters;
use crate::train::continual::matched_spec;
use crate::train::metrics::read_curves;
use crate::train::run::{CHECKPOINT_FILE, METRICS_FILE};
use crate::train::{finetune, Control, FinetuneConfig};
use crate::{Error, Result};

/// A test unit reports its progress every this many items.
const PROGRESS_EVERY: usize = 50;

/// The methods the headline verdicts compare (BoHA against LoRA on accuracy, against the
/// additive control on retention): run through the whole study before the others.
pub const HEADLINE: [Method; 3] = [Method::Boha, Method::Lora, Method::Additive];

/// The suite name of the continual diagnostic's second stage.
pub const CONTINUAL: &str = "continual";

/// One training run: `SUITE/METHOD/lrLR_sSEED`.
#[derive(Clone, Debug, PartialEq)]
pub struct RunKey {
    pub suite: String,
    pub method: Method,
    pub lr: f32,
    pub seed: u64,
}

/// A learning rate as a short, exact-enough name: 3e-3, 1.5e-2.
pub fn lr_name(lr: f32) -> String {
    let s = format!("{lr:.2e}");
    let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
    let m = m.trim_end_matches('0').trim_end_matches('.');
    format!("{m}e{e}")
}

impl RunKey {
    pub fn rel(&self) -> String {
        format!(
            "{}/{}/lr{}_s{}",
            self.suite,
            self.method.name(),
            lr_name(self.lr),
            self.seed
        )
    }
}

/// Where a study lives.
pub struct Layout {
    pub out: PathBuf,
}

impl Layout {
    pub fn results(&self) -> PathBuf {
        self.out.join("results")
    }
    pub fn data(&self) -> PathBuf {
        self.out.join("work").join("data")
    }
    /// Every test result of `task`, of the base model and of every run.
    pub fn eval_results_of(&self, task: Benchmark) -> Result<Vec<PathBuf>> {
        let name = format!("{}.json", task.name());
        let mut found = Vec::new();
        let mut dirs = vec![self.results().join("eval")];
        while let Some(d) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries {
                let p = e.map_err(|e| Error::io(&d, e))?.path();
                if p.is_dir() {
                    dirs.push(p);
                } else if p.file_name().is_some_and(|f| f == name.as_str()) {
                    found.push(p);
                }
            }
        }
        found.sort();
        Ok(found)
    }
    pub fn run_dir(&self, k: &RunKey) -> PathBuf {
        self.out.join("work").join("runs").join(k.rel())
    }
    pub fn train_result(&self, k: &RunKey) -> PathBuf {
        self.results()
            .join("train")
            .join(format!("{}.json", k.rel()))
    }
    /// `results/eval/base/TASK.json` or `results/eval/RUN/TASK.json`.
    pub fn eval_result(&self, run: Option<&RunKey>, task: Benchmark) -> PathBuf {
        self.results().join("eval").join(Self::test_rel(run, task))
    }
    /// `work/partial/base/TASK.json` or `work/partial/RUN/TASK.json`: a test's chunks
    /// done ([`super::partial`]).
    pub fn partial(&self, run: Option<&RunKey>, task: Benchmark) -> PathBuf {
        self.out
            .join("work")
            .join("partial")
            .join(Self::test_rel(run, task))
    }
    fn test_rel(run: Option<&RunKey>, task: Benchmark) -> PathBuf {
        let d = run.map_or(PathBuf::from("base"), |k| PathBuf::from(k.rel()));
        d.join(format!("{}.json", task.name()))
    }
}

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every unit has its result.
    Complete,
    /// The time limit came first; running the same command again continues.
    Stopped,
}

/// Removes `path`; one already gone is fine.
fn remove_if_there(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// Reads a JSON result.
pub fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::BadFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

fn write_json(path: &Path, v: &Value) -> Result<()> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
    }
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::Invalid(e.to_string()))?;
    write_atomic(path, (text + "\n").as_bytes())
}

/// The sweep of `method` on `suite` ([`super::sweep`]), read from the sweep runs'
/// result files (first seed).
pub fn sweep_of(layout: &Layout, p: &Preset, suite: &str, method: Method) -> Result<Walk> {
    p.sweep(method, |lr| {
        let k = RunKey {
            suite: suite.into(),
            method,
            lr,
            seed: p.seeds[0],
        };
        let path = layout.train_result(&k);
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(
            read_json(&path)?
                .get("val_loss")
                .and_then(Value::as_f64)
                .unwrap_or(f64::INFINITY),
        ))
    })
}

/// The chosen rate of `method` on `suite`: the lowest final validation loss of its
/// sweep; None until the sweep is done.
pub fn chosen_lr(layout: &Layout, p: &Preset, suite: &str, method: Method) -> Result<Option<f32>> {
    Ok(match sweep_of(layout, p, suite, method)?.next {
        Next::Chosen(lr) => Some(lr),
        Next::Train(_) => None,
    })
}

/// A study in progress on one device and model.
pub struct Study<'a> {
    pub gpu: &'a Gpu,
    pub ck: &'a Checkpoint,
    pub preset: &'a Preset,
    pub layout: Layout,
    /// Where the benchmark package is unpacked.
    pub package: PathBuf,
    /// Units are not started after this instant.
    pub deadline: Option<Instant>,
    pub say: &'a mut dyn FnMut(&str),
}

impl Study<'_> {
    fn out_of_time(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// The result fields every file carries: the envelope (device, driver, commit,
    /// date, command) and the preset.
    fn envelope(&self) -> Value {
        json!({
            "record": Record::now(self.gpu),
            "preset": self.preset.name,
            "model": self.ck_name(),
        })
    }

    fn ck_name(&self) -> String {
        self.ck
            .source
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Runs every unit not yet done, in order, until the deadline.
    pub fn run(&mut self) -> Result<Outcome> {
        let p = self.preset;
        self.data_units()?;
        // The methods the headline verdicts need (BoHA against LoRA, BoHA's retention
        // against the additive control's) go through every suite and the continual
        // diagnostic first, the others after; within a phase each suite runs whole
        // before the next, so a study cut short holds finished comparisons.
        let (headline, rest): (Vec<Method>, Vec<Method>) =
            p.methods.iter().partition(|m| HEADLINE.contains(m));
        for group in [headline, rest] {
            if group.is_empty() {
                continue;
            }
            for suite in &p.suites {
                if !self.suite_units(suite, &group)? {
                    return Ok(Outcome::Stopped);
                }
            }
            if !self.continual_units(&group)? {
                return Ok(Outcome::Stopped);
            }
        }
        Ok(Outcome::Complete)
    }

    /// The data files: made from the package at every start, and written with
    /// `results/data.json` when they are new or changed. A changed test set's results
    /// are removed, to be redone; changed training data is an error.
    fn data_units(&mut self) -> Result<()> {
        let data_result = self.layout.results().join("data.json");
        let dir = self.layout.data();
        let files = data_files(self.preset, &self.package)?;
        let recorded = if data_result.exists() {
            Some(read_json(&data_result)?)
        } else {
            None
        };
        let changes = recorded
            .as_ref()
            .map(|r| changed(&files, r, &dir))
            .unwrap_or_default();
        if let Some(c) = changes.iter().find(|c| c.test_of.is_none()) {
            return Err(Error::BadFile {
                path: data_result,
                message: format!(
                    "the training data {} is not what this build makes from the package \
                     ({}); the trained runs would not match it, so continue this study with \
                     the build that began it or start a new --out",
                    c.name,
                    sizes(c)
                ),
            });
        }
        for c in &changes {
            let task = c.test_of.expect("training changes were refused");
            let stale = self.layout.eval_results_of(task)?;
            (self.say)(&format!(
                "{} changed since this study began ({}): its {} test results are redone",
                c.name,
                sizes(c),
                stale.len()
            ));
            for f in stale {
                std::fs::remove_file(&f).map_err(|e| Error::io(&f, e))?;
            }
        }
        let complete = dir.join(".complete");
        let missing = files.iter().any(|f| !dir.join(&f.name).is_file());
        let unhashed = recorded
            .as_ref()
            .is_some_and(|r| r.get("fnv1a").is_none() || r.get("baselines").is_none());
        if recorded.is_none() || !changes.is_empty() || missing || unhashed || !complete.exists() {
            (self.say)("writing the data files");
            let mut v = write_files(&files, &dir)?;
            let record = match recorded {
                // Unchanged data keeps the record of the study's beginning (a study that
                // began before data.json held hashes and baselines gains them).
                Some(mut r) if changes.is_empty() => {
                    r["fnv1a"] = v["fnv1a"].take();
                    r["baselines"] = v["baselines"].take();
                    r
                }
                _ => {
                    let mut r = self.envelope();
                    r["files"] = v["files"].take();
                    r["fnv1a"] = v["fnv1a"].take();
                    r["baselines"] = v["baselines"].take();
                    r
                }
            };
            write_json(&data_result, &record)?;
            write_atomic(&complete, b"")?;
        }
        Ok(())
    }

    /// `suite`'s units for `methods`: the base model's tests, then each method's sweep
    /// and its first seed's tests, method after method, then every further seed of every
    /// method at its chosen rate, trained and tested. False when the deadline stopped it.
    fn suite_units(&mut self, suite: &Suite, methods: &[Method]) -> Result<bool> {
        let p = self.preset;
        if !self.eval_run(None, &suite.tests)? {
            return Ok(false);
        }
        // The first seed of every method before any further seed, methods in the
        // report's order: a study cut short then holds a finished comparison of the
        // methods (BoHA against LoRA on every test item, one seed each) rather than one
        // method's seeds and nothing to compare them with; the further seeds narrow it.
        let mut chosen = Vec::new();
        for &m in methods {
            // The sweep with the first seed: the grid, extended while its best rate
            // sits at an end.
            let lr = loop {
                match sweep_of(&self.layout, p, suite.name, m)?.next {
                    Next::Chosen(lr) => break lr,
                    Next::Train(lr) => {
                        let k = RunKey {
                            suite: suite.name.into(),
                            method: m,
                            lr,
                            seed: p.seeds[0],
                        };
                        let extends = !p.lrs_of(m).contains(&lr);
                        if extends && !self.layout.run_dir(&k).exists() {
                            (self.say)(&format!(
                                "{} on {}: the best rate so far is at an end of the rates \
                                 tried; the sweep adds {}",
                                m.name(),
                                suite.name,
                                lr_name(lr)
                            ));
                        }
                        if self.train(&k, suite, None)?.is_none() {
                            return Ok(false);
                        }
                    }
                }
            };
            // The first seed's run is the sweep's at the chosen rate.
            let k = RunKey {
                suite: suite.name.into(),
                method: m,
                lr,
                seed: p.seeds[0],
            };
            if !self.eval_run(Some((&k, suite, None)), &suite.tests)? {
                return Ok(false);
            }
            chosen.push((m, lr));
        }
        // Every further seed at the chosen rate, trained and tested.
        for &seed in p.seeds.iter().skip(1) {
            for &(m, lr) in &chosen {
                let k = RunKey {
                    suite: suite.name.into(),
                    method: m,
                    lr,
                    seed,
                };
                if !self.eval_run(Some((&k, suite, None)), &suite.tests)? {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    /// The continual diagnostic's units for `methods` (see the module docs). False when
    /// the deadline stopped it.
    fn continual_units(&mut self, methods: &[Method]) -> Result<bool> {
        let p = self.preset;
        let (Some(first), Some(second)) = (p.suite("commonsense"), p.suite("gsm8k")) else {
            return Ok(true);
        };
        let tests: Vec<Benchmark> = first.tests.iter().chain(&second.tests).copied().collect();
        for &m in methods {
            let chosen = |suite: &str| -> Result<f32> {
                chosen_lr(&self.layout, p, suite, m)?.ok_or_else(|| {
                    Error::Invalid(format!("{} has no chosen rate on {suite} yet", m.name()))
                })
            };
            let (lr1, lr2) = (chosen(first.name)?, chosen(second.name)?);
            for (i, &seed) in p.seeds.iter().enumerate() {
                let mut rates = vec![lr2];
                if i == 0 {
                    let swept = sweep_of(&self.layout, p, second.name, m)?.rates;
                    rates.extend(swept.into_iter().filter(|&l| l != lr2));
                }
                let stage1 = RunKey {
                    suite: first.name.into(),
                    method: m,
                    lr: lr1,
                    seed,
                };
                for lr in rates {
                    let k = RunKey {
                        suite: CONTINUAL.into(),
                        method: m,
                        lr,
                        seed,
                    };
                    let stage2 = (&k, second, Some((&stage1, first)));
                    if !self.eval_run(Some(stage2), &tests)? {
                        return Ok(false);
                    }
                }
            }
        }
        Ok(true)
    }

    /// Trains run `k` on `suite`'s training set (continuing `init`'s adapter, trained
    /// first when needed) unless its adapter is there; returns the adapter directory,
    /// or None when the deadline stopped it.
    fn train(
        &mut self,
        k: &RunKey,
        suite: &Suite,
        init: Option<(&RunKey, &Suite)>,
    ) -> Result<Option<PathBuf>> {
        let dir = self.layout.run_dir(k);
        let result = self.layout.train_result(k);
        if dir.join(CONFIG_FILE).exists() {
            if !result.exists() {
                self.write_train_result(k, &dir, 0.0)?;
            }
            return Ok(Some(dir));
        }
        let init_dir = match init {
            Some((ik, isuite)) => match self.train(ik, isuite, None)? {
                Some(d) => Some(d),
                None => return Ok(None),
            },
            None => None,
        };
        if self.out_of_time() {
            return Ok(None);
        }
        let p = self.preset;
        (self.say)(&format!("training {}", k.rel()));
        let cfg = FinetuneConfig {
            data: train_file(&self.layout.data(), suite),
            out: dir.clone(),
            spec: matched_spec(k.method, p.rank, p.blocks)?,
            targets: vec![p.targets.to_string()],
            init_adapter: init_dir,
            lr: k.lr,
            warmup: p.warmup,
            steps: Some(p.steps),
            batch: p.batch,
            max_len: suite.max_len,
            seed: k.seed,
            eval_data: Some(val_file(&self.layout.data(), suite)),
            save_every: Some(p.save_every),
            resume: dir.join(CHECKPOINT_FILE).exists(),
            ..FinetuneConfig::default()
        };
        let deadline = self.deadline;
        let t0 = Instant::now();
        let summary = finetune(self.gpu, self.ck, &cfg, &mut |_| {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                Control::Stop
            } else {
                Control::Continue
            }
        })?;
        if !summary.finished {
            return Ok(None);
        }
        self.write_train_result(k, &dir, t0.elapsed().as_secs_f64())?;
        Ok(Some(dir))
    }

    fn write_train_result(&self, k: &RunKey, dir: &Path, seconds: f64) -> Result<()> {
        let curves = read_curves(&dir.join(METRICS_FILE))?;
        let mut v = self.envelope();
        v["suite"] = json!(k.suite);
        v["method"] = json!(k.method.name());
        v["lr"] = json!(k.lr);
        v["seed"] = json!(k.seed);
        v["steps"] = json!(self.preset.steps);
        v["val_loss"] = json!(curves.eval.last().map(|e| e.1));
        v["train_loss"] = json!(curves.train);
        v["seconds"] = json!(seconds);
        write_json(&self.layout.train_result(k), &v)
    }

    /// Tests run `run` (None: the base model) on each of `tasks` whose result is not
    /// there, training the run first when its adapter is missing. False when the
    /// deadline stopped it.
    #[allow(clippy::type_complexity)]
    fn eval_run(
        &mut self,
        run: Option<(&RunKey, &Suite, Option<(&RunKey, &Suite)>)>,
        tasks: &[Benchmark],
    ) -> Result<bool> {
        let key = run.map(|r| r.0);
        let todo: Vec<Benchmark> = tasks
            .iter()
            .copied()
            .filter(|&t| !self.layout.eval_result(key, t).exists())
            .collect();
        let adapter = match run {
            Some((k, suite, init)) => match self.train(k, suite, init)? {
                Some(d) => Some(d),
                None => return Ok(false),
            },
            None => None,
        };
        if todo.is_empty() {
            return Ok(true);
        }
        let mut model = Model::load(self.gpu, self.ck)?;
        if let Some(dir) = &adapter {
            let a = Adapters::load(self.gpu, &model.weights, dir)?;
            model.attach(self.gpu, a, true)?;
        }
        let name = key.map_or("base".to_string(), RunKey::rel);
        let adapter_hash = match &adapter {
            Some(dir) => {
                let f = dir.join(WEIGHTS_FILE);
                let bytes = std::fs::read(&f).map_err(|e| Error::io(&f, e))?;
                Some(format!("{:016x}", fnv1a(bytes)))
            }
            None => None,
        };
        for task in todo {
            if self.out_of_time() {
                return Ok(false);
            }
            (self.say)(&format!("testing {name} on {}", task.name()));
            let path = test_file(&self.layout.data(), task);
            let test_bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
            let samples = read_jsonl(&path)?;
            let generated = task == Benchmark::Gsm8k;
            let scoring = if generated {
                "generate"
            } else {
                self.preset.scoring.name()
            };
            let opts = EvalOptions {
                max_new_tokens: self.preset.max_new_tokens,
                source: Some(path.clone()),
                scoring: self.preset.scoring,
                batch: self.preset.eval_batch,
                // GSM8K's accuracy sits near the floor for a small model; the gold
                // solution's likelihood still measures what training changed.
                gold_loglik: generated,
                ..EvalOptions::default()
            };
            let progress_file = self.layout.partial(key, task);
            let inputs = json!({
                "model": self.ck_name(),
                "run": name,
                "adapter_fnv1a": adapter_hash,
                "task": task.name(),
                "test_fnv1a": format!("{:016x}", fnv1a(&test_bytes)),
                "scoring": scoring,
                "max_new_tokens": self.preset.max_new_tokens,
                "eval_batch": self.preset.eval_batch,
            });
            let (mut progress, discarded) =
                Partial::open(&progress_file, inputs.clone(), generated)?;
            let total = samples.len();
            if discarded {
                (self.say)(&format!(
                    "  {}: made from other inputs, starting the test over",
                    progress_file.display()
                ));
            } else if progress.done() > 0 {
                (self.say)(&format!("  going on from item {}/{total}", progress.done()));
            }
            let chunk = chunk_of(generated, self.preset.eval_batch);
            while progress.done() < total {
                if self.out_of_time() {
                    return Ok(false);
                }
                let from = progress.done();
                let to = (from + chunk).min(total);
                let t0 = Instant::now();
                let say = &mut *self.say;
                let mut done = from;
                let (_, results) = evaluate(
                    self.gpu,
                    &model,
                    self.ck,
                    &samples[from..to],
                    &opts,
                    &mut |_| {
                        done += 1;
                        if done.is_multiple_of(PROGRESS_EVERY) && done < total {
                            say(&format!("  {done}/{total} items"));
                        }
                    },
                )?;
                let correct: Vec<bool> = results.iter().map(|r| r.correct).collect();
                let gold: Vec<f64> = results.iter().filter_map(|r| r.gold_loglik).collect();
                progress.push(&progress_file, &correct, &gold, t0.elapsed().as_secs_f64())?;
            }
            let mut v = self.envelope();
            v["run"] = json!(name);
            v["task"] = json!(task.name());
            v["n"] = json!(total);
            v["accuracy"] = json!(progress.accuracy());
            v["correct"] = json!(progress.correct);
            v["scoring"] = json!(scoring);
            v["max_new_tokens"] = json!(self.preset.max_new_tokens);
            v["eval_batch"] = json!(self.preset.eval_batch);
            v["seconds"] = json!(progress.seconds);
            if generated {
                // Per item, the gold solution's log-likelihood per token.
                v["gold_loglik"] = json!(progress.gold_loglik);
            }
            // What the answers came from, by hash: the test file and the adapter.
            v["inputs"] = inputs;
            write_json(&self.layout.eval_result(key, task), &v)?;
            remove_if_there(&progress_file)?;
        }
        Ok(true)
    }
}

/// "150 items then, 300 now" of a changed data file.
fn sizes(c: &Change) -> String {
    match c.was {
        Some(n) => format!("{n} items then, {} now", c.now),
        None => format!("not listed then, {} items now", c.now),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_names_are_short_and_distinct() {
        assert_eq!(lr_name(3e-3), "3e-3");
        assert_eq!(lr_name(1e-3 * 3.0), "3e-3");
        assert_eq!(lr_name(1.5e-2), "1.5e-2");
        assert_eq!(lr_name(1e-2), "1e-2");
    }
}
