//! `boha bench decode|gemm|layer|load|step [--json]`

use clap::Subcommand;

use std::path::PathBuf;

use boha::adapters::Method;
use boha::bench::record::{self, Record};
use boha::bench::{decode, gemm, layer, load, step};
use boha::gpu::BaseDType;
use boha::loaders::load_checkpoint;
use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// FMA peak, copy bandwidth, GEMM GFLOP/s as a fraction of the peak, and the decode
    /// products (M = 1, 4) on the GEMV kernels against the copy bandwidth.
    Gemm {
        /// Also time every product this model's training asks for (a Hugging Face
        /// directory or a .gguf file), at `--batch` × `--max-len` tokens.
        #[arg(long)]
        model: Option<PathBuf>,
        #[arg(long, default_value_t = 4, requires = "model")]
        batch: usize,
        #[arg(long, default_value_t = 128, requires = "model")]
        max_len: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Greedy decoding of several sequences at once (as `eval` decodes) against one at a
    /// time: step time, tokens/s and the speedup over batch 1, measured in one run.
    Decode {
        /// A Hugging Face directory or a .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// Batch sizes, comma-separated (batch 1 always runs first).
        #[arg(long, value_delimiter = ',', default_value = "1,4,16,64")]
        batches: Vec<usize>,
        /// Tokens of the prompt each sequence has cached before the timed steps.
        #[arg(long, default_value_t = 128)]
        prompt_len: usize,
        /// Decode steps per batch size (the first warms up; the median of the rest).
        #[arg(long, default_value_t = 16)]
        steps: usize,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Host memory while a checkpoint is opened and its weights uploaded: the peak
    /// resident set over the baseline (device buffers taken off on a CPU adapter)
    /// against the largest frozen tensor + 64 MiB. Linux only.
    Load {
        /// A Hugging Face directory or a .gguf file.
        #[arg(long)]
        model: PathBuf,
        /// Load once per `--base-dtype` listed (comma-separated: keep, f32, f16, bf16,
        /// q8_0, q4_0, q4_1); default: the global `--base-dtype`.
        #[arg(long, value_delimiter = ',')]
        base_dtypes: Vec<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One adapted linear layer at transformer shapes: forward and training step of
    /// BoHA (b = 4, r_b = 8), HiRA (r = 32) and LoRA (r = 32) against the base GEMM.
    Layer {
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One real training step (forward, backward, AdamW) of a model for BoHA (b = 4,
    /// r_b = 8), HiRA (r = 32), LoRA (r = 32) and the additive control on all seven
    /// projections, and forward passes of the base and the BoHA-merged model.
    Step {
        /// A Hugging Face directory or a .gguf file.
        #[arg(long)]
        model: PathBuf,
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Tokens per sequence.
        #[arg(long, default_value_t = 128)]
        max_len: usize,
        /// Timed steps per method (after one warm-up step); the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// The methods to time, comma-separated (default: all six; BoHA also runs with
        /// gradient checkpointing).
        #[arg(long, value_delimiter = ',')]
        methods: Vec<String>,
        /// Also time BoHA's step with the frozen weights stored in each of these dtypes
        /// (comma-separated: f32, f16, bf16), with step time and peak over the first's.
        #[arg(long, value_delimiter = ',')]
        base_dtypes: Vec<String>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        /// Also time each method's forward and backward per kernel, one dispatch per
        /// submit (slow; where the step's time goes).
        #[arg(long)]
        profile: bool,
    },
}

/// Prints `v` as one line of JSON inside its record envelope (`src/bench/record.rs`).
fn print_json<T: serde::Serialize>(rec: Record, v: &T) -> Result<()> {
    let s = record::to_json(rec, v).map_err(|e| Error::Invalid(e.to_string()))?;
    println!("{s}");
    Ok(())
}

pub fn run(dev: &DeviceArgs, what: BenchCommand) -> Result<()> {
    let gpu = dev.open()?;
    let rec = Record::now(&gpu);
    match what {
        BenchCommand::Gemm {
            model,
            batch,
            max_len,
            json,
        } => {
            let extra = match model {
                Some(p) => {
                    let ck = load_checkpoint(&p)?;
                    boha::bench::tune::model_gemm_shapes(&gpu, &ck, batch, max_len)?
                }
                None => Vec::new(),
            };
            let r = gemm::bench_gemm(&gpu, &extra)?;
            if json {
                print_json(rec, &r)
            } else {
                gemm::print_table(&r);
                Ok(())
            }
        }
        BenchCommand::Step {
            model,
            batch,
            max_len,
            runs,
            methods,
            base_dtypes,
            json,
            profile,
        } => {
            let dtypes = base_dtypes
                .iter()
                .map(|d| match BaseDType::parse(d) {
                    Some(BaseDType::Fixed(d)) => Ok(d),
                    _ => Err(Error::Invalid(format!(
                        "--base-dtypes: '{d}' is not f32, f16, bf16, q8_0, q4_0 or q4_1"
                    ))),
                })
                .collect::<Result<Vec<_>>>()?;
            let methods = if methods.is_empty() {
                Method::ALL.to_vec()
            } else {
                methods
                    .iter()
                    .map(|m| Method::parse(m))
                    .collect::<Result<Vec<_>>>()?
            };
            let ck = load_checkpoint(&model)?;
            let r = step::bench_step(
                &gpu,
                &ck,
                &methods,
                &dtypes,
                batch,
                max_len,
                runs,
                profile,
                &mut |what, ms| {
                    eprintln!("{what}: {ms:.0} ms");
                },
            )?;
            if json {
                print_json(rec, &r)
            } else {
                step::print_table(&r);
                Ok(())
            }
        }
        BenchCommand::Load {
            model,
            base_dtypes,
            json,
        } => {
            let dtypes = base_dtypes
                .iter()
                .map(|d| {
                    BaseDType::parse(d).ok_or_else(|| {
                        Error::Invalid(format!("--base-dtypes: unknown dtype '{d}'"))
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            // Each load needs a fresh process: memory freed after one load stays
            // resident in the allocator, so a second load in the same process would
            // reuse it and show no growth.
            let r = if dtypes.len() > 1 {
                load_in_children(&model, &base_dtypes)?
            } else {
                load::bench_loads(&gpu, &model, &dtypes)?
            };
            if json {
                print_json(rec, &r)
            } else {
                load::print_tables(&r);
                Ok(())
            }
        }
        BenchCommand::Decode {
            model,
            batches,
            prompt_len,
            steps,
            json,
        } => {
            let ck = load_checkpoint(&model)?;
            let name = model.display().to_string();
            let r = decode::bench_decode(&gpu, &ck, &name, &batches, prompt_len, steps)?;
            if json {
                print_json(rec, &r)
            } else {
                decode::print_table(&r);
                Ok(())
            }
        }
        BenchCommand::Layer { json } => {
            let r = layer::bench_layer(&gpu, layer::DEFAULT_SHAPES)?;
            if json {
                print_json(rec, &r)
            } else {
                layer::print_table(&r);
                Ok(())
            }
        }
    }
}

/// `boha --base-dtype D bench load --model M --json` run as a child process per dtype,
/// the runs gathered into one report.
fn load_in_children(model: &std::path::Path, dtypes: &[String]) -> Result<load::LoadBench> {
    let exe = std::env::current_exe().map_err(|e| Error::io("the boha executable", e))?;
    let mut runs = Vec::new();
    for d in dtypes {
        let out = std::process::Command::new(&exe)
            .args(["--base-dtype", d, "bench", "load", "--json", "--model"])
            .arg(model)
            .output()
            .map_err(|e| Error::io(&exe, e))?;
        if !out.status.success() {
            return Err(Error::Invalid(format!(
                "bench load --base-dtype {d}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let v: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| Error::Invalid(format!("bench load --base-dtype {d}: {e}")))?;
        let run = v["runs"][0].clone();
        runs.push(
            serde_json::from_value(run)
                .map_err(|e| Error::Invalid(format!("bench load --base-dtype {d}: {e}")))?,
        );
    }
    Ok(load::LoadBench { runs })
}
