//! One fine-tuning run, start to finish (or resumed from its last checkpoint).
//!
//! The output directory DIR holds, as the run goes:
//!
//! ```text
//! DIR/train_config.json        the settings (written first)
//! DIR/metrics.jsonl            one line per step (see [`super::metrics`])
//! DIR/checkpoint.safetensors   adapters + AdamW moments + step + data position
//! DIR/loss.png                 the loss curve (at the end, and at each checkpoint)
//! DIR/adapter_config.json      the finished adapter, written only at the end,
//! DIR/adapter_model.safetensors  so a failed run never looks finished
//! ```
//!
//! A step is `grad_accum` micro-batches of `batch` rows, each one submit, then one AdamW
//! update on the mean of their gradients. The same seed and inputs give the same run:
//! the adapters' initialisation and the data order derive from the seed alone, and every
//! kernel is deterministic. A resumed run restores the factors, the moments, the step
//! and the data position exactly, so it ends with the adapter an uninterrupted run
//! would have produced.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};

use super::checkpoint::{self, TrainState};
use super::metrics::MetricsLog;
#[cfg(not(target_arch = "wasm32"))]
use super::plot::plot_loss;
use super::schedule::Schedule;
use crate::adapters::files::{load_adapter, CONFIG_FILE, WEIGHTS_FILE};
use crate::adapters::AdapterSpec;
use crate::data::batch::{tokenize_all, Batch, Example, Layout, Loader, TokenizeOptions, IGNORE};
use crate::data::jsonl::{read_jsonl, write_atomic};
use crate::data::tasks::fnv1a;
use crate::gpu::Gpu;
use crate::graph::memory::{check_fits, estimate, system_available};
use crate::graph::{TrainOptions, Trainer};
use crate::loaders::Checkpoint;
use crate::model::transformer::{Adapters, Weights};
use crate::ops::adamw::AdamW;
use crate::{Error, Result};

pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const PLOT_FILE: &str = "loss.png";
pub const RUN_CONFIG_FILE: &str = "train_config.json";

/// Everything a run needs besides the model.
#[derive(Clone, Debug)]
pub struct FinetuneConfig {
    pub data: PathBuf,
    pub out: PathBuf,
    /// The adapter to train (ignored with `init_adapter`, whose file says it).
    pub spec: AdapterSpec,
    /// Projection names (`q` … `down`, or `all`).
    pub targets: Vec<String>,
    /// Continue training this saved adapter instead of fresh ones.
    pub init_adapter: Option<PathBuf>,
    pub lr: f32,
    pub weight_decay: f32,
    pub warmup: usize,
    pub schedule: Schedule,
    /// Optimizer steps; when None, `epochs` passes over the data.
    pub steps: Option<usize>,
    pub epochs: f64,
    /// Rows per micro-batch.
    pub batch: usize,
    pub grad_accum: usize,
    /// Longest example in tokens (longer ones are cut).
    pub max_len: usize,
    /// Clip the global gradient norm to this (None: no clipping).
    pub clip: Option<f32>,
    pub seed: u64,
    pub train_on_prompt: bool,
    pub recompute: bool,
    pub eval_data: Option<PathBuf>,
    pub eval_every: Option<usize>,
    /// Checkpoint every this many steps (and always at the end).
    pub save_every: Option<usize>,
    pub resume: bool,
    /// Stop after this many steps of this invocation (the run stays resumable).
    pub stop_after: Option<usize>,
    /// Bytes a step may use (default: the system's available memory on CPU adapters,
    /// no limit on GPUs, whose free memory WebGPU does not report).
    pub memory_limit: Option<u64>,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        FinetuneConfig {
            data: PathBuf::new(),
            out: PathBuf::new(),
            spec: AdapterSpec {
                method: crate::adapters::Method::Boha,
                blocks: 4,
                block_rank: 2,
                scale: 1.0,
            },
            targets: vec!["all".into()],
            init_adapter: None,
            lr: 1e-3,
            weight_decay: 0.0,
            warmup: 0,
            schedule: Schedule::Cosine,
            steps: None,
            epochs: 1.0,
            batch: 4,
            grad_accum: 1,
            max_len: 256,
            clip: Some(1.0),
            seed: 0,
            train_on_prompt: false,
            recompute: false,
            eval_data: None,
            eval_every: None,
            save_every: None,
            resume: false,
            stop_after: None,
            memory_limit: None,
        }
    }
}

/// What the loop reports as it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// Before the first step: the run's length and where it starts.
    Start {
        total_steps: usize,
        first_step: usize,
        examples: usize,
        seq: usize,
        params: usize,
    },
    /// After each optimizer step.
    Step {
        step: usize,
        total_steps: usize,
        loss: f32,
        lr: f32,
        grad_norm: f32,
        tokens_per_s: f64,
    },
    Eval {
        step: usize,
        loss: f32,
    },
    Checkpoint {
        step: usize,
    },
}

/// The observer's answer: go on, or stop now (the run stays resumable).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// How a run ended.
#[derive(Clone, Debug)]
pub struct Summary {
    pub steps: usize,
    pub total_steps: usize,
    /// Whether the run reached its last step (and wrote the adapter).
    pub finished: bool,
    pub last_loss: Option<f32>,
    pub eval_loss: Option<f32>,
    pub tokens: u64,
    /// Token positions processed in this invocation (batch × seq per micro-batch).
    pub positions: u64,
    pub seconds: f64,
    pub out: PathBuf,
}

/// The settings that decide the run's trajectory: a resumed run must match them.
fn fingerprint(
    c: &FinetuneConfig,
    spec: &AdapterSpec,
    targets: &[String],
    seq: usize,
    total: usize,
    data_hash: u64,
) -> Value {
    json!({
        "data": c.data.display().to_string(),
        "data_fnv1a": format!("{data_hash:016x}"),
        "init_adapter": c.init_adapter.as_ref().map(|p| p.display().to_string()),
        "method": spec.method.name(),
        "blocks": spec.blocks,
        "block_rank": spec.block_rank,
        "scale": spec.scale,
        "targets": targets,
        "lr": c.lr,
        "weight_decay": c.weight_decay,
        "warmup": c.warmup,
        "schedule": c.schedule.name(),
        "total_steps": total,
        "batch": c.batch,
        "grad_accum": c.grad_accum,
        "max_len": c.max_len,
        "seq": seq,
        "clip": c.clip,
        "seed": c.seed,
        "train_on_prompt": c.train_on_prompt,
    })
}

fn read_examples(ck: &Checkpoint, path: &Path, opts: &TokenizeOptions) -> Result<Vec<Example>> {
    let samples = read_jsonl(path)?;
    let tok = tokenize_all(ck, &samples, opts)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    if tok.examples.is_empty() {
        return Err(Error::Invalid(format!(
            "{}: no example has a response token within --max-len {}",
            path.display(),
            opts.max_len
        )));
    }
    if tok.dropped > 0 {
        log::warn!(
            "{}: {} records dropped (no response token within --max-len {})",
            path.display(),
            tok.dropped,
            opts.max_len
        );
    }
    Ok(tok.examples)
}

/// Trainer targets from a batch's (ids or IGNORE).
fn targets_of(b: &Batch) -> Vec<u32> {
    b.targets
        .iter()
        .map(|&t| {
            if t == IGNORE || t < 0 {
                crate::graph::IGNORE
            } else {
                t as u32
            }
        })
        .collect()
}

/// Mean loss over the eval set, weighted by loss tokens.
fn eval_loss(gpu: &Gpu, trainer: &mut Trainer, examples: &[Example], pad: u32) -> Result<f32> {
    let (rows, seq) = trainer.shape();
    let mut loader = Loader::new(examples.to_vec(), 0, pad)?;
    let (mut sum, mut count) = (0.0f64, 0usize);
    let n_batches = examples.len().div_ceil(rows);
    for _ in 0..n_batches {
        let b = loader.next_batch(Layout::Padded {
            rows,
            len: Some(seq),
        })?;
        let n = b.loss_tokens();
        if n == 0 {
            continue;
        }
        let l = trainer.eval_loss(gpu, &b.tokens, &targets_of(&b))?;
        sum += l as f64 * n as f64;
        count += n;
    }
    Ok((sum / count.max(1) as f64) as f32)
}

fn check_out_dir(c: &FinetuneConfig) -> Result<()> {
    let out = &c.out;
    if out.exists() && !out.is_dir() {
        return Err(Error::Invalid(format!(
            "{}: --out is not a directory",
            out.display()
        )));
    }
    let has = |f: &str| out.join(f).exists();
    if c.resume {
        if !has(CHECKPOINT_FILE) {
            return Err(Error::Invalid(format!(
                "{}: nothing to resume (no {CHECKPOINT_FILE})",
                out.display()
            )));
        }
    } else if has(CHECKPOINT_FILE) || has(CONFIG_FILE) || has(WEIGHTS_FILE) {
        return Err(Error::Invalid(format!(
            "{}: holds a run already; pass --resume to continue it or choose another --out",
            out.display()
        )));
    }
    Ok(())
}

/// Runs (or resumes) a fine-tuning run of `ck` as `c` says, reporting to `observe`.
pub fn finetune(
    gpu: &Gpu,
    ck: &Checkpoint,
    c: &FinetuneConfig,
    observe: &mut dyn FnMut(&Event) -> Control,
) -> Result<Summary> {
    finetune_inspect(gpu, ck, c, observe, &mut |_, _| Ok(()))
}

/// Like [`finetune`], and after every optimizer step calls `inspect` with the step just
/// done (1-based) and the adapters as they are on the device, before `observe` hears of
/// that step. Front ends that show the adapter while it trains (per-block norms, a chat
/// with the current adapter) download what they need here; an error from `inspect`
/// ends the run with that error.
pub fn finetune_inspect(
    gpu: &Gpu,
    ck: &Checkpoint,
    c: &FinetuneConfig,
    observe: &mut dyn FnMut(&Event) -> Control,
    inspect: &mut dyn FnMut(usize, &Adapters) -> Result<()>,
) -> Result<Summary> {
    if c.batch == 0 || c.grad_accum == 0 || c.max_len < 2 {
        return Err(Error::Invalid(
            "--batch and --grad-accum must be positive and --max-len at least 2".into(),
        ));
    }
    if !(c.lr.is_finite() && c.lr > 0.0) {
        return Err(Error::Invalid(format!("--lr {} must be positive", c.lr)));
    }
    if c.steps == Some(0) || !(c.epochs.is_finite() && c.epochs > 0.0) {
        return Err(Error::Invalid(
            "--steps and --epochs must be positive".into(),
        ));
    }
    check_out_dir(c)?;
    let data_bytes = std::fs::read(&c.data).map_err(|e| Error::io(&c.data, e))?;
    let data_hash = fnv1a(&data_bytes);
    drop(data_bytes);
    let topts = TokenizeOptions {
        max_len: c.max_len,
        train_on_prompt: c.train_on_prompt,
    };
    let train = read_examples(ck, &c.data, &topts)?;
    let eval = match &c.eval_data {
        Some(p) => Some(read_examples(ck, p, &topts)?),
        None => None,
    };
    let seq = train
        .iter()
        .chain(eval.iter().flatten())
        .map(Example::len)
        .max()
        .unwrap_or(1);
    let max_kept = train
        .iter()
        .chain(eval.iter().flatten())
        .map(|e| e.loss.iter().filter(|&&l| l).count())
        .max()
        .unwrap_or(1);
    let micro_per_epoch = train.len().div_ceil(c.batch);
    let total = match c.steps {
        Some(s) => s,
        None => ((c.epochs * micro_per_epoch as f64) / c.grad_accum as f64)
            .ceil()
            .max(1.0) as usize,
    };
    let pad = ck.eos_tokens.first().copied().unwrap_or(0);

    // The memory check comes before any upload: a step that cannot fit is refused now,
    // not half-way through allocating it.
    let init = match &c.init_adapter {
        Some(dir) => Some(load_adapter(dir)?),
        None => None,
    };
    let (plan_spec, plan_targets) = match &init {
        Some(a) => (a.spec, a.targets.clone()),
        None => {
            let t: Vec<&str> = c.targets.iter().map(String::as_str).collect();
            (c.spec, Adapters::parse_targets(&t)?)
        }
    };
    let opts = TrainOptions {
        adamw: AdamW {
            lr: c.lr,
            weight_decay: c.weight_decay,
            ..AdamW::default()
        },
        // 0 records the norm without clipping (NaN detection needs it every step).
        max_grad_norm: Some(c.clip.unwrap_or(0.0)),
        recompute: c.recompute,
        seed: c.seed,
        // Only positions with a loss target go through the LM head.
        loss_rows: Some(c.batch * max_kept),
        ..TrainOptions::default()
    };
    let est = estimate(
        gpu,
        &ck.config,
        &ck.frozen_dtypes(gpu.base_dtype()),
        &plan_spec,
        &plan_targets,
        c.batch,
        seq,
        &opts,
    )?;
    let budget = c.memory_limit.or_else(|| {
        (gpu.info().device_type == "Cpu")
            .then(system_available)
            .flatten()
    });
    check_fits(&est, budget, gpu.info().max_buffer_size, c.recompute)?;

    let weights = Weights::upload(gpu, ck)?;
    let (adapters, spec) = match (&init, &c.init_adapter) {
        (Some(loaded), Some(dir)) => {
            let a = Adapters::from_loaded(gpu, &weights, loaded, dir)?;
            let s = a.spec;
            (a, s)
        }
        _ => {
            let t: Vec<&str> = c.targets.iter().map(String::as_str).collect();
            (Adapters::new(gpu, &weights, c.spec, &t, c.seed)?, c.spec)
        }
    };
    let targets = adapters.targets.clone();
    let params: usize = adapters.iter().map(|(_, a)| a.param_count()).sum();
    let mut trainer = Trainer::from_parts(gpu, weights, adapters, c.batch, seq, opts)?;
    let fp = fingerprint(c, &spec, &targets, seq, total, data_hash);

    std::fs::create_dir_all(&c.out).map_err(|e| Error::io(&c.out, e))?;
    let ckpt_path = c.out.join(CHECKPOINT_FILE);
    let mut loader = Loader::new(train.clone(), c.seed, pad)?;
    let mut state = TrainState {
        step: 0,
        data: loader.position(),
        tokens: 0,
        fingerprint: fp.clone(),
    };
    if c.resume {
        let saved = checkpoint::read_state(&ckpt_path)?;
        if let Some(diff) = first_difference(&saved.fingerprint, &fp) {
            return Err(Error::Invalid(format!(
                "{}: the checkpoint was made with different settings ({diff}); \
                 resume with the same command line",
                ckpt_path.display()
            )));
        }
        state = checkpoint::load(gpu, &mut trainer, &ckpt_path)?;
        loader.seek(state.data)?;
    } else {
        let run_cfg = json!({"model": ck.source.display().to_string(), "run": fp});
        write_atomic(
            &c.out.join(RUN_CONFIG_FILE),
            format!("{run_cfg:#}\n").as_bytes(),
        )?;
    }
    let mut log = MetricsLog::open(&c.out.join(METRICS_FILE), c.resume.then_some(state.step))?;
    let first = state.step as usize;
    if observe(&Event::Start {
        total_steps: total,
        first_step: first,
        examples: train.len(),
        seq,
        params,
    }) == Control::Stop
    {
        return Ok(summary(c, &state, total, None, None, 0.0));
    }

    #[cfg_attr(target_arch = "wasm32", allow(unused_variables))]
    let title = format!(
        "{} (b={}, r_b={}) on {}",
        spec.method.name(),
        spec.blocks,
        spec.block_rank,
        c.data
            .file_name()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default()
    );
    #[cfg_attr(target_arch = "wasm32", allow(unused_variables))]
    let save = |trainer: &Trainer, state: &TrainState, log: &MetricsLog| -> Result<()> {
        checkpoint::save(gpu, trainer, state, &ckpt_path)?;
        // The loss-curve PNG is native only; a web page draws its own curve.
        #[cfg(not(target_arch = "wasm32"))]
        {
            let curves = log.curves()?;
            if !curves.train.is_empty() {
                plot_loss(&c.out.join(PLOT_FILE), &curves, &title)?;
            }
        }
        Ok(())
    };
    let t0 = Instant::now();
    let (mut last_loss, mut last_eval) = (None, None);
    let mut stopped = false;
    for step in first..total {
        let lr = c.schedule.lr(c.lr, c.warmup, total, step);
        let ts = Instant::now();
        let (mut loss_sum, mut tokens) = (0.0f64, 0u64);
        for micro in 0..c.grad_accum {
            let b = loader.next_batch(Layout::Padded {
                rows: c.batch,
                len: Some(seq),
            })?;
            let loss = trainer
                .accumulate(gpu, &b.tokens, &targets_of(&b), micro == 0, true)?
                .unwrap_or(f32::NAN);
            loss_sum += loss as f64;
            tokens += b.loss_tokens() as u64;
        }
        let loss = (loss_sum / c.grad_accum as f64) as f32;
        trainer.apply(gpu, lr, 1.0 / c.grad_accum as f32)?;
        let grad_norm = trainer.grad_norm(gpu)?;
        if !loss.is_finite() || !grad_norm.is_finite() {
            return Err(Error::Invalid(format!(
                "step {}: the {} is {}; stopped. The last good checkpoint (step {}) is kept in {}",
                step + 1,
                if loss.is_finite() {
                    "gradient norm"
                } else {
                    "loss"
                },
                if loss.is_finite() { grad_norm } else { loss },
                state.step,
                ckpt_path.display()
            )));
        }
        state.step = (step + 1) as u32;
        state.data = loader.position();
        state.tokens += tokens;
        let dt = ts.elapsed().as_secs_f64();
        let tps = (c.batch * c.grad_accum * seq) as f64 / dt.max(1e-9);
        log.write(&json!({
            "step": step + 1, "loss": loss, "lr": lr, "grad_norm": grad_norm,
            "tokens": state.tokens, "tokens_per_s": tps, "step_s": dt,
        }))?;
        last_loss = Some(loss);
        inspect(step + 1, &trainer.adapters)?;
        let mut ctl = observe(&Event::Step {
            step: step + 1,
            total_steps: total,
            loss,
            lr,
            grad_norm,
            tokens_per_s: tps,
        });
        let at = step + 1;
        if let (Some(ev), Some(every)) = (&eval, c.eval_every) {
            if every > 0 && (at % every == 0 || at == total) {
                let l = eval_loss(gpu, &mut trainer, ev, pad)?;
                log.write(&json!({"step": at, "eval_loss": l}))?;
                last_eval = Some(l);
                if observe(&Event::Eval { step: at, loss: l }) == Control::Stop {
                    ctl = Control::Stop;
                }
            }
        }
        let done_here = step + 1 - first;
        let halt = ctl == Control::Stop || c.stop_after.is_some_and(|n| done_here >= n);
        let periodic = c.save_every.is_some_and(|n| n > 0 && at % n == 0);
        if periodic || halt || at == total {
            save(&trainer, &state, &log)?;
            observe(&Event::Checkpoint { step: at });
        }
        if halt && at < total {
            stopped = true;
            break;
        }
    }
    if !stopped {
        if last_eval.is_none() {
            if let Some(ev) = &eval {
                let l = eval_loss(gpu, &mut trainer, ev, pad)?;
                log.write(&json!({"step": total, "eval_loss": l}))?;
                last_eval = Some(l);
            }
        }
        if first == total {
            // A resumed run that had already finished: redraw, rewrite the adapter.
            save(&trainer, &state, &log)?;
        }
        trainer
            .adapters
            .save(gpu, &c.out, &ck.source.display().to_string())?;
    }
    let mut s = summary(
        c,
        &state,
        total,
        last_loss,
        last_eval,
        t0.elapsed().as_secs_f64(),
    );
    s.finished = !stopped;
    s.positions = ((state.step as usize - first) * c.batch * c.grad_accum * seq) as u64;
    Ok(s)
}

fn summary(
    c: &FinetuneConfig,
    st: &TrainState,
    total: usize,
    loss: Option<f32>,
    eval: Option<f32>,
    secs: f64,
) -> Summary {
    Summary {
        steps: st.step as usize,
        total_steps: total,
        finished: false,
        last_loss: loss,
        eval_loss: eval,
        tokens: st.tokens,
        positions: 0,
        seconds: secs,
        out: c.out.clone(),
    }
}

/// The first key whose value differs between two fingerprints, as "key: a vs b".
fn first_difference(saved: &Value, now: &Value) -> Option<String> {
    let (Some(a), Some(b)) = (saved.as_object(), now.as_object()) else {
        return (saved != now).then(|| "settings".to_string());
    };
    for (k, v) in b {
        let old = a.get(k).unwrap_or(&Value::Null);
        if old != v {
            return Some(format!("{k}: {old} then, {v} now"));
        }
    }
    a.keys()
        .find(|k| !b.contains_key(*k))
        .map(|k| format!("{k}: no longer set"))
}
