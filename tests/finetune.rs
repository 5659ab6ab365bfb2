//! `boha finetune` end to end on a tiny checkpoint: the loss falls, every file of the
//! output directory is written, an interrupted and resumed run ends bit-identical to an
//! uninterrupted one (and two identical runs agree bit for bit), gradient accumulation,
//! continuing from a saved adapter, and the errors a user meets (malformed data, a run
//! directory in use, changed settings on resume, a diverging run).

mod common;
mod model_specs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use boha::adapters::files::load_adapter;
use boha::train::metrics::read_curves;
use common::tiny_checkpoint::{temp_dir, write_tiny_hf};
use serde_json::json;

fn model(tag: &str) -> PathBuf {
    let (_, spec) = model_specs::specs()
        .into_iter()
        .find(|(n, _)| *n == "llama")
        .unwrap();
    let dir = temp_dir(&format!("ft-model-{tag}"));
    write_tiny_hf(&dir, &spec);
    dir
}

/// Short prompt/completion records the tiny byte-level tokenizer spells out.
fn data(dir: &Path, n: usize) -> PathBuf {
    let words = ["cat", "cats", "is", "of", "What"];
    let mut text = String::new();
    for i in 0..n {
        let r = json!({
            "prompt": format!("{} {} ", words[i % 5], words[(i + 2) % 5]),
            "completion": words[(i * 3 + 1) % 5],
        });
        text.push_str(&format!("{r}\n"));
    }
    let p = dir.join("train.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

fn boha(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(args)
        .output()
        .expect("run boha");
    if common::gpu().is_none() {
        // No adapter: the command must still fail cleanly; nothing else to check.
        return out;
    }
    out
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "boha failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// The finetune command line with the test defaults; a flag in `extra` replaces the
/// default of the same name.
fn run_args<'a>(m: &'a str, d: &'a str, out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--method", "boha"),
        ("--blocks", "2"),
        ("--block-rank", "2"),
        ("--lr", "0.01"),
        ("--batch", "2"),
        ("--max-len", "24"),
        ("--seed", "7"),
    ];
    let mut v = vec!["finetune", "--model", m, "--data", d, "--out", out];
    for (k, val) in defaults {
        if !extra.contains(&k) {
            v.extend([k, val]);
        }
    }
    v.extend_from_slice(extra);
    v
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn loss_falls_and_every_output_is_written() {
    if common::gpu().is_none() {
        return;
    }
    let m = model("falls");
    let dir = temp_dir("ft-falls");
    let d = data(&dir, 8);
    let out = dir.join("run");
    let o = boha(&run_args(
        s(&m),
        s(&d),
        s(&out),
        &[
            "--steps",
            "12",
            "--lr",
            "0.03",
            "--eval-data",
            s(&d),
            "--eval-every",
            "6",
            "--schedule",
            "constant",
        ],
    ));
    ok(&o);
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "checkpoint.safetensors",
        "metrics.jsonl",
        "loss.png",
        "train_config.json",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let png = std::fs::read(out.join("loss.png")).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let curves = read_curves(&out.join("metrics.jsonl")).unwrap();
    assert_eq!(curves.train.len(), 12);
    assert_eq!(curves.eval.iter().map(|e| e.0).collect::<Vec<_>>(), [6, 12]);
    let first = curves.train[..2].iter().map(|p| p.1).sum::<f32>();
    let last = curves.train[10..].iter().map(|p| p.1).sum::<f32>();
    assert!(last < 0.8 * first, "loss {first} → {last}");
    let a = load_adapter(&out).unwrap();
    assert_eq!((a.spec.blocks, a.spec.block_rank), (2, 2));
    assert_eq!(a.targets.len(), 7);
    // A second run into the same directory is refused, not clobbered.
    let again = boha(&run_args(s(&m), s(&d), s(&out), &["--steps", "2"]));
    assert!(!again.status.success());
    assert!(stderr(&again).contains("--resume"), "{}", stderr(&again));
}

#[test]
fn resumed_run_matches_uninterrupted_bit_for_bit() {
    if common::gpu().is_none() {
        return;
    }
    let m = model("resume");
    let dir = temp_dir("ft-resume");
    let d = data(&dir, 10);
    let (a, b, c) = (dir.join("a"), dir.join("b"), dir.join("c"));
    let extra = ["--steps", "6", "--warmup", "2", "--grad-accum", "2"];
    ok(&boha(&run_args(s(&m), s(&d), s(&a), &extra)));
    ok(&boha(&run_args(s(&m), s(&d), s(&c), &extra)));
    let mut first = extra.to_vec();
    first.extend(["--stop-after", "2", "--save-every", "1"]);
    ok(&boha(&run_args(s(&m), s(&d), s(&b), &first)));
    assert!(b.join("checkpoint.safetensors").is_file());
    assert!(
        !b.join("adapter_config.json").exists(),
        "a stopped run looks finished"
    );
    // Different settings on resume are refused, naming the setting.
    let mut changed = run_args(s(&m), s(&d), s(&b), &extra);
    changed.extend(["--resume"]);
    let lr_pos = changed.iter().position(|a| *a == "0.01").unwrap();
    changed[lr_pos] = "0.02";
    let o = boha(&changed);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("lr"), "{}", stderr(&o));
    let mut resume = extra.to_vec();
    resume.push("--resume");
    ok(&boha(&run_args(s(&m), s(&d), s(&b), &resume)));
    let bytes = |p: &Path| std::fs::read(p.join("adapter_model.safetensors")).unwrap();
    assert!(bytes(&a) == bytes(&c), "two identical runs differ");
    assert!(
        bytes(&a) == bytes(&b),
        "the resumed run differs from the uninterrupted one"
    );
    let curves = read_curves(&b.join("metrics.jsonl")).unwrap();
    assert_eq!(
        curves.train.iter().map(|p| p.0).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5, 6]
    );
}

#[test]
fn continues_from_a_saved_adapter() {
    if common::gpu().is_none() {
        return;
    }
    let m = model("cont");
    let dir = temp_dir("ft-cont");
    let d = data(&dir, 6);
    let first = dir.join("first");
    ok(&boha(&run_args(
        s(&m),
        s(&d),
        s(&first),
        &[
            "--steps",
            "3",
            "--method",
            "lora",
            "--blocks",
            "1",
            "--block-rank",
            "4",
        ],
    )));
    let second = dir.join("second");
    ok(&boha(&run_args(
        s(&m),
        s(&d),
        s(&second),
        &["--steps", "3", "--init-adapter", s(&first)],
    )));
    let a = load_adapter(&first).unwrap();
    let b = load_adapter(&second).unwrap();
    assert_eq!(b.spec, a.spec, "the saved adapter's spec carries over");
    assert_ne!(a.tensors[0].b, b.tensors[0].b, "training went on");
}

#[test]
fn bad_input_and_divergence_are_clear_errors() {
    if common::gpu().is_none() {
        return;
    }
    let m = model("bad");
    let dir = temp_dir("ft-bad");
    let d = dir.join("bad.jsonl");
    std::fs::write(
        &d,
        "{\"prompt\": \"a\", \"completion\": \"b\"}\n{not json\n",
    )
    .unwrap();
    let out = dir.join("run");
    let o = boha(&run_args(s(&m), s(&d), s(&out), &["--steps", "2"]));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("bad.jsonl") && e.contains(":2"), "{e}");
    assert!(!out.join("adapter_config.json").exists());

    let o = boha(&run_args(
        s(&m),
        s(&dir.join("missing.jsonl")),
        s(&out),
        &["--steps", "2"],
    ));
    assert!(!o.status.success());
    assert!(stderr(&o).contains("missing.jsonl"), "{}", stderr(&o));

    // A learning rate no run survives: the loss turns non-finite and the run stops with
    // the last good checkpoint kept and no adapter written.
    let good = data(&dir, 4);
    let div = dir.join("diverge");
    let o = boha(&run_args(
        s(&m),
        s(&good),
        s(&div),
        &[
            "--steps",
            "6",
            "--lr",
            "1e30",
            "--clip",
            "0",
            "--save-every",
            "1",
            "--schedule",
            "constant",
        ],
    ));
    assert!(!o.status.success(), "a diverging run succeeded");
    let e = stderr(&o);
    assert!(e.contains("NaN") || e.contains("inf"), "{e}");
    assert!(e.contains("checkpoint"), "{e}");
    assert!(div.join("checkpoint.safetensors").is_file());
    assert!(!div.join("adapter_config.json").exists());
}

#[test]
fn every_method_learns_a_memorizable_set() {
    if common::gpu().is_none() {
        return;
    }
    let m = model("methods");
    let dir = temp_dir("ft-methods");
    let d = data(&dir, 4);
    for (method, size) in [
        ("boha", ["--blocks", "2", "--block-rank", "2"]),
        ("additive", ["--blocks", "2", "--block-rank", "2"]),
        ("lora", ["--blocks", "1", "--block-rank", "4"]),
        ("hira", ["--blocks", "1", "--block-rank", "4"]),
    ] {
        let out = dir.join(method);
        let mut extra = vec![
            "--method",
            method,
            "--steps",
            "16",
            "--batch",
            "4",
            "--lr",
            "0.03",
            "--schedule",
            "constant",
        ];
        extra.extend(size);
        ok(&boha(&run_args(s(&m), s(&d), s(&out), &extra)));
        let c = read_curves(&out.join("metrics.jsonl")).unwrap();
        let (first, last) = (c.train[0].1, c.train[15].1);
        assert!(last < 0.7 * first, "{method}: loss {first} → {last}");
    }
}

#[test]
fn memory_is_checked_before_allocating() {
    use boha::adapters::{AdapterSpec, Method};
    use boha::graph::memory::estimate_step;
    use boha::graph::{TrainOptions, Trainer};
    use boha::loaders::load_checkpoint;
    let Some(gpu) = common::gpu() else {
        return;
    };
    let m = model("mem");
    let dir = temp_dir("ft-mem");
    let d = data(&dir, 4);
    // A limit no step fits: refused up front, with what to reduce, nothing written.
    let out = dir.join("run");
    let o = boha(&run_args(
        s(&m),
        s(&d),
        s(&out),
        &["--steps", "2", "--memory-limit", "0.0001"],
    ));
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("--batch") && e.contains("--gradient-checkpointing"),
        "{e}"
    );
    assert!(!out.join("checkpoint.safetensors").exists());
    // The estimate is an upper bound of what a trainer really allocates, and not a loose
    // one.
    let ck = load_checkpoint(&m).unwrap();
    for (batch, seq, recompute) in [(2, 8, false), (3, 16, true)] {
        let spec = AdapterSpec::from_options(Method::Boha, Some(2), None, Some(2), None).unwrap();
        let targets: Vec<String> = ["q", "k", "v", "o", "gate", "up", "down"]
            .iter()
            .map(|t| t.to_string())
            .collect();
        let est = estimate_step(&gpu, &ck.config, &spec, &targets, batch, seq, recompute).unwrap();
        gpu.reset_peak();
        let base = gpu.live_bytes();
        let opts = TrainOptions {
            recompute,
            ..TrainOptions::default()
        };
        let tr = Trainer::new(&gpu, &ck, spec, &["all"], batch, seq, opts).unwrap();
        let real = gpu.peak_bytes() - base;
        drop(tr);
        assert!(
            real <= est.total() && est.total() <= 3 * real + (2 << 20),
            "estimate {} vs allocated {real}",
            est.total()
        );
    }
}
