//! Tables of the benchmark records (`boha bench gemm|layer|step`, `boha synthetic`).
//! Every ratio that has a target is shown beside it with ✓ or ✗, met or not. Fields a
//! renderer does not know (added by newer benchmarks) become extra columns, so an older
//! renderer never hides a newer figure.

use serde_json::Value;

use super::markdown::{any_number, significant, with_target, Table, Target};
use super::records::Loaded;
use crate::error::Result;

/// The GEMM targets: a fraction of the FMA peak measured in the same run.
pub const GEMM_OF_PEAK: Target = Target::AtLeast(0.6);
/// `boha bench layer`'s targets (see src/bench/layer.rs).
pub const LAYER_FWD: Target = Target::AtMost(1.15);
pub const LAYER_STEP: Target = Target::AtMost(1.5);
pub const LAYER_PEAK: Target = Target::AtMost(1.05);
/// `boha bench step`'s targets (see src/bench/step.rs).
pub const STEP_STEP: Target = Target::AtMost(1.3);
pub const STEP_PEAK: Target = Target::AtMost(1.05);
/// `bench step --base-dtypes`: a low-precision base's BoHA step over the f32 base's.
pub const DTYPE_STEP: Target = Target::AtMost(1.1);
/// `bench step --base-dtypes`: the low-precision base's peak over the f32 base's (the
/// target of SmolLM2 kept in its 4-bit blocks; f16 and bf16 halve only the weights).
pub const DTYPE_PEAK: Target = Target::AtMost(0.4);
/// `scripts/step_vs_commit.sh`'s target: BoHA's tokens/s against an earlier build's.
pub const STEP_VS_SPEEDUP: Target = Target::AtLeast(2.5);

/// The numeric fields of `rows` that are not in `known`, by name, in the order of
/// their first appearance.
fn extras(rows: &[Value], known: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        for (k, v) in r.as_object().into_iter().flatten() {
            if v.is_number() && !known.contains(&k.as_str()) && !out.contains(k) {
                out.push(k.clone());
            }
        }
    }
    out
}

fn extra_cells(r: &Value, names: &[String]) -> Vec<String> {
    names
        .iter()
        .map(|k| match r.get(k).and_then(Value::as_f64) {
            Some(v) => any_number(k, v),
            None => "–".into(),
        })
        .collect()
}

/// `boha bench gemm`: the peak and bandwidth, each GEMM shape against the FMA peak, and
/// (records that have them) the decode products against the copy bandwidth.
pub fn gemm(l: &Loaded) -> Result<String> {
    let v = &l.value;
    let family = v.get("family").and_then(Value::as_str).unwrap_or("?");
    let mut s = format!(
        "FMA peak {:.1} GFLOP/s, copy {:.1} GB/s, `{family}` GEMM family.\n\n",
        l.num(v, "fma_peak_gflops")?,
        l.num(v, "copy_gbps")?
    );
    let rows = l.list(v, "gemm")?;
    // Records from before the tiles were compared have neither the op nor the tiles.
    let tiled = rows.iter().any(|p| p.get("tile").is_some());
    let mut header = vec!["M × K × N".to_string()];
    if tiled {
        header.extend(["op".to_string(), "tile".into()]);
    }
    header.extend([
        "ms".to_string(),
        "GFLOP/s".into(),
        with_target("of FMA peak", GEMM_OF_PEAK, true),
    ]);
    if tiled {
        header.push("other tiles, GFLOP/s".into());
    }
    let mut t = Table::new(header);
    for p in rows {
        let mut row = vec![format!(
            "{} × {} × {}",
            l.num(p, "m")?,
            l.num(p, "k")?,
            l.num(p, "n")?
        )];
        if tiled {
            row.push(l.str(p, "trans")?.to_string());
            row.push(format!("`{}`", l.str(p, "tile")?));
        }
        row.extend([
            significant(l.num(p, "ms")?, 3),
            significant(l.num(p, "gflops")?, 3),
            GEMM_OF_PEAK.mark_pct(l.num(p, "ratio_of_peak")?, 1),
        ]);
        if tiled {
            let mine = l.str(p, "tile")?;
            let others: Vec<String> = p
                .get("tiles")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(name, _)| name.as_str() != mine)
                .filter_map(|(name, g)| Some(format!("{name} {}", significant(g.as_f64()?, 3))))
                .collect();
            row.push(if others.is_empty() {
                "–".into()
            } else {
                others.join(", ")
            });
        }
        t.row(row);
    }
    s += &t.render();
    if let Some(gemv) = v.get("gemv").and_then(Value::as_array) {
        let mut t = Table::new([
            "decode M × K × N",
            "kernel",
            "ms",
            "W GB/s",
            "of copy bandwidth",
            "tiled ms",
            "speedup over tiled",
        ]);
        for p in gemv {
            t.row(vec![
                format!(
                    "{} × {} × {}",
                    l.num(p, "m")?,
                    l.num(p, "k")?,
                    l.num(p, "n")?
                ),
                l.str(p, "kernel")?.to_string(),
                significant(l.num(p, "ms")?, 3),
                significant(l.num(p, "w_gbps")?, 3),
                format!("{:.0}%", 100.0 * l.num(p, "ratio_of_copy")?),
                significant(l.num(p, "tiled_ms")?, 3),
                format!("{:.1}×", l.num(p, "speedup")?),
            ]);
        }
        s += "\n";
        s += &t.render();
    }
    Ok(s)
}

const LAYER_KNOWN: &[&str] = &[
    "tokens",
    "d_in",
    "d_out",
    "base_fwd_ms",
    "boha_fwd_ms",
    "lora_fwd_ms",
    "boha_step_ms",
    "hira_step_ms",
    "lora_step_ms",
    "boha_peak_bytes",
    "lora_peak_bytes",
    "hira_peak_bytes",
    "boha_fwd_over_base",
    "boha_step_over_lora",
    "boha_peak_over_lora",
];

/// `boha bench layer`: per shape, the times and the three ratios against their targets.
pub fn layer(l: &Loaded) -> Result<String> {
    let rows = l.list(&l.value, "layers")?;
    let more = extras(rows, LAYER_KNOWN);
    let mut header = vec![
        "tokens".to_string(),
        "d_in → d_out".into(),
        "base fwd ms".into(),
        "BoHA fwd ms".into(),
        "LoRA step ms".into(),
        "BoHA step ms".into(),
        "HiRA step ms".into(),
        with_target("BoHA fwd / base", LAYER_FWD, false),
        with_target("BoHA step / LoRA step", LAYER_STEP, false),
        with_target("BoHA peak / LoRA peak", LAYER_PEAK, false),
    ];
    header.extend(more.iter().cloned());
    let mut t = Table::new(header);
    for r in rows {
        let mut cells = vec![
            format!("{}", l.num(r, "tokens")?),
            format!("{} → {}", l.num(r, "d_in")?, l.num(r, "d_out")?),
            significant(l.num(r, "base_fwd_ms")?, 3),
            significant(l.num(r, "boha_fwd_ms")?, 3),
            significant(l.num(r, "lora_step_ms")?, 3),
            significant(l.num(r, "boha_step_ms")?, 3),
            significant(l.num(r, "hira_step_ms")?, 3),
            LAYER_FWD.mark(l.num(r, "boha_fwd_over_base")?, 2),
            LAYER_STEP.mark(l.num(r, "boha_step_over_lora")?, 2),
            LAYER_PEAK.mark(l.num(r, "boha_peak_over_lora")?, 3),
        ];
        cells.extend(extra_cells(r, &more));
        t.row(cells);
    }
    Ok(t.render())
}

const STEP_KNOWN: &[&str] = &["step_ms", "tokens_per_s", "peak_bytes"];
const STEP_TOP_KNOWN: &[&str] = &[
    "tokens_per_step",
    "base_fwd_ms",
    "merged_fwd_ms",
    "boha_step_over_lora",
    "boha_peak_over_lora",
    "merged_fwd_over_base",
];

/// `boha bench step`: per method its step, throughput and peak; then the ratios against
/// their targets, and any further figures the record holds.
pub fn step(l: &Loaded) -> Result<String> {
    let v = &l.value;
    let model = l.str(v, "model")?;
    let model = model.rsplit('/').next().unwrap_or(model);
    let mut s = format!(
        "`{model}`, {} tokens per step; base forward {:.0} ms, merged forward {:.0} ms.\n\n",
        l.num(v, "tokens_per_step")?,
        l.num(v, "base_fwd_ms")?,
        l.num(v, "merged_fwd_ms")?
    );
    let rows = l.list(v, "results")?;
    let more = extras(rows, STEP_KNOWN);
    let mut header = vec![
        "method".to_string(),
        "step s".into(),
        "tokens/s".into(),
        "peak GiB".into(),
    ];
    header.extend(more.iter().cloned());
    let mut t = Table::new(header);
    for r in rows {
        let mut cells = vec![
            l.str(r, "method")?.to_string(),
            format!("{:.1}", l.num(r, "step_ms")? / 1e3),
            format!("{:.1}", l.num(r, "tokens_per_s")?),
            format!("{:.2}", l.num(r, "peak_bytes")? / (1u64 << 30) as f64),
        ];
        cells.extend(extra_cells(r, &more));
        t.row(cells);
    }
    s += &t.render();
    s += "\n";
    let top = extras(std::slice::from_ref(v), STEP_TOP_KNOWN);
    let mut header = vec![
        with_target("BoHA step / LoRA step", STEP_STEP, false),
        with_target("BoHA peak / LoRA peak", STEP_PEAK, false),
        "merged fwd / base fwd (same kernels: 1 within noise)".to_string(),
    ];
    header.extend(top.iter().cloned());
    let mut t = Table::new(header);
    // A ratio whose methods were not run is null in the record.
    let ratio = |key: &str, t: Option<Target>| match v.get(key).and_then(Value::as_f64) {
        Some(x) => t.map_or_else(|| format!("{x:.2}"), |t| t.mark(x, 2)),
        None => "— (not run)".to_string(),
    };
    let mut cells = vec![
        ratio("boha_step_over_lora", Some(STEP_STEP)),
        ratio("boha_peak_over_lora", Some(STEP_PEAK)),
        ratio("merged_fwd_over_base", None),
    ];
    cells.extend(extra_cells(v, &top));
    t.row(cells);
    s += &t.render();
    if let Some(rows) = v.get("base_dtypes").and_then(Value::as_array) {
        let first = rows
            .first()
            .map(|r| l.str(r, "dtype"))
            .transpose()?
            .unwrap_or("?");
        s += &format!("\nBoHA with the frozen weights in each dtype, over {first}:\n\n");
        let mut t = Table::new(vec![
            "base dtype".to_string(),
            with_target("step ratio", DTYPE_STEP, false),
            with_target("peak ratio", DTYPE_PEAK, false),
        ]);
        for r in rows {
            t.row(vec![
                l.str(r, "dtype")?.to_string(),
                DTYPE_STEP.mark(l.num(r, "step_over_first")?, 2),
                DTYPE_PEAK.mark(l.num(r, "peak_over_first")?, 2),
            ]);
        }
        s += &t.render();
    }
    Ok(s)
}

/// A relative residual: two digits where it is tiny (a fit), three where it is not.
fn residual(v: f64) -> String {
    significant(v, if v < 0.01 { 2 } else { 3 })
}

/// `boha synthetic`: each fit's budget, the rank it reached and its residual.
pub fn synthetic(l: &Loaded) -> Result<String> {
    let rows = l.list(&l.value, "results")?;
    let boha_params = rows
        .iter()
        .find(|r| r.get("method").and_then(Value::as_str) == Some("boha"))
        .and_then(|r| r.get("params").and_then(Value::as_f64));
    let mut t = Table::new(["method", "params", "fitted rank of M", "‖ΔW − T‖ / ‖T‖"]);
    for r in rows {
        let (blocks, rank, params) = (l.num(r, "blocks")?, l.num(r, "rank")?, l.num(r, "params")?);
        let label = match l.str(r, "method")? {
            "boha" => format!("BoHA, b = {blocks}, r_b = {rank}"),
            "additive" => format!("additive control, b = {blocks}, r_b = {rank}"),
            "hira" if Some(params) == boha_params => {
                format!("HiRA, r = {rank} (BoHA's budget)")
            }
            "hira" => format!("HiRA, r = {rank}"),
            other => format!("{other}, b = {blocks}, rank {rank}"),
        };
        t.row(vec![
            label,
            format!("{params}"),
            format!("{}", l.num(r, "fitted_rank")?),
            residual(l.num(r, "rel_residual")?),
        ]);
    }
    Ok(t.render())
}

/// `boha tune`: per GEMM shape the profile's tile, the winner and its speedup (with every
/// candidate's time), then the pair kinds' path per matrix.
pub fn tune(l: &Loaded) -> Result<String> {
    let v = &l.value;
    let mut s = format!(
        "Profile {}, {} tokens per step.\n\n",
        l.str(v, "profile")?,
        l.num(v, "tokens")?
    );
    let mut t = Table::new([
        "GEMM shape",
        "profile tile",
        "winner",
        "speedup",
        "candidates, ms",
    ]);
    for c in l.list(v, "gemm")? {
        let times: Vec<String> = c
            .get("ms")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, ms)| match ms.as_f64() {
                Some(ms) => format!("{name} {}", significant(ms, 3)),
                None => format!("{name} (refused)"),
            })
            .collect();
        t.row(vec![
            format!("`{}`", l.str(c, "shape")?),
            format!("`{}`", l.str(c, "default")?),
            format!("`{}`", l.str(c, "winner")?),
            c.get("speedup")
                .and_then(Value::as_f64)
                .map_or("–".into(), |x| format!("{x:.2}×")),
            times.join(", "),
        ]);
    }
    s += &t.render();
    let pairs = l.list(v, "pair")?;
    if !pairs.is_empty() {
        let mut t = Table::new([
            "pair matrix",
            "multiply-add rule",
            "fused ms",
            "Khatri–Rao ms",
            "winner",
        ]);
        for c in pairs {
            let rule = c.get("rule_picks_fused").and_then(Value::as_bool);
            t.row(vec![
                l.str(c, "matrix")?.to_string(),
                match rule {
                    Some(true) => "fused".into(),
                    Some(false) => "Khatri–Rao".into(),
                    None => "–".into(),
                },
                significant(l.num(c, "fused_ms")?, 3),
                significant(l.num(c, "khatri_rao_ms")?, 3),
                l.str(c, "winner")?.to_string(),
            ]);
        }
        s += "\n";
        s += &t.render();
    }
    Ok(s)
}

/// `scripts/step_vs_commit.sh`: an earlier build's step and this one's, run one after the
/// other, with BoHA's (and LoRA's) tokens/s ratio.
pub fn step_vs(l: &Loaded) -> Result<String> {
    let v = &l.value;
    let base = v
        .get("baseline")
        .ok_or_else(|| crate::error::Error::Invalid(format!("{}: no baseline", l.name)))?;
    let cur = v
        .get("current")
        .ok_or_else(|| crate::error::Error::Invalid(format!("{}: no current run", l.name)))?;
    let commit = |run: &Value| {
        run.get("record")
            .and_then(|r| r.get("commit"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string()
    };
    let tps = |run: &Value, m: &str| -> Option<f64> {
        run.get("results")?
            .as_array()?
            .iter()
            .find(|r| r.get("method").and_then(Value::as_str) == Some(m))?
            .get("tokens_per_s")?
            .as_f64()
    };
    let mut s = format!(
        "{} tokens per step; the earlier build (commit `{}`) ran first, this one (commit `{}`) right after.\n\n",
        l.num(v, "tokens_per_step")?,
        l.str(v, "baseline_commit")?,
        commit(cur)
    );
    let mut t = Table::new(["build", "commit", "BoHA tokens/s", "LoRA tokens/s"]);
    // An earlier build may predate the record envelope: its commit is the baseline's.
    let commits = [l.str(v, "baseline_commit")?.to_string(), commit(cur)];
    for ((name, run), c) in [("earlier", base), ("this", cur)].into_iter().zip(commits) {
        let cell = |m: &str| tps(run, m).map_or("–".into(), |x| format!("{x:.1}"));
        t.row(vec![
            name.to_string(),
            format!("`{c}`"),
            cell("boha"),
            cell("lora"),
        ]);
    }
    s += &t.render();
    s += "\n";
    let mut t = Table::new([
        with_target("BoHA tokens/s, this / earlier", STEP_VS_SPEEDUP, false),
        "LoRA tokens/s, this / earlier".to_string(),
    ]);
    t.row(vec![
        STEP_VS_SPEEDUP.mark(l.num(v, "boha_speedup")?, 2),
        format!("{:.2}", l.num(v, "lora_speedup")?),
    ]);
    s += &t.render();
    Ok(s)
}
