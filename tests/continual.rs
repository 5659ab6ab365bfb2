//! `boha continual` on a tiny model: two memorizable tasks (a true/false rule and a
//! one-digit answer), two methods; the JSON report, the stage runs it leaves, stage 2
//! continuing stage 1's adapter, and reuse of finished stages.

mod common;
mod model_specs;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::tiny_checkpoint::{temp_dir, write_tiny_hf};
use serde_json::{json, Value};

fn write(path: &Path, records: &[Value]) -> PathBuf {
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(path, text).unwrap();
    path.to_path_buf()
}

#[test]
fn two_stages_per_method_with_a_json_report() {
    if common::gpu().is_none() {
        return;
    }
    let (_, spec) = model_specs::specs()
        .into_iter()
        .find(|(n, _)| *n == "llama")
        .unwrap();
    let dir = temp_dir("continual");
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    write_tiny_hf(&m, &spec);
    let words = ["cat", "cats", "is", "of"];
    let first: Vec<Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| json!({"prompt": format!("{w} "), "completion": if i % 2 == 0 { "true" } else { "false" }, "task": "boolq"}))
        .collect();
    let second: Vec<Value> = words
        .iter()
        .enumerate()
        .map(|(i, w)| json!({"prompt": format!("{w}? "), "completion": format!("{}", i + 1), "task": "arith"}))
        .collect();
    let f = write(&dir.join("first.jsonl"), &first);
    let s = write(&dir.join("second.jsonl"), &second);
    let out = dir.join("runs");
    let args = |methods: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_boha"));
        c.args(["continual", "--model"]).arg(&m);
        c.arg("--first").arg(&f).arg("--second").arg(&s);
        c.arg("--eval-first").arg(&f).arg("--eval-second").arg(&s);
        c.args([
            "--methods",
            methods,
            "--rank",
            "4",
            "--blocks",
            "2",
            "--lr",
            "0.03",
        ]);
        c.args(["--steps", "6", "--batch", "4", "--max-len", "16"]);
        c.args(["--max-new-tokens", "4", "--json", "--out"])
            .arg(&out);
        c
    };
    let o = args("boha,lora").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let rows = v["results"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for (row, method) in rows.iter().zip(["boha", "lora"]) {
        assert_eq!(row["method"], method);
        for k in [
            "first_after_1",
            "first_after_2",
            "second_after_2",
            "second_after_1",
        ] {
            let a = row[k].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&a), "{k} = {a}");
        }
        for stage in ["stage1", "stage2"] {
            assert!(out
                .join(method)
                .join(stage)
                .join("adapter_config.json")
                .is_file());
        }
        let cfg: Value = serde_json::from_str(
            &std::fs::read_to_string(out.join(method).join("stage2/train_config.json")).unwrap(),
        )
        .unwrap();
        assert!(cfg["run"]["init_adapter"]
            .as_str()
            .unwrap()
            .ends_with("stage1"));
    }
    // Finished stages are reused: the same report again without training.
    let again = args("boha,lora").output().unwrap();
    assert!(again.status.success());
    assert_eq!(serde_json::from_slice::<Value>(&again.stdout).unwrap(), v);
    assert!(!String::from_utf8_lossy(&again.stderr).contains("steps, last loss"));

    let bad = args("boha,dora").output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("dora"));
}
