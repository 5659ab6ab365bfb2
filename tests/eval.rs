//! `boha eval` and the library's evaluation loop on tiny random checkpoints: the
//! per-record generations equal `generate`'s, the report counts and verdicts follow the
//! answer extractors, `--task` overrides, records without a task fail naming
//! `file:line`, adapters change the answers, and the command line's `--json`, `--out`
//! and `--adapter` errors.

mod common;
mod model_specs;

use std::path::{Path, PathBuf};
use std::process::Command;

use boha::adapters::{AdapterSpec, Method};
use boha::data::answer::{extract, is_correct, AnswerFormat};
use boha::data::jsonl::{read_jsonl, Sample};
use boha::data::template::{render, TextCodec};
use boha::eval::{
    check_tasks, evaluate, record_task, stop_strings, EvalOptions, EvalStop, Scoring,
};
use boha::generate::score::score;
use boha::generate::{eos_ids, generate, GenerateOptions, Sampling};
use boha::gpu::Gpu;
use boha::loaders::{load_checkpoint, Checkpoint};
use boha::model::kv_cache::Model;
use boha::model::transformer::Adapters;
use boha::rng::Rng;
use common::tiny_checkpoint::temp_dir;
use serde_json::Value;

/// A tiny model directory of one of the shared specs.
fn model_dir(arch: &str) -> PathBuf {
    model_specs::write_dir(arch, &format!("eval-{arch}"))
}

fn write_data(dir: &Path, lines: &[&str]) -> PathBuf {
    let p = dir.join("data.jsonl");
    std::fs::write(&p, lines.join("\n") + "\n").unwrap();
    p
}

/// Five records of every shape: completion (number and label tasks), Alpaca (longer
/// than the tiny model's 128 positions), chat, and a second number record.
const RECORDS: [&str; 5] = [
    r#"{"prompt": "What is the capital of France?", "completion": "The answer is 3.", "task": "arith", "answer": 3}"#,
    r#"{"prompt": "the cat of the cats", "completion": "the correct answer is answer2", "task": "choice"}"#,
    r#"{"instruction": "Is the cat big?", "output": "true", "task": "boolq"}"#,
    r#"{"messages": [{"role": "user", "content": "What is 2 + 2?"}, {"role": "assistant", "content": "4"}], "task": "gsm8k"}"#,
    r#"{"prompt": "capital of", "completion": "12", "task": "arith"}"#,
];

/// The prompt ids, built here from the rendering (BOS in front of raw text).
fn prompt_ids(ck: &Checkpoint, s: &Sample) -> (String, Vec<u32>) {
    let r = render(ck, &s.record).unwrap();
    let mut ids = Vec::new();
    if r.raw {
        ids.extend(ck.bos_for_raw_text());
    }
    ids.extend(TextCodec::encode(ck, &r.prompt).unwrap());
    (r.prompt, ids)
}

fn eval_all(
    gpu: &Gpu,
    model: &Model,
    ck: &Checkpoint,
    samples: &[Sample],
    opts: &EvalOptions,
) -> (boha::data::AccuracyReport, Vec<boha::eval::RecordResult>) {
    let mut seen = Vec::new();
    let (report, results) =
        evaluate(gpu, model, ck, samples, opts, &mut |r| seen.push(r.index)).unwrap();
    assert_eq!(seen, (0..samples.len()).collect::<Vec<_>>());
    (report, results)
}

#[test]
fn evaluate_matches_generate_and_scores() {
    let Some(gpu) = common::gpu() else { return };
    let mdir = model_dir("llama");
    let ck = load_checkpoint(&mdir).unwrap();
    let data = write_data(&temp_dir("eval-data"), &RECORDS);
    let samples = read_jsonl(&data).unwrap();
    let model = Model::load(&gpu, &ck).unwrap();
    // One record at a time, two decoded together (refilled as they end), all at once.
    let mut last = None;
    for batch in [1, 2, 16] {
        let opts = EvalOptions {
            max_new_tokens: 8,
            task: None,
            source: Some(data.clone()),
            batch,
            ..Default::default()
        };
        let (report, results) = eval_all(&gpu, &model, &ck, &samples, &opts);
        assert_eq!(results.len(), samples.len());
        for (s, r) in samples.iter().zip(&results) {
            let (prompt, ids) = prompt_ids(&ck, s);
            assert_eq!(r.line, s.line);
            assert_eq!(r.prompt, prompt);
            assert_eq!(r.prompt_tokens, ids.len(), "line {}", s.line);
            assert_eq!(r.task, s.task.clone().unwrap());
            assert_eq!(r.gold, s.gold());
            let format = AnswerFormat::for_task(&r.task).unwrap();
            assert_eq!(r.correct, is_correct(format, &r.generated, &r.gold));
            // A fresh `generate` on the same ids (the session is shared in evaluate).
            let g = generate(
                &gpu,
                &model,
                &ck,
                &ids,
                &GenerateOptions {
                    max_new_tokens: 8,
                    sampling: Sampling::default(),
                    stop_strings: stop_strings(&s.record),
                    eos: eos_ids(&ck),
                },
                &mut |_| {},
            )
            .unwrap();
            if r.stop == EvalStop::Answer {
                assert!(g.text.starts_with(&r.generated), "line {}", s.line);
                assert!(extract(format, &r.generated).is_some());
                assert_eq!(
                    r.correct,
                    is_correct(format, &g.text, &r.gold),
                    "an early stop keeps the verdict"
                );
            } else {
                assert_eq!(r.generated, g.text, "line {}", s.line);
                assert_eq!(r.new_tokens, g.tokens.len(), "line {}", s.line);
            }
        }
        // The Alpaca prompt is longer than the model's 128 positions: the cache stops it
        // as it stops generate (after 2 tokens), unless EOS or a label came first.
        assert!(results[2].prompt_tokens > 128);
        assert!(results[2].new_tokens <= 2);
        last = Some((report, results));
    }
    let (report, results) = last.unwrap();

    assert_eq!(report.n, 5);
    let right = results.iter().filter(|r| r.correct).count();
    assert_eq!(report.accuracy, right as f64 / 5.0);
    let tasks: Vec<&str> = report.per_task.keys().map(|k| k.as_str()).collect();
    assert_eq!(tasks, ["arith", "boolq", "choice", "gsm8k"]);
    assert_eq!(report.per_task["arith"].n, 2);
    for (task, score) in &report.per_task {
        let mine: Vec<_> = results.iter().filter(|r| &r.task == task).collect();
        let c = mine.iter().filter(|r| r.correct).count();
        assert_eq!(score.accuracy, c as f64 / mine.len() as f64);
    }

    // --task overrides every record's task.
    let over = EvalOptions {
        max_new_tokens: 2,
        task: Some("boolq".into()),
        source: None,
        ..Default::default()
    };
    let (report, results) = eval_all(&gpu, &model, &ck, &samples[..2], &over);
    assert_eq!(report.n, 2);
    assert_eq!(report.per_task.keys().collect::<Vec<_>>(), ["boolq"]);
    assert!(results.iter().all(|r| r.task == "boolq"));
    let bad = EvalOptions {
        max_new_tokens: 0,
        ..over
    };
    assert!(evaluate(&gpu, &model, &ck, &samples, &bad, &mut |_| {}).is_err());
}

#[test]
fn tasks_override_and_missing_tasks_name_the_line() {
    let dir = temp_dir("eval-tasks");
    let data = write_data(
        &dir,
        &[
            RECORDS[0],
            "",
            r#"{"prompt": "What is", "completion": "answer1"}"#,
        ],
    );
    let samples = read_jsonl(&data).unwrap();
    let opts = EvalOptions {
        source: Some(data.clone()),
        ..EvalOptions::default()
    };
    let (task, format) = record_task(&samples[0], &opts).unwrap();
    assert_eq!((task.as_str(), format), ("arith", AnswerFormat::Number));
    let e = check_tasks(&samples, &opts).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{}:3", data.display())) && e.contains("task"),
        "{e}"
    );
    let over = EvalOptions {
        task: Some("piqa".into()),
        ..opts.clone()
    };
    check_tasks(&samples, &over).unwrap();
    for s in &samples {
        let (t, f) = record_task(s, &over).unwrap();
        assert_eq!((t.as_str(), f), ("piqa", AnswerFormat::Piqa));
    }
    let unknown_override = EvalOptions {
        task: Some("poems".into()),
        ..opts.clone()
    };
    let e = check_tasks(&samples, &unknown_override)
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown task 'poems'"), "{e}");
    let data2 = write_data(
        &temp_dir("eval-tasks2"),
        &[r#"{"prompt": "x", "completion": "y", "task": "poems"}"#],
    );
    let samples2 = read_jsonl(&data2).unwrap();
    let opts2 = EvalOptions {
        source: Some(data2.clone()),
        ..EvalOptions::default()
    };
    let e = check_tasks(&samples2, &opts2).unwrap_err().to_string();
    assert!(
        e.contains(&format!("{}:1", data2.display())) && e.contains("unknown task"),
        "{e}"
    );
}

/// Saves a BoHA adapter with random (nonzero) factors on q, v, up and down.
fn save_adapter(gpu: &Gpu, ck: &Checkpoint, dir: &Path) {
    let model = Model::load(gpu, ck).unwrap();
    let spec = AdapterSpec::from_options(Method::Boha, Some(2), None, Some(2), None).unwrap();
    let ads = Adapters::new(gpu, &model.weights, spec, &["q,v,up,down"], 1).unwrap();
    let mut r = Rng::new(5);
    for (_, ad) in ads.iter() {
        gpu.write(&ad.a, &r.vec_f32(ad.a.len(), -1.0, 1.0)).unwrap();
        gpu.write(&ad.b, &r.vec_f32(ad.b.len(), -1.0, 1.0)).unwrap();
    }
    ads.save(gpu, dir, "tiny").unwrap();
}

#[test]
fn adapters_change_the_answers() {
    let Some(gpu) = common::gpu() else { return };
    let mdir = model_dir("qwen2");
    let ck = load_checkpoint(&mdir).unwrap();
    let adir = temp_dir("eval-adapter");
    save_adapter(&gpu, &ck, &adir);
    let samples = read_jsonl(&write_data(
        &temp_dir("eval-adapter-data"),
        &[RECORDS[0], RECORDS[1], RECORDS[4]],
    ))
    .unwrap();
    let opts = EvalOptions {
        max_new_tokens: 6,
        task: Some("arith".into()),
        source: None,
        ..Default::default()
    };
    let texts = |model: &Model| -> Vec<(String, usize)> {
        eval_all(&gpu, model, &ck, &samples, &opts)
            .1
            .into_iter()
            .map(|r| (r.generated, r.new_tokens))
            .collect()
    };
    let plain = texts(&Model::load(&gpu, &ck).unwrap());
    for merged in [false, true] {
        let mut model = Model::load(&gpu, &ck).unwrap();
        let ads = Adapters::load(&gpu, &model.weights, &adir).unwrap();
        model.attach(&gpu, ads, merged).unwrap();
        assert_ne!(texts(&model), plain, "merged: {merged}");
    }
}

/// Flags with path values, e.g. `("--model", dir)`.
type PathArgs<'a> = Vec<(&'a str, &'a Path)>;

fn boha(args: &[&str], paths: &[(&str, &Path)]) -> std::process::Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_boha"));
    c.args(args);
    for (flag, p) in paths {
        c.arg(flag).arg(p);
    }
    c.output().unwrap()
}

#[test]
fn cli_eval_json_and_out() {
    if common::gpu().is_none() {
        return;
    }
    let mdir = model_dir("llama");
    let dir = temp_dir("eval-cli");
    let data = write_data(&dir, &[RECORDS[0], RECORDS[1], RECORDS[4]]);
    let out = dir.join("results.jsonl");
    let o = boha(
        &["eval", "--json", "--max-new-tokens", "3", "--limit", "2"],
        &[("--model", &mdir), ("--data", &data), ("--out", &out)],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(keys, ["accuracy", "n", "per_task"]);
    assert_eq!(v["n"], 2);
    let per: Vec<&str> = v["per_task"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(per, ["arith", "choice"]);
    assert_eq!(v["per_task"]["arith"]["n"], 1);
    assert!(v["per_task"]["choice"]["accuracy"].is_number());
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    for (i, l) in lines.iter().enumerate() {
        let keys: Vec<&str> = l.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        assert_eq!(
            keys,
            ["correct", "generated", "gold", "line", "prompt", "task"]
        );
        assert_eq!(l["line"], i + 1);
    }
    assert_eq!(lines[0]["gold"], "3");
    assert_eq!(lines[1]["prompt"], "the cat of the cats");
    let acc = v["accuracy"].as_f64().unwrap();
    let right = lines.iter().filter(|l| l["correct"] == true).count();
    assert_eq!(acc, right as f64 / 2.0);

    // One record at a time gives the same answers; no slot at all is refused.
    // The first two records with `extra` flags, answers to `out`.
    let eval_to = |out: &Path, extra: &[&str]| {
        let mut args = vec!["eval", "--max-new-tokens", "3", "--limit", "2"];
        args.extend(extra);
        let o = boha(
            &args,
            &[("--model", &mdir), ("--data", &data), ("--out", out)],
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o
    };
    let one = dir.join("one.jsonl");
    eval_to(&one, &["--batch", "1"]);
    assert_eq!(std::fs::read_to_string(&one).unwrap(), text);
    // --gold-loglik adds each record's gold score to its line and prints their mean.
    let gold = dir.join("gold.jsonl");
    let o = eval_to(&gold, &["--gold-loglik"]);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("gold log-likelihood: -") && stdout.contains("over 2 generated records"),
        "{stdout}"
    );
    for (l, plain) in std::fs::read_to_string(&gold).unwrap().lines().zip(&lines) {
        let mut v: Value = serde_json::from_str(l).unwrap();
        assert!(v["gold_loglik"].as_f64().is_some_and(|x| x < 0.0), "{v}");
        v.as_object_mut().unwrap().remove("gold_loglik");
        assert_eq!(&v, plain);
    }
    let o = boha(
        &["eval", "--batch", "0"],
        &[("--model", &mdir), ("--data", &data)],
    );
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("--batch must be at least 1"),
        "{e}"
    );
}

#[test]
fn cli_adapter_on_score_and_generate() {
    let Some(gpu) = common::gpu() else { return };
    let mdir = model_dir("llama");
    let ck = load_checkpoint(&mdir).unwrap();
    let adir = temp_dir("eval-cli-adapter");
    save_adapter(&gpu, &ck, &adir);
    drop(gpu);
    let nll = |adapter: bool, merged: bool| -> f64 {
        let mut args = vec![
            "score",
            "--json",
            "--text",
            "What is the capital of France?",
        ];
        if merged {
            args.push("--merged");
        }
        let mut paths: PathArgs = vec![("--model", &mdir)];
        if adapter {
            paths.push(("--adapter", &adir));
        }
        let o = boha(&args, &paths);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: Value = serde_json::from_slice(&o.stdout).unwrap();
        v["mean_nll"].as_f64().unwrap()
    };
    let (plain, adapted) = (nll(false, false), nll(true, true));
    assert!((plain - adapted).abs() > 1e-3, "{plain} vs {adapted}");
    let o = boha(
        &["generate", "--prompt", "the cat", "--max-new-tokens", "3"],
        &[("--model", &mdir), ("--adapter", &adir)],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

#[test]
fn cli_bad_adapter_is_a_one_line_error() {
    // The adapter is read before the device is opened: no GPU needed.
    let mdir = model_dir("llama");
    let dir = temp_dir("eval-cli-bad");
    let data = write_data(&dir, &[RECORDS[0]]);
    let missing = dir.join("no-such-adapter");
    let cases: Vec<(Vec<&str>, PathArgs)> = vec![
        (
            vec!["eval"],
            vec![
                ("--model", &mdir),
                ("--data", &data),
                ("--adapter", &missing),
            ],
        ),
        (
            vec!["generate", "--prompt", "hi"],
            vec![("--model", &mdir), ("--adapter", &missing)],
        ),
        (
            vec!["score", "--text", "hi"],
            vec![("--model", &mdir), ("--adapter", &missing)],
        ),
    ];
    for (args, paths) in &cases {
        let o = boha(args, paths);
        assert!(!o.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{args:?}: {err}");
        assert!(
            lines[0].starts_with("error:") && lines[0].contains("no-such-adapter"),
            "{err}"
        );
    }
    // --merged without an adapter, and a record without a task.
    let o = boha(
        &["eval", "--merged"],
        &[("--model", &mdir), ("--data", &data)],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--adapter"));
    let untasked = write_data(
        &temp_dir("eval-cli-untasked"),
        &[RECORDS[0], r#"{"prompt": "a", "completion": "b"}"#],
    );
    let o = boha(&["eval"], &[("--model", &mdir), ("--data", &untasked)]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("{}:2", untasked.display())), "{err}");
}

/// Loglik scoring: every candidate's score equals the mean log-likelihood of its
/// continuation computed from one full-sequence prefill, the best one is chosen, the
/// number record is still generated, and a label missing from the output is an error
/// naming the record.
#[test]
fn loglik_scores_equal_full_prefills() {
    let Some(gpu) = common::gpu() else { return };
    let mdir = model_dir("llama");
    let ck = load_checkpoint(&mdir).unwrap();
    let lines = [
        r#"{"instruction": "Which is right?\n\nAnswer1: a Answer2: b Answer3: c\n\nAnswer format: answer1/answer2/answer3", "output": "the correct answer is answer2", "task": "arc-e", "answer": "answer2"}"#,
        r#"{"instruction": "Is it so?\n\nAnswer format: true/false", "output": "the correct answer is false", "task": "boolq", "answer": "false"}"#,
        r#"{"prompt": "fill in", "completion": "option1", "task": "winogrande"}"#,
        RECORDS[4],
    ];
    let data = write_data(&temp_dir("eval-loglik"), &lines);
    let samples = read_jsonl(&data).unwrap();
    let model = Model::load(&gpu, &ck).unwrap();
    let opts = EvalOptions {
        scoring: Scoring::Loglik,
        max_new_tokens: 3,
        source: Some(data.clone()),
        ..EvalOptions::default()
    };
    let (report, results) = eval_all(&gpu, &model, &ck, &samples, &opts);
    assert_eq!(report.n, 4);
    let want_labels: [&[&str]; 3] = [
        &["answer1", "answer2", "answer3"],
        &["true", "false"],
        &["option1", "option2"],
    ];
    for (i, r) in results.iter().take(3).enumerate() {
        assert_eq!(r.stop, EvalStop::Scored);
        let labels: Vec<&str> = r.choices.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, want_labels[i]);
        let (_, prompt) = prompt_ids(&ck, &samples[i]);
        let target = samples[i].target_text();
        let gold = r.gold.clone();
        let mut best = (f64::NEG_INFINITY, String::new());
        for (label, got) in &r.choices {
            let text = target.replacen(&gold, label, 1);
            let rendered = match &samples[i].record {
                boha::data::jsonl::Record::Alpaca {
                    instruction, input, ..
                } => boha::data::jsonl::Record::Alpaca {
                    instruction: instruction.clone(),
                    input: input.clone(),
                    output: text,
                },
                boha::data::jsonl::Record::Completion { prompt, .. } => {
                    boha::data::jsonl::Record::Completion {
                        prompt: prompt.clone(),
                        completion: text,
                    }
                }
                other => other.clone(),
            };
            let cont = TextCodec::encode(&ck, &render(&ck, &rendered).unwrap().response).unwrap();
            let mut all = prompt.clone();
            all.extend(&cont);
            let s = score(&gpu, &model, &all).unwrap();
            let want = -s.nll[prompt.len() - 1..].iter().sum::<f64>() / cont.len() as f64;
            assert!((got - want).abs() < 1e-4, "{label}: {got} vs {want}");
            if want > best.0 + 1e-9 {
                best = (want, label.clone());
            }
        }
        assert_eq!(r.generated, best.1);
        assert_eq!(r.correct, r.generated == gold);
    }
    assert_ne!(
        results[3].stop,
        EvalStop::Scored,
        "a number task is generated"
    );
    assert!(results[3].choices.is_empty());

    let bad = write_data(
        &temp_dir("eval-loglik-bad"),
        &[
            r#"{"prompt": "p", "completion": "no label here", "task": "piqa", "answer": "solution1"}"#,
        ],
    );
    let e = evaluate(
        &gpu,
        &model,
        &ck,
        &read_jsonl(&bad).unwrap(),
        &EvalOptions {
            source: Some(bad.clone()),
            ..opts.clone()
        },
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("data.jsonl:1") && e.contains("solution1"), "{e}");
}

/// The gold response's log-likelihood per token equals a fresh full prefill's, at batch
/// 1 and in a decode batch, and scoring it leaves the generated answers as they were.
#[test]
fn gold_loglik_equals_a_full_prefill_and_leaves_answers_alone() {
    let Some(gpu) = common::gpu() else { return };
    let mdir = model_dir("llama");
    let ck = load_checkpoint(&mdir).unwrap();
    let lines = [RECORDS[0], RECORDS[1], RECORDS[3], RECORDS[4]];
    let data = write_data(&temp_dir("eval-gold"), &lines);
    let samples = read_jsonl(&data).unwrap();
    let model = Model::load(&gpu, &ck).unwrap();
    for batch in [1, 4] {
        let plain = EvalOptions {
            max_new_tokens: 6,
            batch,
            ..EvalOptions::default()
        };
        let (_, without) = eval_all(&gpu, &model, &ck, &samples, &plain);
        let with_gold = EvalOptions {
            gold_loglik: true,
            ..plain.clone()
        };
        let (_, with) = eval_all(&gpu, &model, &ck, &samples, &with_gold);
        for (i, (a, b)) in without.iter().zip(&with).enumerate() {
            assert_eq!(a.generated, b.generated, "batch {batch}, record {i}");
            assert_eq!(a.gold_loglik, None);
            let (_, prompt) = prompt_ids(&ck, &samples[i]);
            let gold =
                TextCodec::encode(&ck, &render(&ck, &samples[i].record).unwrap().response).unwrap();
            let mut all = prompt.clone();
            all.extend(&gold);
            let s = score(&gpu, &model, &all).unwrap();
            let want = -s.nll[prompt.len() - 1..].iter().sum::<f64>() / gold.len() as f64;
            let got = b.gold_loglik.expect("a generated record's gold is scored");
            assert!(
                (got - want).abs() < 1e-4,
                "batch {batch}, record {i}: {got} vs {want}"
            );
            assert_eq!(b.to_json()["gold_loglik"], serde_json::json!(got));
        }
    }
    // Scored answer choices have no gold score of their own.
    let (_, scored) = eval_all(
        &gpu,
        &model,
        &ck,
        &samples[1..2],
        &EvalOptions {
            scoring: Scoring::Loglik,
            gold_loglik: true,
            ..EvalOptions::default()
        },
    );
    assert_eq!(scored[0].gold_loglik, None);
}

/// Ranked choices (a record's `rc`): each choice's score is its continuation's summed
/// log-likelihood after its own context, from one full prefill of `[BOS] context
/// continuation`, divided by the continuation's characters where the norm says so;
/// the best one is chosen and named by the record's label; choices with their own
/// contexts (WinoGrande's) are scored the same way; the labels stand in when a record
/// has none.
#[test]
fn ranked_choices_equal_full_prefills() {
    let Some(gpu) = common::gpu() else { return };
    let mdir = model_dir("llama");
    let ck = load_checkpoint(&mdir).unwrap();
    let shared = r#"{"instruction": "Which?\n\nAnswer1: a Answer2: b Answer3: c\n\nAnswer format: answer1/answer2/answer3", "output": "the correct answer is answer3", "task": "arc-e", "answer": "answer3", "rc": {"choices": [{"context": "Question: the cat\nAnswer:", "continuation": " of the cats"}, {"context": "Question: the cat\nAnswer:", "continuation": " capital"}, {"context": "Question: the cat\nAnswer:", "continuation": " is big France of"}], "gold": 2, "norm": "chars"}}"#;
    let own = r#"{"prompt": "fill in", "completion": "option1", "task": "winogrande", "answer": "option1", "rc": {"choices": [{"context": "the cat of the", "continuation": " cats are big."}, {"context": "the capital of the", "continuation": " cats are big."}], "gold": 0, "norm": "none"}}"#;
    let data = write_data(&temp_dir("eval-ranked"), &[shared, own]);
    let samples = read_jsonl(&data).unwrap();
    let model = Model::load(&gpu, &ck).unwrap();
    for batch in [1, 4] {
        let opts = EvalOptions {
            scoring: Scoring::Loglik,
            batch,
            ..EvalOptions::default()
        };
        let (report, results) = eval_all(&gpu, &model, &ck, &samples, &opts);
        assert_eq!(report.n, 2);
        for (s, r) in samples.iter().zip(&results) {
            let rc = s.rc.as_ref().unwrap();
            assert_eq!(r.stop, EvalStop::Scored);
            assert_eq!(r.choices.len(), rc.choices.len());
            let mut best = (f64::NEG_INFINITY, 0);
            for (k, ((_, got), c)) in r.choices.iter().zip(&rc.choices).enumerate() {
                let mut all: Vec<u32> = ck.bos_for_raw_text().into_iter().collect();
                all.extend(TextCodec::encode(&ck, &c.context).unwrap());
                let n = all.len();
                all.extend(TextCodec::encode(&ck, &c.continuation).unwrap());
                let sum = -score(&gpu, &model, &all).unwrap().nll[n - 1..]
                    .iter()
                    .sum::<f64>();
                let want = match rc.norm {
                    boha::data::ranked::Norm::Chars => sum / c.continuation.chars().count() as f64,
                    boha::data::ranked::Norm::None => sum,
                };
                assert!((got - want).abs() < 1e-4, "choice {k}: {got} vs {want}");
                if want > best.0 + 1e-9 {
                    best = (want, k);
                }
            }
            assert_eq!(r.generated, r.choices[best.1].0);
            assert_eq!(r.correct, best.1 == rc.gold);
            assert_eq!(r.prompt, rc.choices[0].context);
        }
        let labels = |r: &boha::eval::RecordResult| -> Vec<String> {
            r.choices.iter().map(|(l, _)| l.clone()).collect()
        };
        assert_eq!(labels(&results[0]), ["answer1", "answer2", "answer3"]);
        assert_eq!(results[0].gold, "answer3");
        // The completion record offers no label list: WinoGrande's own labels serve.
        assert_eq!(labels(&results[1]), ["option1", "option2"]);
        assert_eq!(results[1].gold, "option1");
    }
}
