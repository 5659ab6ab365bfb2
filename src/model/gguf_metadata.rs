//! The metadata of a GGUF file written by [`crate::model::export_gguf`]: a GGUF
//! source's key/values copied, or a Hugging Face source's built from its
//! [`ModelConfig`] (the exact inverse of [`crate::loaders::gguf::config_from_metadata`])
//! and its byte-level BPE tokenizer, and the check that either reads back, through
//! boha's own GGUF code, as the same model and the same tokenization.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::export_gguf::GgufOutType;
use crate::error::{Error, Result};
use crate::loaders::gguf::writer;
use crate::loaders::gguf::{
    config_from_metadata, llama3_from_rope_freqs, GgufFile, MetaValue, Metadata,
};
use crate::loaders::{self, tokenizer, Checkpoint};
use crate::model::config::{Architecture, ModelConfig, RopeScaling};
use crate::model::export::first_difference;

/// The key/values of the GGUF file at `source`, with `general.file_type` and
/// `general.alignment` set for the output; `general.architecture` first.
pub(crate) fn copied_metadata(
    source: &Path,
    dtype: GgufOutType,
) -> Result<Vec<(String, MetaValue)>> {
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
pub(crate) fn config_metadata(
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
pub(crate) fn llama3_rope_freqs(cfg: &ModelConfig) -> Result<Option<Vec<f32>>> {
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
pub(crate) fn tokenizer_file(ck: &Checkpoint) -> PathBuf {
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
pub(crate) fn tokenizer_metadata(
    ck: &Checkpoint,
    cfg: &ModelConfig,
) -> Result<Vec<(String, MetaValue)>> {
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
pub(crate) fn check_tokenizer_reads_back(
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
pub(crate) fn check_reads_back(
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
