//! `boha tune`: times the candidate kernels for a model's own shapes on the present
//! device and keeps the winners in a tuning file (see [`crate::gpu::tuning`]) that every
//! later command on this adapter and driver uses.
//!
//! - **GEMM tiles.** The shapes are the ones the model really asks for: the tuner builds
//!   the trainer of every adapter kind and the scoring pass at the given batch and
//!   length with shape logging on ([`Gpu::log_gemm_shapes`]), so the projections, the
//!   LM head, their backward products and LoRA's skinny ones are all covered. Each shape
//!   runs on every tile the device can hold ([`GemmTile::candidates`]), median of a few
//!   submits after a warm-up (which also pays the pipeline's compile); a tile more than
//!   3× slower than the best so far after one timed run is not timed further; another
//!   tile replaces the profile's only when at least 3% faster (noise). A tile
//!   whose C differs from the profile tile's by more than 1e-3 of C's largest magnitude
//!   is never chosen (and reported): tuning changes speed, never results.
//! - **Pair paths.** For each adapted matrix shape, ABBA's layer step on the fused kernels
//!   and on the Khatri–Rao bottleneck, forced, at the tuned token count; the faster wins
//!   for ABBA and LoHa (same kernels).
//!
//! Products the GEMV kernels take (m ≤ 8, NT) are not tiled and not tuned.

use std::collections::BTreeMap;

use serde::Serialize;

use super::layer::pair_step_ms;
use super::step::bench_spec;
use super::timing::median_ms;
use crate::adapters::fused_kernels::Fused;
use crate::adapters::pair::{self, KhatriRao};
use crate::adapters::Method;
use crate::error::Result;
use crate::gpu::tuning::{self, GemmKey, PairKey, Tuning, TuningFile};
use crate::gpu::{GemmTile, Gpu, Tensor};
use crate::graph::forward::ForwardPass;
use crate::graph::{TrainOptions, Trainer};
use crate::loaders::Checkpoint;
use crate::model::transformer::{Weights, PROJECTIONS};
use crate::ops::gemm::{self, Gemm, Path};
use crate::rng::Rng;

/// Products with more rows than this per key are timed at this many rows (the LM head at
/// a long batch would otherwise dominate the tuning time; the winner depends on the
/// tile count, which is already large here).
const MAX_TIMED_ROWS: usize = 2048;
/// Relative difference to the profile tile's output above which a tile is refused.
const MAX_REL_DIFF: f32 = 1e-3;
/// A candidate replaces the profile's choice only when at least this much faster, so
/// that timing noise on a shared machine does not flip near-ties.
const MIN_GAIN: f64 = 1.03;

/// One GEMM shape's outcome.
#[derive(Clone, Debug, Serialize)]
pub struct GemmChoice {
    /// The winning tile; `winner` is its name.
    #[serde(skip)]
    pub tile: GemmTile,
    pub shape: String,
    /// The profile's tile for this device (what ran before tuning).
    pub default: String,
    pub winner: String,
    /// ms per candidate that ran; NaN where the output did not match.
    pub ms: BTreeMap<String, f64>,
    /// default ms / winner ms
    pub speedup: f64,
}

/// One adapted matrix's pair-path outcome.
#[derive(Clone, Debug, Serialize)]
pub struct PairChoice {
    /// The tuning key (d_out, d_in, rank per pair); `matrix` is its text.
    #[serde(skip)]
    pub key: PairKey,
    pub matrix: String,
    /// The multiply-add rule's choice before tuning.
    pub rule_picks_fused: bool,
    pub fused_ms: f64,
    pub khatri_rao_ms: f64,
    pub winner: String,
}

/// What `boha tune` measured (the tuning file holds the winners and times too).
#[derive(Clone, Debug, Serialize)]
pub struct TuneReport {
    pub device: String,
    pub profile: String,
    pub tokens: usize,
    pub gemm: Vec<GemmChoice>,
    pub pair: Vec<PairChoice>,
    #[serde(skip)]
    pub file: TuningFile,
}

/// The GEMM shapes a model's training (every kind, LoRA r = 32's budget) and scoring
/// passes at `batch` × `seq` tokens ask for, without the GEMV-shaped ones.
pub fn model_gemm_shapes(
    gpu: &Gpu,
    ck: &Checkpoint,
    batch: usize,
    seq: usize,
) -> Result<Vec<GemmKey>> {
    gpu.log_gemm_shapes(true);
    let logged = (|| -> Result<()> {
        for method in Method::ALL {
            let tr = Trainer::new(
                gpu,
                ck,
                bench_spec(method)?,
                &["all"],
                batch,
                seq,
                TrainOptions::default(),
            )?;
            drop(tr);
        }
        let w = Weights::upload(gpu, ck)?;
        drop(ForwardPass::new(gpu, &w, None, batch, seq, 8192)?);
        Ok(())
    })();
    let keys = gpu.log_gemm_shapes(false);
    logged?;
    Ok(keys
        .into_iter()
        .filter(|k| !(k.m_bucket <= gemm::gemv::MAX_M && !k.trans_a && k.trans_b))
        .collect())
}

/// Random operands for `key`'s product at `m` rows (two entries when batched), and the
/// product; `bench gemm` times the tiles on the same.
pub(crate) fn operands(
    gpu: &Gpu,
    key: &GemmKey,
    m: usize,
) -> Result<(Gemm, Tensor, Tensor, Tensor)> {
    let batch = if key.batched { 2 } else { 1 };
    let g = Gemm {
        trans_a: key.trans_a,
        trans_b: key.trans_b,
        batch,
        ..Gemm::new(m, key.n, key.k)
    };
    let mut rng = Rng::new(11);
    let a = gpu.upload(
        &[batch * m * key.k],
        &rng.vec_f32(batch * m * key.k, -1.0, 1.0),
    )?;
    let b = gpu.upload(
        &[batch * key.k * key.n],
        &rng.vec_f32(batch * key.k * key.n, -1.0, 1.0),
    )?;
    let c = gpu.zeros(&[batch * m * key.n])?;
    Ok((g, a, b, c))
}

/// Largest |x − y| over the largest |y|.
fn rel_diff(x: &[f32], y: &[f32]) -> f32 {
    let scale = y.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let d = x.iter().zip(y).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    if x.iter().any(|v| !v.is_finite()) {
        f32::INFINITY
    } else {
        d / scale
    }
}

/// Times every tile the device holds on `key`'s product; returns the winner and the
/// times (NaN for a tile whose output did not match the profile tile's).
pub fn tune_gemm(gpu: &Gpu, key: &GemmKey, runs: usize) -> Result<GemmChoice> {
    let m = key.m_bucket.min(MAX_TIMED_ROWS);
    let (g, a, b, c) = operands(gpu, key, m)?;
    // The family's own tile first: its output is the one the others must match.
    let default = GemmTile::of_family(gpu.gemm_family());
    let profile_tile = gpu.profile().gemm_tile;
    let mut tiles = vec![default];
    for t in std::iter::once(profile_tile).chain(GemmTile::candidates()) {
        if !tiles.contains(&t) && gpu.tile_fits(t) {
            tiles.push(t);
        }
    }
    let mut reference: Option<Vec<f32>> = None;
    let mut ms = BTreeMap::new();
    let mut best: Option<(GemmTile, f64)> = None;
    for tile in tiles {
        let ds = gemm::gemm_tile(gpu, tile, Path::Tiled, &g, &a, &b, &c)?;
        // Warm-up: compiles the pipeline and checks the output.
        let first = median_ms(gpu, &ds, 1, 1)?;
        let out = gpu.download(&c)?;
        match &reference {
            None => reference = Some(out),
            Some(r) if rel_diff(&out, r) > MAX_REL_DIFF => {
                log::warn!(
                    "tune: {} on {} differs from {} by {:.2e}; not used",
                    tile.name(),
                    key.text(),
                    default.name(),
                    rel_diff(&out, r)
                );
                ms.insert(tile.name(), f64::NAN);
                continue;
            }
            Some(_) => {}
        }
        let t = if best.is_some_and(|(_, b)| first > 3.0 * b) {
            first
        } else {
            median_ms(gpu, &ds, 1, runs.max(1))?
        };
        ms.insert(tile.name(), t);
        if best.is_none_or(|(_, b)| t < b) {
            best = Some((tile, t));
        }
    }
    let (mut winner, mut win_ms) = best.expect("the profile tile always runs");
    if let Some(&p) = ms.get(&profile_tile.name()).filter(|p| p.is_finite()) {
        if p <= MIN_GAIN * win_ms {
            (winner, win_ms) = (profile_tile, p);
        }
    }
    Ok(GemmChoice {
        shape: key.text(),
        default: profile_tile.name(),
        tile: winner,
        winner: winner.name(),
        speedup: ms.get(&profile_tile.name()).copied().unwrap_or(f64::NAN) / win_ms,
        ms,
    })
}

/// (d_out, d_in) of every distinct adapted matrix of a model with all projections adapted.
fn adapted_shapes(ck: &Checkpoint) -> Vec<(usize, usize)> {
    let mut v: Vec<(usize, usize)> = PROJECTIONS
        .iter()
        .map(|p| crate::graph::memory::shape(&ck.config, p))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// Times ABBA's layer step on both pair paths for each adapted matrix shape.
pub fn tune_pairs(
    gpu: &Gpu,
    ck: &Checkpoint,
    tokens: usize,
    runs: usize,
) -> Result<Vec<PairChoice>> {
    let spec = bench_spec(Method::Abba)?;
    let mut out = Vec::new();
    for (d_out, d_in) in adapted_shapes(ck) {
        let fused_ms = pair_step_ms(gpu, &Fused, tokens, d_in, d_out, runs)?;
        let khatri_rao_ms = pair_step_ms(gpu, &KhatriRao, tokens, d_in, d_out, runs)?;
        let rule = pair::runs_fused_by_rule(gpu, &spec, d_out, d_in);
        let key = PairKey::new(d_out, d_in, spec.block_rank / 2);
        out.push(PairChoice {
            key,
            matrix: key.text(),
            rule_picks_fused: rule,
            fused_ms,
            khatri_rao_ms,
            winner: if fused_ms < khatri_rao_ms {
                "fused"
            } else {
                "khatri-rao"
            }
            .into(),
        });
    }
    Ok(out)
}

/// Tunes `ck`'s shapes at `batch` × `seq` tokens: every GEMM shape, then (with `pairs`)
/// the pair paths. `say` hears each result as it comes. The returned report's file is
/// what [`tuning::write`] stores; `gpu`'s own table is updated as well, so later work
/// in this process already runs the winners.
pub fn tune(
    gpu: &mut Gpu,
    ck: &Checkpoint,
    batch: usize,
    seq: usize,
    pairs: bool,
    runs: usize,
    say: &mut dyn FnMut(&str),
) -> Result<TuneReport> {
    let info = gpu.info().clone();
    let mut file = TuningFile {
        adapter: info.name.clone(),
        driver: info.driver_info.clone(),
        boha_version: env!("CARGO_PKG_VERSION").into(),
        date: super::record::iso8601_utc(std::time::SystemTime::now()),
        ..Default::default()
    };
    let keys = model_gemm_shapes(gpu, ck, batch, seq)?;
    say(&format!("{} GEMM shapes to time", keys.len()));
    let mut gemms = Vec::new();
    for key in &keys {
        let c = tune_gemm(gpu, key, runs)?;
        say(&format!(
            "{}: {} ({:.2}× the {} tile)",
            c.shape, c.winner, c.speedup, c.default
        ));
        tuning::record_gemm(&mut file, key, c.tile, c.ms.clone());
        gemms.push(c);
    }
    let mut pair_choices = Vec::new();
    if pairs {
        for c in tune_pairs(gpu, ck, batch * seq, runs)? {
            say(&format!(
                "pair {}: {} (fused {:.1} ms, Khatri–Rao {:.1} ms)",
                c.matrix, c.winner, c.fused_ms, c.khatri_rao_ms
            ));
            let ms = BTreeMap::from([
                ("fused".to_string(), c.fused_ms),
                ("khatri-rao".to_string(), c.khatri_rao_ms),
            ]);
            tuning::record_pair(&mut file, &c.key, c.winner == "fused", ms);
            pair_choices.push(c);
        }
    }
    gpu.set_tuning(Tuning::from_file(&file, None));
    Ok(TuneReport {
        device: format!("{} ({})", info.name, info.backend),
        profile: format!(
            "{} (family {}, tile {})",
            gpu.profile().class.name(),
            gpu.profile().family.name(),
            gpu.profile().gemm_tile.name()
        ),
        tokens: batch * seq,
        gemm: gemms,
        pair: pair_choices,
        file,
    })
}

/// Prints the report as two tables.
pub fn print_table(r: &TuneReport) {
    println!(
        "{} — profile {}, {} tokens per step",
        r.device, r.profile, r.tokens
    );
    println!("| GEMM shape | profile tile | winner | speedup | candidates (ms) |");
    println!("| --- | --- | --- | --- | --- |");
    for c in &r.gemm {
        let times: Vec<String> = c.ms.iter().map(|(k, v)| format!("{k} {v:.3}")).collect();
        println!(
            "| {} | {} | {} | {:.2}× | {} |",
            c.shape,
            c.default,
            c.winner,
            c.speedup,
            times.join(", ")
        );
    }
    if !r.pair.is_empty() {
        println!();
        println!("| pair matrix | rule's pick | fused ms | Khatri–Rao ms | winner |");
        println!("| --- | --- | --- | --- | --- |");
        for c in &r.pair {
            println!(
                "| {} | {} | {:.1} | {:.1} | {} |",
                c.matrix,
                if c.rule_picks_fused {
                    "fused"
                } else {
                    "khatri-rao"
                },
                c.fused_ms,
                c.khatri_rao_ms,
                c.winner
            );
        }
    }
}
