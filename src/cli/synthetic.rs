//! `boha synthetic [--dim 256] [--blocks 4] [--steps N] [--seed S] [--lr LR] [--json]`

use clap::Args;

use boha::bench::record::{self, Record};
use boha::experiments::synthetic::{print_table, run_synthetic, SyntheticConfig};
use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct SyntheticArgs {
    /// d: W0 is d × d.
    #[arg(long, default_value_t = SyntheticConfig::default().dim)]
    pub dim: usize,
    /// b: the grid of M* and of BoHA / the additive control.
    #[arg(long, default_value_t = SyntheticConfig::default().blocks)]
    pub blocks: usize,
    /// Adam steps per fit.
    #[arg(long, default_value_t = SyntheticConfig::default().steps)]
    pub steps: usize,
    /// Seed of W0, M* and the adapter init.
    #[arg(long, default_value_t = SyntheticConfig::default().seed)]
    pub seed: u64,
    /// Peak learning rate (cosine decay).
    #[arg(long, default_value_t = SyntheticConfig::default().lr)]
    pub lr: f32,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

impl SyntheticArgs {
    /// The defaults, as `boha synthetic` with no flags.
    pub fn defaults() -> SyntheticArgs {
        let d = SyntheticConfig::default();
        SyntheticArgs {
            dim: d.dim,
            blocks: d.blocks,
            steps: d.steps,
            seed: d.seed,
            lr: d.lr,
            json: false,
        }
    }
}

pub fn run(dev: &DeviceArgs, a: &SyntheticArgs) -> Result<()> {
    let gpu = dev.open()?;
    // The record envelope, taken as the run starts (JSON only).
    let rec = a.json.then(|| Record::now(&gpu));
    let cfg = SyntheticConfig {
        dim: a.dim,
        blocks: a.blocks,
        steps: a.steps,
        seed: a.seed,
        lr: a.lr,
    };
    let report = run_synthetic(&gpu, &cfg)?;
    if let Some(rec) = rec {
        let s = record::to_json(rec, &report).map_err(|e| Error::Invalid(e.to_string()))?;
        println!("{s}");
    } else {
        println!("device: {} ({})", gpu.info().name, gpu.info().backend);
        print_table(&report);
    }
    Ok(())
}
