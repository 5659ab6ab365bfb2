//! Tiny model specs shared by the model tests (head sizes the attention kernel takes).
#![allow(dead_code)]

use std::path::PathBuf;

use crate::common::tiny_checkpoint::{temp_dir, write_tiny_hf, TinySpec};
use serde_json::json;

/// The tiny `arch` model of [`specs`], written as a Hugging Face directory into a fresh
/// temporary directory named after `tag`.
pub fn write_dir(arch: &str, tag: &str) -> PathBuf {
    let (_, spec) = specs()
        .into_iter()
        .find(|(n, _)| *n == arch)
        .unwrap_or_else(|| panic!("no tiny spec named {arch}"));
    let dir = temp_dir(tag);
    write_tiny_hf(&dir, &spec);
    dir
}

/// Tiny specs with head sizes the attention kernel takes (multiples of 4).
pub fn specs() -> Vec<(&'static str, TinySpec)> {
    let base = TinySpec {
        hidden: 32,
        intermediate: 44,
        heads: 4,
        kv_heads: 2,
        ..TinySpec::llama()
    };
    vec![
        (
            "llama",
            TinySpec {
                seed: 11,
                ..base.clone()
            },
        ),
        (
            "mistral",
            TinySpec {
                arch: "MistralForCausalLM".into(),
                extra_config: json!({"sliding_window": 5}),
                seed: 12,
                ..base.clone()
            },
        ),
        (
            "gemma2",
            TinySpec {
                arch: "Gemma2ForCausalLM".into(),
                tie: true,
                heads: 2,
                kv_heads: 1,
                head_dim: Some(12),
                extra_config: json!({"query_pre_attn_scalar": 10, "sliding_window": 4,
                    "attn_logit_softcapping": 4.0, "final_logit_softcapping": 3.0}),
                seed: 13,
                ..base.clone()
            },
        ),
        (
            "qwen2",
            TinySpec {
                arch: "Qwen2ForCausalLM".into(),
                tie: true,
                seed: 14,
                ..base
            },
        ),
    ]
}
