//! `boha finetune` killed with SIGKILL at several moments (as soon as the first
//! checkpoint appears, then at seeded pseudo-random times during resumed runs): after
//! every kill the checkpoint must read back (`read_state`), no finished adapter may be
//! there, and `--resume` must end with an adapter_model.safetensors byte-identical to an
//! uninterrupted run with the same arguments.

mod common;
mod model_specs;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use boha::rng::Rng;
use boha::train::checkpoint::read_state;
use common::tiny_checkpoint::{temp_dir, write_tiny_hf};
use serde_json::json;

const STEPS: u32 = 40;

fn model(dir: &Path) -> PathBuf {
    let (_, spec) = model_specs::specs()
        .into_iter()
        .find(|(n, _)| *n == "llama")
        .unwrap();
    let m = dir.join("model");
    std::fs::create_dir_all(&m).unwrap();
    write_tiny_hf(&m, &spec);
    m
}

fn data(dir: &Path) -> PathBuf {
    let words = ["cat", "cats", "is", "of", "What"];
    let mut text = String::new();
    for i in 0..12 {
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

fn args(m: &Path, d: &Path, out: &Path, resume: bool) -> Vec<String> {
    let mut v: Vec<String> = [
        "finetune",
        "--model",
        m.to_str().unwrap(),
        "--data",
        d.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--method",
        "boha",
        "--blocks",
        "2",
        "--block-rank",
        "2",
        "--lr",
        "0.01",
        "--batch",
        "2",
        "--grad-accum",
        "2",
        "--max-len",
        "24",
        "--seed",
        "5",
        "--warmup",
        "3",
        "--save-every",
        "1",
        "--steps",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(STEPS.to_string());
    if resume {
        v.push("--resume".into());
    }
    v
}

fn spawn(a: &[String]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(a)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start boha")
}

fn run_to_end(a: &[String]) {
    let out = spawn(a).wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{a:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The step of the checkpoint in `out`, if one is there.
fn checkpoint_step(out: &Path) -> Option<u32> {
    let p = out.join("checkpoint.safetensors");
    p.is_file()
        .then(|| read_state(&p).expect("the checkpoint reads back").step)
}

/// Kills `child` with SIGKILL once `when` says so (polled every few ms); returns false if
/// the run had already ended.
fn kill_when(mut child: Child, mut when: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            assert!(status.success(), "the run failed before the kill: {err}");
            return false;
        }
        if when() {
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            return true;
        }
        assert!(
            Instant::now() < deadline,
            "the run never reached the kill point"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// After a kill: the checkpoint is valid, and the run does not look finished.
fn check_after_kill(out: &Path, what: &str) -> Option<u32> {
    let step = checkpoint_step(out);
    // The finished adapter appears only at the end (a kill in the last moments may
    // catch a run that had saved its last step).
    assert!(
        !out.join("adapter_config.json").exists() || step == Some(STEPS),
        "{what}: a killed run looks finished"
    );
    for e in std::fs::read_dir(out).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        // Temporary files of an interrupted atomic write may remain; nothing else new.
        assert!(
            [
                "checkpoint.safetensors",
                "metrics.jsonl",
                "train_config.json",
                "loss.png",
                "adapter_model.safetensors",
            ]
            .contains(&name.as_str())
                || name.starts_with('.'),
            "{what}: unexpected {name}"
        );
    }
    eprintln!("{what}: checkpoint at step {step:?}");
    step
}

#[test]
fn killed_runs_resume_to_the_uninterrupted_adapter() {
    if common::gpu().is_none() {
        return;
    }
    let dir = temp_dir("kill");
    let m = model(&dir);
    let d = data(&dir);
    let reference = dir.join("reference");
    let t0 = Instant::now();
    run_to_end(&args(&m, &d, &reference, false));
    let full = t0.elapsed();
    eprintln!("uninterrupted run: {full:?}");
    let want = std::fs::read(reference.join("adapter_model.safetensors")).unwrap();

    let out = dir.join("killed");
    let mut rng = Rng::new(20261128);
    // 1: as soon as the first checkpoint appears.
    let killed = kill_when(spawn(&args(&m, &d, &out, false)), || {
        out.join("checkpoint.safetensors").exists()
    });
    assert!(killed, "the first run ended before its first checkpoint");
    let mut last = check_after_kill(&out, "kill 1").expect("a checkpoint");
    // 2..: resumed runs killed at seeded times: after a random delay, or once the
    // checkpoint reaches a random step plus a random fraction of a step.
    for k in 2..=5 {
        let a = args(&m, &d, &out, true);
        let killed = if k % 2 == 0 {
            let delay = Duration::from_secs_f64(rng.range(0.05, 1.0) * full.as_secs_f64());
            let start = Instant::now();
            kill_when(spawn(&a), || start.elapsed() >= delay)
        } else {
            let target = last + 1 + rng.below(((STEPS - last) / 3).max(1) as usize) as u32;
            let extra = Duration::from_millis(rng.below(40) as u64);
            let mut reached: Option<Instant> = None;
            kill_when(spawn(&a), || {
                if reached.is_none() && checkpoint_step(&out).is_some_and(|s| s >= target) {
                    reached = Some(Instant::now());
                }
                reached.is_some_and(|t| t.elapsed() >= extra)
            })
        };
        if !killed {
            eprintln!("kill {k}: the run finished first");
            break;
        }
        let step = check_after_kill(&out, &format!("kill {k}")).expect("a checkpoint");
        assert!(
            step >= last,
            "the checkpoint went back from {last} to {step}"
        );
        last = step;
        if last >= STEPS {
            break;
        }
    }
    if !out.join("adapter_config.json").exists() {
        run_to_end(&args(&m, &d, &out, true));
    }
    let got = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    assert!(
        got == want,
        "the killed and resumed run differs from the uninterrupted one"
    );
}
