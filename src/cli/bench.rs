//! `boha bench gemm|layer [--json]`

use clap::Subcommand;

use boha::bench::{gemm, layer};
use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// FMA peak, copy bandwidth and GEMM GFLOP/s as a fraction of the peak.
    Gemm {
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
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<()> {
    let s = serde_json::to_string(v).map_err(|e| Error::Invalid(e.to_string()))?;
    println!("{s}");
    Ok(())
}

pub fn run(dev: &DeviceArgs, what: BenchCommand) -> Result<()> {
    let gpu = dev.open()?;
    match what {
        BenchCommand::Gemm { json } => {
            let r = gemm::bench_gemm(&gpu)?;
            if json {
                print_json(&r)
            } else {
                gemm::print_table(&r);
                Ok(())
            }
        }
        BenchCommand::Layer { json } => {
            let r = layer::bench_layer(&gpu, layer::DEFAULT_SHAPES)?;
            if json {
                print_json(&r)
            } else {
                layer::print_table(&r);
                Ok(())
            }
        }
    }
}
