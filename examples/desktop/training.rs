//! The training worker: one fine-tuning run on a background thread through boha's own
//! loop (`finetune_inspect`), so the UI thread never waits on it.
//!
//! - Pause: the observer, called after each step, blocks on a condvar until resumed.
//! - Stop: the observer answers `Control::Stop` (the run stays resumable on disk).
//! - After every `snapshot_every` steps the inspect hook copies the factors to the host
//!   ([`Snapshot`]), for the heatmap, the chat and the save buttons.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

use boha::adapters::{AdapterSpec, Method};
use boha::data::jsonl::write_jsonl;
use boha::data::tasks::{generate, TaskKind};
use boha::gpu::Gpu;
use boha::train::run::finetune_inspect;
use boha::train::{Control, Event, FinetuneConfig, Schedule};

use crate::models::CheckpointCache;
use crate::snapshot::{describe, Snapshot};

/// Where the training records come from.
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// A JSONL file of boha's record formats.
    File(PathBuf),
    /// `n` records of one of boha's task generators (prompt/completion form).
    Task { task: TaskKind, n: usize },
}

/// Everything the Training panel sets.
#[derive(Clone, Debug)]
pub struct TrainSettings {
    pub model: PathBuf,
    pub data: DataSource,
    pub method: Method,
    /// Grid size b (BoHA and additive only).
    pub blocks: usize,
    /// Rank per block (BoHA, additive) or the rank r (LoRA, HiRA).
    pub rank: usize,
    /// Comma-separated projections (`q,v`, `all`, …).
    pub targets: String,
    pub lr: f32,
    pub steps: usize,
    pub batch: usize,
    pub max_len: usize,
    pub seed: u64,
    /// Copy the factors to the host after every this many steps.
    pub snapshot_every: usize,
}

impl TrainSettings {
    /// The adapter spec these settings ask for.
    pub fn spec(&self) -> boha::Result<AdapterSpec> {
        let blocks = self.method.kind().has_grid().then_some(self.blocks);
        AdapterSpec::from_options(self.method, blocks, None, Some(self.rank), None)
    }
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq)]
pub enum Phase {
    Idle,
    /// Reading the model and the data, uploading, compiling kernels.
    Loading,
    Training,
    Paused,
    /// Ran all its steps.
    Finished,
    /// Stopped early by the user (or by `--exit-after-steps`).
    Stopped,
    Failed(String),
}

impl Phase {
    /// Whether a thread is working (or waiting paused) on the run.
    pub fn active(&self) -> bool {
        matches!(self, Phase::Loading | Phase::Training | Phase::Paused)
    }
}

/// What the UI shows of a run; written by the training thread.
pub struct Progress {
    pub phase: Phase,
    /// (step, loss) after each step.
    pub losses: Vec<[f64; 2]>,
    pub step: usize,
    pub total_steps: usize,
    pub tokens_per_s: f64,
    pub lr: f32,
    /// "BoHA b = 4, r_b = 2 on q, v (18 432 parameters)".
    pub adapter: String,
    pub snapshot: Option<Arc<Snapshot>>,
    pub started: Option<Instant>,
    /// The run's directory (data, checkpoint, metrics, loss.png).
    pub run_dir: Option<PathBuf>,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            phase: Phase::Idle,
            losses: Vec::new(),
            step: 0,
            total_steps: 0,
            tokens_per_s: 0.0,
            lr: 0.0,
            adapter: String::new(),
            snapshot: None,
            started: None,
            run_dir: None,
        }
    }
}

struct RunControl {
    paused: Mutex<bool>,
    resume: Condvar,
    stop: AtomicBool,
    /// Stop after this step (0: never).
    stop_at: AtomicUsize,
}

/// The training thread's handle: start, pause, resume, stop, and the shared progress.
pub struct TrainingRun {
    progress: Arc<Mutex<Progress>>,
    control: Arc<RunControl>,
    thread: Option<JoinHandle<()>>,
}

impl Default for TrainingRun {
    fn default() -> Self {
        TrainingRun {
            progress: Arc::default(),
            control: Arc::new(RunControl {
                paused: Mutex::new(false),
                resume: Condvar::new(),
                stop: AtomicBool::new(false),
                stop_at: AtomicUsize::new(0),
            }),
            thread: None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A fresh directory for one run.
fn run_dir() -> std::io::Result<PathBuf> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("boha-desktop-{}-{n}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

impl TrainingRun {
    /// The progress, locked for reading (hold it briefly: the training thread writes it).
    pub fn progress(&self) -> MutexGuard<'_, Progress> {
        lock(&self.progress)
    }

    /// Whether a run is in progress.
    pub fn active(&self) -> bool {
        self.progress().phase.active()
    }

    /// Starts a run on a new thread (the previous one must have ended). With
    /// `stop_at`, the run stops by itself after that many steps.
    pub fn start(
        &mut self,
        gpu: Arc<Gpu>,
        models: CheckpointCache,
        settings: TrainSettings,
        stop_at: Option<usize>,
        ctx: eframe::egui::Context,
    ) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        *self.progress() = Progress {
            phase: Phase::Loading,
            started: Some(Instant::now()),
            ..Progress::default()
        };
        *lock(&self.control.paused) = false;
        self.control.stop.store(false, Ordering::SeqCst);
        self.control
            .stop_at
            .store(stop_at.unwrap_or(0), Ordering::SeqCst);
        let progress = self.progress.clone();
        let control = self.control.clone();
        self.thread = Some(std::thread::spawn(move || {
            let result = run(&gpu, &models, &settings, &progress, &control, &ctx);
            let mut p = lock(&progress);
            p.phase = match result {
                Ok(true) => Phase::Finished,
                Ok(false) => Phase::Stopped,
                Err(e) => Phase::Failed(e.to_string()),
            };
            ctx.request_repaint();
        }));
    }

    /// Holds the run after its current step.
    pub fn pause(&self) {
        *lock(&self.control.paused) = true;
    }

    /// Lets a paused run go on.
    pub fn resume(&self) {
        *lock(&self.control.paused) = false;
        self.control.resume.notify_all();
    }

    /// Whether a pause and a stop have been asked for (they take effect after the step
    /// in progress).
    pub fn requested(&self) -> (bool, bool) {
        (
            *lock(&self.control.paused),
            self.control.stop.load(Ordering::SeqCst),
        )
    }

    /// Ends the run after its current step.
    pub fn stop(&self) {
        self.control.stop.store(true, Ordering::SeqCst);
        self.resume();
    }
}

impl Drop for TrainingRun {
    /// Asks the run to stop without waiting for its step to end: a closed window should
    /// close now, and the run's checkpoint is written atomically if it gets that far.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The run itself; Ok(true) when it ran all its steps.
fn run(
    gpu: &Gpu,
    models: &CheckpointCache,
    s: &TrainSettings,
    progress: &Mutex<Progress>,
    control: &RunControl,
    ctx: &eframe::egui::Context,
) -> boha::Result<bool> {
    let spec = s.spec()?;
    let dir = run_dir().map_err(|e| boha::Error::Invalid(format!("a run directory: {e}")))?;
    lock(progress).run_dir = Some(dir.clone());
    let data = match &s.data {
        DataSource::File(p) => p.clone(),
        DataSource::Task { task, n } => {
            let path = dir.join("train.jsonl");
            let records: Vec<_> = generate(*task, *n, 1)?
                .iter()
                .map(|i| i.to_compact_json(*task))
                .collect();
            write_jsonl(&path, &records)?;
            path
        }
    };
    let ck = models.get(&s.model)?;
    let cfg = FinetuneConfig {
        data,
        out: dir.join("run"),
        spec,
        targets: vec![s.targets.clone()],
        lr: s.lr,
        warmup: 0,
        schedule: Schedule::Constant,
        steps: Some(s.steps),
        batch: s.batch,
        max_len: s.max_len,
        seed: s.seed,
        ..FinetuneConfig::default()
    };
    let name = format!("{} on {}", describe(&spec), s.targets);
    let every = s.snapshot_every.max(1);
    let mut observe = |e: &Event| -> Control {
        match *e {
            Event::Start {
                total_steps,
                params,
                ..
            } => {
                let mut p = lock(progress);
                p.total_steps = total_steps;
                p.adapter = format!("{name} ({params} parameters)");
                p.phase = Phase::Training;
            }
            Event::Step {
                step,
                loss,
                lr,
                tokens_per_s,
                ..
            } => {
                {
                    let mut p = lock(progress);
                    p.step = step;
                    p.losses.push([step as f64, loss as f64]);
                    p.tokens_per_s = tokens_per_s;
                    p.lr = lr;
                }
                // No repaint request: the app draws paced frames while a run is active.
                let stop_at = control.stop_at.load(Ordering::SeqCst);
                if stop_at > 0 && step >= stop_at {
                    return Control::Stop;
                }
                let mut paused = lock(&control.paused);
                while *paused && !control.stop.load(Ordering::SeqCst) {
                    lock(progress).phase = Phase::Paused;
                    ctx.request_repaint();
                    paused = control
                        .resume
                        .wait(paused)
                        .unwrap_or_else(|p| p.into_inner());
                }
                lock(progress).phase = Phase::Training;
            }
            Event::Eval { .. } | Event::Checkpoint { .. } => {}
        }
        if control.stop.load(Ordering::SeqCst) {
            Control::Stop
        } else {
            Control::Continue
        }
    };
    let mut inspect = |step: usize, adapters: &boha::model::transformer::Adapters| {
        let total = lock(progress).total_steps;
        let last = step == total || step == control.stop_at.load(Ordering::SeqCst);
        if step.is_multiple_of(every) || last {
            let snap = Arc::new(Snapshot::take(gpu, step, adapters)?);
            lock(progress).snapshot = Some(snap);
        }
        Ok(())
    };
    let summary = finetune_inspect(gpu, &ck, &cfg, &mut observe, &mut inspect)?;
    Ok(summary.finished)
}
