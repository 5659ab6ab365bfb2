//! `boha bench gemm`: the device's FMA peak and copy bandwidth (`shaders/bench.wgsl`),
//! then the forward GEMM Y\[M,N\] = X\[M,K\]·W\[N,K\]ᵀ at 256³, 1024³, 2048³, 4096³ and the
//! two projection shapes of a 576-wide model at 512 tokens (and, with `--model`, every
//! product that model's training asks for), each as a fraction of the FMA peak measured in
//! the same run, on the tile the device runs (tuned, else its profile's) and on every other
//! tile it can hold; then the decode step's products (M = 1 and 4 rows against the
//! projections and the LM head of SmolLM2-135M) on the GEMV kernels, which are
//! bandwidth-bound: bytes of W read per second as a fraction of the copy bandwidth
//! measured in the same run, against the tiled kernel on the same product.

use std::collections::BTreeMap;

use serde::Serialize;

use super::timing::{median, median_ms};
use crate::error::Result;
use crate::gpu::tuning::GemmKey;
use crate::gpu::{Dispatch, GemmTile, Gpu, Kernel, Params};
use crate::ops::gemm::{gemm_path, gemm_tile, Gemm, GemvKernel, Path};
use crate::rng::Rng;
use crate::shaders::BENCH;

/// FMAs each fma_peak invocation does per loop trip (see `shaders/bench.wgsl`).
const FMA_PER_TRIP: f64 = 128.0;
/// Target device time of one timed submit, in seconds.
const TARGET_S: f64 = 0.1;
/// Timed submits per figure (the median is reported).
const RUNS: usize = 5;

/// One GEMM shape's figures.
#[derive(Clone, Debug, Serialize)]
pub struct GemmPoint {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// Transposes of A and B as stored (`nt` for Y = X·Wᵀ).
    pub trans: String,
    /// The tile the device runs this product on (tuned, else the profile's).
    pub tile: String,
    pub gflops: f64,
    /// gflops / fma_peak_gflops
    pub ratio_of_peak: f64,
    /// Median milliseconds per product.
    pub ms: f64,
    /// GFLOP/s of every tile the device holds on the same product (where compared;
    /// CPU adapters skip the other tiles above 2048³, which would take minutes).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tiles: BTreeMap<String, f64>,
}

/// The report printed as JSON by `boha bench gemm --json`.
#[derive(Clone, Debug, Serialize)]
pub struct GemmReport {
    pub device: String,
    pub backend: String,
    /// GEMM kernel family used (`register` / `shared`).
    pub family: String,
    pub fma_peak_gflops: f64,
    pub copy_gbps: f64,
    pub gemm: Vec<GemmPoint>,
    /// The decode shapes on the GEMV kernels ([`DECODE_SHAPES`] × [`DECODE_M`]).
    pub gemv: Vec<GemvPoint>,
}

/// One decode product Y\[M,N\] = X\[M,K\]·W\[N,K\]ᵀ on the GEMV kernels.
#[derive(Clone, Debug, Serialize)]
pub struct GemvPoint {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    /// The GEMV kernel the GEMM op chooses on this device (`rows` / `split`).
    pub kernel: String,
    /// Median milliseconds per product with that kernel.
    pub ms: f64,
    /// Bytes of W read per second (4·N·K / time), in GB/s.
    pub w_gbps: f64,
    /// w_gbps / the copy bandwidth measured right before this shape
    pub ratio_of_copy: f64,
    /// Median milliseconds of the family's tiled kernel on the same product.
    pub tiled_ms: f64,
    /// tiled_ms / ms
    pub speedup: f64,
    /// Milliseconds of every GEMV kernel variant, for comparison.
    pub variants: Vec<GemvVariant>,
}

/// One GEMV kernel's time on a decode product.
#[derive(Clone, Debug, Serialize)]
pub struct GemvVariant {
    pub kernel: String,
    pub ms: f64,
}

/// The decode products' (K, N): q/o, k/v, gate/up and down projections of SmolLM2-135M,
/// and its tied LM head.
pub const DECODE_SHAPES: [(usize, usize); 5] = [
    (576, 576),
    (576, 192),
    (576, 1536),
    (1536, 576),
    (576, 49152),
];

/// Rows of X in the decode benchmark (one token; four sequences or draft tokens).
pub const DECODE_M: [usize; 2] = [1, 4];

const GEMV_KERNELS: [GemvKernel; 2] = [GemvKernel::Rows, GemvKernel::Split];

fn kernel_name(k: GemvKernel) -> String {
    format!("{k:?}").to_lowercase()
}

/// The (m, k, n) shapes benchmarked: M tokens, K inputs, N outputs.
pub const SHAPES: [(usize, usize, usize); 6] = [
    (256, 256, 256),
    (1024, 1024, 1024),
    (2048, 2048, 2048),
    (4096, 4096, 4096),
    (512, 576, 1536),
    (512, 1536, 576),
];

/// Largest m·n·k at which a CPU adapter also times the tiles it does not run.
const CPU_COMPARE_MAX: usize = 2048 * 2048 * 2048;

/// Runs the whole GEMM benchmark (under a minute on lavapipe). The FMA peak is
/// measured right before each GEMM shape and that shape's ratio uses it, so a machine
/// whose load changes during the run still gets fair ratios; the report's peak is the
/// median of those measurements. The copy bandwidth is likewise measured again before
/// each decode shape; `ratio_of_copy` compares bytes of W read per second with it (the
/// copy's figure counts bytes read and written, so on llvmpipe, where both cost one
/// per-lane memory operation per vec4, a GEMV that keeps up with the copy scores ~2).
///
/// `extra` adds products (a model's own, from [`super::tune::model_gemm_shapes`]) after
/// the fixed [`SHAPES`].
pub fn bench_gemm(gpu: &Gpu, extra: &[GemmKey]) -> Result<GemmReport> {
    let peak = FmaPeak::new(gpu)?;
    let copy = copy_gbps(gpu)?;
    let mut gemm = Vec::new();
    let mut peaks = Vec::new();
    let fixed = SHAPES
        .iter()
        .map(|&(m, k, n)| GemmKey::new(m, n, k, false, true, 1));
    for key in fixed.chain(extra.iter().copied()) {
        let (m, n, k) = (key.m_bucket, key.n, key.k);
        let p = peak.gflops(gpu)?;
        peaks.push(p);
        let chosen = gpu.gemm_tile_for(&key);
        let gflops_of = |ms: f64| 2.0 * (m * n * k) as f64 / (ms * 1e-3) / 1e9;
        let ms = tile_ms(gpu, chosen, &key)?;
        let mut tiles = BTreeMap::new();
        let cpu = gpu.info().device_type == "Cpu";
        if !cpu || m * n * k <= CPU_COMPARE_MAX {
            for t in GemmTile::candidates() {
                if t != chosen && gpu.tile_fits(t) {
                    tiles.insert(t.name(), gflops_of(tile_ms(gpu, t, &key)?));
                }
            }
            tiles.insert(chosen.name(), gflops_of(ms));
        }
        let t = |b: bool| if b { "t" } else { "n" };
        gemm.push(GemmPoint {
            m,
            n,
            k,
            trans: format!("{}{}", t(key.trans_a), t(key.trans_b)),
            tile: chosen.name(),
            gflops: gflops_of(ms),
            ratio_of_peak: gflops_of(ms) / p,
            ms,
            tiles,
        });
    }
    let mut gemv = Vec::new();
    let mut copies = vec![copy];
    let chosen = GemvKernel::for_family(gpu.gemm_family());
    for &(k, n) in &DECODE_SHAPES {
        // Copy bandwidth right before each shape, as the FMA peak above.
        let copy_now = copy_gbps(gpu)?;
        copies.push(copy_now);
        for &m in &DECODE_M {
            let mut variants = Vec::new();
            for kernel in GEMV_KERNELS {
                variants.push(GemvVariant {
                    kernel: kernel_name(kernel),
                    ms: product_ms(gpu, Path::Gemv(kernel), m, k, n)?,
                });
            }
            let ms = variants
                .iter()
                .find(|v| v.kernel == kernel_name(chosen))
                .map_or(f64::NAN, |v| v.ms);
            let tiled_ms = product_ms(gpu, Path::Tiled, m, k, n)?;
            let w_gbps = 4.0 * (n * k) as f64 / (ms * 1e-3) / 1e9;
            gemv.push(GemvPoint {
                m,
                n,
                k,
                kernel: kernel_name(chosen),
                ms,
                w_gbps,
                ratio_of_copy: w_gbps / copy_now,
                tiled_ms,
                speedup: tiled_ms / ms,
                variants,
            });
        }
    }
    Ok(GemmReport {
        device: gpu.info().name.clone(),
        backend: gpu.info().backend.clone(),
        family: gpu.gemm_family().name().to_string(),
        fma_peak_gflops: median(&mut peaks),
        copy_gbps: median(&mut copies),
        gemm,
        gemv,
    })
}

/// Repetitions per submit so that one submit lasts about [`TARGET_S`], from one run.
fn reps_for(one_run_s: f64, max: usize) -> usize {
    ((TARGET_S / one_run_s.max(1e-6)).ceil() as usize).clamp(1, max)
}

/// The device's FMA peak in GFLOP/s now (the fma_peak kernel, median of a few submits):
/// what `bench step` divides its model FLOP/s by.
pub fn fma_peak_gflops(gpu: &Gpu) -> Result<f64> {
    FmaPeak::new(gpu)?.gflops(gpu)
}

/// The fma_peak kernel, sized to run about [`TARGET_S`]: independent FMAs only,
/// GFLOP/s = 2 · FMAs / time.
struct FmaPeak {
    dispatch: Dispatch,
    fmas: f64,
}

impl FmaPeak {
    fn new(gpu: &Gpu) -> Result<FmaPeak> {
        // Enough invocations to fill a large GPU; a CPU adapter is full with far fewer.
        let n: usize = if gpu.info().device_type == "Cpu" {
            1 << 14
        } else {
            1 << 20
        };
        let dst = gpu.zeros(&[n * 4])?;
        let kernel = Kernel::new(BENCH, "fma_peak");
        let prepare = |iters: usize| {
            let params = Params::new().u(n).u(iters).f(0.5).u(0);
            gpu.prepare(&kernel, &params, &[&dst], gpu.grid(n / 64))
        };
        // Calibrate the trip count on a short run.
        let probe = 64;
        let t = median_ms(gpu, &[prepare(probe)?], 1, 1)? * 1e-3;
        let iters = ((probe as f64 * TARGET_S / t.max(1e-6)) as usize).clamp(probe, 1 << 20);
        Ok(FmaPeak {
            dispatch: prepare(iters)?,
            fmas: FMA_PER_TRIP * (n * iters) as f64,
        })
    }

    fn gflops(&self, gpu: &Gpu) -> Result<f64> {
        let ms = median_ms(gpu, std::slice::from_ref(&self.dispatch), 1, RUNS)?;
        Ok(2.0 * self.fmas / (ms * 1e-3) / 1e9)
    }
}

/// A vec4 copy of up to 64 MiB: GB/s = (read + written bytes) / time.
fn copy_gbps(gpu: &Gpu) -> Result<f64> {
    let bytes = (64u64 << 20).min(gpu.max_binding_bytes()) / 16 * 16;
    let n = (bytes / 16) as usize;
    let src = gpu.upload(&[n * 4], &Rng::new(3).vec_f32(n * 4, -1.0, 1.0))?;
    let dst = gpu.zeros(&[n * 4])?;
    let d = gpu.prepare(
        &Kernel::new(BENCH, "copy_vec4"),
        &Params::new().u(n).u(0).f(0.0).u(0),
        &[&src, &dst],
        gpu.grid(n.div_ceil(64)),
    )?;
    let one = median_ms(gpu, std::slice::from_ref(&d), 1, 1)? * 1e-3;
    let ms = median_ms(gpu, &[d], reps_for(one, 64), RUNS)?;
    Ok(2.0 * bytes as f64 / (ms * 1e-3) / 1e9)
}

/// Median milliseconds of `key`'s product (m = its bucket) on random data, on `tile`.
fn tile_ms(gpu: &Gpu, tile: GemmTile, key: &GemmKey) -> Result<f64> {
    let (g, a, b, c) = super::tune::operands(gpu, key, key.m_bucket)?;
    let ds = gemm_tile(gpu, tile, Path::Tiled, &g, &a, &b, &c)?;
    let one = median_ms(gpu, &ds, 1, 1)? * 1e-3;
    Ok(median_ms(gpu, &ds, reps_for(one, 256), RUNS)? / g.batch as f64)
}

/// Median milliseconds of Y[m,n] = X[m,k]·W[n,k]ᵀ on random data, on the kernels `path`
/// picks with the device's family.
fn product_ms(gpu: &Gpu, path: Path, m: usize, k: usize, n: usize) -> Result<f64> {
    let mut rng = Rng::new((m * 31 + k * 7 + n) as u64);
    let x = gpu.upload(&[m, k], &rng.vec_f32(m * k, -1.0, 1.0))?;
    let w = gpu.upload(&[n, k], &rng.vec_f32(n * k, -1.0, 1.0))?;
    let y = gpu.zeros(&[m, n])?;
    let g = Gemm {
        trans_b: true,
        ..Gemm::new(m, n, k)
    };
    let ds = gemm_path(gpu, gpu.gemm_family(), path, &g, &x, &w, &y)?;
    let one = median_ms(gpu, &ds, 1, 1)? * 1e-3;
    median_ms(gpu, &ds, reps_for(one, 256), RUNS)
}

/// Prints the report as a table.
pub fn print_table(r: &GemmReport) {
    println!(
        "device   {} ({}), gemm family {}",
        r.device, r.backend, r.family
    );
    println!("FMA peak {:>9.1} GFLOP/s", r.fma_peak_gflops);
    println!("copy     {:>9.1} GB/s", r.copy_gbps);
    println!(
        "{:>6} {:>6} {:>6} {:>3} {:>12} {:>10} {:>10} {:>8}  other tiles (GFLOP/s)",
        "M", "K", "N", "op", "tile", "ms", "GFLOP/s", "of peak"
    );
    for p in &r.gemm {
        let others: Vec<String> = p
            .tiles
            .iter()
            .filter(|(t, _)| **t != p.tile)
            .map(|(t, g)| format!("{t} {g:.1}"))
            .collect();
        println!(
            "{:>6} {:>6} {:>6} {:>3} {:>12} {:>10.3} {:>10.1} {:>7.1}%  {}",
            p.m,
            p.k,
            p.n,
            p.trans,
            p.tile,
            p.ms,
            p.gflops,
            100.0 * p.ratio_of_peak,
            others.join(", ")
        );
    }
    println!("decode products on GEMV (W GB/s against the copy bandwidth; tiled = GEMM tiles):");
    println!(
        "{:>6} {:>6} {:>6} {:>7} {:>10} {:>8} {:>8} {:>10} {:>8}  variants (ms)",
        "M", "K", "N", "kernel", "ms", "W GB/s", "of copy", "tiled ms", "speedup"
    );
    for p in &r.gemv {
        let variants: Vec<String> = p
            .variants
            .iter()
            .map(|v| format!("{} {:.3}", v.kernel, v.ms))
            .collect();
        println!(
            "{:>6} {:>6} {:>6} {:>7} {:>10.3} {:>8.2} {:>7.1}% {:>10.3} {:>7.1}x  {}",
            p.m,
            p.k,
            p.n,
            p.kernel,
            p.ms,
            p.w_gbps,
            100.0 * p.ratio_of_copy,
            p.tiled_ms,
            p.speedup,
            variants.join(", ")
        );
    }
}
