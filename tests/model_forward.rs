//! Whole-model forward on the GPU against the CPU f64 reference, on tiny random
//! checkpoints of each architecture: a prefill of all rows, then single-token decode
//! steps through the KV cache.

mod common;
mod model_specs;

use boha::loaders::load_checkpoint;
use boha::model::kv_cache::{Model, Session};
use boha::model::reference::Reference;
use boha::rng::Rng;
use common::assert_close;
use common::tiny_checkpoint::{temp_dir, write_tiny_hf};
use model_specs::specs;

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

#[test]
fn gpu_logits_match_reference_prefill_and_decode() {
    let Some(gpu) = common::gpu() else { return };
    for (name, spec) in specs() {
        let dir = temp_dir(&format!("fwd-{name}"));
        write_tiny_hf(&dir, &spec);
        let ck = load_checkpoint(&dir).unwrap();
        let v = ck.config.vocab_size;
        let mut rng = Rng::new(7);
        let tokens: Vec<u32> = (0..16).map(|_| rng.below(v) as u32).collect();
        let reference = Reference::new(&ck).unwrap();
        let want = reference.logits(&tokens, 1).unwrap();
        let model = Model::load(&gpu, &ck).unwrap();
        let mut s = Session::new(&gpu, &model, 20).unwrap();
        let prefill = 13;
        let got = s.forward(&gpu, &tokens[..prefill], true).unwrap();
        assert_close(
            &format!("{name} prefill logits"),
            &got,
            &f32s(&want[..prefill * v]),
            2e-4,
        );
        for t in prefill..tokens.len() {
            let got = s.forward(&gpu, &tokens[t..t + 1], false).unwrap();
            assert_close(
                &format!("{name} decode logits at {t}"),
                &got,
                &f32s(&want[t * v..(t + 1) * v]),
                2e-4,
            );
        }
        assert!(
            s.forward(&gpu, &tokens[..5], false).is_err(),
            "cache overflow is an error"
        );
    }
}
