//! `boha finetune`: train adapters on a JSONL dataset, with a progress bar, a metrics
//! log, checkpoints, resume and the loss curve (see [`boha::train`]).

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use boha::loaders::load_checkpoint;
use boha::train::{finetune, Control, Event, FinetuneConfig, Schedule};
use boha::{Error, Result};

use super::adapter_args::AdapterChoice;
use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// A Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// Training data (JSONL: instruction/input/output, prompt/completion, or messages).
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub adapter: AdapterChoice,
    /// Continue training this saved adapter (its file sets the method and sizes).
    #[arg(long)]
    pub init_adapter: Option<PathBuf>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f32,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f32,
    /// Linear warmup steps.
    #[arg(long, default_value_t = 0)]
    pub warmup: usize,
    /// cosine, linear or constant (after warmup).
    #[arg(long, default_value = "cosine")]
    pub schedule: String,
    /// Passes over the data (when --steps is not given).
    #[arg(long, default_value_t = 1.0)]
    pub epochs: f64,
    /// Optimizer steps (overrides --epochs).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Sequences per micro-batch.
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Longest example in tokens; longer ones are cut.
    #[arg(long, default_value_t = 256)]
    pub max_len: usize,
    /// Clip the global gradient norm to this; 0 turns clipping off.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f32,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Put the prompt tokens in the loss too (default: the response only).
    #[arg(long)]
    pub train_on_prompt: bool,
    /// Recompute each layer's activations in the backward (less memory, ~⅓ more time).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Held-out data for the eval loss.
    #[arg(long)]
    pub eval_data: Option<PathBuf>,
    /// Eval loss every N steps (and at the end).
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Checkpoint every N steps (and at the end).
    #[arg(long)]
    pub save_every: Option<usize>,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Stop after N steps of this invocation, leaving a checkpoint to --resume from.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// GiB a training step may use; checked before anything is allocated (default: the
    /// available system memory on CPU adapters).
    #[arg(long)]
    pub memory_limit: Option<f64>,
    /// Output directory: the adapter, checkpoints, metrics.jsonl and loss.png.
    #[arg(long)]
    pub out: PathBuf,
}

impl FinetuneArgs {
    /// The library's run configuration.
    pub fn config(&self) -> Result<FinetuneConfig> {
        let spec = self.adapter.spec()?;
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return Err(Error::Invalid(format!("--clip {} must be ≥ 0", self.clip)));
        }
        Ok(FinetuneConfig {
            data: self.data.clone(),
            out: self.out.clone(),
            spec,
            targets: vec![self.adapter.targets.clone()],
            init_adapter: self.init_adapter.clone(),
            lr: self.lr,
            weight_decay: self.weight_decay,
            warmup: self.warmup,
            schedule: Schedule::parse(&self.schedule)?,
            steps: self.steps,
            epochs: self.epochs,
            batch: self.batch,
            grad_accum: self.grad_accum,
            max_len: self.max_len,
            clip: (self.clip > 0.0).then_some(self.clip),
            seed: self.seed,
            train_on_prompt: self.train_on_prompt,
            recompute: self.gradient_checkpointing,
            eval_data: self.eval_data.clone(),
            eval_every: self.eval_every,
            save_every: self.save_every,
            resume: self.resume,
            stop_after: self.stop_after,
            memory_limit: match self.memory_limit {
                Some(g) if g.is_finite() && g > 0.0 => Some((g * (1u64 << 30) as f64) as u64),
                Some(g) => {
                    return Err(Error::Invalid(format!(
                        "--memory-limit {g} must be positive GiB"
                    )))
                }
                None => None,
            },
        })
    }
}

/// A progress bar on a terminal; plain lines (every ~5% of the run) otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    every: usize,
}

impl Progress {
    pub fn new() -> Progress {
        Progress {
            bar: None,
            every: 1,
        }
    }

    /// Reports one training event.
    pub fn event(&mut self, e: &Event) -> Control {
        match *e {
            Event::Start {
                total_steps,
                first_step,
                examples,
                seq,
                params,
            } => {
                eprintln!(
                    "training {params} adapter parameters on {examples} examples \
                     ({seq} tokens per row), steps {}..{total_steps}",
                    first_step + 1
                );
                self.every = (total_steps / 20).max(1);
                if std::io::stderr().is_terminal() {
                    let bar = ProgressBar::new(total_steps as u64);
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]",
                        )
                        .expect("a valid template"),
                    );
                    bar.set_position(first_step as u64);
                    bar.reset_eta();
                    self.bar = Some(bar);
                }
            }
            Event::Step {
                step,
                total_steps,
                loss,
                lr,
                grad_norm,
                tokens_per_s,
            } => {
                let msg = format!(
                    "loss {loss:.4} lr {lr:.2e} |g| {grad_norm:.3} {tokens_per_s:.0} tok/s"
                );
                match &self.bar {
                    Some(b) => {
                        b.set_position(step as u64);
                        b.set_message(msg);
                    }
                    None if step % self.every == 0 || step == total_steps || step == 1 => {
                        eprintln!("step {step}/{total_steps} {msg}");
                    }
                    None => {}
                }
            }
            Event::Eval { step, loss } => {
                let line = format!("step {step}: eval loss {loss:.4}");
                match &self.bar {
                    Some(b) => b.println(line),
                    None => eprintln!("{line}"),
                }
            }
            Event::Checkpoint { .. } => {}
        }
        Control::Continue
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish();
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Progress::new()
    }
}

pub fn run(dev: &DeviceArgs, a: &FinetuneArgs) -> Result<()> {
    let cfg = a.config()?;
    let gpu = dev.open()?;
    let ck = load_checkpoint(&a.model)?;
    let mut progress = Progress::new();
    let s = finetune(&gpu, &ck, &cfg, &mut |e| progress.event(e))?;
    progress.finish();
    let rate = s.positions as f64 / s.seconds.max(1e-9);
    if s.finished {
        eprintln!(
            "done: {} steps, last loss {}, eval loss {}, {:.1} tokens/s; adapter in {}",
            s.steps,
            s.last_loss.map_or("-".into(), |l| format!("{l:.4}")),
            s.eval_loss.map_or("-".into(), |l| format!("{l:.4}")),
            rate,
            s.out.display()
        );
    } else {
        eprintln!(
            "stopped at step {}/{}; continue with --resume (checkpoint in {})",
            s.steps,
            s.total_steps,
            s.out.display()
        );
    }
    Ok(())
}
