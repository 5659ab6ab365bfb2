//! GGUF checkpoints (llama.cpp's format): `reader` parses and checks the file,
//! `dequant` turns ggml blocks into f32, `names` maps llama.cpp's conventions to
//! boha's (and back), `writer` writes GGUF v3 files. Supported: `general.architecture` "llama" (Llama, Mistral, SmolLM, …) and
//! "qwen2"; tensor types F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K,
//! Q5_K, Q6_K; tokenizers "gpt2" (byte-level BPE) and "llama" (SentencePiece, see
//! `crate::loaders::tokenizer`).

mod dequant;
mod names;
pub mod quantize;
mod reader;
pub mod writer;

use std::collections::BTreeMap;
use std::path::Path;

pub use dequant::{dequantize, GgmlType};
pub use names::{
    boha_name, config_from_metadata, gguf_name, llama3_from_rope_freqs, permute_rows,
    unpermute_rows, GgufName,
};
pub use reader::{GgufFile, MetaValue, Metadata, TensorInfo};

use super::{
    bad_file, check_tensors, tokenizer, Checkpoint, FileLayout, FileTensor, GenerationDefaults,
    HostTensor, SharedBytes,
};
use crate::model::Architecture;
use crate::Result;

/// Loads a GGUF file into a [`Checkpoint`]: the header is read and checked, every
/// tensor is named in boha's terms and left in the file until used ([`HostTensor`]:
/// dequantized or uploaded as its blocks then, Llama q/k rows put back in Hugging Face
/// order), the tokenizer is built from the metadata.
pub fn load_gguf(path: &Path) -> Result<Checkpoint> {
    load(path, None)
}

/// [`load_gguf`] for a GGUF file held in memory (a file chosen in a web page); `name`
/// names it in messages and becomes the checkpoint's source. The tensors read their
/// values from `bytes` when used, so the file is never copied.
pub fn load_gguf_bytes(name: &Path, bytes: impl Into<SharedBytes>) -> Result<Checkpoint> {
    load(name, Some(bytes.into()))
}

fn load(path: &Path, memory: Option<SharedBytes>) -> Result<Checkpoint> {
    let file = GgufFile::open_in(path, memory)?;
    let mut config = config_from_metadata(&file.metadata)?;
    let mut handle = file.reader()?;

    let mut tensors = BTreeMap::new();
    for info in &file.tensors {
        let name = match boha_name(&info.name) {
            Some(GgufName::Ours(n)) => n,
            Some(GgufName::RopeFreqs) => {
                let t = file.read_f32_from(&mut handle, info)?;
                let scaling = llama3_from_rope_freqs(&config, &t.to_f32()?).ok_or_else(|| {
                    bad_file(path, "tensor 'rope_freqs.weight' does not match Llama-3 RoPE scaling (the only kind boha reads from it)")
                })?;
                config.rope_scaling = Some(scaling);
                continue;
            }
            None => {
                return Err(bad_file(
                    path,
                    format!("unrecognized tensor '{}'", info.name),
                ))
            }
        };
        let mut unpermute_heads = None;
        if config.architecture == Architecture::Llama {
            let heads = match name.rsplit('.').next() {
                Some("q" | "q_bias") => Some(config.num_heads),
                Some("k" | "k_bias") => Some(config.num_kv_heads),
                _ => None,
            };
            if let Some(n_head) = heads {
                let rows = info.shape().first().copied().unwrap_or(0);
                if n_head == 0 || !rows.is_multiple_of(n_head) || !(rows / n_head).is_multiple_of(2)
                {
                    return Err(bad_file(
                        path,
                        format!(
                            "tensor '{}' has {rows} rows, not {n_head} heads of an even size",
                            info.name
                        ),
                    ));
                }
                unpermute_heads = Some(n_head);
            }
        }
        let t = HostTensor::in_file(
            info.shape(),
            info.ggml_type.kept(),
            FileTensor {
                path: path.to_path_buf(),
                memory: file.memory.clone(),
                name: info.name.clone(),
                offset: file.data_start + info.offset,
                len: info.n_bytes as usize,
                layout: FileLayout::Ggml(info.ggml_type),
                unpermute_heads,
            },
        );
        tensors.insert(name, t);
    }
    config.tie_word_embeddings = !tensors.contains_key("lm_head");
    if let Some(embed) = tensors.get("embed") {
        if embed.shape.first() != Some(&config.vocab_size) {
            return Err(bad_file(
                path,
                format!(
                    "token_embd.weight has {} rows but the vocabulary has {} tokens",
                    embed.shape.first().copied().unwrap_or(0),
                    config.vocab_size
                ),
            ));
        }
    }
    check_tensors(path, "the metadata", &config, &tensors)?;

    let tok = tokenizer::from_gguf(&file.metadata)?;
    super::check_vocab(path, &tok.tokenizer, config.vocab_size)?;
    let mut eos = config.eos_token_ids.clone();
    if eos.is_empty() {
        eos = tok.eos.clone();
    }
    config.eos_token_ids = eos.clone();
    let bos_token = config
        .bos_token_id
        .and_then(|id| tok.tokenizer.id_to_token(id).map(|s| (s, id)));
    Ok(Checkpoint {
        config,
        tensors,
        tokenizer: tok.tokenizer,
        chat_template: tok.chat_template,
        bos_token,
        eos_tokens: eos,
        add_bos: tok.add_bos,
        generation: GenerationDefaults::default(),
        source: path.to_path_buf(),
    })
}
