//! `--tiny-model`: a random tiny Llama (2 layers, hidden 32, a byte-level tokenizer and
//! a chat template) written as a Hugging Face directory by the same writer the
//! integration tests use, so the window can be tried, and checked in CI, without
//! downloading a model.

use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../../tests/common/tiny_checkpoint.rs"]
mod tiny_checkpoint;

use tiny_checkpoint::{write_tiny_hf, TinySpec};

/// Writes the tiny model into a fresh directory under `parent` and returns it.
pub fn write_tiny_model(parent: &Path) -> std::io::Result<PathBuf> {
    let dir = parent.join(format!("boha-desktop-tiny-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    // The model tests' Llama: head size 8, as the attention kernel wants a multiple of 4.
    let spec = TinySpec {
        hidden: 32,
        intermediate: 44,
        heads: 4,
        kv_heads: 2,
        seed: 11,
        // Byte-level prompts of the generated tasks run to ~200 tokens.
        extra_config: serde_json::json!({"max_position_embeddings": 512}),
        ..TinySpec::llama()
    };
    write_tiny_hf(&dir, &spec);
    Ok(dir)
}
