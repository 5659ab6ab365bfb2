//! A tiny random Llama end to end, written once for the browser and the native build
//! (see tests/web/common.rs): its logits through the KV-cache session against the f64
//! CPU reference, and BoHA training steps through the async step, whose first loss is
//! the reference's and whose loss then falls.
//!
//! A Hugging Face checkpoint's files made in memory load from bytes as a page would load
//! them, and give the same logits.
//!
//! The logits and training tests also compare with what the native build computed:
//! tests/web/native_tiny.json holds the native logits, losses and trained adapter. The
//! native run of these tests checks that file against itself within the same tolerance,
//! so the file cannot go stale unnoticed; `BOHA_BLESS=1 cargo test --test web_model` rewrites it after a
//! change that moves the numbers on purpose.

#[path = "web/common.rs"]
mod common;

use boha::adapters::{AdapterSpec, Method};
use boha::graph::{TrainOptions, Trainer, IGNORE};
use boha::loaders::hf::load_hf_files;
use boha::loaders::{random, Checkpoint};
use boha::model::export;
use boha::model::kv_cache::{Model, Session};
use boha::model::reference::Reference;
use boha::rng::Rng;
use common::{assert_close, f32s};
use std::collections::BTreeMap;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// `random:tiny` (SmolLM2's architecture at toy sizes) with untied embeddings, so the
/// LM head is a weight of its own.
fn tiny() -> Checkpoint {
    let mut cfg = random::preset("tiny").unwrap();
    cfg.tie_word_embeddings = false;
    random::checkpoint(cfg, "tiny").unwrap()
}

/// How far the browser's numbers may stray from the native build's: the same kernels in
/// f32 on two WebGPU implementations differ only in the order of their sums.
const NATIVE_TOL: f32 = 1e-5;

/// What the native build computed on the tiny model (tests/web/native_tiny.json).
#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Native {
    /// The logits of every position, prefill then decode, row after row.
    logits: Vec<f32>,
    /// The training loss of each step.
    losses: Vec<f32>,
    /// Each adapter factor by its name (`layers.0.q.A`, …) after [`COMPARED_STEPS`] steps.
    adapter: BTreeMap<String, Vec<f32>>,
}

#[cfg(not(target_arch = "wasm32"))]
const NATIVE_FILE: &str = "tests/web/native_tiny.json";

/// The steps after which the adapter is compared with the native one. AdamW divides each
/// gradient by its own running scale, so an element whose gradient is nearly zero takes a
/// full step in a direction that rounding can decide: the two builds drift apart a little
/// with every step, and the comparison is made while that drift is still rounding's.
const COMPARED_STEPS: usize = 4;

fn native() -> Native {
    serde_json::from_str(include_str!("web/native_tiny.json")).expect("tests/web/native_tiny.json")
}

/// Compares one part of the run with the native file, or, natively with
/// `BOHA_BLESS=1`, writes it there.
fn check_native(what: &str, got: &[f32], pick: fn(&mut Native) -> &mut Vec<f32>) {
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var_os("BOHA_BLESS").is_some() {
        bless(|n| *pick(n) = got.to_vec());
        return;
    }
    let mut n = native();
    let want = pick(&mut n);
    assert_close(
        &format!("{what} against the native build"),
        got,
        want,
        NATIVE_TOL,
    );
}

/// Rewrites one part of tests/web/native_tiny.json (the tests run in parallel, so each
/// reads the file afresh and replaces only its own part under a lock).
#[cfg(not(target_arch = "wasm32"))]
fn bless(set: impl FnOnce(&mut Native)) {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = LOCK.lock().unwrap();
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(NATIVE_FILE);
    let mut n: Native = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    set(&mut n);
    std::fs::write(&path, serde_json::to_string_pretty(&n).unwrap() + "\n").unwrap();
    common::web_log(&format!("wrote {NATIVE_FILE}"));
}

web_test!(tiny_model_logits_match_reference, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let ck = tiny();
    let v = ck.config.vocab_size;
    let mut rng = Rng::new(7);
    let tokens: Vec<u32> = (0..9).map(|_| rng.below(v) as u32).collect();
    let want = Reference::new(&ck).unwrap().logits(&tokens, 1).unwrap();
    let model = Model::load(&gpu, &ck).unwrap();
    let mut s = Session::new(&gpu, &model, 12).unwrap();
    let prefill = 7;
    let got = s
        .forward_async(&gpu, &tokens[..prefill], true)
        .await
        .unwrap();
    assert_close("prefill logits", &got, &f32s(&want[..prefill * v]), 2e-4);
    let mut all = got;
    for t in prefill..tokens.len() {
        let got = s
            .forward_async(&gpu, &tokens[t..t + 1], false)
            .await
            .unwrap();
        let what = format!("decode logits at {t}");
        assert_close(&what, &got, &f32s(&want[t * v..(t + 1) * v]), 2e-4);
        all.extend(got);
    }
    check_native("logits", &all, |n| &mut n.logits);
});

/// `ck` as a Hugging Face checkpoint's files, made in memory as a page would be handed
/// them: config.json, model.safetensors (f32) and tokenizer.json.
fn hf_files(ck: &Checkpoint) -> Vec<(String, Vec<u8>)> {
    let config = export::hf_config(&ck.config).unwrap().to_string();
    let tokenizer = ck.tokenizer.to_string(false).unwrap();
    let stored: Vec<(String, Vec<usize>, Vec<u8>)> = ck
        .tensors
        .iter()
        .map(|(name, t)| {
            let hf = export::hf_tensor_name(name, ck.config.architecture).unwrap();
            let values = t.to_f32().unwrap();
            let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (hf, t.shape.clone(), bytes)
        })
        .collect();
    let views = stored.iter().map(|(name, shape, bytes)| {
        let view =
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytes);
        (name.clone(), view.unwrap())
    });
    let weights = safetensors::tensor::serialize(views, None).unwrap();
    vec![
        ("config.json".into(), config.into_bytes()),
        ("model.safetensors".into(), weights),
        ("tokenizer.json".into(), tokenizer.into_bytes()),
    ]
}

/// The logits of every position of `tokens` through a fresh session.
async fn all_logits(gpu: &boha::gpu::Gpu, ck: &Checkpoint, tokens: &[u32]) -> Vec<f32> {
    let model = Model::load(gpu, ck).unwrap();
    let mut s = Session::new(gpu, &model, tokens.len()).unwrap();
    s.forward_async(gpu, tokens, true).await.unwrap()
}

web_test!(hugging_face_files_from_bytes_load_the_same_model, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let ck = tiny();
    let loaded = load_hf_files(std::path::Path::new("tiny-hf"), hf_files(&ck)).unwrap();
    assert_eq!(loaded.config.num_layers, ck.config.num_layers);
    assert_eq!(loaded.tensors.len(), ck.tensors.len());
    let text = "t1 t5 t40 t96";
    let tokens = ck.encode(text).unwrap();
    assert_eq!(loaded.encode(text).unwrap(), tokens, "the tokenizer");
    // The same f32 weights through the same kernels: the same logits.
    let want = all_logits(&gpu, &ck, &tokens).await;
    let got = all_logits(&gpu, &loaded, &tokens).await;
    assert_close("logits of the files loaded from bytes", &got, &want, 1e-6);
});

// Every adapter kind trains in the browser at the same budget (r = 4 on q and v; the
// grid kinds as 2 × 2 blocks of rank 2): `Trainer::new_async` builds it (ABBA's
// initialisation reads W0 back, which the browser must await), and a few steps lower
// the loss.
web_test!(every_adapter_kind_trains, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let ck = tiny();
    let (batch, seq) = (2, 7);
    let mut rng = Rng::new(5);
    let v = ck.config.vocab_size;
    let tokens: Vec<u32> = (0..batch * seq).map(|_| rng.below(v) as u32).collect();
    let tgt: Vec<u32> = (0..batch * seq).map(|_| rng.below(v) as u32).collect();
    for method in Method::ALL {
        let blocks = method.kind().has_grid().then_some(2);
        let spec = AdapterSpec::from_options(method, blocks, Some(4), None, None).unwrap();
        let opts = TrainOptions::default();
        let mut tr = Trainer::new_async(&gpu, &ck, spec, &["q", "v"], batch, seq, opts)
            .await
            .unwrap();
        let mut losses = Vec::new();
        for _ in 0..6 {
            losses.push(tr.step_async(&gpu, &tokens, &tgt, 3e-2).await.unwrap());
        }
        common::web_log(&format!("{}: losses {losses:?}", method.name()));
        let (first, last) = (losses[0], losses[5]);
        assert!(last < first, "{}: loss {first} → {last}", method.name());
    }
});

web_test!(boha_training_steps_lower_the_loss, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let ck = tiny();
    let (batch, seq) = (2, 7);
    let spec = AdapterSpec {
        method: Method::Boha,
        blocks: 2,
        block_rank: 2,
        scale: 1.0,
    };
    let targets = ["q", "v", "down"];
    let opts = TrainOptions::default();
    let mut tr = Trainer::new(&gpu, &ck, spec, &targets, batch, seq, opts).unwrap();
    let mut rng = Rng::new(2);
    let v = ck.config.vocab_size;
    let tokens: Vec<u32> = (0..batch * seq).map(|_| rng.below(v) as u32).collect();
    let mut tgt: Vec<u32> = (0..batch * seq).map(|_| rng.below(v) as u32).collect();
    tgt[0] = IGNORE;
    // A fresh adapter (B = 0) leaves the model as it is: the first step's loss, taken
    // before its update, is the base model's.
    let want = Reference::new(&ck)
        .unwrap()
        .loss(&tokens, &tgt, batch)
        .unwrap() as f32;
    let mut losses = Vec::new();
    let mut adapter = BTreeMap::new();
    for step in 0..12 {
        losses.push(tr.step_async(&gpu, &tokens, &tgt, 3e-2).await.unwrap());
        if step + 1 == COMPARED_STEPS {
            for (name, t) in tr.parameters() {
                adapter.insert(name, gpu.download_async(t).await.unwrap());
            }
        }
    }
    common::web_log(&format!("losses: {losses:?}"));
    let first = losses[0];
    assert!(
        (first - want).abs() <= 1e-4 * want,
        "first loss {first}, reference {want}"
    );
    let last = *losses.last().unwrap();
    assert!(last < 0.95 * first, "loss {first} → {last}");
    check_native("losses", &losses, |n| &mut n.losses);
    // The factors moved: A (random) and B (from zero) both hold finite, non-zero values.
    for (name, t) in tr.parameters() {
        let values = gpu.download_async(t).await.unwrap();
        assert!(values.iter().all(|x| x.is_finite()), "{name} is not finite");
        assert!(values.iter().any(|&x| x != 0.0), "{name} is all zero");
    }
    // The adapter after the first steps is the one the native build trained.
    #[cfg(not(target_arch = "wasm32"))]
    if std::env::var_os("BOHA_BLESS").is_some() {
        bless(|n| n.adapter = adapter);
        return;
    }
    let want = native().adapter;
    let names = |m: &BTreeMap<String, Vec<f32>>| m.keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(&adapter),
        names(&want),
        "adapter factors against the native build"
    );
    let mut worst = 0f32;
    for (name, got) in &adapter {
        let what = format!("{name} against the native build");
        assert_close(&what, got, &want[name], NATIVE_TOL);
        worst = got
            .iter()
            .zip(&want[name])
            .fold(worst, |m, (g, w)| m.max((g - w).abs()));
    }
    common::web_log(&format!(
        "adapter after {COMPARED_STEPS} steps: max |browser − native| = {worst:e}"
    ));
});
