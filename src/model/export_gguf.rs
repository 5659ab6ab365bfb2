//! Writing a model as one GGUF file (llama.cpp's format), adapter-free: what
//! `boha merge` writes when the output is to run in llama.cpp.
//!
//! Tensors follow llama.cpp's converter (`convert_hf_to_gguf.py`): GGUF names
//! ([`crate::loaders::gguf::gguf_name`]), dims innermost first (the PyTorch shape
//! reversed), Llama's q/k rows in llama.cpp's interleaved order
//! ([`crate::loaders::gguf::permute_rows`]; the loader undoes it), no `output.weight`
//! when the embeddings are tied, Llama-3 RoPE scaling as the `rope_freqs.weight`
//! tensor. Linear weights and the embedding are F16 or Q8_0 ([`GgufOutType`]; Q8_0 by
//! llama.cpp's reference quantizer, with F16 for a matrix whose rows are not whole
//! 32-value blocks), norms and biases F32.
//!
//! Metadata: a GGUF source's key/values are copied as they are, with
//! `general.file_type` set to the output's and `general.alignment` to 32. A Hugging Face
//! source's are built from its [`ModelConfig`] (the exact inverse of
//! [`crate::loaders::gguf::config_from_metadata`], for the llama and qwen2
//! architectures) and its tokenizer, which must be a byte-level BPE (written as
//! `tokenizer.ggml.model` "gpt2").
//!
//! Before anything is written the metadata is read back with boha's own GGUF code: the
//! config must come back as the model's [`ModelConfig`] and a rebuilt tokenizer must
//! tokenize like the original, so the file loads back as the same model. Tensors are
//! read from the GPU one at a time and streamed into the file
//! ([`crate::loaders::gguf::writer`]), which is written atomically.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::f16;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::loaders::gguf::writer::{self, TensorEntry};
use crate::loaders::gguf::{
    config_from_metadata, gguf_name, llama3_from_rope_freqs, permute_rows, quantize, GgmlType,
    GgufFile, MetaValue, Metadata,
};
use crate::loaders::{self, tokenizer, Checkpoint};
use crate::model::config::{Architecture, ModelConfig, RopeScaling};
use crate::model::export::{first_difference, merged_values, named_tensors};
use crate::model::transformer::{Adapters, Weights};

/// The storage type of the written linear weights and embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum GgufOutType {
    /// IEEE half precision (`general.file_type` 1, MOSTLY_F16).
    F16,
    /// ggml's Q8_0 blocks: 32 values as i8 codes q with one f16 scale d = max|x| / 127,
    /// x ≈ q·d (`general.file_type` 7, MOSTLY_Q8_0).
    Q8_0,
}

impl GgufOutType {
    /// The ggml type of the linear weights.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            GgufOutType::F16 => GgmlType::F16,
            GgufOutType::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// llama.cpp's `enum llama_ftype` value written as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            GgufOutType::F16 => 1,
            GgufOutType::Q8_0 => 7,
        }
    }

    /// The type for a ggml weight of PyTorch shape `shape`: F32 for vectors (norms,
    /// biases), else `self`, or F16 where Q8_0's 32-value blocks do not tile a row
    /// (`shape`'s last dimension), as llama.cpp's converter falls back.
    pub fn for_shape(self, shape: &[usize]) -> GgmlType {
        match (shape.len(), self) {
            (0 | 1, _) => GgmlType::F32,
            (_, GgufOutType::Q8_0) if !shape[shape.len() - 1].is_multiple_of(32) => GgmlType::F16,
            _ => self.ggml_type(),
        }
    }
}

impl std::str::FromStr for GgufOutType {
    type Err = Error;

    /// "f16" or "q8_0" (any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(GgufOutType::F16),
            "q8_0" => Ok(GgufOutType::Q8_0),
            _ => Err(Error::Invalid(format!(
                "unknown GGUF output type '{s}' (expected f16 or q8_0)"
            ))),
        }
    }
}

/// What [`write_gguf_model`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufWritten {
    /// Tensors in the file (`rope_freqs.weight` included when written).
    pub tensors: usize,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// GGUF names of the matrices written as F16 in a Q8_0 file (rows not whole blocks).
    pub f16_fallback: Vec<String>,
}

/// What [`merge_to_gguf`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufMergeSummary {
    /// Adapted matrices merged into the weights.
    pub merged_matrices: usize,
    /// Tensors in the file.
    pub tensors: usize,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// GGUF names of the matrices written as F16 in a Q8_0 file.
    pub f16_fallback: Vec<String>,
}

/// Loads the checkpoint at `model` (a Hugging Face directory or a GGUF file), attaches
/// the adapter in `adapter` (an error if it does not fit the model), merges it into the
/// weights on the GPU and writes the merged model to the file `out` as GGUF with linear
/// weights in `dtype` (see the module docs). `out` must not exist; it and the metadata
/// (architecture, tokenizer) are checked before any weight is uploaded, so a refused
/// model costs no GPU work. Nothing is left at `out` on failure.
pub fn merge_to_gguf(
    gpu: &Gpu,
    model: &Path,
    adapter: &Path,
    out: &Path,
    dtype: GgufOutType,
) -> Result<GgufMergeSummary> {
    writer::check_destination(out)?;
    let ck = loaders::load_checkpoint(model)?;
    let plan = Plan::new(&ck, &ck.config, dtype, out)?;
    let weights = Weights::upload(gpu, &ck)?;
    let adapters = Adapters::load(gpu, &weights, adapter)?;
    let merged_matrices = adapters.iter().count();
    let w = plan.write(gpu, &weights, Some(&adapters), out)?;
    Ok(GgufMergeSummary {
        merged_matrices,
        tensors: w.tensors,
        file_bytes: w.file_bytes,
        f16_fallback: w.f16_fallback,
    })
}

/// Writes `weights`, with `adapters` merged into them when given (one projection at a
/// time on the GPU, as [`crate::model::export`] does), as a GGUF file at `out`, linear
/// weights in `dtype`, with the metadata of `ck`'s source (a GGUF source's key/values,
/// or ones built from the config and tokenizer of a Hugging Face one; `ck`'s host
/// tensors are not used and may have been dropped). Atomic; an existing `out` is
/// refused.
pub fn write_gguf_model(
    gpu: &Gpu,
    weights: &Weights,
    adapters: Option<&Adapters>,
    ck: &Checkpoint,
    out: &Path,
    dtype: GgufOutType,
) -> Result<GgufWritten> {
    writer::check_destination(out)?;
    Plan::new(ck, &weights.config, dtype, out)?.write(gpu, weights, adapters, out)
}

/// Where one tensor's bytes come from.
enum Source {
    /// A weight on the GPU under boha's name; `permute` is the head count whose q/k
    /// rows go to llama.cpp's order.
    Weight {
        name: String,
        permute: Option<usize>,
    },
    /// Llama-3 RoPE divisors computed on the host.
    RopeFreqs(Vec<f32>),
}

/// Everything about the file that does not need the weights' values.
struct Plan {
    dtype: GgufOutType,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorEntry>,
    sources: Vec<Source>,
}

impl Plan {
    /// Builds the metadata and tensor list for a model of config `cfg` loaded as `ck`,
    /// and checks that they read back as the same model.
    fn new(ck: &Checkpoint, cfg: &ModelConfig, dtype: GgufOutType, out: &Path) -> Result<Plan> {
        let arch = gguf_architecture(cfg, &ck.source)?;
        // What the model says about BOS/EOS lives in the checkpoint, as for
        // Hugging Face output (`crate::model::export`).
        let mut want = cfg.clone();
        want.bos_token_id = ck
            .bos_token
            .as_ref()
            .map(|(_, id)| *id)
            .or(cfg.bos_token_id);
        if !ck.eos_tokens.is_empty() {
            want.eos_token_ids = ck.eos_tokens.clone();
        }
        let rope_freqs = llama3_rope_freqs(&want)?;

        let gguf_source = ck.source.is_file()
            && ck
                .source
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        let metadata = if gguf_source {
            copied_metadata(&ck.source, dtype)?
        } else {
            let mut m = config_metadata(&want, arch, &ck.source, dtype)?;
            m.extend(tokenizer_metadata(ck, &want)?);
            m
        };
        check_reads_back(&metadata, rope_freqs.as_deref(), &want, out)?;

        let mut tensors = Vec::new();
        let mut sources = Vec::new();
        if let Some(d) = rope_freqs {
            tensors.push(TensorEntry::from_shape(
                "rope_freqs.weight",
                &[d.len()],
                GgmlType::F32,
            ));
            sources.push(Source::RopeFreqs(d));
        }
        for spec in cfg.expected_tensors() {
            let name = gguf_name(&spec.name).ok_or_else(|| {
                Error::Invalid(format!("tensor '{}' has no GGUF name", spec.name))
            })?;
            let permute = match (arch, spec.name.rsplit('.').next()) {
                ("llama", Some("q" | "q_bias")) => Some(cfg.num_heads),
                ("llama", Some("k" | "k_bias")) => Some(cfg.num_kv_heads),
                _ => None,
            };
            tensors.push(TensorEntry::from_shape(
                name,
                &spec.shape,
                dtype.for_shape(&spec.shape),
            ));
            sources.push(Source::Weight {
                name: spec.name,
                permute,
            });
        }
        Ok(Plan {
            dtype,
            metadata,
            tensors,
            sources,
        })
    }

    /// Streams the tensors of `weights` (merged with `adapters`) from the GPU into the
    /// file at `out`.
    fn write(
        &self,
        gpu: &Gpu,
        weights: &Weights,
        adapters: Option<&Adapters>,
        out: &Path,
    ) -> Result<GgufWritten> {
        let on_gpu: HashMap<String, _> = named_tensors(weights)?.into_iter().collect();
        let file_bytes = writer::write_gguf(out, &self.metadata, &self.tensors, |i, entry| {
            match &self.sources[i] {
                Source::RopeFreqs(d) => Ok(d.iter().flat_map(|v| v.to_le_bytes()).collect()),
                Source::Weight { name, permute } => {
                    let t = on_gpu.get(name).ok_or_else(|| {
                        Error::Invalid(format!("the model has no tensor '{name}'"))
                    })?;
                    let mut data = merged_values(gpu, weights, adapters, name)?;
                    if let Some(n_head) = permute {
                        let rows = t.shape()[0];
                        let cols = data.len() / rows.max(1);
                        data = permute_rows(&data, rows, cols, *n_head).ok_or_else(|| {
                                Error::Invalid(format!(
                                    "tensor '{name}' has {rows} rows, not {n_head} heads of an even size"
                                ))
                            })?;
                    }
                    encode(&entry.name, name, &data, entry.ggml_type)
                }
            }
        })?;
        let f16_fallback = self
            .tensors
            .iter()
            .filter(|t| self.dtype == GgufOutType::Q8_0 && t.ggml_type == GgmlType::F16)
            .map(|t| t.name.clone())
            .collect();
        Ok(GgufWritten {
            tensors: self.tensors.len(),
            file_bytes,
            f16_fallback,
        })
    }
}

/// llama.cpp's architecture name for `cfg`: Mistral is a Llama (with a window, as
/// llama.cpp's converter writes it); Gemma-2 has a GGUF form boha does not write.
fn gguf_architecture(cfg: &ModelConfig, source: &Path) -> Result<&'static str> {
    match cfg.architecture {
        Architecture::Llama | Architecture::Mistral => Ok("llama"),
        Architecture::Qwen2 => Ok("qwen2"),
        Architecture::Gemma2 => Err(Error::Invalid(format!(
            "{}: a Gemma-2 model cannot be written as GGUF (only the llama and qwen2 architectures)",
            source.display()
        ))),
    }
}

/// The value each element of `x` takes in `t`'s bytes; refuses values the type cannot
/// hold (non-finite merged weights, magnitudes past f16's 65504, Q8_0 scales past it),
/// naming the tensor, rather than writing a file that computes NaN.
fn encode(gguf: &str, ours: &str, x: &[f32], t: GgmlType) -> Result<Vec<u8>> {
    let refuse = |what: String| {
        Err(Error::Invalid(format!(
            "merged tensor '{gguf}' ({ours}) {what}; nothing written"
        )))
    };
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return refuse(format!("has a non-finite value {} at element {i}", x[i]));
    }
    match t {
        GgmlType::F32 => Ok(x.iter().flat_map(|v| v.to_le_bytes()).collect()),
        GgmlType::F16 => {
            let mut out = Vec::with_capacity(2 * x.len());
            for (i, &v) in x.iter().enumerate() {
                let h = f16::from_f32(v);
                if !h.is_finite() {
                    return refuse(format!(
                        "has {v} at element {i}, beyond F16's range (±65504)"
                    ));
                }
                out.extend(h.to_le_bytes());
            }
            Ok(out)
        }
        GgmlType::Q8_0 => {
            let Some(q) = quantize::quantize(t, x) else {
                return refuse(format!("has {} values, not whole Q8_0 blocks", x.len()));
            };
            // Each block starts with its f16 scale max|x| / 127.
            let size = t.type_size();
            if let Some(b) = q
                .chunks_exact(size)
                .position(|b| !f16::from_le_bytes([b[0], b[1]]).is_finite())
            {
                return refuse(format!(
                    "has values past ±{} in block {b}, beyond Q8_0's range",
                    65504.0 * 127.0
                ));
            }
            Ok(q)
        }
        other => refuse(format!("cannot be written as {}", other.name())),
    }
}

/// The key/values of the GGUF file at `source`, with `general.file_type` and
/// `general.alignment` set for the output; `general.architecture` first.
fn copied_metadata(source: &Path, dtype: GgufOutType) -> Result<Vec<(String, MetaValue)>> {
    let mut entries = GgufFile::open(source)?.metadata.entries;
    entries.insert(
        "general.file_type".into(),
        MetaValue::U32(dtype.file_type()),
    );
    entries.insert(
        "general.alignment".into(),
        MetaValue::U32(writer::ALIGNMENT as u32),
    );
    let mut out: Vec<(String, MetaValue)> = Vec::with_capacity(entries.len());
    if let Some(v) = entries.remove("general.architecture") {
        out.push(("general.architecture".into(), v));
    }
    out.extend(entries);
    Ok(out)
}

/// `general.*` and `{arch}.*` keys for `cfg`, with the types llama.cpp's loader reads
/// them as (u32 sizes, f32 constants); exactly what
/// [`crate::loaders::gguf::config_from_metadata`] reads.
fn config_metadata(
    cfg: &ModelConfig,
    arch: &str,
    source: &Path,
    dtype: GgufOutType,
) -> Result<Vec<(String, MetaValue)>> {
    let u32_of = |what: &str, v: usize| {
        u32::try_from(v)
            .map(MetaValue::U32)
            .map_err(|_| Error::Invalid(format!("{what} {v} does not fit GGUF's u32")))
    };
    // A directory's whole name ("Qwen2.5-0.5B"), a file's without its extension.
    let name = if source.is_dir() {
        source.file_name()
    } else {
        source.file_stem()
    }
    .map(|s| s.to_string_lossy().into_owned())
    .unwrap_or_else(|| "boha".into());
    let k = |s: &str| format!("{arch}.{s}");
    let mut m = vec![
        ("general.architecture".into(), MetaValue::Str(arch.into())),
        ("general.name".into(), MetaValue::Str(name)),
        (
            "general.file_type".into(),
            MetaValue::U32(dtype.file_type()),
        ),
        // ggml's GGML_QNT_VERSION, which llama.cpp's converter always writes.
        ("general.quantization_version".into(), MetaValue::U32(2)),
        (
            "general.alignment".into(),
            MetaValue::U32(writer::ALIGNMENT as u32),
        ),
        (k("vocab_size"), u32_of("vocab_size", cfg.vocab_size)?),
        (
            k("context_length"),
            u32_of("max_position_embeddings", cfg.max_position_embeddings)?,
        ),
        (
            k("embedding_length"),
            u32_of("hidden_size", cfg.hidden_size)?,
        ),
        (k("block_count"), u32_of("num_layers", cfg.num_layers)?),
        (
            k("feed_forward_length"),
            u32_of("intermediate_size", cfg.intermediate_size)?,
        ),
        (
            k("attention.head_count"),
            u32_of("num_heads", cfg.num_heads)?,
        ),
        (
            k("attention.head_count_kv"),
            u32_of("num_kv_heads", cfg.num_kv_heads)?,
        ),
        (k("attention.key_length"), u32_of("head_dim", cfg.head_dim)?),
        (
            k("attention.value_length"),
            u32_of("head_dim", cfg.head_dim)?,
        ),
        (k("rope.dimension_count"), u32_of("head_dim", cfg.head_dim)?),
        (k("rope.freq_base"), MetaValue::F32(cfg.rope_theta)),
        (
            k("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(cfg.rms_norm_eps),
        ),
    ];
    if let Some(w) = cfg.sliding_window {
        m.push((k("attention.sliding_window"), u32_of("sliding_window", w)?));
    }
    if let Some(RopeScaling::Linear { factor }) = cfg.rope_scaling {
        m.push((k("rope.scaling.type"), MetaValue::Str("linear".into())));
        m.push((k("rope.scaling.factor"), MetaValue::F32(factor)));
    }
    Ok(m)
}

/// Llama-3 RoPE scaling as llama.cpp stores it: per rotated pair i, the divisor of its
/// frequency, θ_i(plain) / θ_i(scaled) (1 for high frequencies, `factor` for low ones,
/// a ramp between). boha reads such a tensor back only for llama.cpp's converter
/// defaults (low 1, high 4, original context 8192), so other parameters are refused.
fn llama3_rope_freqs(cfg: &ModelConfig) -> Result<Option<Vec<f32>>> {
    let Some(RopeScaling::Llama3 {
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
        ..
    }) = cfg.rope_scaling
    else {
        return Ok(None);
    };
    if (
        low_freq_factor,
        high_freq_factor,
        original_max_position_embeddings,
    ) != (1.0, 4.0, 8192)
    {
        return Err(Error::Invalid(format!(
            "Llama-3 RoPE scaling with low_freq_factor {low_freq_factor}, high_freq_factor \
             {high_freq_factor}, original context {original_max_position_embeddings} has no GGUF \
             form boha reads back (only 1, 4, 8192)"
        )));
    }
    let plain = ModelConfig {
        rope_scaling: None,
        ..cfg.clone()
    }
    .rope_inv_freq();
    Ok(Some(
        plain
            .iter()
            .zip(cfg.rope_inv_freq())
            .map(|(p, s)| (p / s) as f32)
            .collect(),
    ))
}

/// The tokenizer file named in errors: `tokenizer.json` of a directory, else the source.
fn tokenizer_file(ck: &Checkpoint) -> PathBuf {
    if ck.source.is_dir() {
        ck.source.join(crate::model::export::TOKENIZER_FILE)
    } else {
        ck.source.clone()
    }
}

/// llama.cpp's token types (`llama_token_type`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

/// `tokenizer.*` keys for `ck`'s tokenizer, as llama.cpp's converter writes a byte-level
/// BPE: model "gpt2", `pre` naming the pre-tokenizer, one token per embedding row (ids
/// the tokenizer lacks become "[PAD{id}]", UNUSED, as the converter pads), token types
/// (added special tokens CONTROL, other added tokens USER_DEFINED, the rest NORMAL),
/// merges as "left right", BOS and up to three EOS ids (as eos, eot, eom, the order
/// the reader collects them in), `add_bos_token` and the chat template. Anything but a
/// byte-level BPE is refused with an error naming the tokenizer file. The result is
/// checked by rebuilding the tokenizer from it with boha's GGUF reader.
fn tokenizer_metadata(ck: &Checkpoint, cfg: &ModelConfig) -> Result<Vec<(String, MetaValue)>> {
    let file = tokenizer_file(ck);
    let bad = |m: String| loaders::bad_file(&file, m);
    let j: Value = ck
        .tokenizer
        .to_string(false)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .ok_or_else(|| bad("the tokenizer cannot be serialized".into()))?;
    let model = &j["model"];
    let kind = model["type"].as_str().unwrap_or("unknown");
    if kind != "BPE" || model["byte_fallback"].as_bool() == Some(true) {
        return Err(bad(format!(
            "only byte-level BPE tokenizers can be written as GGUF (this one is a {kind}{} model)",
            if kind == "BPE" { " byte-fallback" } else { "" }
        )));
    }
    let pre = tokenizer::gguf_pre_name(&j["pre_tokenizer"]).ok_or_else(|| {
        bad(
            "only byte-level BPE tokenizers can be written as GGUF (its pre-tokenizer is \
             not ByteLevel nor one of the byte-level sequences llama.cpp names gpt2, smollm, \
             llama-bpe, qwen2)"
                .into(),
        )
    })?;
    // llama.cpp applies no normalizer to BPE text; NFC (Qwen2's) changes only text
    // that is not already composed, which its converter also drops.
    match j["normalizer"]["type"].as_str() {
        None | Some("NFC") => {}
        Some(other) => {
            return Err(bad(format!(
                "a byte-level BPE tokenizer with a {other} normalizer has no GGUF form"
            )))
        }
    }

    let n = cfg.vocab_size;
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![NORMAL; n];
    let mut place = |id: u64, tok: &str, ty: i32| -> Result<()> {
        let slot = usize::try_from(id).ok().filter(|&i| i < n).ok_or_else(|| {
            bad(format!(
                "token {tok:?} has id {id}, past the model's vocab_size {n}"
            ))
        })?;
        tokens[slot] = Some(tok.to_string());
        types[slot] = ty;
        Ok(())
    };
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| bad("the BPE model has no vocabulary".into()))?;
    for (tok, id) in vocab {
        let id = id
            .as_u64()
            .ok_or_else(|| bad(format!("token {tok:?} has id {id}")))?;
        place(id, tok, NORMAL)?;
    }
    for a in j["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(tok)) = (a["id"].as_u64(), a["content"].as_str()) else {
            return Err(bad(format!("added token {a} has no id or content")));
        };
        let special = a["special"].as_bool().unwrap_or(false);
        place(id, tok, if special { CONTROL } else { USER_DEFINED })?;
    }
    let tokens: Vec<MetaValue> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            MetaValue::Str(t.unwrap_or_else(|| {
                types[i] = UNUSED;
                format!("[PAD{i}]")
            }))
        })
        .collect();

    let mut merges = Vec::new();
    for m in model["merges"].as_array().into_iter().flatten() {
        let (l, r) = match m {
            Value::String(s) => s.split_once(' ').unwrap_or((s, "")),
            Value::Array(p) if p.len() == 2 => {
                (p[0].as_str().unwrap_or(""), p[1].as_str().unwrap_or(""))
            }
            _ => ("", ""),
        };
        // The reader splits "left right" at the first space after the first character.
        if l.is_empty() || r.is_empty() || l.chars().skip(1).any(|c| c == ' ') {
            return Err(bad(format!(
                "merge {m} cannot be written as GGUF's \"left right\""
            )));
        }
        merges.push(MetaValue::Str(format!("{l} {r}")));
    }

    let mut out = vec![
        ("tokenizer.ggml.model".into(), MetaValue::Str("gpt2".into())),
        ("tokenizer.ggml.pre".into(), MetaValue::Str(pre.into())),
        ("tokenizer.ggml.tokens".into(), MetaValue::Array(tokens)),
        (
            "tokenizer.ggml.token_type".into(),
            MetaValue::Array(types.into_iter().map(MetaValue::I32).collect()),
        ),
        ("tokenizer.ggml.merges".into(), MetaValue::Array(merges)),
    ];
    if let Some(id) = cfg.bos_token_id {
        out.push(("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(id)));
    }
    let eos_keys = [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ];
    if cfg.eos_token_ids.len() > eos_keys.len() {
        return Err(Error::Invalid(format!(
            "{}: the model has {} EOS tokens {:?}; GGUF holds at most 3 (eos, eot, eom)",
            ck.source.display(),
            cfg.eos_token_ids.len(),
            cfg.eos_token_ids
        )));
    }
    for (key, &id) in eos_keys.iter().zip(&cfg.eos_token_ids) {
        out.push((key.to_string(), MetaValue::U32(id)));
    }
    out.push((
        "tokenizer.ggml.add_bos_token".into(),
        MetaValue::Bool(ck.add_bos),
    ));
    if let Some(t) = &ck.chat_template {
        out.push(("tokenizer.chat_template".into(), MetaValue::Str(t.clone())));
    }
    check_tokenizer_reads_back(ck, &out, &file)?;
    Ok(out)
}

/// Rebuilds the tokenizer from `entries` as the GGUF loader will and compares its ids
/// with the original's on text that exercises the pre-tokenizer (letters, digits,
/// punctuation, runs of spaces, line breaks, non-ASCII) and on every special token.
fn check_tokenizer_reads_back(
    ck: &Checkpoint,
    entries: &[(String, MetaValue)],
    file: &Path,
) -> Result<()> {
    let m = Metadata {
        path: file.to_path_buf(),
        entries: entries.iter().cloned().collect(),
    };
    let back = tokenizer::from_gguf(&m)?;
    let mut text = String::from(
        "What is the capital of France? It's 12345 km,  cats!\n\n\tcafé naïve 東京 🙂 don't x=1+2;",
    );
    for t in ck.tokenizer.get_added_tokens_decoder().values() {
        if t.special {
            text.push_str(&t.content);
            text.push_str(" hi");
        }
    }
    let (want, got) = (
        tokenizer::encode(&ck.tokenizer, &text)?,
        tokenizer::encode(&back.tokenizer, &text)?,
    );
    if want != got || back.add_bos != ck.add_bos || back.chat_template != ck.chat_template {
        return Err(loaders::bad_file(
            file,
            "the tokenizer rebuilt from the GGUF metadata written for it behaves differently; \
             nothing written",
        ));
    }
    Ok(())
}

/// Reads `entries` back with [`config_from_metadata`] (plus what the loader takes from
/// the tensors: tying from the absence of `output.weight`, Llama-3 scaling from
/// `rope_freqs`) and refuses metadata that would load as a different model than `want`.
fn check_reads_back(
    entries: &[(String, MetaValue)],
    rope_freqs: Option<&[f32]>,
    want: &ModelConfig,
    out: &Path,
) -> Result<()> {
    let m = Metadata {
        path: out.to_path_buf(),
        entries: entries.iter().cloned().collect(),
    };
    let mut back = config_from_metadata(&m).map_err(|e| {
        Error::Invalid(format!(
            "the GGUF metadata written for this model does not load: {e}"
        ))
    })?;
    back.tie_word_embeddings = want.tie_word_embeddings;
    if let Some(d) = rope_freqs {
        back.rope_scaling = llama3_from_rope_freqs(&back, d);
    }
    let mut want = want.clone();
    if want.architecture == Architecture::Mistral {
        want.architecture = Architecture::Llama;
    }
    // The divisors are f32; the factor recovered from them may differ in its last bits.
    if let (
        Some(RopeScaling::Llama3 { factor: a, .. }),
        Some(RopeScaling::Llama3 { factor: b, .. }),
    ) = (&want.rope_scaling, &mut back.rope_scaling)
    {
        if (*a - *b).abs() <= 1e-5 * a.abs() {
            *b = *a;
        }
    }
    if want != back {
        return Err(Error::Invalid(format!(
            "the GGUF metadata written for this model reads back differently: {}",
            first_difference(&want, &back)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Activation;

    fn llama() -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: 300,
            hidden_size: 64,
            intermediate_size: 96,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            rope_theta: 500000.0,
            rope_scaling: None,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            max_position_embeddings: 4096,
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
            bos_token_id: Some(1),
            eos_token_ids: vec![2, 5],
        }
    }

    /// The metadata built for a config reads back as that config through the GGUF
    /// loader's own parser, for plain, windowed, linearly scaled and Llama-3-scaled
    /// Llamas, Qwen2, and a Mistral (a windowed Llama to llama.cpp).
    #[test]
    fn gguf_config_metadata_reads_back() {
        let out = Path::new("x.gguf");
        let mut cases = vec![llama()];
        cases.push(ModelConfig {
            sliding_window: Some(64),
            architecture: Architecture::Mistral,
            ..llama()
        });
        cases.push(ModelConfig {
            rope_scaling: Some(RopeScaling::Linear { factor: 4.0 }),
            ..llama()
        });
        cases.push(ModelConfig {
            rope_scaling: Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            ..llama()
        });
        cases.push(ModelConfig {
            architecture: Architecture::Qwen2,
            qkv_bias: true,
            eos_token_ids: vec![7],
            bos_token_id: None,
            ..llama()
        });
        for cfg in cases {
            let arch = gguf_architecture(&cfg, out).unwrap();
            let mut m = config_metadata(&cfg, arch, out, GgufOutType::F16).unwrap();
            if let Some(b) = cfg.bos_token_id {
                m.push(("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(b)));
            }
            for (k, &id) in ["eos", "eot", "eom"].iter().zip(&cfg.eos_token_ids) {
                m.push((format!("tokenizer.ggml.{k}_token_id"), MetaValue::U32(id)));
            }
            let freqs = llama3_rope_freqs(&cfg).unwrap();
            assert_eq!(
                freqs.is_some(),
                matches!(cfg.rope_scaling, Some(RopeScaling::Llama3 { .. }))
            );
            check_reads_back(&m, freqs.as_deref(), &cfg, out)
                .unwrap_or_else(|e| panic!("{:?}: {e}", cfg.architecture));
        }

        // What GGUF cannot say is refused, naming the problem.
        let odd = ModelConfig {
            rope_scaling: Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 4096,
            }),
            ..llama()
        };
        let e = llama3_rope_freqs(&odd).unwrap_err().to_string();
        assert!(e.contains("original context 4096"), "{e}");
        let gemma = ModelConfig {
            architecture: Architecture::Gemma2,
            ..llama()
        };
        let e = gguf_architecture(&gemma, Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Gemma-2") && e.starts_with("invalid argument: m:"),
            "{e}"
        );
        let biased = ModelConfig {
            qkv_bias: true,
            ..llama()
        };
        let m = config_metadata(&biased, "llama", out, GgufOutType::F16).unwrap();
        let e = check_reads_back(&m, None, &biased, out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reads back differently") && e.contains("qkv_bias"),
            "{e}"
        );
    }

    #[test]
    fn gguf_out_types() {
        use GgufOutType::*;
        assert_eq!("Q8_0".parse::<GgufOutType>().unwrap(), Q8_0);
        assert_eq!("f16".parse::<GgufOutType>().unwrap(), F16);
        assert!("q4_0".parse::<GgufOutType>().is_err());
        assert_eq!(Q8_0.for_shape(&[10, 64]), GgmlType::Q8_0);
        assert_eq!(Q8_0.for_shape(&[64, 44]), GgmlType::F16);
        assert_eq!(Q8_0.for_shape(&[64]), GgmlType::F32);
        assert_eq!(F16.for_shape(&[10, 44]), GgmlType::F16);
        assert_eq!((F16.file_type(), Q8_0.file_type()), (1, 7));
        let e = encode("a", "b", &[1e5, 0.0], GgmlType::F16)
            .unwrap_err()
            .to_string();
        assert!(e.contains("F16's range") && e.contains("'a' (b)"), "{e}");
        let e = encode("a", "b", &[f32::NAN], GgmlType::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-finite"), "{e}");
        let mut big = vec![0f32; 32];
        big[3] = 1e10;
        let e = encode("a", "b", &big, GgmlType::Q8_0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Q8_0's range"), "{e}");
    }
}
