//! `boha report`: the published tables match their records, the table rendering on the
//! small records in tests/data/report/docs/benchmarks/, and the envelope a benchmark's
//! JSON carries.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use boha::bench::record::Record;
use boha::report::{self, render_block, render_document, Stale};
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn samples() -> PathBuf {
    repo().join("tests/data/report")
}

#[test]
fn published_tables_match_their_records() {
    let stale = report::run(&repo(), false).unwrap();
    if let Some(s) = stale.first() {
        panic!(
            "{}: the table `report:{}` differs from its records; run `cargo run --release -- report`",
            s.document, s.spec
        );
    }
}

/// docs/RESULTS.md is the lavapipe study's report, rebuilt from its committed results.
#[test]
fn results_md_is_the_study_report() {
    let preset = boha::study::Preset::named("lavapipe").unwrap();
    let layout = boha::study::Layout {
        out: repo().join("docs/study/lavapipe"),
    };
    let figures = common::tiny_checkpoint::temp_dir("study-figures");
    let want = boha::study::report::report(&preset, &layout, &figures, "results").unwrap();
    let have = std::fs::read_to_string(repo().join("docs/RESULTS.md")).unwrap();
    assert!(
        have == want,
        "docs/RESULTS.md differs from the study's results; run `cargo run --release -- study \
         --preset lavapipe --out docs/study/lavapipe --report docs/RESULTS.md --report-only`"
    );
}

#[test]
fn layer_table_shows_every_ratio_beside_its_target() {
    let out = render_block(&samples(), "README.md", "layer sample_layer.json").unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1],
        "Record [`sample_layer.json`](docs/benchmarks/sample_layer.json): llvmpipe (LLVM \
         15.0.6, 256 bits) (Vulkan, Cpu), driver llvmpipe Mesa 22.3.6 (LLVM 15.0.6); commit \
         `abc1234-dirty`, 2026-12-05T09:00:00Z; `boha bench layer --json`."
    );
    assert_eq!(
        lines[3],
        "| tokens | d_in → d_out | base fwd ms | BoHA fwd ms | LoRA step ms | BoHA step ms | \
         HiRA step ms | BoHA fwd / base (target ≤ 1.15) | BoHA step / LoRA step (target ≤ \
         1.5) | BoHA peak / LoRA peak (target ≤ 1.05) | estimate_bytes |"
    );
    // The missed targets are shown, marked, not left out; an unknown field gets a column.
    assert_eq!(
        lines[5],
        "| 512 | 576 → 1536 | 70.0 | 129 | 250 | 217 | 549 | 1.85 ✗ | 0.87 ✓ | 1.068 ✗ | \
         0.01 GiB |"
    );
}

#[test]
fn step_tables_take_old_and_new_records() {
    let out = render_block(&samples(), "docs/RESULTS.md", "step sample_step_*.json").unwrap();
    // One table per matching record, in name order; links are relative to docs/.
    let new = out.find("[`sample_step_new.json`](benchmarks/sample_step_new.json)");
    let old = out.find("[`sample_step_old.json`](benchmarks/sample_step_old.json)");
    assert!(new.unwrap() < old.unwrap(), "{out}");
    let (new, old) = out.split_at(old.unwrap());
    // New fields become columns (bytes in GiB), the profile list is left out, the note
    // is kept.
    assert!(new.contains("; commit `abc1234`, 2026-12-05T10:00:00Z; `boha bench step --model m.gguf --json`. A sample."), "{new}");
    assert!(
        new.contains("| method | step s | tokens/s | peak GiB | estimate_bytes |"),
        "{new}"
    );
    assert!(
        new.contains("| boha | 1.4 | 365.7 | 1.00 | 1.10 GiB |"),
        "{new}"
    );
    assert!(new.contains("| 1.40 ✗ | 1.00 ✓ | 1.01 | 1.10 |"), "{new}");
    assert!(!new.contains("dispatches"), "{new}");
    // A record without an envelope says so.
    assert!(old.contains("no envelope"), "{old}");
    assert!(old.contains("| lora | 18.0 | 14.2 | 0.96 |"), "{old}");
    assert!(old.contains("| 1.20 ✓ | 0.98 ✓ | 1.06 |"), "{old}");
}

const DOC: &str = "# Title\n\nText.\n\n<!-- report:layer sample_layer.json -->\n| stale |\n<!-- /report -->\n\nMore text.\n";

#[test]
fn rewriting_replaces_only_the_blocks_and_settles() {
    let (once, stale) = render_document(&samples(), "README.md", DOC).unwrap();
    assert_eq!(
        stale,
        vec![Stale {
            document: "README.md".into(),
            spec: "layer sample_layer.json".into()
        }]
    );
    assert!(
        once.starts_with("# Title\n\nText.\n\n<!-- report:layer sample_layer.json -->\n\nRecord ")
    );
    assert!(once.ends_with("|\n\n<!-- /report -->\n\nMore text.\n"));
    let (twice, stale) = render_document(&samples(), "README.md", &once).unwrap();
    assert_eq!(twice, once);
    assert!(stale.is_empty());
}

#[test]
fn unknown_kinds_and_missing_records_are_errors() {
    let err = |spec| {
        render_block(&samples(), "README.md", spec)
            .unwrap_err()
            .to_string()
    };
    assert!(err("plot sample_layer.json").contains("unknown report kind `plot`"));
    assert!(err("layer nothing_*.json").contains("no record matches"));
    assert!(err("layer").contains("names no record"));
}

/// A scratch repository: the sample records and the two documents.
fn scratch(name: &str, readme: &str) -> PathBuf {
    let root = std::env::temp_dir().join(format!("boha-report-{name}-{}", std::process::id()));
    let bench = root.join("docs/benchmarks");
    std::fs::create_dir_all(&bench).unwrap();
    for e in std::fs::read_dir(samples().join("docs/benchmarks")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), bench.join(e.file_name())).unwrap();
    }
    std::fs::write(root.join("README.md"), readme).unwrap();
    std::fs::write(root.join("docs/RESULTS.md"), "# Results\n").unwrap();
    root
}

fn boha(root: &Path, check: bool) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_boha"));
    c.arg("report").arg("--root").arg(root);
    if check {
        c.arg("--check");
    }
    c.output().unwrap()
}

#[test]
fn the_command_checks_then_rewrites() {
    let root = scratch("cli", DOC);
    let o = boha(&root, true);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("README.md: the table `report:layer sample_layer.json` differs"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("README.md")).unwrap(),
        DOC
    );
    assert!(boha(&root, false).status.success());
    assert!(boha(&root, true).status.success());
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn benchmark_json_carries_its_record() {
    let Some(gpu) = common::gpu() else { return };
    let o = Command::new(env!("CARGO_BIN_EXE_boha"))
        .args([
            "synthetic",
            "--dim",
            "16",
            "--blocks",
            "2",
            "--steps",
            "3",
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    // The report's own fields stay where they were; the envelope sits beside them.
    assert_eq!(v["results"].as_array().unwrap().len(), 4);
    let r: Record = serde_json::from_value(v["record"].clone()).unwrap();
    assert!(r
        .command
        .ends_with(" synthetic --dim 16 --blocks 2 --steps 3 --json"));
    assert_eq!(r.device.name, gpu.info().name);
    assert_eq!(r.driver.info, gpu.info().driver_info);
    assert!(!r.commit.is_empty());
    let d = r.date.as_bytes();
    assert!(
        d.len() == 20 && d[4] == b'-' && d[10] == b'T' && d[19] == b'Z',
        "{}",
        r.date
    );
    assert!(r.note.is_none());
}

#[test]
fn anchor_table_names_framework_device_and_threads() {
    let out = render_block(&samples(), "README.md", "anchor sample_anchor.json").unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[1],
        "Record [`sample_anchor.json`](docs/benchmarks/sample_anchor.json): Intel(R) \
         Xeon(R) Processor (cpu, Cpu), driver torch 2.9.0 transformers 4.57.0, peft \
         0.17.0; commit `abc1234-dirty`, 2026-12-05T11:00:00Z; `python3 \
         scripts/pytorch_anchor.py`; host load 1.5 on 2 CPUs."
    );
    assert_eq!(
        lines[3],
        "`m.gguf`, lora r = 32, alpha = 64 on 210 matrices, float32."
    );
    assert_eq!(
        lines[5],
        "| framework | device | threads | tokens per step | step ms | tokens/s | peak RSS GiB |"
    );
    assert_eq!(
        lines[7],
        "| PyTorch + PEFT | Intel(R) Xeon(R) Processor | 2 | 512 | 2650 | 193.2 | 1.50 |"
    );
    // A record without the fields the table needs is an error naming the field.
    let err = render_block(&samples(), "README.md", "anchor sample_layer.json")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sample_layer.json: no string `model`"),
        "{err}"
    );
}
