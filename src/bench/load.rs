//! `boha bench load`: what opening a checkpoint and uploading its weights costs in host
//! memory. The loaders read headers only and each tensor is read, uploaded and dropped
//! before the next (`loaders::HostTensor`, `Weights::upload`), so the host should hold
//! about one tensor at a time over the process's baseline, never the model.
//!
//! Host memory is the process's peak resident set (Linux `VmHWM`, restarted through
//! `/proc/self/clear_refs` right before loading) over its resident set at that moment.
//! On an adapter whose device memory is the process's own (a CPU adapter such as
//! lavapipe), the device buffers are resident too: their bytes (the allocator's meter)
//! are taken off, so what is left is the host's share on any adapter: file reads,
//! conversions, upload staging, the tokenizer. The target is that share ≤ the largest
//! frozen tensor (in the dtype it is uploaded in) + 64 MiB.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::gpu::{BaseDType, Gpu};
use crate::loaders::load_checkpoint;
use crate::model::transformer::Weights;

/// The slack over one tensor that the target allows.
pub const SLACK_BYTES: u64 = 64 << 20;

/// One load of a checkpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadReport {
    pub model: String,
    /// `--base-dtype` of the run.
    pub base_dtype: String,
    /// The checkpoint's files together.
    pub file_bytes: u64,
    /// Resident set right before loading.
    pub baseline_rss_bytes: u64,
    /// Peak resident set while loading and uploading.
    pub peak_rss_bytes: u64,
    /// Buffer bytes alive on the device after the upload.
    pub device_bytes: u64,
    /// Whether the device's buffers live in this process's memory (a CPU adapter).
    pub device_in_host_memory: bool,
    /// peak − baseline, less the device bytes when they are host memory.
    pub host_bytes: u64,
    /// The largest frozen tensor as uploaded.
    pub largest_tensor_bytes: u64,
    /// host_bytes / (largest_tensor_bytes + 64 MiB) (target ≤ 1)
    pub host_over_target: f64,
    /// Seconds from opening the checkpoint to the last upload.
    pub load_s: f64,
}

/// Every run of one `boha bench load`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LoadBench {
    pub runs: Vec<LoadReport>,
}

/// Loads `model` once per `--base-dtype` in `dtypes` (the device's own when empty) and
/// measures each load; the device's setting is restored afterwards. Only the first load
/// of a process measures host memory truly (memory freed after a load stays resident in
/// the allocator and is reused by the next): `boha bench load` runs each listed dtype in
/// its own process.
pub fn bench_loads(gpu: &Gpu, model: &std::path::Path, dtypes: &[BaseDType]) -> Result<LoadBench> {
    let own = gpu.base_dtype();
    let dtypes = if dtypes.is_empty() {
        vec![own]
    } else {
        dtypes.to_vec()
    };
    let mut runs = Vec::new();
    for d in dtypes {
        gpu.set_base_dtype(d);
        let r = bench_load(gpu, model);
        gpu.set_base_dtype(own);
        runs.push(r?);
    }
    Ok(LoadBench { runs })
}

/// Loads `model` on `gpu` once and measures it (Linux only: reads `/proc/self`).
pub fn bench_load(gpu: &Gpu, model: &std::path::Path) -> Result<LoadReport> {
    let file_bytes = size_on_disk(model)?;
    reset_peak_rss()?;
    let baseline = status_bytes("VmRSS")?;
    gpu.reset_peak();
    let device_before = gpu.live_bytes();
    let start = Instant::now();
    let ck = load_checkpoint(model)?;
    let weights = Weights::upload(gpu, &ck)?;
    let load_s = start.elapsed().as_secs_f64();
    let peak = status_bytes("VmHWM")?;
    let device_bytes = gpu.live_bytes() - device_before;
    let largest = weights
        .frozen_tensors()
        .map(|t| t.bytes())
        .max()
        .unwrap_or(0);
    drop(weights);
    let in_host = gpu.info().device_type == "Cpu";
    let host = peak
        .saturating_sub(baseline)
        .saturating_sub(if in_host { device_bytes } else { 0 });
    Ok(LoadReport {
        model: model.display().to_string(),
        base_dtype: gpu.base_dtype().name().to_string(),
        file_bytes,
        baseline_rss_bytes: baseline,
        peak_rss_bytes: peak,
        device_bytes,
        device_in_host_memory: in_host,
        host_bytes: host,
        largest_tensor_bytes: largest,
        host_over_target: host as f64 / (largest + SLACK_BYTES) as f64,
        load_s,
    })
}

/// Prints every run as a short table.
pub fn print_tables(b: &LoadBench) {
    for r in &b.runs {
        print_table(r);
    }
}

/// Prints one run as a short table.
pub fn print_table(r: &LoadReport) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    println!("load {} (--base-dtype {})", r.model, r.base_dtype);
    println!("  files               {:>9.1} MiB", mib(r.file_bytes));
    println!(
        "  device buffers      {:>9.1} MiB{}",
        mib(r.device_bytes),
        if r.device_in_host_memory {
            " (host memory on this CPU adapter: taken off below)"
        } else {
            ""
        }
    );
    println!(
        "  host peak over base {:>9.1} MiB (resident {:.1} → {:.1} MiB)",
        mib(r.host_bytes),
        mib(r.baseline_rss_bytes),
        mib(r.peak_rss_bytes)
    );
    println!(
        "  largest tensor      {:>9.1} MiB; host / (largest + 64 MiB) = {:.2} (target ≤ 1 {})",
        mib(r.largest_tensor_bytes),
        r.host_over_target,
        if r.host_over_target <= 1.0 {
            "✓"
        } else {
            "✗"
        }
    );
    println!("  time                {:>9.2} s", r.load_s);
}

/// A file's size, or a directory's files' sizes summed.
fn size_on_disk(path: &std::path::Path) -> Result<u64> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path).map_err(|e| Error::io(path, e))? {
        let entry = entry.map_err(|e| Error::io(path, e))?;
        total += entry.metadata().map_err(|e| Error::io(path, e))?.len();
    }
    Ok(total)
}

/// Restarts the kernel's peak-RSS counter (`VmHWM`) from the current resident set.
fn reset_peak_rss() -> Result<()> {
    let path = std::path::Path::new("/proc/self/clear_refs");
    std::fs::write(path, "5").map_err(|e| Error::io(path, e))
}

/// A `/proc/self/status` field in bytes (`VmRSS:  1234 kB`).
fn status_bytes(field: &str) -> Result<u64> {
    let path = std::path::Path::new("/proc/self/status");
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(field)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .map(|kb| kb * 1024)
        .ok_or_else(|| Error::Invalid(format!("/proc/self/status has no {field} (Linux only)")))
}
