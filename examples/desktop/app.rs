//! The window: the panels, the buttons' wiring to the workers, the frame clock, and the
//! headless script (`--autostart`, `--exit-after-steps`, `--screenshot`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use eframe::egui::{self, Color32, RichText, Vec2};

use boha::adapters::Method;
use boha::data::tasks::{generate, TaskKind};
use boha::gpu::Gpu;

use crate::chat::{Chat, ChatPhase, Question};
use crate::frames::{Activity, FrameClock};
use crate::gate::FrameGate;
use crate::heatmap::Heatmap;
use crate::models::CheckpointCache;
use crate::plot::loss_curve;
use crate::results::Results;
use crate::screenshot::{save_png, ImageStats};
use crate::training::{DataSource, Phase, TrainSettings, TrainingRun};
use crate::Args;

/// Fewer distinct colours than this and a screenshot counts as blank.
const MIN_COLORS: usize = 16;

/// Frames to draw after the chat finished before the screenshot, so every panel shows
/// the final state (and the idle frame time has a sample).
const SETTLE_FRAMES: u32 = 30;

#[derive(Clone, Copy, PartialEq)]
enum DataMode {
    Generate,
    File,
}

/// Where the headless script is.
enum Stage {
    Training,
    Chatting,
    Settling(u32),
    Shooting(mpsc::Receiver<Result<ImageStats, String>>),
    Done,
}

struct Script {
    stage: Stage,
    screenshot: Option<PathBuf>,
    /// The last step reported on stderr.
    reported: usize,
}

/// The application state: the form, the workers and the script.
pub struct DesktopApp {
    gpu: Arc<Gpu>,
    models: CheckpointCache,
    device_line: String,

    model_path: String,
    data_mode: DataMode,
    data_path: String,
    task: TaskKind,
    data_n: usize,
    method: Method,
    blocks: usize,
    rank: usize,
    targets: String,
    lr: f32,
    steps: usize,
    batch: usize,
    max_len: usize,
    seed: u64,
    stop_at: Option<usize>,
    form_error: Option<String>,

    prompt: String,
    /// Which held-out question the prompt was last set to.
    question: usize,
    chat_template: bool,
    max_new_tokens: usize,

    adapter_dir: String,
    merged_dir: String,

    training: TrainingRun,
    chat: Chat,
    results: Results,
    heatmap: Heatmap,
    frames: FrameClock,
    /// Whether this frame was asked for at once by the one before (see `frames`).
    at_once: bool,
    /// When the current pair of frames started.
    pair_start: Instant,
    /// The interval between frames while something runs (pairs: twice this apart).
    frame_period: Duration,
    /// Holds the workers' submits while a frame is drawn.
    gate: Arc<FrameGate>,
    /// eframe's CPU time of each frame (ui, tessellation, paint; not the waits), ms.
    cpu_ms: Vec<f32>,
    script: Option<Script>,
    exit: Arc<AtomicI32>,
}

/// The `index`-th held-out question of `task` (seed 2, disjoint from the training
/// records' seed 1).
fn held_out_prompt(task: TaskKind, index: usize) -> String {
    generate(task, index + 1, 2)
        .ok()
        .and_then(|items| items.get(index).map(|i| i.to_compact_json(task)))
        .and_then(|v| v["prompt"].as_str().map(str::to_string))
        .unwrap_or_default()
}

impl DesktopApp {
    /// The app, with the form filled from `args` (and training started with
    /// `--autostart`).
    pub fn new(
        cc: &eframe::CreationContext<'_>,
        gpu: Arc<Gpu>,
        args: Args,
        gate: Arc<FrameGate>,
        exit: Arc<AtomicI32>,
    ) -> DesktopApp {
        let info = gpu.info();
        let device_line = format!(
            "{} · {} · {} {}",
            info.name, info.backend, info.driver, info.driver_info
        );
        let task = TaskKind::parse(&args.data_task).unwrap_or(TaskKind::Find);
        let method = Method::parse(&args.method).unwrap_or(Method::Boha);
        let max_len = args
            .max_len
            .unwrap_or(if args.tiny_model { 256 } else { 64 });
        let headless = args.screenshot.is_some() || args.exit_after_steps.is_some();
        let mut app = DesktopApp {
            gpu,
            models: CheckpointCache::default(),
            device_line,
            model_path: args
                .model
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            data_mode: if args.data.is_some() {
                DataMode::File
            } else {
                DataMode::Generate
            },
            data_path: args
                .data
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            task,
            data_n: args.data_n,
            method,
            blocks: args.blocks,
            rank: args.rank,
            targets: args.targets.clone(),
            lr: args.lr,
            steps: args.steps,
            batch: args.batch,
            max_len,
            seed: args.seed,
            stop_at: args.exit_after_steps,
            form_error: None,
            prompt: args
                .prompt
                .clone()
                .unwrap_or_else(|| held_out_prompt(task, 0)),
            question: 0,
            chat_template: false,
            max_new_tokens: args.max_new_tokens,
            adapter_dir: std::env::temp_dir()
                .join("boha-adapter")
                .display()
                .to_string(),
            merged_dir: std::env::temp_dir()
                .join("boha-merged")
                .display()
                .to_string(),
            training: TrainingRun::default(),
            chat: Chat::default(),
            results: Results::default(),
            heatmap: Heatmap::default(),
            frames: FrameClock::default(),
            at_once: false,
            pair_start: Instant::now(),
            frame_period: Duration::from_secs_f64(1.0 / args.fps.unwrap_or(30.0).clamp(1.0, 240.0)),
            gate,
            cpu_ms: Vec::new(),
            script: headless.then(|| Script {
                stage: Stage::Training,
                screenshot: args.screenshot.clone(),
                reported: 0,
            }),
            exit,
        };
        if args.autostart || headless {
            app.start_training(&cc.egui_ctx);
        }
        app
    }

    fn settings(&self) -> Result<TrainSettings, String> {
        if self.model_path.trim().is_empty() {
            return Err("give a model: a Hugging Face directory or a .gguf file".into());
        }
        let data = match self.data_mode {
            DataMode::Generate => DataSource::Task {
                task: self.task,
                n: self.data_n.max(1),
            },
            DataMode::File => {
                let p = PathBuf::from(self.data_path.trim());
                if !p.is_file() {
                    return Err(format!("{}: no such data file", p.display()));
                }
                DataSource::File(p)
            }
        };
        let s = TrainSettings {
            model: PathBuf::from(self.model_path.trim()),
            data,
            method: self.method,
            blocks: self.blocks,
            rank: self.rank,
            targets: self.targets.trim().to_string(),
            lr: self.lr,
            steps: self.steps,
            batch: self.batch,
            max_len: self.max_len,
            seed: self.seed,
            snapshot_every: 1,
        };
        s.spec().map_err(|e| e.to_string())?;
        Ok(s)
    }

    fn start_training(&mut self, ctx: &egui::Context) {
        match self.settings() {
            Ok(s) => {
                self.form_error = None;
                self.training.start(
                    self.gpu.clone(),
                    self.models.clone(),
                    s,
                    self.stop_at,
                    ctx.clone(),
                );
            }
            Err(e) => {
                if self.script.is_some() {
                    self.finish(ctx, 1, &e);
                }
                self.form_error = Some(e);
            }
        }
    }

    fn ask(&mut self, ctx: &egui::Context) {
        let snapshot = self.training.progress().snapshot.clone();
        let q = Question {
            model: PathBuf::from(self.model_path.trim()),
            prompt: self.prompt.clone(),
            chat_template: self.chat_template,
            max_new_tokens: self.max_new_tokens.max(1),
        };
        self.chat.ask(
            self.gpu.clone(),
            self.models.clone(),
            q,
            snapshot,
            ctx.clone(),
        );
    }

    /// How long a frame holds the workers' submits back: a little over the recent
    /// median frame time (80 ms before any was measured).
    fn hold(&self) -> Duration {
        let f = self.frames.recent();
        let ms = if f.n == 0 { 80.0 } else { 1.2 * f.p50 };
        Duration::from_secs_f32(ms.clamp(20.0, 150.0) / 1e3)
    }

    /// Ends a headless run: the frame-time summary, the exit code, the window closed.
    fn finish(&mut self, ctx: &egui::Context, code: i32, msg: &str) {
        for (what, name) in [
            (Activity::Training, "training"),
            (Activity::Chat, "chatting"),
            (Activity::Idle, "idle"),
        ] {
            let t = self.frames.during(what);
            eprintln!(
                "desktop: frame time while {name}: {} frames, mean {:.1} ms, median {:.1} ms, \
                 p95 {:.1} ms, max {:.1} ms",
                t.n, t.mean, t.p50, t.p95, t.max
            );
        }
        let cpu = &self.cpu_ms;
        eprintln!(
            "desktop: eframe's ui + paint CPU time per frame: mean {:.1} ms over {} frames",
            cpu.iter().sum::<f32>() / cpu.len().max(1) as f32,
            cpu.len()
        );
        if !msg.is_empty() {
            eprintln!("desktop: {msg}");
        }
        self.exit.store(code, Ordering::SeqCst);
        if let Some(s) = &mut self.script {
            s.stage = Stage::Done;
        }
        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
    }

    /// Advances the headless script by one frame.
    fn run_script(&mut self, ctx: &egui::Context) {
        let (phase, step, total, loss, tps) = {
            let p = self.training.progress();
            let loss = p.losses.last().map(|l| l[1]);
            (p.phase.clone(), p.step, p.total_steps, loss, p.tokens_per_s)
        };
        let chat = self.chat.state().phase.clone();
        let Some(script) = &mut self.script else {
            return;
        };
        if step > script.reported {
            script.reported = step;
            eprintln!(
                "desktop: step {step}/{total} loss {:.4} ({tps:.0} tokens/s)",
                loss.unwrap_or(f64::NAN)
            );
        }
        let mut ask = false;
        let finish = match &mut script.stage {
            Stage::Training => match phase {
                Phase::Failed(e) => Some((1, format!("training failed: {e}"))),
                Phase::Finished | Phase::Stopped => {
                    script.stage = Stage::Chatting;
                    ask = true;
                    None
                }
                _ => None,
            },
            Stage::Chatting => match chat {
                ChatPhase::Failed(e) => Some((1, format!("chat failed: {e}"))),
                ChatPhase::Done => {
                    let s = self.chat.state();
                    eprintln!("desktop: base answer: {:?}", s.base);
                    eprintln!("desktop: adapted answer: {:?}", s.adapted);
                    script.stage = Stage::Settling(SETTLE_FRAMES);
                    None
                }
                _ => None,
            },
            Stage::Settling(n) if *n > 0 => {
                *n -= 1;
                None
            }
            Stage::Settling(_) => match script.screenshot.clone() {
                Some(path) => {
                    let (tx, rx) = mpsc::channel();
                    let repaint = ctx.clone();
                    ctx.request_screenshot(move |img| {
                        let _ = tx.send(save_png(&path, &img));
                        repaint.request_repaint();
                    });
                    script.stage = Stage::Shooting(rx);
                    None
                }
                None => Some((0, String::new())),
            },
            Stage::Shooting(rx) => match rx.try_recv() {
                Ok(Ok(stats)) => {
                    let path = script.screenshot.clone().unwrap_or_default();
                    let code = if stats.distinct_colors < MIN_COLORS {
                        2
                    } else {
                        0
                    };
                    Some((
                        code,
                        format!(
                            "screenshot {} ({}×{}, {} distinct colours)",
                            path.display(),
                            stats.width,
                            stats.height,
                            stats.distinct_colors
                        ),
                    ))
                }
                Ok(Err(e)) => Some((1, format!("screenshot: {e}"))),
                Err(mpsc::TryRecvError::Empty) => None,
                Err(mpsc::TryRecvError::Disconnected) => {
                    Some((1, "the screenshot never arrived".to_string()))
                }
            },
            Stage::Done => None,
        };
        if ask {
            self.ask(ctx);
        }
        if let Some((code, msg)) = finish {
            self.finish(ctx, code, &msg);
        }
    }

    fn top_bar(&self, ui: &mut egui::Ui, cpu: Option<f32>) {
        ui.horizontal(|ui| {
            ui.heading("boha");
            ui.separator();
            ui.label(format!("device: {}", self.device_line));
            ui.separator();
            let f = self.frames.recent();
            let text = if f.n == 0 {
                "frame: idle".to_string()
            } else {
                format!(
                    "frame {:.0} ms (last {}: max {:.0} ms; ui + paint CPU {:.0} ms)",
                    f.mean,
                    f.n,
                    f.max,
                    cpu.unwrap_or(0.0) * 1e3
                )
            };
            let color = if f.max > 100.0 {
                Color32::from_rgb(230, 150, 60)
            } else {
                ui.visuals().text_color()
            };
            ui.label(RichText::new(text).color(color));
        });
    }

    fn model_and_data(&mut self, ui: &mut egui::Ui) {
        ui.heading("Model and data");
        ui.label("model (HF directory or .gguf)");
        ui.add(egui::TextEdit::singleline(&mut self.model_path).desired_width(f32::INFINITY));
        ui.horizontal(|ui| {
            ui.label("data");
            ui.radio_value(&mut self.data_mode, DataMode::Generate, "generate");
            ui.radio_value(&mut self.data_mode, DataMode::File, "JSONL file");
        });
        match self.data_mode {
            DataMode::Generate => {
                ui.horizontal(|ui| {
                    egui::ComboBox::from_id_salt("task")
                        .selected_text(self.task.name())
                        .width(80.0)
                        .show_ui(ui, |ui| {
                            for t in [TaskKind::Find, TaskKind::Choice, TaskKind::Arith] {
                                ui.selectable_value(&mut self.task, t, t.name());
                            }
                        });
                    ui.add(
                        egui::DragValue::new(&mut self.data_n)
                            .range(1..=100_000)
                            .suffix(" records"),
                    );
                });
            }
            DataMode::File => {
                ui.add(
                    egui::TextEdit::singleline(&mut self.data_path)
                        .hint_text("train.jsonl")
                        .desired_width(f32::INFINITY),
                );
            }
        }
    }

    fn training_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Training");
        let active = self.training.active();
        ui.add_enabled_ui(!active, |ui| {
            egui::Grid::new("train_form")
                .num_columns(2)
                .spacing([8.0, 4.0])
                .show(ui, |ui| {
                    ui.label("method");
                    egui::ComboBox::from_id_salt("method")
                        .selected_text(self.method.name())
                        .show_ui(ui, |ui| {
                            for m in Method::ALL {
                                ui.selectable_value(&mut self.method, m, m.name());
                            }
                        });
                    ui.end_row();
                    let blocked = self.method.kind().has_grid();
                    if blocked {
                        ui.label("blocks b");
                        ui.add(egui::DragValue::new(&mut self.blocks).range(1..=64));
                        ui.end_row();
                    }
                    ui.label(if blocked { "rank per block" } else { "rank r" });
                    ui.add(egui::DragValue::new(&mut self.rank).range(1..=256));
                    ui.end_row();
                    ui.label("targets");
                    ui.add(egui::TextEdit::singleline(&mut self.targets).desired_width(120.0));
                    ui.end_row();
                    ui.label("learning rate");
                    ui.add(
                        egui::DragValue::new(&mut self.lr)
                            .range(1e-5..=1.0)
                            .speed(1e-4)
                            .custom_formatter(|v, _| format!("{v:.1e}")),
                    );
                    ui.end_row();
                    ui.label("steps");
                    ui.add(egui::DragValue::new(&mut self.steps).range(1..=100_000));
                    ui.end_row();
                    ui.label("batch");
                    ui.add(egui::DragValue::new(&mut self.batch).range(1..=256));
                    ui.end_row();
                    ui.label("max length");
                    ui.add(egui::DragValue::new(&mut self.max_len).range(2..=8192));
                    ui.end_row();
                });
        });
        let phase = self.training.progress().phase.clone();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(!active, egui::Button::new("Start"))
                .clicked()
            {
                let ctx = ui.ctx().clone();
                self.start_training(&ctx);
            }
            let paused = phase == Phase::Paused;
            let label = if paused { "Resume" } else { "Pause" };
            if ui.add_enabled(active, egui::Button::new(label)).clicked() {
                if paused {
                    self.training.resume();
                } else {
                    self.training.pause();
                }
            }
            if ui.add_enabled(active, egui::Button::new("Stop")).clicked() {
                self.training.stop();
            }
        });
        if let Some(e) = &self.form_error {
            ui.colored_label(Color32::from_rgb(230, 90, 90), e);
        }
        let status = match &phase {
            Phase::Idle => "idle".to_string(),
            Phase::Loading => "loading the model and data, compiling kernels …".to_string(),
            Phase::Training => match self.training.requested() {
                (_, true) => "stopping after this step".to_string(),
                (true, _) => "pausing after this step".to_string(),
                _ => "training".to_string(),
            },
            Phase::Paused => "paused".to_string(),
            Phase::Finished => "finished".to_string(),
            Phase::Stopped => "stopped".to_string(),
            Phase::Failed(e) => format!("failed: {e}"),
        };
        ui.label(format!("status: {status}"));
    }

    fn results_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Results");
        let snap = self.training.progress().snapshot.clone();
        let busy = self.results.outcome().busy;
        let ready = snap.is_some() && !busy;
        ui.add(egui::TextEdit::singleline(&mut self.adapter_dir).desired_width(f32::INFINITY));
        if ui
            .add_enabled(ready, egui::Button::new("Save adapter"))
            .clicked()
        {
            if let Some(s) = snap.clone() {
                self.results.save_adapter(
                    s,
                    PathBuf::from(self.model_path.trim()),
                    PathBuf::from(self.adapter_dir.trim()),
                    ui.ctx().clone(),
                );
            }
        }
        ui.add(egui::TextEdit::singleline(&mut self.merged_dir).desired_width(f32::INFINITY));
        if ui
            .add_enabled(ready, egui::Button::new("Write merged model"))
            .clicked()
        {
            if let Some(s) = snap {
                self.results.write_merged(
                    self.gpu.clone(),
                    self.models.clone(),
                    s,
                    PathBuf::from(self.model_path.trim()),
                    PathBuf::from(self.merged_dir.trim()),
                    ui.ctx().clone(),
                );
            }
        }
        let msg = self.results.outcome().message.clone();
        if !msg.is_empty() {
            ui.label(msg);
        }
    }

    fn stats_line(&self, ui: &mut egui::Ui) {
        let p = self.training.progress();
        ui.horizontal_wrapped(|ui| {
            ui.label(RichText::new(format!("step {}/{}", p.step, p.total_steps)).strong());
            if let Some(l) = p.losses.last() {
                ui.label(format!("loss {:.4}", l[1]));
            }
            ui.label(format!("{:.0} tokens/s", p.tokens_per_s));
            if let (Some(t0), true) = (p.started, p.step > 0) {
                ui.label(format!("{:.0} s", t0.elapsed().as_secs_f64()));
            }
            if p.step > 0 {
                ui.label(format!("lr {:.1e}", p.lr));
            }
            if !p.adapter.is_empty() {
                ui.label(format!("adapter: {}", p.adapter));
            }
        });
    }

    fn chat_panel(&mut self, ui: &mut egui::Ui) {
        ui.heading("Chat");
        let busy = self.chat.busy();
        ui.add(
            egui::TextEdit::multiline(&mut self.prompt)
                .desired_rows(3)
                .desired_width(f32::INFINITY)
                .font(egui::TextStyle::Monospace),
        );
        ui.horizontal(|ui| {
            if ui.add_enabled(!busy, egui::Button::new("Answer")).clicked() {
                let ctx = ui.ctx().clone();
                self.ask(&ctx);
            }
            if ui
                .button("held-out question")
                .on_hover_text("a question of the chosen task that training never sees")
                .clicked()
            {
                self.question += 1;
                self.prompt = held_out_prompt(self.task, self.question);
            }
            ui.checkbox(&mut self.chat_template, "chat template");
            ui.label("max new tokens");
            ui.add(egui::DragValue::new(&mut self.max_new_tokens).range(1..=1024));
            ui.label("(greedy)");
        });
        let s = self.chat.state();
        if let ChatPhase::Failed(e) = &s.phase {
            ui.colored_label(Color32::from_rgb(230, 90, 90), format!("chat failed: {e}"));
        }
        let secs = |t: Option<f64>| t.map(|t| format!(" · {t:.1} s")).unwrap_or_default();
        let adapted_title = match s.adapted_step {
            Some(step) => format!("adapted (step {step}){}", secs(s.adapted_s)),
            None => "adapted".to_string(),
        };
        let loading = s.phase == ChatPhase::Loading;
        ui.columns(2, |cols| {
            let answers = [
                (format!("base model{}", secs(s.base_s)), &s.base),
                (adapted_title, &s.adapted),
            ];
            for (col, (title, text)) in cols.iter_mut().zip(answers) {
                col.label(RichText::new(title).strong());
                egui::Frame::group(col.style())
                    .fill(col.visuals().extreme_bg_color)
                    .show(col, |ui| {
                        let h = (ui.available_height() - 8.0).max(60.0);
                        ui.set_min_size(Vec2::new(ui.available_width(), h));
                        let shown = if text.is_empty() && loading {
                            "loading the model …"
                        } else {
                            text.as_str()
                        };
                        ui.add(egui::Label::new(RichText::new(shown).monospace()).wrap());
                    });
            }
        });
    }
}

impl eframe::App for DesktopApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let started = Instant::now();
        self.gate.frame_started(self.hold());
        let ctx = ui.ctx().clone();
        let activity = if self.training.progress().phase == Phase::Training {
            Activity::Training
        } else if self.chat.busy() {
            Activity::Chat
        } else {
            Activity::Idle
        };
        self.frames.tick(self.at_once, activity);
        self.run_script(&ctx);

        let cpu = frame.info().cpu_usage;
        self.cpu_ms.push(cpu.unwrap_or(0.0) * 1e3);
        egui::Panel::top("top").show(ui, |ui| self.top_bar(ui, cpu));
        egui::Panel::left("controls")
            .resizable(false)
            .exact_size(330.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.model_and_data(ui);
                    ui.separator();
                    self.training_panel(ui);
                    ui.separator();
                    self.results_panel(ui);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            self.stats_line(ui);
            ui.separator();
            let height = (ui.available_height() * 0.55).clamp(200.0, 380.0);
            ui.columns(2, |cols| {
                cols[0].heading("Loss per step");
                let (losses, total) = {
                    let p = self.training.progress();
                    (p.losses.clone(), p.total_steps)
                };
                let w = cols[0].available_width();
                loss_curve(&mut cols[0], &losses, total, Vec2::new(w, height - 30.0));
                cols[1].heading("Block norms");
                let snap = self.training.progress().snapshot.clone();
                self.heatmap.ui(&mut cols[1], snap.as_deref());
            });
            ui.separator();
            self.chat_panel(ui);
        });

        let busy = self.training.active() || self.chat.busy() || self.results.outcome().busy;
        let was_at_once = self.at_once;
        self.at_once = false;
        if busy || self.script.is_some() {
            // Never a zero delay: egui answers that with two frames, which would run the
            // frames back to back.
            let soon = Duration::from_micros(1);
            if was_at_once {
                // The pair is timed: the next one starts `2 / fps` after this one did.
                let wait = (2 * self.frame_period).saturating_sub(self.pair_start.elapsed());
                ctx.request_repaint_after(wait.max(soon));
            } else {
                // Ask for the next frame at once, which times this one.
                self.pair_start = started;
                self.at_once = true;
                ctx.request_repaint_after(soon);
            }
        }
    }
}
