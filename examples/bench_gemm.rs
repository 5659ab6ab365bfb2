//! Runs the GEMM benchmark (FMA peak, copy bandwidth, forward GEMM at four shapes) on the
//! default device and prints the report as a table and as JSON:
//!
//!     cargo run --release --example bench_gemm
//!
//! `--gemm register|shared` picks the kernel family instead of the adapter's default.

use boha::bench::gemm::{bench_gemm, print_table};
use boha::gpu::{GemmFamily, Gpu, GpuOptions};

fn main() -> boha::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let family = args
        .iter()
        .position(|a| a == "--gemm")
        .and_then(|i| args.get(i + 1))
        .map(|s| {
            GemmFamily::parse(s)
                .ok_or_else(|| boha::Error::Invalid(format!("unknown GEMM family '{s}'")))
        })
        .transpose()?;
    let gpu = Gpu::new(&GpuOptions {
        gemm_family: family,
        ..Default::default()
    })?;
    let report = bench_gemm(&gpu, &[])?;
    print_table(&report);
    println!(
        "{}",
        serde_json::to_string_pretty(&report).expect("report serializes")
    );
    Ok(())
}
