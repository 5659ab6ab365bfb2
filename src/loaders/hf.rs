//! Hugging Face checkpoint directories: config.json, model.safetensors (or shards),
//! tokenizer.json, tokenizer_config.json (chat template, BOS/EOS), chat_template.jinja,
//! generation_config.json (EOS ids, sampling defaults).
//!
//! Accepted `architectures[0]`: LlamaForCausalLM, MistralForCausalLM, Gemma2ForCausalLM,
//! Qwen2ForCausalLM. Refused with an error naming the field and value: other
//! architectures, `rope_scaling` other than default / linear / llama3, activations other
//! than SiLU (Gemma-2: GELU-tanh), Llama/Mistral/Gemma `attention_bias`, `mlp_bias`, and
//! Qwen2's `use_sliding_window`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::folder::Folder;
use super::{
    bad_file, check_tensors, push_unique, read_text, tokenizer, Checkpoint, GenerationDefaults,
};
use crate::model::{Activation, Architecture, ModelConfig, RopeScaling};
use crate::Result;

/// Loads a Hugging Face directory (see the module docs).
pub fn load_hf_dir(dir: &Path) -> Result<Checkpoint> {
    load_hf(&Folder::Disk(dir.to_path_buf()))
}

/// Loads a Hugging Face checkpoint from its files' bytes by file name (config.json,
/// model.safetensors or the index and its shards, tokenizer.json, and the optional
/// tokenizer_config.json, chat_template.jinja, generation_config.json), as a web page
/// gets them from the File API; `name` names the checkpoint in messages. Tensors read
/// their values from those bytes when used.
pub fn load_hf_files(name: &Path, files: Vec<(String, Vec<u8>)>) -> Result<Checkpoint> {
    load_hf(&Folder::memory(name, files)?)
}

fn load_hf(dir: &Folder) -> Result<Checkpoint> {
    let config_path = dir.join("config.json");
    let config_json = dir.read_json("config.json")?;
    let mut config = config_from_json(&config_json, &config_path)?;

    let mut tensors = BTreeMap::new();
    let (weights_path, weights) = super::safetensors::read_folder(dir)?;
    for (hf_name, t) in weights {
        let Some(name) = boha_name(&hf_name, config.architecture) else {
            if hf_name.ends_with("rotary_emb.inv_freq") {
                continue; // recomputed from the config
            }
            return Err(bad_file(
                dir.path(),
                format!(
                    "unrecognized tensor '{hf_name}' for {:?}",
                    config.architecture
                ),
            ));
        };
        if name == "lm_head" && config.tie_word_embeddings {
            continue;
        }
        if tensors.insert(name.clone(), t).is_some() {
            return Err(bad_file(
                dir.path(),
                format!("tensor '{hf_name}' appears twice"),
            ));
        }
    }
    check_tensors(&weights_path, "config.json", &config, &tensors)?;

    let tok_path = dir.join("tokenizer.json");
    if !dir.has("tokenizer.json") {
        return Err(bad_file(
            dir.path(),
            "no tokenizer.json (tokenizer.model alone is not supported)",
        ));
    }
    let tok = tokenizer::from_bytes(&dir.read("tokenizer.json")?)
        .map_err(|e| bad_file(&tok_path, format!("cannot load tokenizer: {e}")))?;
    super::check_vocab(&tok_path, &tok, config.vocab_size)?;

    let tc_path = dir.join("tokenizer_config.json");
    let tc = if dir.has("tokenizer_config.json") {
        tokenizer::TokenizerConfig::from_json(&dir.read_json("tokenizer_config.json")?, &tc_path)?
    } else {
        tokenizer::TokenizerConfig::default()
    };
    let chat_template = if dir.has("chat_template.jinja") {
        Some(dir.read_text("chat_template.jinja")?)
    } else {
        tc.chat_template.clone()
    };

    let gen_path = dir.join("generation_config.json");
    let (generation, gen_bos, gen_eos) = if dir.has("generation_config.json") {
        generation_from_json(&dir.read_json("generation_config.json")?, &gen_path)?
    } else {
        (GenerationDefaults::default(), None, vec![])
    };

    // BOS: config.json, then generation_config.json, then tokenizer_config.json's string.
    let bos_id = config
        .bos_token_id
        .or(gen_bos)
        .or_else(|| tc.bos_token.as_deref().and_then(|s| tok.token_to_id(s)));
    let bos_token = bos_id.and_then(|id| tok.id_to_token(id).map(|s| (s, id)));
    // EOS: generation_config.json first (it lists end-of-turn ids too), then the rest.
    let mut eos = Vec::new();
    for id in gen_eos.iter().chain(&config.eos_token_ids) {
        push_unique(&mut eos, *id);
    }
    if let Some(id) = tc.eos_token.as_deref().and_then(|s| tok.token_to_id(s)) {
        push_unique(&mut eos, id);
    }
    config.bos_token_id = bos_id;
    config.eos_token_ids = eos.clone();

    // `encode` never runs the post-processor (chat templates write BOS themselves), so
    // raw-text prompts need BOS whenever the post-processor or the config would add it.
    let add_bos = bos_id.is_some()
        && (tc.add_bos_token.unwrap_or(false) || tokenizer::post_processor_adds(&tok, bos_id));

    Ok(Checkpoint {
        config,
        tensors,
        tokenizer: tok,
        chat_template,
        bos_token,
        eos_tokens: eos,
        add_bos,
        generation,
        source: dir.path().to_path_buf(),
    })
}

/// boha's name of a Hugging Face tensor name, or `None` when it is not one of ours.
pub fn boha_name(hf: &str, arch: Architecture) -> Option<String> {
    match hf {
        "model.embed_tokens.weight" => return Some("embed".into()),
        "model.norm.weight" => return Some("final_norm".into()),
        "lm_head.weight" => return Some("lm_head".into()),
        _ => {}
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, part) = rest.split_once('.')?;
    let n: usize = layer.parse().ok()?;
    if n.to_string() != layer {
        return None; // "01" and the like
    }
    let ours = match part {
        "input_layernorm.weight" => "attn_norm",
        "self_attn.q_proj.weight" => "q",
        "self_attn.k_proj.weight" => "k",
        "self_attn.v_proj.weight" => "v",
        "self_attn.o_proj.weight" => "o",
        "self_attn.q_proj.bias" => "q_bias",
        "self_attn.k_proj.bias" => "k_bias",
        "self_attn.v_proj.bias" => "v_bias",
        // Gemma-2 normalizes the attention output here; the others normalize the MLP input.
        "post_attention_layernorm.weight" if arch == Architecture::Gemma2 => "post_attn_norm",
        "post_attention_layernorm.weight" => "mlp_norm",
        "pre_feedforward_layernorm.weight" if arch == Architecture::Gemma2 => "mlp_norm",
        "post_feedforward_layernorm.weight" if arch == Architecture::Gemma2 => "post_mlp_norm",
        "mlp.gate_proj.weight" => "gate",
        "mlp.up_proj.weight" => "up",
        "mlp.down_proj.weight" => "down",
        _ => return None,
    };
    Some(format!("layers.{n}.{ours}"))
}

fn read_json(path: &Path) -> Result<Value> {
    serde_json::from_str(&read_text(path)?)
        .map_err(|e| bad_file(path, format!("invalid JSON: {e}")))
}

/// Reads and parses `config.json`.
pub fn config_from_json_file(path: &Path) -> Result<ModelConfig> {
    config_from_json(&read_json(path)?, path)
}

/// A config.json object → [`ModelConfig`]; `path` names the file in errors.
pub fn config_from_json(j: &Value, path: &Path) -> Result<ModelConfig> {
    let f = Fields { j, path };
    let arch_name = match j.get("architectures").and_then(|a| a.get(0)) {
        Some(Value::String(s)) => s.clone(),
        Some(v) => return Err(f.err(format!("architectures[0] is {v}, not a string"))),
        None => return Err(f.err("no architectures[0]")),
    };
    let arch = match arch_name.as_str() {
        "LlamaForCausalLM" => Architecture::Llama,
        "MistralForCausalLM" => Architecture::Mistral,
        "Gemma2ForCausalLM" => Architecture::Gemma2,
        "Qwen2ForCausalLM" => Architecture::Qwen2,
        other => return Err(f.err(format!("unsupported architectures[0] \"{other}\""))),
    };
    let gemma = arch == Architecture::Gemma2;

    let hidden_size = f.usize("hidden_size")?;
    let num_heads = f.usize("num_attention_heads")?;
    let num_kv_heads = f.opt_usize("num_key_value_heads")?.unwrap_or(num_heads);
    let head_dim = match f.opt_usize("head_dim")? {
        Some(d) => d,
        None if num_heads > 0 && hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(f.err(format!(
                "hidden_size {hidden_size} is not a multiple of num_attention_heads {num_heads} and head_dim is not given"
            )))
        }
    };

    // transformers ≥ 5 keeps rope settings in `rope_parameters`; older files use
    // `rope_theta` and `rope_scaling`.
    let rope_params = j.get("rope_parameters").filter(|v| v.is_object());
    let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")) {
        Some(v) => v
            .as_f64()
            .ok_or_else(|| f.err(format!("rope_parameters.rope_theta is {v}, not a number")))?,
        None => f.opt_f64("rope_theta")?.unwrap_or(10000.0),
    };
    let (scaling_field, scaling) = match rope_params {
        Some(p) => ("rope_parameters", Some(p)),
        None => (
            "rope_scaling",
            j.get("rope_scaling").filter(|v| !v.is_null()),
        ),
    };
    let rope_scaling = match scaling {
        None => None,
        Some(s) => rope_scaling(s, scaling_field, &f)?,
    };

    let act_field = if gemma && j.get("hidden_activation").is_some_and(|v| !v.is_null()) {
        "hidden_activation"
    } else {
        "hidden_act"
    };
    let act = f
        .opt_str(act_field)?
        .unwrap_or(if gemma { "gelu_pytorch_tanh" } else { "silu" });
    let hidden_activation = match (act, gemma) {
        ("silu", false) => Activation::Silu,
        ("gelu_pytorch_tanh", true) => Activation::GeluTanh,
        (other, _) => {
            return Err(f.err(format!(
                "unsupported {act_field} \"{other}\" for {arch_name}"
            )))
        }
    };

    if arch != Architecture::Qwen2 && f.opt_bool("attention_bias")?.unwrap_or(false) {
        return Err(f.err("unsupported attention_bias true"));
    }
    if f.opt_bool("mlp_bias")?.unwrap_or(false) {
        return Err(f.err("unsupported mlp_bias true"));
    }

    let sliding_window = match arch {
        Architecture::Mistral => f.opt_usize("sliding_window")?,
        Architecture::Gemma2 => Some(f.opt_usize("sliding_window")?.unwrap_or(4096)),
        Architecture::Qwen2 => {
            if f.opt_bool("use_sliding_window")?.unwrap_or(false) {
                return Err(f.err("unsupported use_sliding_window true"));
            }
            None
        }
        Architecture::Llama => None,
    };

    let max_pos_default = match arch {
        Architecture::Llama => 2048,
        Architecture::Mistral => 131072,
        Architecture::Gemma2 => 8192,
        Architecture::Qwen2 => 32768,
    };

    let mut eos_token_ids = Vec::new();
    match j.get("eos_token_id") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => {
            for (i, v) in a.iter().enumerate() {
                let id = token_id(v)
                    .ok_or_else(|| f.err(format!("eos_token_id[{i}] is {v}, not a token id")))?;
                push_unique(&mut eos_token_ids, id);
            }
        }
        Some(v) => eos_token_ids.push(
            token_id(v).ok_or_else(|| f.err(format!("eos_token_id is {v}, not a token id")))?,
        ),
    }
    let bos_token_id = match j.get("bos_token_id") {
        None | Some(Value::Null) => None,
        Some(v) => {
            Some(token_id(v).ok_or_else(|| f.err(format!("bos_token_id is {v}, not a token id")))?)
        }
    };

    let config = ModelConfig {
        architecture: arch,
        vocab_size: f.usize("vocab_size")?,
        hidden_size,
        intermediate_size: f.usize("intermediate_size")?,
        num_layers: f.usize("num_hidden_layers")?,
        num_heads,
        num_kv_heads,
        head_dim,
        rope_theta: rope_theta as f32,
        rope_scaling,
        rms_norm_eps: f.opt_f64("rms_norm_eps")?.unwrap_or(1e-6) as f32,
        tie_word_embeddings: f.opt_bool("tie_word_embeddings")?.unwrap_or(gemma),
        max_position_embeddings: f
            .opt_usize("max_position_embeddings")?
            .unwrap_or(max_pos_default),
        sliding_window,
        alternating_sliding_window: gemma,
        hidden_activation,
        norm_weight_offset: gemma,
        scale_embeddings: gemma,
        attn_logit_softcapping: if gemma {
            f.opt_f64_or_null("attn_logit_softcapping", Some(50.0))?
        } else {
            None
        },
        final_logit_softcapping: if gemma {
            f.opt_f64_or_null("final_logit_softcapping", Some(30.0))?
        } else {
            None
        },
        query_pre_attn_scalar: if gemma {
            f.opt_f64_or_null("query_pre_attn_scalar", Some(head_dim as f64))?
        } else {
            None
        },
        qkv_bias: arch == Architecture::Qwen2,
        post_norms: gemma,
        bos_token_id,
        eos_token_ids,
    };
    config.check().map_err(|m| f.err(m))?;
    Ok(config)
}

fn rope_scaling(s: &Value, field: &str, f: &Fields) -> Result<Option<RopeScaling>> {
    let kind = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(|v| v.as_str())
        .unwrap_or("default");
    let num = |k: &str| -> Result<f64> {
        match s.get(k) {
            Some(v) => v
                .as_f64()
                .ok_or_else(|| f.err(format!("{field}.{k} is {v}, not a number"))),
            None => Err(f.err(format!("{field}.rope_type \"{kind}\" needs {field}.{k}"))),
        }
    };
    Ok(match kind {
        "default" => None,
        "linear" => Some(RopeScaling::Linear {
            factor: num("factor")? as f32,
        }),
        "llama3" => {
            let orig = num("original_max_position_embeddings")?;
            if !(orig >= 1.0 && orig.fract() == 0.0 && orig < 1e12) {
                return Err(f.err(format!(
                    "{field}.original_max_position_embeddings {orig} is not a positive integer"
                )));
            }
            Some(RopeScaling::Llama3 {
                factor: num("factor")? as f32,
                low_freq_factor: num("low_freq_factor")? as f32,
                high_freq_factor: num("high_freq_factor")? as f32,
                original_max_position_embeddings: orig as usize,
            })
        }
        other => return Err(f.err(format!("unsupported {field}.rope_type \"{other}\""))),
    })
}

/// `generation_config.json` → sampling defaults, BOS id, EOS ids.
fn generation_from_json(
    j: &Value,
    path: &Path,
) -> Result<(GenerationDefaults, Option<u32>, Vec<u32>)> {
    let f = Fields { j, path };
    let g = GenerationDefaults {
        do_sample: f.opt_bool("do_sample")?,
        temperature: f.opt_f64("temperature")?.map(|v| v as f32),
        top_p: f.opt_f64("top_p")?.map(|v| v as f32),
        top_k: f.opt_usize("top_k")?,
        repetition_penalty: f.opt_f64("repetition_penalty")?.map(|v| v as f32),
        max_new_tokens: f.opt_usize("max_new_tokens")?,
    };
    let bos = j.get("bos_token_id").and_then(token_id);
    let mut eos = Vec::new();
    match j.get("eos_token_id") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(token_id)
            .for_each(|id| push_unique(&mut eos, id)),
        Some(v) => eos.extend(token_id(v)),
        None => {}
    }
    Ok((g, bos, eos))
}

fn token_id(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// Typed field access on a JSON object with errors naming the file and field.
struct Fields<'a> {
    j: &'a Value,
    path: &'a Path,
}

impl Fields<'_> {
    fn err(&self, message: impl Into<String>) -> crate::Error {
        bad_file(self.path, message)
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.j.get(k).filter(|v| !v.is_null())
    }

    fn usize(&self, k: &str) -> Result<usize> {
        self.opt_usize(k)?
            .ok_or_else(|| self.err(format!("missing {k}")))
    }

    fn opt_usize(&self, k: &str) -> Result<Option<usize>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
                Some(n) => Ok(Some(n)),
                None => Err(self.err(format!("{k} is {v}, not a non-negative integer"))),
            },
        }
    }

    fn opt_f64(&self, k: &str) -> Result<Option<f64>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.err(format!("{k} is {v}, not a number"))),
        }
    }

    /// Absent → `default`; explicit `null` → `None` (Gemma's way of switching off).
    fn opt_f64_or_null(&self, k: &str, default: Option<f64>) -> Result<Option<f32>> {
        match self.j.get(k) {
            None => Ok(default.map(|v| v as f32)),
            Some(Value::Null) => Ok(None),
            Some(_) => Ok(self.opt_f64(k)?.map(|v| v as f32)),
        }
    }

    fn opt_bool(&self, k: &str) -> Result<Option<bool>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .ok_or_else(|| self.err(format!("{k} is {v}, not true/false"))),
        }
    }

    fn opt_str(&self, k: &str) -> Result<Option<&str>> {
        match self.get(k) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.err(format!("{k} is {v}, not a string"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_per_architecture() {
        let l = Architecture::Llama;
        let g = Architecture::Gemma2;
        assert_eq!(
            boha_name("model.layers.12.self_attn.k_proj.weight", l).unwrap(),
            "layers.12.k"
        );
        assert_eq!(
            boha_name("model.layers.3.post_attention_layernorm.weight", l).unwrap(),
            "layers.3.mlp_norm"
        );
        assert_eq!(
            boha_name("model.layers.3.post_attention_layernorm.weight", g).unwrap(),
            "layers.3.post_attn_norm"
        );
        assert_eq!(
            boha_name("model.layers.3.pre_feedforward_layernorm.weight", g).unwrap(),
            "layers.3.mlp_norm"
        );
        assert_eq!(
            boha_name("model.layers.3.pre_feedforward_layernorm.weight", l),
            None
        );
        assert_eq!(boha_name("model.layers.03.mlp.up_proj.weight", l), None);
        assert_eq!(boha_name("model.layers.x.mlp.up_proj.weight", l), None);
        assert_eq!(boha_name("transformer.h.0.attn.c_attn.weight", l), None);
    }
}
