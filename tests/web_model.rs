//! A tiny random Llama end to end, written once for the browser and the native build
//! (see tests/web/common.rs): its logits through the KV-cache session against the f64
//! CPU reference, and BoHA training steps through the async step, whose first loss is
//! the reference's and whose loss then falls.

#[path = "web/common.rs"]
mod common;

use boha::adapters::{AdapterSpec, Method};
use boha::graph::{TrainOptions, Trainer, IGNORE};
use boha::loaders::{random, Checkpoint};
use boha::model::kv_cache::{Model, Session};
use boha::model::reference::Reference;
use boha::rng::Rng;
use common::{assert_close, f32s};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// SmolLM2's architecture at toy sizes: 61 tokens, width 32 (4 heads of 8, 2 kv heads),
/// MLP 36, 2 layers, untied embeddings.
fn tiny() -> Checkpoint {
    let mut cfg = random::preset("smollm2-135m").unwrap();
    cfg.vocab_size = 61;
    cfg.hidden_size = 32;
    cfg.intermediate_size = 36;
    cfg.num_layers = 2;
    cfg.num_heads = 4;
    cfg.num_kv_heads = 2;
    cfg.head_dim = 8;
    cfg.tie_word_embeddings = false;
    random::checkpoint(cfg, "tiny").unwrap()
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
    for t in prefill..tokens.len() {
        let got = s
            .forward_async(&gpu, &tokens[t..t + 1], false)
            .await
            .unwrap();
        let what = format!("decode logits at {t}");
        assert_close(&what, &got, &f32s(&want[t * v..(t + 1) * v]), 2e-4);
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
    for _ in 0..12 {
        losses.push(tr.step_async(&gpu, &tokens, &tgt, 3e-2).await.unwrap());
    }
    common::web_log(&format!("losses: {losses:?}"));
    let first = losses[0];
    assert!(
        (first - want).abs() <= 1e-4 * want,
        "first loss {first}, reference {want}"
    );
    let last = *losses.last().unwrap();
    assert!(last < 0.95 * first, "loss {first} → {last}");
    // The factors moved: A (random) and B (from zero) both hold finite, non-zero values.
    for (name, t) in tr.parameters() {
        let values = gpu.download_async(t).await.unwrap();
        assert!(values.iter().all(|x| x.is_finite()), "{name} is not finite");
        assert!(values.iter().any(|&x| x != 0.0), "{name} is all zero");
    }
});
