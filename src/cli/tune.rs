//! `boha tune [--model PATH] [--batch B] [--max-len T] [--no-pairs] [--json] [--out FILE]`

use std::path::PathBuf;

use clap::Args;

use boha::bench::record::{self, Record};
use boha::bench::tune;
use boha::gpu::tuning;
use boha::loaders::fetch::find_model;
use boha::loaders::load_checkpoint;
use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The model whose shapes are tuned: a Hugging Face directory, a .gguf file or
    /// `random:NAME`; default `BOHA_MODEL`, else the SmolLM2 file `boha demo` fetched.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Sequences per step the shapes are taken at (as `finetune --batch`).
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Tokens per sequence (as `finetune --max-len`).
    #[arg(long, default_value_t = 128)]
    pub max_len: usize,
    /// Timed submits per candidate (after a warm-up); the median is kept.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Skip timing the pair kinds' (ABBA, LoHa) two paths.
    #[arg(long)]
    pub no_pairs: bool,
    /// Write the tuning file here instead of the cache (a later command only reads the
    /// cache's file).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Print one JSON object (the report in its record envelope) instead of tables.
    #[arg(long)]
    pub json: bool,
}

pub fn run(dev: &DeviceArgs, a: &TuneArgs) -> Result<()> {
    if a.batch == 0 || a.max_len == 0 || a.runs == 0 {
        return Err(Error::Invalid(
            "--batch, --max-len and --runs must be positive".into(),
        ));
    }
    if dev.gemm.is_some() {
        return Err(Error::Invalid(
            "boha tune times every kernel family's tiles itself; drop --gemm".into(),
        ));
    }
    let model = find_model(a.model.as_deref())?.ok_or_else(|| {
        Error::Invalid(
            "no model to tune for: pass --model PATH (or run `boha demo` once, which fetches SmolLM2)"
                .into(),
        )
    })?;
    let ck = load_checkpoint(&model)?;
    // Candidates are timed against the profile's own kernels, never an older tuning.
    let mut gpu = DeviceArgs {
        no_tune: true,
        ..dev.clone()
    }
    .open()?;
    let path = match &a.out {
        Some(p) => p.clone(),
        None => tuning::file_for(gpu.info()).ok_or_else(|| {
            Error::Invalid("no cache directory (neither XDG_CACHE_HOME nor HOME is set)".into())
        })?,
    };
    let rec = Record::now(&gpu);
    let quiet = a.json;
    let r = tune::tune(
        &mut gpu,
        &ck,
        a.batch,
        a.max_len,
        !a.no_pairs,
        a.runs,
        &mut |line| {
            if !quiet {
                eprintln!("{line}");
            }
        },
    )?;
    tuning::write(&path, &r.file)?;
    if a.json {
        let s = record::to_json(rec, &r).map_err(|e| Error::Invalid(e.to_string()))?;
        println!("{s}");
    } else {
        tune::print_table(&r);
        println!("wrote {}", path.display());
    }
    Ok(())
}
