//! `boha graph` on a tiny checkpoint: the node list with shapes, dtypes and planned
//! buffers for each mode, the Graphviz file of one layer, a measured step whose peak the
//! plan's estimate matches, and clear errors for bad flags.

mod common;
mod model_specs;

use std::path::PathBuf;
use std::process::{Command, Output};

fn model(arch: &str) -> PathBuf {
    model_specs::write_dir(arch, &format!("graph-cli-{arch}"))
}

fn boha(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(args)
        .output()
        .expect("run boha")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn prints_the_plan_writes_dot_and_measures_a_step() {
    if common::gpu().is_none() {
        return;
    }
    let m = model("gemma2");
    let ms = m.to_str().unwrap();
    let dot = m.join("layer1.dot");
    let o = boha(&[
        "graph",
        "--model",
        ms,
        "--method",
        "boha",
        "--blocks",
        "2",
        "--block-rank",
        "2",
        "--targets",
        "q,v",
        "--batch",
        "2",
        "--seq",
        "8",
        "--dot",
        dot.to_str().unwrap(),
        "--layer",
        "1",
        "--measure",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    // Forward and backward nodes with shapes and dtypes, buffers with sizes.
    for want in [
        "fwd",
        "bwd",
        "linear q +adapter",
        "attention'",
        "ids[16] u32",
        "planned buffers",
        "MiB",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    // Gemma-2's post-norms are in the graph; no weight gets a gradient.
    assert!(out.contains("post_attn_norm"), "{out}");
    assert!(
        !out.contains("dlayers.0.q["),
        "a frozen weight's gradient:\n{out}"
    );
    let ratio: f64 = out
        .lines()
        .find_map(|l| l.split("estimate / measured = ").nth(1))
        .expect("a measured step")
        .trim()
        .parse()
        .unwrap();
    assert!((ratio - 1.0).abs() < 0.05, "estimate / measured = {ratio}");
    let text = std::fs::read_to_string(&dot).unwrap();
    assert!(text.starts_with("digraph boha {") && text.trim_end().ends_with('}'));
    assert!(
        text.contains("linear'") && text.contains("layers.1."),
        "{text}"
    );
    assert!(
        !text.contains("layers.0."),
        "--layer 1 drew layer 0:\n{text}"
    );

    // Checkpointing adds recomputed nodes and plans fewer bytes.
    let planned = |extra: &[&str]| -> f64 {
        let mut args = vec![
            "graph",
            "--model",
            ms,
            "--batch",
            "2",
            "--seq",
            "8",
            "--targets",
            "all",
        ];
        args.extend_from_slice(extra);
        let o = boha(&args);
        assert!(o.status.success(), "{}", stderr(&o));
        let out = stdout(&o);
        let line = out.lines().find(|l| l.starts_with("planned: ")).unwrap();
        line["planned: ".len()..]
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let plain = planned(&[]);
    let ckpt = planned(&["--gradient-checkpointing"]);
    assert!(ckpt < plain, "checkpointing {ckpt} MiB, plain {plain} MiB");

    for mode in ["score", "decode"] {
        let o = boha(&["graph", "--model", ms, "--mode", mode, "--seq", "8"]);
        assert!(o.status.success(), "{mode}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(!out.contains(" bwd "), "{mode} has a backward:\n{out}");
        if mode == "decode" {
            assert!(
                out.contains("cache_write") && out.contains("logits"),
                "{out}"
            );
        }
    }
}

#[test]
fn bad_flags_are_one_line_errors() {
    if common::gpu().is_none() {
        return;
    }
    let m = model("llama");
    let ms = m.to_str().unwrap();
    let dot = m.join("never.dot");
    for (args, want) in [
        (vec!["--mode", "sideways"], "--mode sideways"),
        (
            vec!["--layer", "99", "--dot", dot.to_str().unwrap()],
            "--layer 99",
        ),
        (vec!["--targets", "q,nope"], "unknown projection 'nope'"),
        (
            vec!["--mode", "score", "--measure"],
            "--measure needs --mode train",
        ),
    ] {
        let mut all = vec!["graph", "--model", ms, "--batch", "1", "--seq", "4"];
        all.extend(args.iter().copied());
        let o = boha(&all);
        assert!(!o.status.success(), "{args:?} succeeded");
        let e = stderr(&o);
        assert!(e.contains(want), "{args:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
    }
    assert!(!dot.exists());
}
