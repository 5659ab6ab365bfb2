//! Helpers shared by the integration tests.
#![allow(dead_code)]

use boha::gpu::{Gpu, GpuOptions};
use boha::loaders::Checkpoint;
use boha::model::reference::Reference;
use boha::model::transformer::Adapters;
use boha::rng::Rng;

pub mod olmo_samples;
pub mod tiny_checkpoint;

// The helpers the browser suites share (tests/web/common.rs): the quiet-headless hook
// that runs before the harness, and the comparisons.
#[path = "../web/common.rs"]
mod web;
/// max |got − want| ≤ tol · max |want| (the browser suites' `assert_rel_close`).
#[allow(unused_imports)]
pub use web::assert_rel_close as assert_close;

/// The test device; without one the test fails, or is skipped (`None`) with
/// `BOHA_SKIP_GPU=1` (see `boha::gpu::test_gpu`).
pub fn gpu() -> Option<Gpu> {
    boha::gpu::test_gpu()
}

/// The test device with options.
pub fn gpu_with(opts: &GpuOptions) -> Option<Gpu> {
    boha::gpu::test_gpu_with(opts)
}

/// The tokenizer, chat template, BOS/EOS and config of `got` are `want`'s.
pub fn same_model_metadata(what: &str, want: &Checkpoint, got: &Checkpoint) {
    assert_eq!(want.config, got.config, "{what}");
    assert_eq!(want.chat_template, got.chat_template, "{what}");
    assert_eq!(want.bos_token, got.bos_token, "{what}");
    assert_eq!(want.eos_tokens, got.eos_tokens, "{what}");
    assert_eq!(want.add_bos, got.add_bos, "{what}");
    let text = "<|im_start|>user\nWhat is the capital of France? 42 cats<|im_end|>";
    assert_eq!(
        want.encode(text).unwrap(),
        got.encode(text).unwrap(),
        "{what}"
    );
}

/// Random non-zero factors in [-0.5, 0.5) on every adapter, A then B per adapter from
/// `rng`, mirrored into the reference: fresh adapters have B = 0, which would hide
/// their effect on the output and most of their gradient paths.
pub fn randomize_adapters(
    gpu: &Gpu,
    adapters: &Adapters,
    reference: &mut Reference,
    rng: &mut Rng,
) {
    for (name, ad) in adapters.iter() {
        let a = rng.vec_f32(ad.a.len(), -0.5, 0.5);
        let b = rng.vec_f32(ad.b.len(), -0.5, 0.5);
        gpu.write(&ad.a, &a).unwrap();
        gpu.write(&ad.b, &b).unwrap();
        reference.set_adapter(&name, ad.spec, &a, &b);
    }
}
