//! Hugging Face directories: tiny random checkpoints written by the test (single file and
//! sharded, F32/F16/BF16, Llama/Mistral/Qwen2/Gemma-2) load under boha's names with the
//! stored values; bad configs and files fail with one-line errors naming file and field.

mod common;

use boha::loaders::hf::load_hf_files;
use boha::loaders::{load_checkpoint, ChatMessage};
use boha::model::{Activation, Architecture, ModelConfig, RopeScaling};
use common::same_model_metadata;
use common::tiny_checkpoint::{
    temp_dir, write_json, write_tiny_hf, TinyCheckpoint, TinySpec, TinyTokenizer,
};
use safetensors::Dtype;
use serde_json::json;

/// boha name → Hugging Face name for the plain Llama layout.
fn hf_name(ours: &str, gemma: bool) -> String {
    match ours {
        "embed" => return "model.embed_tokens.weight".into(),
        "final_norm" => return "model.norm.weight".into(),
        "lm_head" => return "lm_head.weight".into(),
        _ => {}
    }
    let (i, part) = ours
        .strip_prefix("layers.")
        .unwrap()
        .split_once('.')
        .unwrap();
    let hf = match part {
        "attn_norm" => "input_layernorm.weight",
        "q" => "self_attn.q_proj.weight",
        "k" => "self_attn.k_proj.weight",
        "v" => "self_attn.v_proj.weight",
        "o" => "self_attn.o_proj.weight",
        "q_bias" => "self_attn.q_proj.bias",
        "k_bias" => "self_attn.k_proj.bias",
        "v_bias" => "self_attn.v_proj.bias",
        "post_attn_norm" => "post_attention_layernorm.weight",
        "mlp_norm" if gemma => "pre_feedforward_layernorm.weight",
        "mlp_norm" => "post_attention_layernorm.weight",
        "post_mlp_norm" => "post_feedforward_layernorm.weight",
        "gate" => "mlp.gate_proj.weight",
        "up" => "mlp.up_proj.weight",
        "down" => "mlp.down_proj.weight",
        other => panic!("unexpected {other}"),
    };
    format!("model.layers.{i}.{hf}")
}

/// Every loaded tensor equals the stored Hugging Face tensor it comes from, and the set
/// of names is exactly the config's list.
fn check_all_tensors(ck: &TinyCheckpoint, loaded: &boha::loaders::Checkpoint) {
    let gemma = loaded.config.architecture == Architecture::Gemma2;
    let expected = loaded.config.expected_tensors();
    assert_eq!(loaded.tensors.len(), expected.len());
    for spec in expected {
        let t = loaded.tensor(&spec.name).unwrap();
        let (_, shape, data) = ck.get(&hf_name(&spec.name, gemma));
        assert_eq!(&t.shape, shape, "{}", spec.name);
        assert_eq!(&t.shape, &spec.shape, "{}", spec.name);
        assert!(t.to_f32().unwrap() == *data, "{}: values differ", spec.name);
    }
}

#[test]
fn single_file_llama_loads_under_our_names() {
    let dir = temp_dir("st-llama");
    let ck = write_tiny_hf(&dir, &TinySpec::llama());
    let loaded = load_checkpoint(&dir).unwrap();
    let c = &loaded.config;
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(
        (c.vocab_size, c.hidden_size, c.intermediate_size),
        (TinySpec::llama().vocab, 24, 36)
    );
    assert_eq!(
        (c.num_layers, c.num_heads, c.num_kv_heads, c.head_dim),
        (2, 4, 2, 6)
    );
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert_eq!(c.hidden_activation, Activation::Silu);
    assert!(!c.tie_word_embeddings && !c.qkv_bias && !c.post_norms);
    check_all_tensors(&ck, &loaded);
    assert!(loaded.tensors.contains_key("lm_head"));

    // Tokenizer side: BOS from config, EOS ids from generation_config first, then config
    // and tokenizer_config; chat template from tokenizer_config.
    let tok = TinyTokenizer::new();
    assert_eq!(
        loaded.bos_token,
        Some(("<|bos|>".to_string(), tok.id("<|bos|>")))
    );
    assert_eq!(
        loaded.eos_tokens,
        vec![tok.id("<|im_end|>"), tok.id("<|eos|>")]
    );
    assert!(loaded.add_bos);
    assert_eq!(loaded.generation.temperature, Some(0.7));
    assert_eq!(loaded.generation.top_k, Some(20));
    let text = loaded
        .render_chat(
            &[ChatMessage::new(
                "user",
                "  What is the capital of France? ",
            )],
            true,
        )
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>system\nYou are tiny.<|im_end|>\n<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = loaded.encode(&text).unwrap();
    assert_eq!(ids[0], tok.id("<|im_start|>"));
    assert_eq!(loaded.decode(&ids).unwrap(), text);
}

#[test]
fn sharded_qwen2_bf16_with_biases() {
    let dir = temp_dir("st-qwen");
    let spec = TinySpec {
        arch: "Qwen2ForCausalLM".into(),
        shards: 3,
        dtype: Dtype::BF16,
        tie: true,
        layers: 3,
        seed: 7,
        ..TinySpec::llama()
    };
    let ck = write_tiny_hf(&dir, &spec);
    assert!(dir.join("model-00003-of-00003.safetensors").is_file());
    let loaded = load_checkpoint(&dir).unwrap();
    assert_eq!(loaded.config.architecture, Architecture::Qwen2);
    assert!(loaded.config.qkv_bias && loaded.config.tie_word_embeddings);
    check_all_tensors(&ck, &loaded);
    assert!(!loaded.tensors.contains_key("lm_head"));
    assert_eq!(loaded.tensor("layers.2.k_bias").unwrap().shape, vec![12]);
    // bf16 keeps 8 significant bits: the stored values are not all "round" f32s.
    let q = &loaded.tensor("layers.1.q").unwrap().to_f32().unwrap();
    assert!(
        q.iter().any(|v| v.abs() > 0.01)
            && q.iter().all(|v| half::bf16::from_f32(*v).to_f32() == *v)
    );
}

#[test]
fn gemma2_f16_norms_and_switches() {
    let dir = temp_dir("st-gemma");
    let spec = TinySpec {
        arch: "Gemma2ForCausalLM".into(),
        dtype: Dtype::F16,
        tie: true,
        heads: 2,
        kv_heads: 1,
        head_dim: Some(16),
        extra_config: json!({"query_pre_attn_scalar": 16, "sliding_window": 8, "final_logit_softcapping": 30.0,
                             "attn_logit_softcapping": null}),
        seed: 3,
        ..TinySpec::llama()
    };
    let ck = write_tiny_hf(&dir, &spec);
    let loaded = load_checkpoint(&dir).unwrap();
    let c = &loaded.config;
    assert_eq!(c.architecture, Architecture::Gemma2);
    assert_eq!(c.hidden_activation, Activation::GeluTanh);
    assert!(c.norm_weight_offset && c.scale_embeddings && c.post_norms && c.tie_word_embeddings);
    assert_eq!((c.head_dim, c.q_dim(), c.kv_dim()), (16, 32, 16));
    assert_eq!(
        c.attn_logit_softcapping, None,
        "explicit null switches soft-capping off"
    );
    assert_eq!(c.final_logit_softcapping, Some(30.0));
    assert_eq!(c.attn_scale(), 0.25);
    assert_eq!(c.embedding_scale(), (24f32).sqrt());
    assert_eq!((c.layer_window(0), c.layer_window(1)), (Some(8), None));
    check_all_tensors(&ck, &loaded);
    // The Gemma-2 post-attention norm is its own tensor, not the MLP's input norm.
    let post = &loaded
        .tensor("layers.1.post_attn_norm")
        .unwrap()
        .to_f32()
        .unwrap();
    assert_eq!(
        post,
        &ck.get("model.layers.1.post_attention_layernorm.weight").2
    );
    assert_ne!(
        post,
        &loaded
            .tensor("layers.1.mlp_norm")
            .unwrap()
            .to_f32()
            .unwrap()
    );
}

#[test]
fn mistral_window_and_llama3_rope() {
    let dir = temp_dir("st-mistral");
    let spec = TinySpec {
        arch: "MistralForCausalLM".into(),
        heads: 6,
        extra_config: json!({"sliding_window": 16,
            "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                             "high_freq_factor": 4.0, "original_max_position_embeddings": 32}}),
        ..TinySpec::llama()
    };
    write_tiny_hf(&dir, &spec);
    let c = load_checkpoint(&dir).unwrap().config;
    assert_eq!(c.architecture, Architecture::Mistral);
    assert_eq!((c.layer_window(0), c.layer_window(1)), (Some(16), Some(16)));
    assert_eq!(
        c.rope_scaling,
        Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32
        })
    );
    // head size 4 → two frequencies, 1 and 0.01: wavelengths 2π (< 32/4, kept) and
    // 628 (> 32/1, divided by 8).
    let f = c.rope_inv_freq();
    assert!(
        (f[0] - 1.0).abs() < 1e-12 && (f[1] - 0.01 / 8.0).abs() < 1e-12,
        "{f:?}"
    );
}

/// Writes a tiny Llama, lets `edit` change config.json, and returns the load error.
fn config_error(edit: serde_json::Value) -> String {
    let dir = temp_dir("st-cfg");
    write_tiny_hf(
        &dir,
        &TinySpec {
            extra_config: edit,
            ..TinySpec::llama()
        },
    );
    let err = load_checkpoint(&dir)
        .err()
        .expect("load should fail")
        .to_string();
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(err.contains("config.json"), "names the file: {err}");
    err
}

#[test]
fn unsupported_config_fields_are_named() {
    let e = config_error(json!({"architectures": ["GPT2LMHeadModel"]}));
    assert!(
        e.contains("unsupported architectures[0] \"GPT2LMHeadModel\""),
        "{e}"
    );
    let e = config_error(json!({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}}));
    assert!(
        e.contains("unsupported rope_scaling.rope_type \"yarn\""),
        "{e}"
    );
    let e = config_error(json!({"rope_scaling": {"type": "dynamic", "factor": 2.0}}));
    assert!(e.contains("\"dynamic\""), "{e}");
    let e = config_error(json!({"hidden_act": "gelu"}));
    assert!(e.contains("hidden_act \"gelu\""), "{e}");
    let e = config_error(json!({"attention_bias": true}));
    assert!(e.contains("attention_bias true"), "{e}");
    let e = config_error(json!({"num_key_value_heads": 3}));
    assert!(
        e.contains("num_heads 4 is not a multiple of num_kv_heads 3"),
        "{e}"
    );
    let e = config_error(json!({"hidden_size": "24"}));
    assert!(e.contains("hidden_size"), "{e}");
    let e = config_error(
        json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 64}}),
    );
    assert!(
        e.contains("rope_scaling.rope_type \"llama3\" needs rope_scaling.low_freq_factor"),
        "{e}"
    );
    // A config whose sizes disagree with the weights names the tensor.
    let dir = temp_dir("st-shape");
    write_tiny_hf(
        &dir,
        &TinySpec {
            extra_config: json!({"intermediate_size": 35}),
            ..TinySpec::llama()
        },
    );
    let e = load_checkpoint(&dir).err().unwrap().to_string();
    assert!(
        e.contains("layers.0.gate") && e.contains("[36, 24]") && e.contains("[35, 24]"),
        "{e}"
    );
    // Config parsing on its own.
    let cfg = dir.join("config.json");
    write_json(
        &cfg,
        &json!({"architectures": ["LlamaForCausalLM"], "vocab_size": 10}),
    );
    let e = ModelConfig::from_hf_json(&cfg).err().unwrap().to_string();
    assert!(e.contains("missing hidden_size"), "{e}");
}

#[test]
fn bad_files_fail_cleanly() {
    // Truncated safetensors.
    let dir = temp_dir("st-trunc");
    write_tiny_hf(&dir, &TinySpec::llama());
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    for cut in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
        std::fs::write(&path, &bytes[..cut]).unwrap();
        let e = load_checkpoint(&dir).err().unwrap().to_string();
        assert!(
            e.contains("model.safetensors") && !e.contains('\n'),
            "{cut}: {e}"
        );
    }
    // Header length claiming more than the file.
    let mut bad = bytes.clone();
    bad[..8].copy_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    assert!(load_checkpoint(&dir)
        .err()
        .unwrap()
        .to_string()
        .contains("model.safetensors"));

    // An index that points outside the directory, or at a shard lacking the tensor.
    let dir = temp_dir("st-index");
    write_tiny_hf(
        &dir,
        &TinySpec {
            shards: 2,
            ..TinySpec::llama()
        },
    );
    let index = dir.join("model.safetensors.index.json");
    let mut j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&index).unwrap()).unwrap();
    let good = j.clone();
    j["weight_map"]["model.norm.weight"] = json!("../../etc/passwd");
    write_json(&index, &j);
    let e = load_checkpoint(&dir).err().unwrap().to_string();
    assert!(
        e.contains("../../etc/passwd") && e.contains("not a file in this directory"),
        "{e}"
    );
    let mut j = good.clone();
    let other = if j["weight_map"]["model.norm.weight"] == json!("model-00001-of-00002.safetensors")
    {
        "model-00002-of-00002.safetensors"
    } else {
        "model-00001-of-00002.safetensors"
    };
    j["weight_map"]["model.norm.weight"] = json!(other);
    write_json(&index, &j);
    let e = load_checkpoint(&dir).err().unwrap().to_string();
    assert!(
        e.contains("'model.norm.weight'") && e.contains(other),
        "{e}"
    );

    // A missing tensor is named; an unknown one too.
    let dir = temp_dir("st-missing");
    let ck = write_tiny_hf(&dir, &TinySpec::llama());
    let mut tensors = ck.tensors.clone();
    tensors.retain(|t| t.0 != "model.layers.1.mlp.up_proj.weight");
    common::tiny_checkpoint::write_safetensors(&dir, &tensors, Dtype::F32, 1);
    let e = load_checkpoint(&dir).err().unwrap().to_string();
    assert!(e.contains("missing tensor 'layers.1.up'"), "{e}");
    tensors.push((
        "model.layers.0.mlp.extra.weight".into(),
        vec![2],
        vec![1.0, 2.0],
    ));
    common::tiny_checkpoint::write_safetensors(&dir, &tensors, Dtype::F32, 1);
    let e = load_checkpoint(&dir).err().unwrap().to_string();
    assert!(
        e.contains("unrecognized tensor 'model.layers.0.mlp.extra.weight'"),
        "{e}"
    );

    // No weights at all, and a path that does not exist.
    let empty = temp_dir("st-empty");
    std::fs::copy(dir.join("config.json"), empty.join("config.json")).unwrap();
    let e = load_checkpoint(&empty).err().unwrap().to_string();
    assert!(e.contains("no model.safetensors"), "{e}");
    assert!(load_checkpoint(&empty.join("nope")).is_err());
}

/// A safetensors file handed over as bytes reads as the same file on disk does.
#[test]
fn safetensors_from_bytes_equals_from_path() {
    use boha::loaders::safetensors::{read_bytes, read_file};
    let dir = temp_dir("st-bytes");
    write_tiny_hf(&dir, &TinySpec::llama());
    let path = dir.join("model.safetensors");
    let from_path = read_file(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let from_bytes = read_bytes(std::path::Path::new("model.safetensors"), bytes).unwrap();
    assert_eq!(from_path.len(), from_bytes.len());
    for ((n, t), (m, u)) in from_path.iter().zip(&from_bytes) {
        assert_eq!((n, &t.shape), (m, &u.shape));
        assert!(
            t.to_f32().unwrap() == u.to_f32().unwrap(),
            "{n}: values differ"
        );
    }
}

/// A directory's files, read into memory by name (what a web page gets from the File
/// API).
fn files_of(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let name = e.file_name().into_string().unwrap();
            (name, std::fs::read(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// `load_hf_files` on a checkpoint's files in memory gives what `load_checkpoint` gives
/// on its directory: the same config, tensors, tokenizer, template and special tokens,
/// single-file and sharded.
#[test]
fn files_in_memory_load_as_the_directory_does() {
    let sharded = TinySpec {
        arch: "Qwen2ForCausalLM".into(),
        shards: 3,
        dtype: Dtype::BF16,
        tie: true,
        seed: 9,
        ..TinySpec::llama()
    };
    for (tag, spec) in [("mem-llama", TinySpec::llama()), ("mem-qwen", sharded)] {
        let dir = temp_dir(tag);
        let ck = write_tiny_hf(&dir, &spec);
        let on_disk = load_checkpoint(&dir).unwrap();
        let name = std::path::Path::new("chosen");
        let in_memory = load_hf_files(name, files_of(&dir)).unwrap();
        same_model_metadata(tag, &on_disk, &in_memory);
        check_all_tensors(&ck, &in_memory);
        assert_eq!(in_memory.source, name);
    }
}

/// Files in memory that do not make a checkpoint fail with one line naming the file:
/// no tokenizer.json, a shard the index names but nobody gave, a name with a path in it,
/// a name given twice.
#[test]
fn files_in_memory_name_what_is_missing() {
    let dir = temp_dir("mem-bad");
    write_tiny_hf(
        &dir,
        &TinySpec {
            shards: 2,
            ..TinySpec::llama()
        },
    );
    let name = std::path::Path::new("chosen");
    let all = files_of(&dir);
    let without = |file: &str| -> Vec<(String, Vec<u8>)> {
        all.iter().filter(|(n, _)| n != file).cloned().collect()
    };
    let err = |files| load_hf_files(name, files).err().unwrap().to_string();

    let e = err(without("tokenizer.json"));
    assert!(
        e.contains("chosen") && e.contains("no tokenizer.json"),
        "{e}"
    );
    let e = err(without("model-00002-of-00002.safetensors"));
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("no such file"),
        "{e}"
    );
    let e = err(without("config.json"));
    assert!(
        e.contains("config.json") && e.contains("no such file"),
        "{e}"
    );
    let mut bad = all.clone();
    bad.push(("../config.json".into(), vec![]));
    let e = err(bad);
    assert!(e.contains("not a plain file name"), "{e}");
    let mut twice = all.clone();
    twice.push(all[0].clone());
    let e = err(twice);
    assert!(e.contains("given twice"), "{e}");
}
