//! `boha graph --model PATH [--method M ...] [--mode train|score|decode] [--dot FILE
//! [--layer L]] [--measure]`: the op graph a command would compile — every node with
//! its shapes and dtypes, the planned buffers and their sizes — and optionally a
//! Graphviz file, or a real step's measured peak next to the plan.

use std::path::PathBuf;

use clap::Args;

use boha::data::jsonl::write_atomic;
use boha::graph::builder::{self, Attn, BuildOptions, Head};
use boha::graph::memory::estimate;
use boha::graph::{liveness, show, train_graph, TrainOptions, Trainer};
use boha::loaders::load_checkpoint;
use boha::model::transformer::Adapters;
use boha::ops::cross_entropy::CrossEntropy;
use boha::{Error, Result};

use super::adapter_args::AdapterChoice;
use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct GraphArgs {
    /// A Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub adapter: AdapterChoice,
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 128)]
    pub seq: usize,
    /// Per-layer recomputation (training graphs).
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// train (forward, loss, backward), score (forward to the loss) or decode (one
    /// token against the KV cache of `--seq` positions).
    #[arg(long, default_value = "train")]
    pub mode: String,
    /// Write the graph as Graphviz to this file.
    #[arg(long)]
    pub dot: Option<PathBuf>,
    /// With --dot: only this layer's nodes (forward, backward, recomputation).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Training graphs: build the trainer, run one step and print its measured peak
    /// against the plan's estimate.
    #[arg(long)]
    pub measure: bool,
}

pub fn run(dev: &DeviceArgs, a: &GraphArgs) -> Result<()> {
    let ck = load_checkpoint(&a.model)?;
    let cfg = &ck.config;
    if a.batch == 0 || a.seq == 0 {
        return Err(Error::Invalid("--batch and --seq must be positive".into()));
    }
    if let Some(l) = a.layer {
        if l >= cfg.num_layers {
            return Err(Error::Invalid(format!(
                "--layer {l}: the model has {} layers",
                cfg.num_layers
            )));
        }
    }
    let spec = a.adapter.spec()?;
    let targets = Adapters::parse_targets(&[a.adapter.targets.as_str()])?;
    let gpu = dev.open()?;
    let opts = TrainOptions {
        recompute: a.gradient_checkpointing,
        ..TrainOptions::default()
    };
    let ce = CrossEntropy {
        chunk: opts.ce_chunk,
        softcap: cfg.final_logit_softcapping,
    };
    let forward = |attn, head, batch| BuildOptions {
        batch,
        seq: if matches!(attn, Attn::Cached { .. }) {
            1
        } else {
            a.seq
        },
        targets: targets.clone(),
        attn,
        head,
        adapter_scratch: None,
    };
    let g = match a.mode.as_str() {
        "train" => train_graph(&gpu, cfg, &spec, &targets, a.batch, a.seq, &opts)?,
        "score" => builder::decoder(
            &gpu,
            cfg,
            &forward(
                Attn::Train,
                Head::Loss {
                    ce,
                    loss_rows: None,
                },
                a.batch,
            ),
        ),
        "decode" => builder::decoder(
            &gpu,
            cfg,
            &forward(
                Attn::Cached { capacity: a.seq },
                Head::Logits { rows: 1 },
                1,
            ),
        ),
        m => {
            return Err(Error::Invalid(format!(
                "--mode {m}: expected train, score or decode"
            )))
        }
    };
    let plan = liveness::plan(&g);
    println!(
        "{} ({} layers), {} × {} tokens, {} on {}, mode {}{}",
        a.model.display(),
        cfg.num_layers,
        if a.mode == "decode" { 1 } else { a.batch },
        if a.mode == "decode" { 1 } else { a.seq },
        spec.method.kind().name(),
        targets.join(","),
        a.mode,
        if a.gradient_checkpointing {
            ", gradient checkpointing"
        } else {
            ""
        }
    );
    print!("{}", show::text(&g, &plan));
    if let Some(path) = &a.dot {
        write_atomic(path, show::dot(&g, &plan, a.layer).as_bytes())?;
        println!("wrote {}", path.display());
    }
    if a.measure && a.mode != "train" {
        return Err(Error::Invalid("--measure needs --mode train".into()));
    }
    let est = if a.mode == "train" {
        let est = estimate(
            &gpu,
            cfg,
            &ck.frozen_dtypes(gpu.base_dtype()),
            &spec,
            &targets,
            a.batch,
            a.seq,
            &opts,
        )?;
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        println!(
            "training step estimate: {:.3} GiB (frozen weights {:.3} GiB stored as {}, \
             activations {:.3}, adapters and optimizer {:.3}, uniforms {:.3})",
            gib(est.total()),
            gib(est.weights),
            ck.frozen_dtypes(gpu.base_dtype())("layers.0.q"),
            gib(est.activations),
            gib(est.adapters),
            gib(est.dispatches)
        );
        Some(est)
    } else {
        None
    };
    if let Some(est) = est.filter(|_| a.measure) {
        gpu.reset_peak();
        let base = gpu.live_bytes();
        let mut tr = Trainer::new(
            &gpu,
            &ck,
            spec,
            &[a.adapter.targets.as_str()],
            a.batch,
            a.seq,
            opts,
        )?;
        let n = a.batch * a.seq;
        let tokens: Vec<u32> = (0..n).map(|i| (i % cfg.vocab_size) as u32).collect();
        tr.step(&gpu, &tokens, &tokens, 1e-4, true)?;
        let peak = gpu.peak_bytes() - base;
        println!(
            "step: planned {:.2} MiB of buffers; estimate {:.2} MiB (weights, adapters, \
             optimizer, uniforms included), measured peak {:.2} MiB: estimate / measured = {:.4}",
            plan.bytes() as f64 / (1u64 << 20) as f64,
            est.total() as f64 / (1u64 << 20) as f64,
            peak as f64 / (1u64 << 20) as f64,
            est.total() as f64 / peak as f64
        );
    }
    Ok(())
}
