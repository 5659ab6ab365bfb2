//! `boha bench decode --json` on a tiny model: batch 1 first, every speedup over it
//! consistent with the tokens/s beside it, the cache sized by the batch, and bad sizes
//! refused with one line.

mod common;
mod model_specs;

use std::process::Command;

use serde_json::Value;

fn bench_decode(tag: &str, args: &[&str]) -> std::process::Output {
    let dir = model_specs::write_dir("llama", tag);
    Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(["bench", "decode", "--model"])
        .arg(&dir)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn decode_benchmark_reports_each_batch_against_one() {
    if common::gpu().is_none() {
        return;
    }
    let o = bench_decode(
        "bench-decode",
        &[
            "--batches",
            "3,8",
            "--prompt-len",
            "5",
            "--steps",
            "4",
            "--json",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["prompt_len"], 5);
    assert!(v["record"]["commit"].is_string());
    let rows = v["results"].as_array().unwrap();
    let batches: Vec<u64> = rows.iter().map(|r| r["batch"].as_u64().unwrap()).collect();
    assert_eq!(batches, [1, 3, 8]);
    let tps = |r: &Value| r["tokens_per_s"].as_f64().unwrap();
    for r in rows {
        let b = r["batch"].as_f64().unwrap();
        let ms = r["step_ms"].as_f64().unwrap();
        assert!(ms > 0.0);
        assert!((tps(r) - b * 1e3 / ms).abs() < 1e-6 * tps(r));
        assert!((r["speedup"].as_f64().unwrap() - tps(r) / tps(&rows[0])).abs() < 1e-9);
        // 2 (k, v) · 2 layers · B · (5 + 4 + 1) positions · 16 (kv dim) · 4 bytes
        assert_eq!(
            r["cache_bytes"].as_f64().unwrap(),
            2.0 * 2.0 * b * 10.0 * 16.0 * 4.0
        );
    }

    let table = bench_decode("bench-decode-table", &["--batches", "2", "--steps", "2"]);
    assert!(table.status.success());
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(
        text.contains("| batch | step ms |") && text.contains("\n| 2 |"),
        "{text}"
    );
}

#[test]
fn bad_decode_sizes_are_one_line_errors() {
    if common::gpu().is_none() {
        return;
    }
    for args in [["--batches", "0"], ["--steps", "1"], ["--prompt-len", "0"]] {
        let o = bench_decode("bench-decode-bad", &args);
        assert!(!o.status.success(), "{args:?}");
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(e.contains("bench decode needs"), "{args:?}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
}
