//! Command-line parsing and dispatch to the library.

mod adapter_args;
mod bench;
mod continual;
mod data;
mod demo;
mod devices;
mod eval;
mod finetune;
mod generate;
mod graph;
mod merge;
mod report;
mod score;
mod setup;
mod study;
mod synthetic;
mod tune;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use boha::gpu::{BaseDType, GemmFamily, Gpu, GpuOptions};
use boha::{Error, Result};

/// Fine-tune and run Llama-family models with BoHA adapters on any WebGPU device.
#[derive(Parser, Debug)]
#[command(name = "boha", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Device options, accepted by every command.
#[derive(Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Adapter index (see `boha devices`) or part of its name; default: WGPU_ADAPTER_NAME,
    /// else the fastest adapter found. WGPU_BACKEND limits the backends searched.
    #[arg(long, global = true)]
    pub device: Option<String>,
    /// GEMM kernel family: `register` (CPU-type adapters) or `shared` (GPUs); default by
    /// adapter type.
    #[arg(long, global = true, value_parser = parse_family)]
    pub gemm: Option<GemmFamily>,
    /// Seconds to wait on the device before a submit counts as hung.
    #[arg(long, global = true, default_value_t = 120.0)]
    pub timeout: f64,
    /// Ignore the tuning file `boha tune` wrote for this adapter and driver (the device
    /// profile's defaults run instead).
    #[arg(long, global = true)]
    pub no_tune: bool,
    /// How a loaded model's frozen weights (linear layers, embedding, LM head) are stored
    /// on the device: `keep` (what the file holds, GGUF's Q4_K, Q5_K and Q6_K too; F16
    /// for Q2_K, Q3_K, Q5_0 and Q5_1), `f32`, `f16`, `bf16`, `q8_0`, `q4_0` or `q4_1`.
    /// Kernels decode them to f32 as they load them.
    #[arg(long, global = true, default_value = "keep", value_parser = parse_base_dtype)]
    pub base_dtype: BaseDType,
}

fn parse_base_dtype(s: &str) -> std::result::Result<BaseDType, String> {
    BaseDType::parse(s).ok_or_else(|| match s.parse::<boha::gpu::DType>() {
        Ok(d) => format!(
            "no quantizer for {d}; K-quant weights come from a GGUF file as they are (keep)"
        ),
        Err(_) => format!("unknown base dtype '{s}' (keep, f32, f16, bf16, q8_0, q4_0 or q4_1)"),
    })
}

fn parse_family(s: &str) -> std::result::Result<GemmFamily, String> {
    GemmFamily::parse(s).ok_or_else(|| format!("unknown GEMM family '{s}' (register or shared)"))
}

impl DeviceArgs {
    /// Opens the chosen device.
    pub fn open(&self) -> Result<Gpu> {
        if !(self.timeout.is_finite() && self.timeout > 0.0) {
            return Err(Error::Invalid(format!(
                "--timeout {} must be positive",
                self.timeout
            )));
        }
        Gpu::new(&GpuOptions {
            device: self.device.clone(),
            timeout: Duration::from_secs_f64(self.timeout),
            max_binding_override: None,
            gemm_family: self.gemm,
            untuned: self.no_tune,
            base_dtype: self.base_dtype,
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// The main job: fine-tune SmolLM2-135M-Instruct with BoHA on a generated task and
    /// show its accuracy before and after (about ten minutes on two CPU cores).
    Demo(demo::DemoArgs),
    /// Make this machine ready: when wgpu finds no adapter, install Mesa's software
    /// Vulkan driver (lavapipe) with the system's package manager (as root or with
    /// password-less sudo; otherwise print the command to run).
    Setup(setup::SetupArgs),
    /// List every adapter with its backend, type, driver and limits.
    Devices {
        /// Print one JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Time the candidate kernels for a model's own shapes on this device and keep the
    /// winners for every later command on this adapter and driver.
    Tune(tune::TuneArgs),
    /// Benchmarks; every figure comes with a ratio measured in the same run.
    Bench {
        #[command(subcommand)]
        what: bench::BenchCommand,
    },
    /// The paper's synthetic rank experiment: fit W0 ⊙ M* (rank b² blockwise) with BoHA,
    /// HiRA at the same budget, HiRA at r = b², and the additive control.
    Synthetic(synthetic::SyntheticArgs),
    /// Generate text from a prompt (plain or chat-templated), streamed to stdout.
    Generate(generate::GenerateArgs),
    /// Mean next-token NLL and perplexity of a text.
    Score(score::ScoreArgs),
    /// Write a generated task (arith, choice, find) or a real benchmark (boolq … gsm8k) as
    /// JSONL; `boha data --help` gives the rules.
    #[command(long_about = data::LONG_ABOUT)]
    Data(data::DataArgs),
    /// Fine-tune adapters (BoHA, HiRA, LoRA, the additive control, ABBA or LoHa) on a JSONL dataset.
    Finetune(finetune::FinetuneArgs),
    /// Accuracy of greedy answers on a JSONL dataset, extracted as LLM-Adapters does.
    Eval(eval::EvalArgs),
    /// Merge an adapter into its model and write an adapter-free Hugging Face directory.
    Merge(merge::MergeArgs),
    /// The continual-learning diagnostic: task one, then task two, for each method at a
    /// matched budget; retention and plasticity.
    Continual(continual::ContinualArgs),
    /// The benchmark study: BoHA, LoRA, HiRA, ABBA and the additive control on the
    /// commonsense tasks and GSM8K, with a rate sweep, seeds, the continual diagnostic
    /// and a report; resumable (each unit's result is a JSON file).
    Study(study::StudyArgs),
    /// The op graph a command compiles: nodes with shapes and dtypes, the planned
    /// buffers and their sizes (`--dot` writes Graphviz, `--measure` runs a step).
    Graph(graph::GraphArgs),
    /// Rebuild the figure tables of README.md and docs/RESULTS.md from the records in
    /// docs/benchmarks/ (`--check`: fail on the first table that differs).
    Report(report::ReportArgs),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Demo(args) => demo::run(&cli.device, &args),
        Command::Setup(args) => setup::run(&args),
        Command::Devices { json } => devices::run(json),
        Command::Bench { what } => bench::run(&cli.device, what),
        Command::Tune(args) => tune::run(&cli.device, &args),
        Command::Synthetic(args) => synthetic::run(&cli.device, &args),
        Command::Generate(args) => generate::run(&cli.device, &args),
        Command::Score(args) => score::run(&cli.device, &args),
        Command::Data(args) => data::run(&args),
        Command::Finetune(args) => finetune::run(&cli.device, &args),
        Command::Eval(args) => eval::run(&cli.device, &args),
        Command::Merge(args) => merge::run(&cli.device, &args),
        Command::Continual(args) => continual::run(&cli.device, &args),
        Command::Study(args) => study::run(&cli.device, &args),
        Command::Report(args) => report::run(&args),
        Command::Graph(args) => graph::run(&cli.device, &args),
    }
}
