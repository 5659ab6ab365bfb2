//! `boha bench step --json` on a tiny model: every method measured, the report's fields
//! and ratios consistent with its own numbers, and `--profile`'s time per kernel.

mod common;
mod model_specs;

use std::process::Command;

use serde_json::Value;

/// `boha bench step --batch 2 --max-len 8 --runs 1 --json ARGS` on the tiny Llama (d = 32
/// and 44 take b = 4 with r_b = 8: 4 · 8 = 32 = LoRA's r); its JSON report.
fn bench_step_json(tag: &str, args: &[&str]) -> Value {
    let dir = model_specs::write_dir("llama", tag);
    let o = Command::new(env!("CARGO_BIN_EXE_boha"))
        .args([
            "bench",
            "step",
            "--batch",
            "2",
            "--max-len",
            "8",
            "--runs",
            "1",
            "--json",
        ])
        .args(args)
        .arg("--model")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn step_benchmark_reports_every_method() {
    if common::gpu().is_none() {
        return;
    }
    let v = bench_step_json("bench-step", &["--profile"]);
    assert_eq!(v["tokens_per_step"], 16);
    assert!(v["fma_peak_gflops"].as_f64().unwrap() > 0.0);
    let rows = v["results"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "boha",
            "hira",
            "lora",
            "additive",
            "abba",
            "loha",
            "boha+checkpointing"
        ]
    );
    for r in rows {
        let ms = r["step_ms"].as_f64().unwrap();
        assert!(ms > 0.0);
        let tps = r["tokens_per_s"].as_f64().unwrap();
        assert!((tps - 16.0 / (ms / 1e3)).abs() < 1e-6 * tps);
        // Model FLOP/s and MFU follow from tokens/s, the FLOPs per token and a peak.
        let flops = v["model_flops_per_token"].as_f64().unwrap();
        let gflops = r["model_gflops"].as_f64().unwrap();
        assert!((gflops - tps * flops / 1e9).abs() < 1e-6 * gflops, "{r}");
        let mfu = r["mfu"].as_f64().unwrap();
        assert!(mfu > 0.0 && mfu < 1.0, "{r}");
        assert!(r["peak_bytes"].as_u64().unwrap() > 0);
        // The profile: kernels with their dispatch counts; the fused adapter-gradient
        // kernels appear for every method but LoRA, which runs plain GEMMs.
        let prof = r["profile"].as_array().unwrap();
        assert!(prof
            .iter()
            .all(|k| k["dispatches"].as_u64().unwrap() > 0 && k["ms"].as_f64().unwrap() >= 0.0));
        let has_grad = prof
            .iter()
            .any(|k| k["kernel"].as_str().unwrap().starts_with("grad_"));
        let has_khatri_rao = prof
            .iter()
            .any(|k| k["kernel"].as_str().unwrap().starts_with("khatri_rao_"));
        // The fused kinds run the adapter-gradient kernels, LoRA GEMMs, and the pair
        // kinds one of the two (the fused kernels at this tiny model's widths, where
        // they cost less than the Khatri–Rao bottleneck).
        let method = r["method"].as_str().unwrap();
        let fused = ["boha", "hira", "additive", "boha+checkpointing"].contains(&method);
        let pair = ["abba", "loha"].contains(&method);
        assert_eq!(has_grad, fused || pair, "{r}");
        assert!(!has_khatri_rao, "{r}");
    }
    let ratio = rows[0]["step_ms"].as_f64().unwrap() / rows[2]["step_ms"].as_f64().unwrap();
    assert!((v["boha_step_over_lora"].as_f64().unwrap() - ratio).abs() < 1e-9);
    // Checkpointing recomputes layers (more work) and plans fewer bytes.
    let (plain, ckpt) = (&rows[0], &rows[6]);
    let planned = |r: &Value| r["planned_bytes"].as_f64().unwrap();
    assert!(planned(ckpt) < planned(plain), "{plain} {ckpt}");
    let r = v["checkpointing_planned_over_plain"].as_f64().unwrap();
    assert!((r - planned(ckpt) / planned(plain)).abs() < 1e-9);
    let r = v["checkpointing_step_over_plain"].as_f64().unwrap();
    assert!(
        (r - ckpt["step_ms"].as_f64().unwrap() / plain["step_ms"].as_f64().unwrap()).abs() < 1e-9
    );
    assert!(v["base_fwd_ms"].as_f64().unwrap() > 0.0);
    assert!(v["merged_fwd_ms"].as_f64().unwrap() > 0.0);
}

/// `--base-dtypes`: BoHA's step again with the frozen weights in f32 and bf16; the bf16
/// step holds less at its peak, each peak matches its estimate within 5%, and the
/// ratios are the report's own numbers.
#[test]
fn step_benchmark_compares_base_dtypes() {
    if common::gpu().is_none() {
        return;
    }
    let v = bench_step_json(
        "bench-step-dtypes",
        &["--methods", "boha", "--base-dtypes", "f32,bf16"],
    );
    let rows = v["results"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["boha", "boha+checkpointing", "boha@f32", "boha@bf16"]
    );
    let row = |m: &str| rows.iter().find(|r| r["method"] == m).unwrap();
    for r in rows {
        let e = r["estimate_over_measured"].as_f64().unwrap();
        assert!((0.95..=1.05).contains(&e), "{r}");
    }
    let peak = |m: &str| row(m)["peak_bytes"].as_f64().unwrap();
    let step = |m: &str| row(m)["step_ms"].as_f64().unwrap();
    assert!(peak("boha@bf16") < peak("boha@f32"));
    let d = v["base_dtypes"].as_array().unwrap();
    assert_eq!(d[0]["dtype"], "f32");
    assert_eq!(d[0]["step_over_first"].as_f64().unwrap(), 1.0);
    assert_eq!(d[1]["dtype"], "bf16");
    let pr = d[1]["peak_over_first"].as_f64().unwrap();
    assert!((pr - peak("boha@bf16") / peak("boha@f32")).abs() < 1e-9);
    let sr = d[1]["step_over_first"].as_f64().unwrap();
    assert!((sr - step("boha@bf16") / step("boha@f32")).abs() < 1e-9);
}
