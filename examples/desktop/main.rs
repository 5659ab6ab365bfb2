//! The native desktop demo: fine-tune, watch and try an adapter in one window.
//!
//! ```sh
//! cargo run --release --example desktop --features desktop -- --model MODEL
//! cargo run --release --example desktop --features desktop -- --tiny-model \
//!     --autostart --exit-after-steps 3 --screenshot shot.png      # headless check
//! ```
//!
//! boha's device is opened first and handed to eframe (`WgpuSetup::Existing`), so
//! training, generation and the window's rendering share one wgpu device and queue.
//! Training, chat and merging run on background threads; the UI thread only reads
//! their shared state.

mod app;
mod chat;
mod frames;
mod gate;
mod heatmap;
mod models;
mod plot;
mod results;
mod screenshot;
mod snapshot;
mod tiny;
mod training;

use std::path::PathBuf;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use eframe::egui;
use eframe::egui_wgpu::{self, WgpuSetup, WgpuSetupExisting};

use boha::adapters::Method;
use boha::data::tasks::TaskKind;
use boha::gpu::{Gpu, GpuOptions};

use gate::FrameGate;

/// Command line; every training setting is also editable in the window.
#[derive(Parser, Debug, Clone)]
#[command(name = "desktop", about = "boha's desktop demo")]
pub struct Args {
    /// A Hugging Face directory or a .gguf file (default: BOHA_MODEL).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Use a random tiny Llama written to a temporary directory instead.
    #[arg(long)]
    pub tiny_model: bool,
    /// Train on this JSONL file instead of generated records.
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The task generator for generated records: arith, choice or find.
    #[arg(long, default_value = "find")]
    pub data_task: String,
    /// Generated records.
    #[arg(long, default_value_t = 64)]
    pub data_n: usize,
    /// boha, hira, lora, additive, abba or loha.
    #[arg(long, default_value = "boha")]
    pub method: String,
    /// Grid size b (BoHA, additive).
    #[arg(long, default_value_t = 4)]
    pub blocks: usize,
    /// Rank per block (BoHA, additive) or rank (LoRA, HiRA).
    #[arg(long, default_value_t = 2)]
    pub rank: usize,
    #[arg(long, default_value = "q,v")]
    pub targets: String,
    #[arg(long, default_value_t = 3e-2)]
    pub lr: f32,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Longest example in tokens (default: 64, or 256 with --tiny-model, whose
    /// tokenizer spells most text byte by byte).
    #[arg(long)]
    pub max_len: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The chat prompt (default: a held-out question of the task).
    #[arg(long)]
    pub prompt: Option<String>,
    #[arg(long, default_value_t = 12)]
    pub max_new_tokens: usize,
    /// Start training at once.
    #[arg(long)]
    pub autostart: bool,
    /// Stop training after this many steps (with --screenshot: then answer the chat
    /// prompt, take the screenshot and exit).
    #[arg(long)]
    pub exit_after_steps: Option<usize>,
    /// Save a screenshot of the window here once the run and the chat are done, then
    /// exit (implies --autostart).
    #[arg(long)]
    pub screenshot: Option<PathBuf>,
    /// Submit GPU work in parts of at most this many commands, so frames can run
    /// between them (see `Gpu::set_submit_limit`), and hold the next part back while a
    /// frame is drawn (the frame gate); 0 turns both off. Default: 4 on CPU adapters
    /// (lavapipe), where a whole training step would hold the window for the step's
    /// length and a frame waits for the part in flight, off elsewhere.
    #[arg(long)]
    pub submit_limit: Option<usize>,
    /// An adapter index or name substring (as `boha devices` lists them).
    #[arg(long)]
    pub device: Option<String>,
    /// Frames a second while training or chatting (default: 4 on CPU adapters, where
    /// every frame is rasterized by the same cores that train, else 30). Input is
    /// answered at once whatever the rate.
    #[arg(long)]
    pub fps: Option<f64>,
    /// Window size in points, WIDTHxHEIGHT (default: 1280x800, or 960x600 on CPU
    /// adapters, where drawing time grows with the pixel count).
    #[arg(long)]
    pub size: Option<String>,
    /// Give up (exit code 3) after this many seconds in headless mode.
    #[arg(long, default_value_t = 1800)]
    pub timeout: u64,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let mut args = Args::parse();
    if args.screenshot.is_some() {
        args.autostart = true;
    }
    if let Err(e) = Method::parse(&args.method).and_then(|_| TaskKind::parse(&args.data_task)) {
        fail(&e.to_string());
    }
    if args.tiny_model {
        match tiny::write_tiny_model(&std::env::temp_dir()) {
            Ok(dir) => args.model = Some(dir),
            Err(e) => fail(&format!("writing the tiny model: {e}")),
        }
    }
    if args.model.is_none() {
        args.model = std::env::var_os("BOHA_MODEL").map(PathBuf::from);
    }
    let opts = GpuOptions {
        device: args.device.clone(),
        ..GpuOptions::default()
    };
    let mut gpu = Gpu::new_shareable(&opts).unwrap_or_else(|e| fail(&e.to_string()));
    let limit = match args.submit_limit {
        Some(n) => n,
        None if gpu.info().device_type == "Cpu" => 4,
        None => 0,
    };
    gpu.set_submit_limit(Some(limit));
    let gate = Arc::new(FrameGate::default());
    if limit > 0 {
        let g = gate.clone();
        gpu.set_submit_gate(Some(Arc::new(move || g.pass())));
    }
    let on_cpu = gpu.info().device_type == "Cpu";
    args.fps.get_or_insert(if on_cpu { 4.0 } else { 30.0 });
    let size_arg = args
        .size
        .clone()
        .unwrap_or_else(|| if on_cpu { "960x600" } else { "1280x800" }.to_string());
    let size = size_arg
        .split_once('x')
        .and_then(|(w, h)| Some([w.parse::<f32>().ok()?, h.parse::<f32>().ok()?]))
        .unwrap_or_else(|| fail(&format!("--size {size_arg}: expected WIDTHxHEIGHT")));
    let (instance, adapter, device, queue) = gpu
        .wgpu_handles()
        .expect("a shareable device keeps its handles");
    let gpu = Arc::new(gpu);

    if args.screenshot.is_some() {
        let secs = args.timeout;
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            eprintln!("desktop: gave up after {secs} s");
            std::process::exit(3);
        });
    }

    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("boha — fine-tune with block-wise Hadamard adapters")
            .with_inner_size(size),
        renderer: eframe::Renderer::Wgpu,
        wgpu_options: egui_wgpu::WgpuConfiguration {
            wgpu_setup: WgpuSetup::Existing(WgpuSetupExisting {
                instance,
                adapter,
                device,
                queue,
            }),
            // Frames are paced by the app (continuous repaint only while something
            // runs); waiting for vblank would only add to the measured frame time.
            surface: egui_wgpu::SurfaceConfig {
                present_mode: eframe::wgpu::PresentMode::AutoNoVsync,
                desired_maximum_frame_latency: Some(1),
            },
            ..Default::default()
        },
        ..Default::default()
    };
    let exit = Arc::new(AtomicI32::new(0));
    let exit_in_app = exit.clone();
    let result = eframe::run_native(
        "boha-desktop",
        options,
        Box::new(move |cc| {
            Ok(Box::new(app::DesktopApp::new(
                cc,
                gpu,
                args,
                gate,
                exit_in_app,
            )))
        }),
    );
    if let Err(e) = result {
        fail(&format!("the window: {e}"));
    }
    std::process::exit(exit.load(Ordering::SeqCst));
}

/// Prints one line and exits with status 1.
fn fail(msg: &str) -> ! {
    eprintln!("desktop: {msg}");
    std::process::exit(1);
}
