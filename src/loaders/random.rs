//! Random-weight checkpoints with a named model's shapes, for benchmarks where only the
//! shapes matter: `--model random:smollm2-135m` (SmolLM2-135M's shapes) or
//! `--model random:llama-3.2-1b` (Llama-3.2-1B's) wherever a model path is taken. Speed
//! and memory depend on the shapes, never on the values, so a machine without the real
//! file (a GPU machine that reaches no network) measures the same step. `random:tiny` is
//! SmolLM2's architecture at toy sizes, for tests and the web page's quick start.
//!
//! Weights are uniform in ±√(3/fan_in)·0.5 (about the scale a trained model's are), norm
//! weights 1, biases 0; the tokenizer is a word-level one whose vocabulary is `t0`,
//! `t1`, … `t{V−1}`, so every id decodes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::{Checkpoint, GenerationDefaults, HostTensor};
use crate::error::{Error, Result};
use crate::model::{Activation, Architecture, ModelConfig};
use crate::rng::Rng;

/// The prefix that names a random model instead of a path.
pub const PREFIX: &str = "random:";

/// The shapes a random model can take, by name.
pub const PRESETS: [&str; 3] = ["smollm2-135m", "llama-3.2-1b", "tiny"];

/// The config of preset `name` (one of [`PRESETS`]).
pub fn preset(name: &str) -> Option<ModelConfig> {
    let (vocab, c, f, layers, heads, kv, theta) = match name {
        "smollm2-135m" => (49152, 576, 1536, 30, 9, 3, 100_000.0),
        "llama-3.2-1b" => (128_256, 2048, 8192, 16, 32, 8, 500_000.0),
        // Width 32 as 4 heads of 8 with 2 key-value heads (GQA), MLP 48, 2 layers, 97
        // tokens: no dimension a multiple of a GEMM tile.
        "tiny" => (97, 32, 48, 2, 4, 2, 100_000.0),
        _ => return None,
    };
    Some(ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: vocab,
        hidden_size: c,
        intermediate_size: f,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: kv,
        head_dim: c / heads,
        rope_theta: theta,
        rope_scaling: None,
        rms_norm_eps: 1e-5,
        tie_word_embeddings: true,
        max_position_embeddings: 8192,
        sliding_window: None,
        alternating_sliding_window: false,
        hidden_activation: Activation::Silu,
        norm_weight_offset: false,
        scale_embeddings: false,
        attn_logit_softcapping: None,
        final_logit_softcapping: None,
        query_pre_attn_scalar: None,
        qkv_bias: false,
        post_norms: false,
        bos_token_id: None,
        eos_token_ids: vec![],
    })
}

/// The random checkpoint `spec` names (`random:NAME`), or `None` when `spec` does not
/// start with [`PREFIX`].
pub fn from_spec(spec: &str) -> Option<Result<Checkpoint>> {
    let name = spec.strip_prefix(PREFIX)?;
    Some(match preset(name) {
        Some(cfg) => checkpoint(cfg, spec),
        None => Err(Error::Invalid(format!(
            "{spec}: unknown random model (one of {})",
            PRESETS.map(|p| format!("{PREFIX}{p}")).join(", ")
        ))),
    })
}

/// A checkpoint of `cfg`'s shapes with random weights (seeded, so two loads are equal).
pub fn checkpoint(cfg: ModelConfig, source: &str) -> Result<Checkpoint> {
    cfg.check()
        .map_err(|e| Error::Invalid(format!("{source}: {e}")))?;
    let mut rng = Rng::new(0x5eed);
    let mut tensors = BTreeMap::new();
    for spec in cfg.expected_tensors() {
        let n: usize = spec.shape.iter().product();
        let data = if spec.shape.len() == 1 {
            // Norm weights (1) and biases (0).
            let one = spec.name.contains("norm") && !cfg.norm_weight_offset;
            vec![if one { 1.0 } else { 0.0 }; n]
        } else {
            let fan_in = *spec.shape.last().unwrap_or(&1) as f32;
            let r = 0.5 * (3.0 / fan_in).sqrt();
            rng.vec_f32(n, -r, r)
        };
        tensors.insert(spec.name.clone(), HostTensor::new(spec.shape, data));
    }
    Ok(Checkpoint {
        tokenizer: tokenizer(cfg.vocab_size)?,
        config: cfg,
        tensors,
        chat_template: None,
        bos_token: None,
        eos_tokens: Vec::new(),
        add_bos: false,
        generation: GenerationDefaults::default(),
        source: PathBuf::from(source),
    })
}

/// A word-level tokenizer over `t0` … `t{vocab−1}`, split on whitespace.
fn tokenizer(vocab: usize) -> Result<tokenizers::Tokenizer> {
    let words: serde_json::Map<String, serde_json::Value> = (0..vocab)
        .map(|i| (format!("t{i}"), serde_json::Value::from(i)))
        .collect();
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [],
        "normalizer": null,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": null,
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": words, "unk_token": "t0"}
    });
    super::tokenizer::from_bytes(json.to_string().as_bytes())
        .map_err(|e| Error::Invalid(format!("random model tokenizer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_build_and_unknown_names_fail() {
        let cfg = preset("smollm2-135m").unwrap();
        assert_eq!(cfg.q_dim(), 576);
        assert_eq!(cfg.kv_dim(), 192);
        assert!(cfg.check().is_ok());
        assert!(preset("llama-3.2-1b").unwrap().check().is_ok());
        assert!(from_spec("smollm2").is_none());
        let e = from_spec("random:gpt-5")
            .unwrap()
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("random:smollm2-135m"), "{e}");
        let tiny = ModelConfig {
            vocab_size: 40,
            hidden_size: 8,
            intermediate_size: 16,
            num_layers: 2,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 4,
            ..preset("smollm2-135m").unwrap()
        };
        let a = checkpoint(tiny.clone(), "random:tiny").unwrap();
        let b = checkpoint(tiny, "random:tiny").unwrap();
        assert_eq!(a.tensors.len(), b.tensors.len());
        for (name, t) in &a.tensors {
            assert_eq!(
                t.to_f32().unwrap(),
                b.tensors[name].to_f32().unwrap(),
                "{name}"
            );
        }
        let ids = super::super::tokenizer::encode(&a.tokenizer, "t3 t39").unwrap();
        assert_eq!(ids, vec![3, 39]);
    }
}
