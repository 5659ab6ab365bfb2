//! The study's presets: what is run, at which sizes. `smoke` is a wiring check on any
//! model in minutes (CI runs it on a tiny random model); `lavapipe` is the real study
//! sized for SmolLM2-135M on a CPU under lavapipe (many hours on two cores, so it is
//! meant to be run in parts, `--max-minutes`); `gpu` is the same study at the paper's
//! scale for SmolLM2-135M on an H100/H200, in parts of at most 8 minutes.

use crate::adapters::Method;
use crate::data::benchmarks::Benchmark;
use crate::eval::Scoring;
use crate::{Error, Result};

/// One single-task setting: train on `train` (mixed when several), test on each of
/// `tests`.
#[derive(Clone, Debug)]
pub struct Suite {
    pub name: &'static str,
    pub train: Vec<Benchmark>,
    pub tests: Vec<Benchmark>,
    /// Longest training example in tokens.
    pub max_len: usize,
}

/// The commonsense suite (the eight tasks, mixed as commonsense_170k) and GSM8K.
pub fn suites(commonsense_len: usize, gsm8k_len: usize) -> Vec<Suite> {
    let cs = Benchmark::COMMONSENSE.to_vec();
    vec![
        Suite {
            name: "commonsense",
            train: cs.clone(),
            tests: cs,
            max_len: commonsense_len,
        },
        Suite {
            name: "gsm8k",
            train: vec![Benchmark::Gsm8k],
            tests: vec![Benchmark::Gsm8k],
            max_len: gsm8k_len,
        },
    ]
}

/// Every size and choice of a study.
#[derive(Clone, Debug)]
pub struct Preset {
    pub name: &'static str,
    /// In the report's order; the first is the method the others are compared with.
    pub methods: Vec<Method>,
    /// The matched budget: r = b·r_b for every method (b for the grid kinds).
    pub rank: usize,
    pub blocks: usize,
    /// Projections adapted (`q,v` or `all`).
    pub targets: &'static str,
    pub steps: usize,
    pub batch: usize,
    pub warmup: usize,
    pub suites: Vec<Suite>,
    /// The learning-rate grid of the sweep, per method.
    pub lrs: Vec<(Method, Vec<f32>)>,
    /// Rates a sweep may add beyond each end of its grid while the best rate sits at
    /// that end ([`crate::study::sweep`]).
    pub sweep_extensions: usize,
    /// Seeds of the runs at the chosen rate (the first one is the sweep's).
    pub seeds: Vec<u64>,
    /// Most training records per suite (after the validation slice is taken).
    pub train_items: usize,
    /// The validation slice of the training part that chooses the rate.
    pub val_items: usize,
    /// Most test items per task (the test part's first by its fixed hash).
    pub test_items: usize,
    /// How multiple-choice answers are scored (GSM8K is always generated).
    pub scoring: Scoring,
    /// Token budget of a generated answer (GSM8K's worked solutions).
    pub max_new_tokens: usize,
    /// Generated answers decoded together ([`crate::eval::EvalOptions::batch`]).
    pub eval_batch: usize,
    /// Checkpoint every this many steps, so that a stopped run resumes.
    pub save_every: usize,
}

impl Preset {
    pub fn named(name: &str) -> Result<Preset> {
        match name {
            "smoke" => Ok(smoke()),
            "lavapipe" => Ok(lavapipe()),
            "gpu" => Ok(gpu()),
            _ => Err(Error::Invalid(format!(
                "unknown preset '{name}' (expected smoke, lavapipe or gpu)"
            ))),
        }
    }

    /// The grid of `method`.
    pub fn lrs_of(&self, method: Method) -> &[f32] {
        self.lrs
            .iter()
            .find(|(m, _)| *m == method)
            .map(|(_, l)| l.as_slice())
            .unwrap_or(&[])
    }

    pub fn suite(&self, name: &str) -> Option<&Suite> {
        self.suites.iter().find(|s| s.name == name)
    }
}

const METHODS: [Method; 5] = [
    Method::Boha,
    Method::Lora,
    Method::Hira,
    Method::Abba,
    Method::Additive,
];

/// The grids: BoHA's and HiRA's update is W0 ⊙ ΔM, so a step of their factors moves the
/// weight about |W0| (≈ 0.05 in SmolLM2) times as far as LoRA's does; their grid sits
/// one step (×3) higher, with the same spacing. ABBA and the additive control take
/// LoRA's grid.
fn grids(low: &[f32]) -> Vec<(Method, Vec<f32>)> {
    METHODS
        .iter()
        .map(|&m| {
            let g = match m {
                Method::Boha | Method::Hira => low.iter().map(|l| l * 3.0).collect(),
                _ => low.to_vec(),
            };
            (m, g)
        })
        .collect()
}

fn smoke() -> Preset {
    Preset {
        name: "smoke",
        methods: METHODS.to_vec(),
        rank: 4,
        blocks: 2,
        targets: "q,v",
        steps: 2,
        batch: 2,
        warmup: 0,
        // The tiny test tokenizers spell the benchmark prompts in hundreds of tokens.
        suites: suites(512, 512),
        lrs: grids(&[1e-3, 1e-2]),
        // Fixed unit counts for the tests; the walk has its own tests.
        sweep_extensions: 0,
        seeds: vec![0, 1],
        train_items: 16,
        val_items: 2,
        test_items: 3,
        scoring: Scoring::Loglik,
        max_new_tokens: 4,
        eval_batch: 2,
        save_every: 1,
    }
}

fn lavapipe() -> Preset {
    Preset {
        name: "lavapipe",
        methods: METHODS.to_vec(),
        rank: 8,
        blocks: 4,
        targets: "q,v",
        steps: 40,
        batch: 4,
        warmup: 4,
        // LLM-Adapters' cutoff. At 160, a third of the commonsense mix (BoolQ's passages,
        // HellaSwag's contexts) had no response token within the limit and was dropped,
        // so the adapter hardly saw those tasks.
        suites: suites(256, 256),
        lrs: grids(&[1e-3, 3e-3, 1e-2]),
        sweep_extensions: 2,
        seeds: vec![0, 1, 2],
        train_items: 160,
        val_items: 32,
        test_items: 300,
        scoring: Scoring::Loglik,
        max_new_tokens: 160,
        // 5.9× batch 1's tokens/s on lavapipe (README's `bench decode` record); at 16,
        // 3.8×.
        eval_batch: 64,
        save_every: 5,
    }
}

fn gpu() -> Preset {
    Preset {
        name: "gpu",
        methods: METHODS.to_vec(),
        rank: 32,
        blocks: 4,
        targets: "all",
        steps: 1000,
        batch: 16,
        warmup: 50,
        suites: suites(256, 512),
        lrs: grids(&[3e-4, 1e-3, 3e-3, 1e-2]),
        sweep_extensions: 2,
        seeds: vec![0, 1, 2],
        train_items: 16_000,
        val_items: 256,
        test_items: 1000,
        scoring: Scoring::Loglik,
        max_new_tokens: 256,
        eval_batch: 64,
        save_every: 100,
    }
}
