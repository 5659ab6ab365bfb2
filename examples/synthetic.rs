//! The synthetic rank experiment, as a table and JSON, with the wall time:
//! `cargo run --release --example synthetic [dim=256] [blocks=4] [steps=500] [seed=0] [lr=0.02]`.

use boha::experiments::synthetic::{print_table, run_synthetic, SyntheticConfig};
use boha::gpu::{Gpu, GpuOptions};

fn main() -> boha::Result<()> {
    let mut cfg = SyntheticConfig::default();
    for arg in std::env::args().skip(1) {
        let bad = || {
            boha::Error::Invalid(format!(
                "expected key=value (dim, blocks, steps, seed, lr), got '{arg}'"
            ))
        };
        let (k, v) = arg.split_once('=').ok_or_else(bad)?;
        match k {
            "dim" => cfg.dim = v.parse().map_err(|_| bad())?,
            "blocks" => cfg.blocks = v.parse().map_err(|_| bad())?,
            "steps" => cfg.steps = v.parse().map_err(|_| bad())?,
            "seed" => cfg.seed = v.parse().map_err(|_| bad())?,
            "lr" => cfg.lr = v.parse().map_err(|_| bad())?,
            _ => return Err(bad()),
        }
    }
    let gpu = Gpu::new(&GpuOptions::default())?;
    let t0 = std::time::Instant::now();
    let report = run_synthetic(&gpu, &cfg)?;
    let secs = t0.elapsed().as_secs_f64();
    print_table(&report);
    println!(
        "{}",
        serde_json::to_string(&report).expect("a report serialises")
    );
    eprintln!("{cfg:?}: {secs:.1} s on {}", gpu.info().name);
    Ok(())
}
