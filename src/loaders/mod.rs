//! Checkpoint loaders: a Hugging Face directory or a GGUF file becomes a [`Checkpoint`]
//! in boha's own tensor names, with the tokenizer and chat template.
//!
//! Only this module knows Hugging Face and GGUF names. Tensor names produced here:
//! `embed`, `layers.{i}.attn_norm`, `.q`, `.k`, `.v`, `.o`, `.q_bias`, `.k_bias`,
//! `.v_bias`, `.post_attn_norm`, `.mlp_norm`, `.gate`, `.up`, `.down`, `.post_mlp_norm`,
//! `final_norm`, `lm_head` (absent when tied). Linear weights keep PyTorch's [out, in]
//! layout; `ModelConfig::expected_tensors` lists names and shapes, and every loader
//! checks its result against that list.

#[cfg(not(target_arch = "wasm32"))]
pub mod fetch;
pub mod folder;
pub mod gguf;
pub mod hf;
mod host_tensor;
pub mod random;
pub mod safetensors;
mod source;
pub mod tokenizer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::gpu::DType;
use crate::model::ModelConfig;
use crate::{Error, Result};

pub(crate) use host_tensor::{FileLayout, FileTensor};
pub use host_tensor::{HostTensor, Rows};
pub use source::{ReadSeek, SharedBytes};
pub use tokenizer::ChatMessage;

/// Sampling defaults a checkpoint suggests (Hugging Face `generation_config.json`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GenerationDefaults {
    pub do_sample: Option<bool>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub repetition_penalty: Option<f32>,
    pub max_new_tokens: Option<usize>,
}

/// Everything read from a checkpoint.
pub struct Checkpoint {
    pub config: ModelConfig,
    /// boha's tensor names → tensors (see the module docs).
    pub tensors: BTreeMap<String, HostTensor>,
    pub tokenizer: tokenizers::Tokenizer,
    /// Jinja source of the chat template, if the checkpoint has one.
    pub chat_template: Option<String>,
    pub bos_token: Option<(String, u32)>,
    /// Ids that end generation (deduplicated, config order first).
    pub eos_tokens: Vec<u32>,
    /// Raw-text prompts should start with the BOS token. [`Checkpoint::encode`] never
    /// adds it (rendered chat templates already contain it where the model wants it).
    pub add_bos: bool,
    pub generation: GenerationDefaults,
    /// Where it was loaded from.
    pub source: PathBuf,
}

impl Checkpoint {
    /// The tensor named `name`, or an error naming it and the checkpoint.
    pub fn tensor(&self, name: &str) -> Result<&HostTensor> {
        self.tensors.get(name).ok_or_else(|| self.missing(name))
    }

    /// The dtype each frozen weight (by name) gets on a device whose `--base-dtype` is
    /// `base`, as `model::transformer::Weights::upload` stores it.
    pub fn frozen_dtypes(&self, base: crate::gpu::BaseDType) -> impl Fn(&str) -> DType + '_ {
        move |name| base.resolve(self.tensors.get(name).map_or(DType::F32, |t| t.stored))
    }

    /// The precision the model is written back in by default: F32 when a frozen weight
    /// is stored as F32, else BF16 when one is BF16, else F16 (F16 files, and quantized
    /// ones: their blocks' values are f16 scales times small integers, close to f16).
    pub fn precision(&self) -> DType {
        let stored: Vec<DType> = self
            .tensors
            .iter()
            .filter(|(name, _)| crate::graph::memory::is_frozen_weight(name))
            .map(|(_, t)| t.stored)
            .collect();
        if stored.is_empty() || stored.contains(&DType::F32) {
            DType::F32
        } else if stored.contains(&DType::BF16) {
            DType::BF16
        } else {
            DType::F16
        }
    }

    /// Reads every tensor's values once, a chunk of rows at a time, as an upload does:
    /// loading reads headers only, so this is where a file's NaN, Inf or unreadable range
    /// shows before any GPU work, as a one-line error naming the file and the tensor.
    pub fn check_values(&self) -> Result<()> {
        for t in self.tensors.values() {
            let rows = t.rows()?;
            let n = t.row_count();
            let step = ((1usize << 20) / (t.len() / n.max(1)).max(1)).max(1);
            let mut start = 0;
            while start < n {
                let k = step.min(n - start);
                rows.get(start, k)?;
                start += k;
            }
        }
        Ok(())
    }

    /// Removes and returns the tensor named `name` (to move it to the GPU and free it).
    pub fn take(&mut self, name: &str) -> Result<HostTensor> {
        match self.tensors.remove(name) {
            Some(t) => Ok(t),
            None => Err(self.missing(name)),
        }
    }

    fn missing(&self, name: &str) -> Error {
        bad_file(&self.source, format!("no tensor '{name}'"))
    }

    /// Token ids of `text` (special tokens such as `<|im_start|>` written in the text
    /// are recognized; BOS is not added here, see [`Checkpoint::add_bos`]).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        tokenizer::encode(&self.tokenizer, text)
    }

    /// Text of `ids` (special tokens kept).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        tokenizer::decode(&self.tokenizer, ids)
    }

    /// Renders the chat template over `messages`; `add_generation_prompt` appends the
    /// assistant turn's opening.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .chat_template
            .as_deref()
            .ok_or_else(|| bad_file(&self.source, "the checkpoint has no chat template"))?;
        let bos = self.bos_token.as_ref().map(|(s, _)| s.as_str());
        let eos = self
            .eos_tokens
            .first()
            .and_then(|&id| self.tokenizer.id_to_token(id));
        tokenizer::render_chat_template(
            template,
            messages,
            add_generation_prompt,
            bos,
            eos.as_deref(),
        )
    }
}

/// Loads a checkpoint: `path` is a Hugging Face directory (config.json, safetensors,
/// tokenizer.json), a `.gguf` file, or `random:NAME`, a named model's shapes with random
/// weights ([`random`]).
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    if let Some(random) = path.to_str().and_then(random::from_spec) {
        return random;
    }
    if path.is_dir() {
        hf::load_hf_dir(path)
    } else if path.is_file() {
        gguf::load_gguf(path)
    } else {
        Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
        ))
    }
}

/// Checks `tensors` against the config's list: every expected tensor present with its
/// shape, nothing else.
/// `config_name` says where the config came from in messages ("config.json", "the
/// metadata").
pub(crate) fn check_tensors(
    path: &Path,
    config_name: &str,
    config: &ModelConfig,
    tensors: &BTreeMap<String, HostTensor>,
) -> Result<()> {
    let expected = config.expected_tensors();
    for spec in &expected {
        match tensors.get(&spec.name) {
            None => {
                return Err(bad_file(
                    path,
                    format!(
                        "missing tensor '{}' {:?} that {config_name} implies",
                        spec.name, spec.shape
                    ),
                ))
            }
            Some(t) if t.shape != spec.shape => {
                return Err(bad_file(
                    path,
                    format!(
                        "tensor '{}' has shape {:?}, {config_name} implies {:?}",
                        spec.name, t.shape, spec.shape
                    ),
                ))
            }
            Some(_) => {}
        }
    }
    if tensors.len() != expected.len() {
        let extra = tensors
            .keys()
            .find(|k| !expected.iter().any(|s| &s.name == *k))
            .cloned()
            .unwrap_or_default();
        return Err(bad_file(
            path,
            format!("unexpected tensor '{extra}' for the model {config_name} describes"),
        ));
    }
    Ok(())
}

/// Refuses a tokenizer that can produce ids the model has no embedding row for.
pub(crate) fn check_vocab(
    path: &Path,
    tokenizer: &tokenizers::Tokenizer,
    vocab_size: usize,
) -> Result<()> {
    let vocab = tokenizer.get_vocab(true);
    if let Some((token, &id)) = vocab.iter().max_by_key(|(_, &id)| id) {
        if id as usize >= vocab_size {
            return Err(bad_file(
                path,
                format!(
                    "the tokenizer's vocabulary does not fit the model: token {token:?} has id \
                     {id}, the model's vocab_size is {vocab_size}"
                ),
            ));
        }
    }
    Ok(())
}

/// Shorthand for [`Error::BadFile`]; the message goes through [`escape_controls`], as
/// it may quote the file's own text (a tensor name, a key).
pub(crate) fn bad_file(path: &Path, message: impl Into<String>) -> Error {
    Error::BadFile {
        path: path.to_path_buf(),
        message: escape_controls(&message.into()),
    }
}

/// `s` with its control characters (line breaks above all) escaped: a message quoting
/// text from a hostile file must still be the single line boha's errors promise.
pub(crate) fn escape_controls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads a whole (small, text) file, naming it on error.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

/// Appends `id` to `ids` unless present.
pub(crate) fn push_unique(ids: &mut Vec<u32>, id: u32) {
    if !ids.contains(&id) {
        ids.push(id);
    }
}
