//! The continual-learning diagnostic: for each method, fine-tune one adapter on a first
//! task, evaluate both tasks, continue training the same adapter on a second task, and
//! evaluate both again. Retention is first-task accuracy after stage 2 against after
//! stage 1; plasticity is second-task accuracy after stage 2.
//!
//! Budgets are matched: every method gets r = b·r_b (LoRA and HiRA r; BoHA and the
//! additive control b blocks of rank r/b), so each trains (b·r_b)(d_out + d_in)
//! parameters per matrix. Stages write ordinary runs into OUT/{method}/stage{1,2}; a
//! stage whose adapter is already there is reused, so an interrupted diagnostic picks up
//! where it stopped.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::run::{finetune, Control, Event, FinetuneConfig};
use crate::adapters::files::CONFIG_FILE;
use crate::adapters::{AdapterSpec, Method};
use crate::data::answer::AccuracyReport;
use crate::data::jsonl::read_jsonl;
use crate::eval::{evaluate, EvalOptions};
use crate::gpu::Gpu;
use crate::loaders::Checkpoint;
use crate::model::kv_cache::Model;
use crate::model::transformer::Adapters;
use crate::{Error, Result};

/// The diagnostic's inputs.
#[derive(Clone, Debug)]
pub struct ContinualConfig {
    pub first: PathBuf,
    pub second: PathBuf,
    pub eval_first: PathBuf,
    pub eval_second: PathBuf,
    pub methods: Vec<Method>,
    /// The matched rank r = b·r_b.
    pub rank: usize,
    /// b for BoHA and the additive control.
    pub blocks: usize,
    /// Run settings shared by both stages (`data`, `out`, `spec`, `init_adapter` are set
    /// per stage); `lr` unless `lrs` names the method.
    pub train: FinetuneConfig,
    /// Per-method learning rates.
    pub lrs: Vec<(Method, f32)>,
    pub max_new_tokens: usize,
    pub out: PathBuf,
}

/// One method's accuracies.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ContinualRow {
    pub method: String,
    pub first_after_1: f64,
    pub second_after_1: f64,
    pub first_after_2: f64,
    pub second_after_2: f64,
}

/// What the diagnostic reports as it goes.
pub enum Progress<'a> {
    /// A training event of `method`'s `stage` (1 or 2).
    Train {
        method: Method,
        stage: u8,
        event: &'a Event,
    },
    /// An accuracy measured.
    Accuracy {
        method: &'a str,
        stage: u8,
        task: u8,
        report: &'a AccuracyReport,
    },
}

/// The spec of `method` at the matched budget.
pub fn matched_spec(method: Method, rank: usize, blocks: usize) -> Result<AdapterSpec> {
    let b = if method.kind().has_grid() { blocks } else { 1 };
    if b == 0 || !rank.is_multiple_of(b) {
        return Err(Error::Invalid(format!(
            "rank {rank} is not a multiple of --blocks {blocks}"
        )));
    }
    AdapterSpec::from_options(method, Some(b), None, Some(rank / b), None)
}

fn accuracy(
    gpu: &Gpu,
    ck: &Checkpoint,
    adapter: Option<&Path>,
    data: &Path,
    max_new_tokens: usize,
) -> Result<AccuracyReport> {
    let samples = read_jsonl(data)?;
    let mut model = Model::load(gpu, ck)?;
    if let Some(dir) = adapter {
        let a = Adapters::load(gpu, &model.weights, dir)?;
        model.attach(gpu, a, true)?;
    }
    let opts = EvalOptions {
        max_new_tokens,
        task: None,
        source: Some(data.to_path_buf()),
        ..Default::default()
    };
    Ok(evaluate(gpu, &model, ck, &samples, &opts, &mut |_| {})?.0)
}

/// The base model's accuracy on both tasks (a reference row, method "base").
pub fn base_row(gpu: &Gpu, ck: &Checkpoint, c: &ContinualConfig) -> Result<ContinualRow> {
    let f = accuracy(gpu, ck, None, &c.eval_first, c.max_new_tokens)?.accuracy;
    let s = accuracy(gpu, ck, None, &c.eval_second, c.max_new_tokens)?.accuracy;
    Ok(ContinualRow {
        method: "base".into(),
        first_after_1: f,
        second_after_1: s,
        first_after_2: f,
        second_after_2: s,
    })
}

/// Runs the diagnostic for every method of `c`, in order.
pub fn continual(
    gpu: &Gpu,
    ck: &Checkpoint,
    c: &ContinualConfig,
    report: &mut dyn FnMut(Progress<'_>),
) -> Result<Vec<ContinualRow>> {
    if c.methods.is_empty() {
        return Err(Error::Invalid("no methods given".into()));
    }
    let mut rows = Vec::new();
    for &method in &c.methods {
        let spec = matched_spec(method, c.rank, c.blocks)?;
        let lr = c
            .lrs
            .iter()
            .find(|(m, _)| *m == method)
            .map_or(c.train.lr, |p| p.1);
        let dir = c.out.join(method.name());
        let mut acc = [[0.0f64; 2]; 2];
        let mut prev: Option<PathBuf> = None;
        for stage in 1..=2u8 {
            let out = dir.join(format!("stage{stage}"));
            if !out.join(CONFIG_FILE).exists() {
                let cfg = FinetuneConfig {
                    data: if stage == 1 {
                        c.first.clone()
                    } else {
                        c.second.clone()
                    },
                    out: out.clone(),
                    spec,
                    init_adapter: prev.clone(),
                    lr,
                    resume: out.join(super::run::CHECKPOINT_FILE).exists(),
                    ..c.train.clone()
                };
                finetune(gpu, ck, &cfg, &mut |e| {
                    report(Progress::Train {
                        method,
                        stage,
                        event: e,
                    });
                    Control::Continue
                })?;
            }
            for (task, data) in [(1u8, &c.eval_first), (2u8, &c.eval_second)] {
                let r = accuracy(gpu, ck, Some(&out), data, c.max_new_tokens)?;
                report(Progress::Accuracy {
                    method: method.name(),
                    stage,
                    task,
                    report: &r,
                });
                acc[stage as usize - 1][task as usize - 1] = r.accuracy;
            }
            prev = Some(out);
        }
        rows.push(ContinualRow {
            method: method.name().into(),
            first_after_1: acc[0][0],
            second_after_1: acc[0][1],
            first_after_2: acc[1][0],
            second_after_2: acc[1][1],
        });
    }
    Ok(rows)
}
