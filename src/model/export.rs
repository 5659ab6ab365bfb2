//! Writing a model back out as a Hugging Face directory, adapter-free: `config.json` (a
//! transformers config for LlamaForCausalLM, MistralForCausalLM, Gemma2ForCausalLM or
//! Qwen2ForCausalLM), `model.safetensors` (F32, F16 or BF16, Hugging Face tensor names;
//! by default the precision of the model that was loaded, see [`Checkpoint::precision`]),
//! `tokenizer.json`, `tokenizer_config.json` and `generation_config.json`.
//!
//! This is what `boha merge` writes: each adapted projection is merged on the GPU into a
//! temporary f32 tensor as its turn comes (`merged_values`), read back and streamed
//! into the file, so the GPU holds the frozen weights (in whatever dtype they are) plus
//! one merged projection, and host memory one tensor, never the whole model.
//!
//! The directory is written atomically: everything goes into a temporary sibling
//! directory, which is renamed into place only when every file is complete and synced.
//! A destination that exists and is not empty is refused (nothing is overwritten); a
//! failure leaves no directory at the destination.
//!
//! The config is checked before anything is written: parsed back with boha's own loader
//! ([`crate::loaders::hf::config_from_json`]), it must give the model's [`ModelConfig`],
//! so the output loads back as the same model.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{json, Map, Value};

use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Tensor};
use crate::loaders::{self, Checkpoint};
use crate::model::config::{Activation, Architecture, ModelConfig, RopeScaling};
use crate::model::transformer::{Adapters, Weights};

/// File names of the written directory.
pub const CONFIG_FILE: &str = "config.json";
pub const WEIGHTS_FILE: &str = "model.safetensors";
pub const TOKENIZER_FILE: &str = "tokenizer.json";
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";

/// What [`merge_to_hf`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct MergeSummary {
    /// Adapted matrices merged into the weights.
    pub merged_matrices: usize,
    /// Tensors written to `model.safetensors`.
    pub tensors: usize,
    /// Size of `model.safetensors` in bytes.
    pub weight_bytes: u64,
    /// The dtype every tensor was written in.
    pub dtype: DType,
}

/// Loads the checkpoint at `model` (a Hugging Face directory or a GGUF file), attaches
/// the adapter in `adapter` (an error if it does not fit the model), and writes the
/// merged model to `out` (each projection merged on the GPU as it is written) in
/// `dtype` (F32, F16 or BF16; `None`: the model's own precision, F16 for a quantized
/// one). `out` and `dtype` are checked first, so a refused destination costs no loading.
pub fn merge_to_hf(
    gpu: &Gpu,
    model: &Path,
    adapter: &Path,
    out: &Path,
    dtype: Option<DType>,
) -> Result<MergeSummary> {
    check_destination(out)?;
    if let Some(d) = dtype {
        check_output_dtype(d)?;
    }
    let ck = loaders::load_checkpoint(model)?;
    let dtype = dtype.unwrap_or_else(|| ck.precision());
    let weights = Weights::upload(gpu, &ck)?;
    let adapters = Adapters::load(gpu, &weights, adapter)?;
    let merged_matrices = adapters.iter().count();
    let (tensors, weight_bytes) =
        write_hf_model_counted(gpu, &weights, Some(&adapters), &ck, out, dtype)?;
    Ok(MergeSummary {
        merged_matrices,
        tensors,
        weight_bytes,
        dtype,
    })
}

/// Refuses an output dtype that a Hugging Face checkpoint does not hold (the block
/// types are GGUF's).
pub fn check_output_dtype(dtype: DType) -> Result<()> {
    match dtype {
        DType::F32 | DType::F16 | DType::BF16 => Ok(()),
        other => Err(Error::Invalid(format!(
            "--dtype {other}: a Hugging Face checkpoint is written as f32, f16 or bf16"
        ))),
    }
}

/// Writes `weights`, with `adapters` merged into them when given (one projection at a
/// time, `merged_values`), as a Hugging Face directory at `out`, with the tokenizer,
/// chat template, BOS/EOS and generation defaults of `ck` (its host tensors are not
/// used), every tensor in `dtype`
/// (F32, F16 or BF16, rounded to nearest even). The write is atomic; an `out` that
/// exists and is not empty is refused.
pub fn write_hf_model(
    gpu: &Gpu,
    weights: &Weights,
    adapters: Option<&Adapters>,
    ck: &Checkpoint,
    out: &Path,
    dtype: DType,
) -> Result<()> {
    write_hf_model_counted(gpu, weights, adapters, ck, out, dtype).map(|_| ())
}

fn write_hf_model_counted(
    gpu: &Gpu,
    weights: &Weights,
    adapters: Option<&Adapters>,
    ck: &Checkpoint,
    out: &Path,
    dtype: DType,
) -> Result<(usize, u64)> {
    check_destination(out)?;
    check_output_dtype(dtype)?;
    let mut config = weights.config.clone();
    config.bos_token_id = ck
        .bos_token
        .as_ref()
        .map(|(_, id)| *id)
        .or(config.bos_token_id);
    if !ck.eos_tokens.is_empty() {
        config.eos_token_ids = ck.eos_tokens.clone();
    }
    let mut config_json = hf_config(&config)?;
    config_json["torch_dtype"] = json!(torch_dtype(dtype));
    let tokenizer_json = tokenizer_json(ck)?;
    let tokenizer_config = tokenizer_config(ck, &config)?;
    let generation = generation_config(ck, &config);

    let tmp = temp_sibling(out)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let result = (|| {
        std::fs::create_dir(&tmp).map_err(|e| Error::io(&tmp, e))?;
        let counted = write_safetensors(gpu, weights, adapters, &tmp.join(WEIGHTS_FILE), dtype)?;
        write_synced(&tmp.join(TOKENIZER_FILE), tokenizer_json.as_bytes())?;
        write_synced(
            &tmp.join(TOKENIZER_CONFIG_FILE),
            pretty(&tokenizer_config).as_bytes(),
        )?;
        write_synced(
            &tmp.join(GENERATION_CONFIG_FILE),
            pretty(&generation).as_bytes(),
        )?;
        write_synced(&tmp.join(CONFIG_FILE), pretty(&config_json).as_bytes())?;
        sync_dir(&tmp);
        // A destination that is an empty directory is replaced (rename(2) would do it on
        // Unix; removing it first makes that portable). `remove_dir` fails on a
        // directory that filled up meanwhile, so that one is never clobbered.
        if out.is_dir() {
            std::fs::remove_dir(out).map_err(|e| Error::io(out, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        if let Some(parent) = out.parent() {
            sync_dir(if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            });
        }
        Ok(counted)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// Refuses a destination that exists and is not an empty directory, with a one-line
/// error naming it.
pub fn check_destination(out: &Path) -> Result<()> {
    if out.file_name().is_none() {
        return Err(Error::Invalid(format!(
            "{}: not a usable output directory name",
            out.display()
        )));
    }
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(out, e)),
        Ok(m) if !m.is_dir() => Err(Error::Invalid(format!(
            "{}: exists and is not a directory (refusing to overwrite it)",
            out.display()
        ))),
        Ok(_) => {
            let mut entries = std::fs::read_dir(out).map_err(|e| Error::io(out, e))?;
            if entries.next().is_some() {
                Err(Error::Invalid(format!(
                    "{}: exists and is not empty (refusing to overwrite it)",
                    out.display()
                )))
            } else {
                Ok(())
            }
        }
    }
}

/// The Hugging Face name of one of boha's tensor names (`embed`, `layers.{i}.q`, …) in
/// architecture `arch`; `None` for a name boha does not use. The inverse of
/// [`crate::loaders::hf::boha_name`].
pub fn hf_tensor_name(name: &str, arch: Architecture) -> Option<String> {
    match name {
        "embed" => return Some("model.embed_tokens.weight".into()),
        "final_norm" => return Some("model.norm.weight".into()),
        "lm_head" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = name.strip_prefix("layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let n: usize = layer.parse().ok()?;
    if n.to_string() != layer {
        return None;
    }
    let gemma = arch == Architecture::Gemma2;
    let hf = match part {
        "attn_norm" => "input_layernorm.weight",
        "q" => "self_attn.q_proj.weight",
        "k" => "self_attn.k_proj.weight",
        "v" => "self_attn.v_proj.weight",
        "o" => "self_attn.o_proj.weight",
        "q_bias" => "self_attn.q_proj.bias",
        "k_bias" => "self_attn.k_proj.bias",
        "v_bias" => "self_attn.v_proj.bias",
        "post_attn_norm" if gemma => "post_attention_layernorm.weight",
        "mlp_norm" if gemma => "pre_feedforward_layernorm.weight",
        "mlp_norm" => "post_attention_layernorm.weight",
        "post_mlp_norm" if gemma => "post_feedforward_layernorm.weight",
        "gate" => "mlp.gate_proj.weight",
        "up" => "mlp.up_proj.weight",
        "down" => "mlp.down_proj.weight",
        _ => return None,
    };
    Some(format!("model.layers.{n}.{hf}"))
}

/// The architecture name written as `architectures[0]` and `model_type`. A Llama with a
/// sliding window (possible from GGUF) is written as Mistral, which is exactly that.
fn hf_architecture(cfg: &ModelConfig) -> (&'static str, &'static str) {
    match cfg.architecture {
        Architecture::Llama if cfg.sliding_window.is_some() => ("MistralForCausalLM", "mistral"),
        Architecture::Llama => ("LlamaForCausalLM", "llama"),
        Architecture::Mistral => ("MistralForCausalLM", "mistral"),
        Architecture::Gemma2 => ("Gemma2ForCausalLM", "gemma2"),
        Architecture::Qwen2 => ("Qwen2ForCausalLM", "qwen2"),
    }
}

/// An f32 as the JSON number of its shortest decimal form (1e-5 rather than
/// 9.999999747378752e-6, the f32 widened to f64), which parses back to the same f32.
fn num(x: f32) -> Value {
    match format!("{x}").parse::<f64>() {
        Ok(v) if v.is_finite() => json!(v),
        _ => Value::Null,
    }
}

/// A token id list as transformers writes it: one id as a number, several as a list,
/// none as null.
fn ids_value(ids: &[u32]) -> Value {
    match ids {
        [] => Value::Null,
        [one] => json!(one),
        many => json!(many),
    }
}

/// The transformers `config.json` of `cfg`: architectures, model_type, every size,
/// RoPE (theta and scaling), norms, tying, windows and Gemma-2's soft-caps, with the
/// field names transformers' config classes use. Errors when the model cannot be
/// expressed as one of the four architectures exactly as boha runs it (e.g. a Qwen2 with
/// a sliding window on every layer, which transformers does not have); the result is
/// checked by parsing it back with boha's loader.
pub fn hf_config(cfg: &ModelConfig) -> Result<Value> {
    let (arch_name, model_type) = hf_architecture(cfg);
    let gemma = cfg.architecture == Architecture::Gemma2;
    let act = match cfg.hidden_activation {
        Activation::Silu => "silu",
        Activation::GeluTanh => "gelu_pytorch_tanh",
    };
    let rope_scaling = match cfg.rope_scaling {
        None => Value::Null,
        Some(RopeScaling::Linear { factor }) => json!({
            "rope_type": "linear",
            "factor": num(factor),
        }),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => json!({
            "rope_type": "llama3",
            "factor": num(factor),
            "low_freq_factor": num(low_freq_factor),
            "high_freq_factor": num(high_freq_factor),
            "original_max_position_embeddings": original_max_position_embeddings,
        }),
    };
    let mut j = json!({
        "architectures": [arch_name],
        "model_type": model_type,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_layers,
        "num_attention_heads": cfg.num_heads,
        "num_key_value_heads": cfg.num_kv_heads,
        "head_dim": cfg.head_dim,
        "hidden_act": act,
        "max_position_embeddings": cfg.max_position_embeddings,
        "rms_norm_eps": num(cfg.rms_norm_eps),
        "rope_theta": num(cfg.rope_theta),
        "rope_scaling": rope_scaling,
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": ids_value(&cfg.eos_token_ids),
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": true,
        "torch_dtype": "float32",
    });
    let o = j.as_object_mut().expect("built as an object");
    match (cfg.architecture, arch_name) {
        (_, "LlamaForCausalLM") => {
            o.insert("attention_bias".into(), json!(false));
            o.insert("mlp_bias".into(), json!(false));
            o.insert("pretraining_tp".into(), json!(1));
        }
        (_, "MistralForCausalLM") => {
            o.insert("sliding_window".into(), json!(cfg.sliding_window));
        }
        (Architecture::Gemma2, _) => {
            o.insert("hidden_activation".into(), json!(act));
            o.insert("attention_bias".into(), json!(false));
            o.insert(
                "query_pre_attn_scalar".into(),
                num(cfg.query_pre_attn_scalar.unwrap_or(cfg.head_dim as f32)),
            );
            o.insert(
                "attn_logit_softcapping".into(),
                cfg.attn_logit_softcapping.map_or(Value::Null, num),
            );
            o.insert(
                "final_logit_softcapping".into(),
                cfg.final_logit_softcapping.map_or(Value::Null, num),
            );
            o.insert("sliding_window".into(), json!(cfg.sliding_window));
            o.insert("cache_implementation".into(), json!("hybrid"));
        }
        (Architecture::Qwen2, _) => {
            if let Some(w) = cfg.sliding_window {
                return Err(Error::Invalid(format!(
                    "a Qwen2 model with a {w}-token window on every layer has no Hugging Face config (transformers' Qwen2 windows only some layers)"
                )));
            }
            o.insert("use_sliding_window".into(), json!(false));
            o.insert("sliding_window".into(), Value::Null);
            o.insert("max_window_layers".into(), json!(cfg.num_layers));
        }
        _ => {}
    }
    if gemma != cfg.alternating_sliding_window
        || gemma != cfg.post_norms
        || gemma != cfg.norm_weight_offset
        || gemma != cfg.scale_embeddings
    {
        return Err(Error::Invalid(format!(
            "this {:?} model mixes Gemma-2 switches with others; it has no Hugging Face config",
            cfg.architecture
        )));
    }

    // The written config must read back as this model.
    let back = loaders::hf::config_from_json(&j, Path::new(CONFIG_FILE)).map_err(|e| {
        Error::Invalid(format!(
            "the Hugging Face config written for this model does not load: {e}"
        ))
    })?;
    let normalize = |c: &ModelConfig| ModelConfig {
        query_pre_attn_scalar: match c.architecture {
            Architecture::Gemma2 => Some(c.query_pre_attn_scalar.unwrap_or(c.head_dim as f32)),
            _ => c.query_pre_attn_scalar,
        },
        architecture: match c.architecture {
            Architecture::Llama if c.sliding_window.is_some() => Architecture::Mistral,
            a => a,
        },
        ..c.clone()
    };
    let (want, got) = (normalize(cfg), normalize(&back));
    if want != got {
        return Err(Error::Invalid(format!(
            "the Hugging Face config written for this model reads back differently: {}",
            first_difference(&want, &got)
        )));
    }
    Ok(j)
}

/// The first field (by Debug rendering) where two configs differ, for errors saying
/// that a written config reads back differently.
pub(crate) fn first_difference(a: &ModelConfig, b: &ModelConfig) -> String {
    let (da, db) = (format!("{a:?}"), format!("{b:?}"));
    let fields = |s: &str| -> Vec<String> {
        s.trim_start_matches("ModelConfig {")
            .split(", ")
            .map(str::to_string)
            .collect()
    };
    fields(&da)
        .into_iter()
        .zip(fields(&db))
        .find(|(x, y)| x != y)
        .map(|(x, y)| format!("{x} became {y}"))
        .unwrap_or_else(|| "configs differ".into())
}

/// `tokenizer.json`: the source file verbatim for a Hugging Face checkpoint, else the
/// checkpoint's tokenizer serialized (e.g. the one rebuilt from GGUF metadata).
fn tokenizer_json(ck: &Checkpoint) -> Result<String> {
    let src = ck.source.join(TOKENIZER_FILE);
    if ck.source.is_dir() && src.is_file() {
        return std::fs::read_to_string(&src).map_err(|e| Error::io(&src, e));
    }
    ck.tokenizer
        .to_string(true)
        .map_err(|e| Error::Invalid(format!("cannot serialize the tokenizer: {e}")))
}

/// `tokenizer_config.json`: the source's own (for a Hugging Face checkpoint) with the
/// chat template, BOS and EOS tokens and `add_bos_token` set from the checkpoint.
fn tokenizer_config(ck: &Checkpoint, cfg: &ModelConfig) -> Result<Value> {
    let src = ck.source.join(TOKENIZER_CONFIG_FILE);
    let mut o: Map<String, Value> = if ck.source.is_dir() && src.is_file() {
        let text = std::fs::read_to_string(&src).map_err(|e| Error::io(&src, e))?;
        match serde_json::from_str(&text) {
            Ok(Value::Object(o)) => o,
            _ => Map::new(),
        }
    } else {
        Map::new()
    };
    match &ck.chat_template {
        // A list of named templates is kept as it is (the default one is ck's).
        Some(_) if o.get("chat_template").is_some_and(Value::is_array) => {}
        Some(t) => {
            o.insert("chat_template".into(), json!(t));
        }
        None => {
            o.remove("chat_template");
        }
    }
    if let Some((tok, _)) = &ck.bos_token {
        o.insert("bos_token".into(), json!(tok));
    }
    // Keep the source's EOS token when it is one of the model's; else the first EOS id.
    let eos_ok = match o.get("eos_token") {
        Some(Value::String(s)) => ck.tokenizer.token_to_id(s),
        Some(Value::Object(t)) => t
            .get("content")
            .and_then(Value::as_str)
            .and_then(|s| ck.tokenizer.token_to_id(s)),
        _ => None,
    }
    .is_some_and(|id| ck.eos_tokens.contains(&id));
    if !eos_ok {
        match ck
            .eos_tokens
            .first()
            .and_then(|&id| ck.tokenizer.id_to_token(id))
        {
            Some(tok) => {
                o.insert("eos_token".into(), json!(tok));
            }
            None => {
                o.remove("eos_token");
            }
        }
    }
    o.insert("add_bos_token".into(), json!(ck.add_bos));
    o.entry("add_eos_token").or_insert(json!(false));
    o.entry("tokenizer_class")
        .or_insert(json!("PreTrainedTokenizerFast"));
    o.entry("model_max_length")
        .or_insert(json!(cfg.max_position_embeddings));
    o.entry("clean_up_tokenization_spaces")
        .or_insert(json!(false));
    Ok(Value::Object(o))
}

/// `generation_config.json`: BOS, EOS ids and the sampling defaults the checkpoint has.
fn generation_config(ck: &Checkpoint, cfg: &ModelConfig) -> Value {
    let g = &ck.generation;
    let mut o = Map::new();
    if let Some(id) = cfg.bos_token_id {
        o.insert("bos_token_id".into(), json!(id));
    }
    if !cfg.eos_token_ids.is_empty() {
        o.insert("eos_token_id".into(), ids_value(&cfg.eos_token_ids));
    }
    if let Some(v) = g.do_sample {
        o.insert("do_sample".into(), json!(v));
    }
    if let Some(v) = g.temperature {
        o.insert("temperature".into(), num(v));
    }
    if let Some(v) = g.top_p {
        o.insert("top_p".into(), num(v));
    }
    if let Some(v) = g.top_k {
        o.insert("top_k".into(), json!(v));
    }
    if let Some(v) = g.repetition_penalty {
        o.insert("repetition_penalty".into(), num(v));
    }
    if let Some(v) = g.max_new_tokens {
        o.insert("max_new_tokens".into(), json!(v));
    }
    if cfg.architecture == Architecture::Gemma2 {
        o.insert("cache_implementation".into(), json!("hybrid"));
    }
    Value::Object(o)
}

/// Every tensor of `w` in [`ModelConfig::expected_tensors`] order, under boha's name.
pub(crate) fn named_tensors(w: &Weights) -> Result<Vec<(String, &Tensor)>> {
    let mut out = Vec::new();
    for spec in w.config.expected_tensors() {
        let t = weight_tensor(w, &spec.name)?;
        if t.shape() != spec.shape.as_slice() {
            return Err(Error::shape(
                "export",
                format!(
                    "{} is {:?}, the config needs {:?}",
                    spec.name,
                    t.shape(),
                    spec.shape
                ),
            ));
        }
        out.push((spec.name, t));
    }
    Ok(out)
}

/// The GPU tensor behind one of boha's tensor names.
fn weight_tensor<'a>(w: &'a Weights, name: &str) -> Result<&'a Tensor> {
    let missing = || Error::Invalid(format!("the model has no tensor '{name}'"));
    match name {
        "embed" => return Ok(&w.embed),
        "final_norm" => return Ok(&w.final_norm),
        "lm_head" => return Ok(&w.lm_head),
        _ => {}
    }
    let (layer, part) = name
        .strip_prefix("layers.")
        .and_then(|r| r.split_once('.'))
        .ok_or_else(missing)?;
    let lw = layer
        .parse::<usize>()
        .ok()
        .and_then(|l| w.layers.get(l))
        .ok_or_else(missing)?;
    let t = match part {
        "attn_norm" => Some(&lw.attn_norm),
        "q_bias" => lw.q_bias.as_ref(),
        "k_bias" => lw.k_bias.as_ref(),
        "v_bias" => lw.v_bias.as_ref(),
        "post_attn_norm" => lw.post_attn_norm.as_ref(),
        "mlp_norm" => Some(&lw.mlp_norm),
        "post_mlp_norm" => lw.post_mlp_norm.as_ref(),
        p => lw.projection(p).ok(),
    };
    t.ok_or_else(missing)
}

/// The values of tensor `name` of `w` as the merged model holds them: for a projection
/// that `adapters` adapts, W' = merge(W0, adapter) computed into a temporary f32 tensor
/// on the GPU and read back; every other tensor read back (widened or decoded) as it is.
/// One tensor at a time, so the GPU never holds more than one merged projection beside
/// the frozen weights, whatever their dtype.
pub(crate) fn merged_values(
    gpu: &Gpu,
    w: &Weights,
    adapters: Option<&Adapters>,
    name: &str,
) -> Result<Vec<f32>> {
    let t = weight_tensor(w, name)?;
    let adapter = adapters.and_then(|ads| {
        let (layer, part) = name.strip_prefix("layers.")?.split_once('.')?;
        ads.layers.get(layer.parse::<usize>().ok()?)?.get(part)
    });
    let Some(ad) = adapter else {
        return gpu.download(t);
    };
    let merged = gpu.zeros(t.shape())?;
    let mut rec = crate::gpu::Recorder::new();
    rec.run_all(&ad.merge(gpu, t, &merged)?);
    gpu.run(&rec)?;
    gpu.download(&merged)
}

/// transformers' name of an output dtype (`torch_dtype` in config.json).
fn torch_dtype(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "float16",
        DType::BF16 => "bfloat16",
        _ => "float32",
    }
}

/// Streams every tensor of `w` (merged with `adapters` when given, see
/// [`merged_values`]) from the GPU into a safetensors file at `path` in `dtype` (header
/// first, offsets computed from the shapes; one tensor in host memory at a time).
/// Refuses non-finite values and values beyond the dtype's range, naming the tensor.
/// Returns the tensor count and the file size.
fn write_safetensors(
    gpu: &Gpu,
    w: &Weights,
    adapters: Option<&Adapters>,
    path: &Path,
    dtype: DType,
) -> Result<(usize, u64)> {
    let (st_name, width) = match dtype {
        DType::F16 => ("F16", 2u64),
        DType::BF16 => ("BF16", 2),
        _ => ("F32", 4),
    };
    let arch = w.config.architecture;
    let tensors = named_tensors(w)?;
    let mut header = Map::new();
    header.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut offset = 0u64;
    let mut hf_names = Vec::with_capacity(tensors.len());
    for (name, t) in &tensors {
        let hf = hf_tensor_name(name, arch)
            .ok_or_else(|| Error::Invalid(format!("no Hugging Face name for tensor '{name}'")))?;
        let bytes = width * t.len() as u64;
        header.insert(
            hf.clone(),
            json!({"dtype": st_name, "shape": t.shape(), "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
        hf_names.push(hf);
    }
    let mut head = serde_json::to_vec(&Value::Object(header))
        .map_err(|e| Error::Invalid(format!("safetensors header: {e}")))?;
    // safetensors pads the header with spaces so the data starts 8-byte aligned.
    head.resize(head.len().div_ceil(8) * 8, b' ');

    let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let io = |e| Error::io(path, e);
    out.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(io)?;
    out.write_all(&head).map_err(io)?;
    for ((name, _), hf) in tensors.iter().zip(&hf_names) {
        let data = merged_values(gpu, w, adapters, name)?;
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "merged tensor '{hf}' ({name}) has a non-finite value {} at element {i}; nothing written",
                data[i]
            )));
        }
        // A value beyond f16's range would turn into an infinity on the way out (bf16
        // has f32's range).
        let fits = dtype != DType::F16 || data.iter().all(|v| v.abs() <= 65504.0);
        let encoded = dtype.encode(&data).filter(|_| fits).ok_or_else(|| {
            Error::Invalid(format!(
                "merged tensor '{hf}' ({name}) does not fit {dtype}; nothing written (try --dtype f32)"
            ))
        })?;
        out.write_all(&encoded[..(width as usize) * data.len()])
            .map_err(io)?;
    }
    let file = out
        .into_inner()
        .map_err(|e| Error::io(path, e.into_error()))?;
    file.sync_all().map_err(io)?;
    Ok((tensors.len(), 8 + head.len() as u64 + offset))
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("JSON values serialize");
    s.push('\n');
    s
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    f.write_all(bytes).map_err(|e| Error::io(path, e))?;
    f.sync_all().map_err(|e| Error::io(path, e))
}

/// Best-effort fsync of a directory (makes a rename durable where the OS allows it).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

/// A fresh hidden sibling of `dir` (a directory or a file) to build the output in.
pub(crate) fn temp_sibling(dir: &Path) -> Result<PathBuf> {
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = dir.file_name().ok_or_else(|| {
        Error::Invalid(format!(
            "{}: not a usable output directory name",
            dir.display()
        ))
    })?;
    Ok(dir.with_file_name(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loaders::hf::boha_name;

    #[test]
    fn tensor_names_invert_the_loader() {
        for arch in [
            Architecture::Llama,
            Architecture::Mistral,
            Architecture::Gemma2,
            Architecture::Qwen2,
        ] {
            for ours in [
                "embed",
                "final_norm",
                "lm_head",
                "layers.0.attn_norm",
                "layers.3.q",
                "layers.3.k",
                "layers.3.v",
                "layers.3.o",
                "layers.12.q_bias",
                "layers.12.k_bias",
                "layers.12.v_bias",
                "layers.1.mlp_norm",
                "layers.1.gate",
                "layers.1.up",
                "layers.1.down",
            ] {
                let hf = hf_tensor_name(ours, arch).unwrap();
                assert_eq!(boha_name(&hf, arch).as_deref(), Some(ours), "{arch:?} {hf}");
            }
            let gemma_only = ["layers.2.post_attn_norm", "layers.2.post_mlp_norm"];
            for ours in gemma_only {
                let hf = hf_tensor_name(ours, arch);
                if arch == Architecture::Gemma2 {
                    assert_eq!(boha_name(&hf.unwrap(), arch).as_deref(), Some(ours));
                } else {
                    assert_eq!(hf, None);
                }
            }
        }
        assert_eq!(hf_tensor_name("layers.01.q", Architecture::Llama), None);
        assert_eq!(hf_tensor_name("layers.x.q", Architecture::Llama), None);
        assert_eq!(hf_tensor_name("rope", Architecture::Llama), None);
    }

    #[test]
    fn floats_keep_their_short_form() {
        assert_eq!(num(1e-5).as_f64(), Some(1e-5));
        assert_eq!(num(1e-5).as_f64().unwrap() as f32, 1e-5f32);
        assert_eq!(num(10000.0).as_f64().unwrap(), 10000.0);
        assert_eq!(num(f32::NAN), Value::Null);
    }
}
