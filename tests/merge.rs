//! `boha merge`: an adapter merged into its model and written as a Hugging Face
//! directory loads back with the adapter-on logits (BoHA and LoRA; Llama, Qwen2 with
//! biases, Gemma-2), a GGUF input merges to the same output as its Hugging Face twin,
//! an adapter made for another model is refused without leaving anything at --out, and
//! the CLI runs end to end.

mod common;
mod model_specs;

use std::path::{Path, PathBuf};
use std::process::Command;

use boha::adapters::{AdapterSpec, Method};
use boha::generate::score::score;
use boha::gpu::{DType, Gpu};
use boha::loaders::{hf, load_checkpoint, Checkpoint};
use boha::model::export::{check_destination, hf_config, merge_to_hf};
use boha::model::kv_cache::Model;
use boha::model::transformer::{Adapters, Weights};
use boha::model::ModelConfig;
use boha::rng::Rng;
use common::assert_close;
use common::tiny_checkpoint::{gguf_from_tiny, temp_dir, write_tiny_hf, TinyCheckpoint, TinySpec};

const TOKENS: [u32; 9] = [5, 77, 140, 9, 200, 33, 281, 12, 64];

fn tiny_spec(arch: &str) -> TinySpec {
    model_specs::specs()
        .into_iter()
        .find(|(n, _)| *n == arch)
        .unwrap()
        .1
}

fn adapter_spec(method: Method, blocks: usize, block_rank: usize, scale: f32) -> AdapterSpec {
    AdapterSpec {
        method,
        blocks,
        block_rank,
        scale,
    }
}

/// Writes the tiny `spec` under `root/model`, returns it.
fn write_model(root: &Path, spec: &TinySpec) -> TinyCheckpoint {
    let dir = root.join("model");
    std::fs::create_dir_all(&dir).unwrap();
    write_tiny_hf(&dir, spec)
}

/// Adapters on every projection with random nonzero A and B (a fresh pair kind's ΔW is
/// zero whichever factor is random), saved to `dir`.
fn make_adapter(gpu: &Gpu, w: &Weights, spec: AdapterSpec, seed: u64, dir: &Path) -> Adapters {
    let ads = Adapters::new(gpu, w, spec, &["all"], seed).unwrap();
    let mut rng = Rng::new(seed ^ 0x5eed);
    for (_, ad) in ads.iter() {
        gpu.write(&ad.b, &rng.vec_f32(ad.b.len(), -0.4, 0.4))
            .unwrap();
        gpu.write(&ad.a, &rng.vec_f32(ad.a.len(), -0.4, 0.4))
            .unwrap();
    }
    ads.save(gpu, dir, "tiny").unwrap();
    ads
}

fn logits(gpu: &Gpu, model: &Model) -> Vec<f32> {
    score(gpu, model, &TOKENS).unwrap().logits
}

/// Max |a − b| / max |b|.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

/// Hidden temporary siblings left in `root` (a failed write must leave none).
fn leftovers(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect()
}

fn same_checkpoint_metadata(a: &Checkpoint, b: &Checkpoint) {
    assert_eq!(a.config, b.config);
    assert_eq!(a.chat_template, b.chat_template);
    assert_eq!(a.bos_token, b.bos_token);
    assert_eq!(a.eos_tokens, b.eos_tokens);
    assert_eq!(a.add_bos, b.add_bos);
    let text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>";
    assert_eq!(a.encode(text).unwrap(), b.encode(text).unwrap());
}

/// Merges an adapter into the tiny `arch` model via the library and checks the output:
/// same metadata, untouched tensors bit for bit, logits equal to the adapter-on logits.
fn merged_logits_match(arch: &str, spec: AdapterSpec) {
    let Some(gpu) = common::gpu() else { return };
    let root = temp_dir(&format!("merge-{arch}"));
    let tiny = write_model(&root, &tiny_spec(arch));
    let ck = load_checkpoint(&tiny.dir).unwrap();
    let weights = Weights::upload(&gpu, &ck).unwrap();
    let base = logits(
        &gpu,
        &Model {
            weights: Weights::upload(&gpu, &ck).unwrap(),
            adapters: None,
        },
    );
    let adapter_dir = root.join("adapter");
    let ads = make_adapter(&gpu, &weights, spec, 7, &adapter_dir);
    let on = logits(
        &gpu,
        &Model {
            weights,
            adapters: Some(ads),
        },
    );
    // The adapter must matter, or the comparison below would prove nothing.
    assert!(
        rel_diff(&on, &base) > 1e-2,
        "{arch}: adapter changes nothing"
    );

    let out = root.join("merged");
    let summary = merge_to_hf(&gpu, &tiny.dir, &adapter_dir, &out, None).unwrap();
    assert_eq!(summary.merged_matrices, 7 * ck.config.num_layers);
    assert_eq!(summary.tensors, ck.config.expected_tensors().len());
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(out.join(f).is_file(), "{arch}: no {f}");
    }
    assert_eq!(leftovers(&root), Vec::<String>::new());

    let merged = load_checkpoint(&out).unwrap();
    same_checkpoint_metadata(&ck, &merged);
    assert_eq!(ck.generation, merged.generation);
    for (name, t) in &ck.tensors {
        let m = &merged.tensors[name];
        assert_eq!(t.shape, m.shape, "{name}");
        let is_projection = ["q", "k", "v", "o", "gate", "up", "down"]
            .iter()
            .any(|p| name.ends_with(&format!(".{p}")));
        if is_projection {
            assert_ne!(
                t.to_f32().unwrap(),
                m.to_f32().unwrap(),
                "{arch}: {name} was not merged"
            );
        } else {
            assert_eq!(
                t.to_f32().unwrap(),
                m.to_f32().unwrap(),
                "{arch}: {name} changed"
            );
        }
    }
    let got = logits(&gpu, &Model::load(&gpu, &merged).unwrap());
    assert_close(&format!("{arch} merged logits"), &got, &on, 1e-4);
}

#[test]
fn llama_boha_merge_matches_adapter_logits() {
    merged_logits_match("llama", adapter_spec(Method::Boha, 4, 2, 1.0));
}

#[test]
fn llama_lora_merge_matches_adapter_logits() {
    merged_logits_match("llama", adapter_spec(Method::Lora, 1, 4, 2.0));
}

#[test]
fn llama_abba_and_mistral_loha_merges_match_adapter_logits() {
    merged_logits_match("llama", adapter_spec(Method::Abba, 1, 4, 1.2));
    merged_logits_match("mistral", adapter_spec(Method::Loha, 1, 4, 2.0));
}

#[test]
fn qwen2_boha_merge_keeps_biases_and_matches() {
    merged_logits_match("qwen2", adapter_spec(Method::Boha, 2, 2, 0.8));
}

#[test]
fn gemma2_lora_merge_matches_adapter_logits() {
    merged_logits_match("gemma2", adapter_spec(Method::Lora, 1, 3, 1.5));
}

/// A bf16 checkpoint stays bf16 on the GPU and merges back to bf16 by default:
/// model.safetensors holds BF16 only, config.json says so, the tensors the adapter does
/// not touch come back bit for bit, and the logits differ from the adapter-on logits by
/// bf16's rounding of the merged weights only (far less than the adapter's effect).
/// `--dtype f32` writes the exact merge; a block dtype is refused before anything is
/// written.
#[test]
fn bf16_model_merges_to_bf16() {
    let Some(gpu) = common::gpu() else { return };
    let root = temp_dir("merge-bf16");
    let spec = TinySpec {
        dtype: safetensors::Dtype::BF16,
        ..tiny_spec("llama")
    };
    let tiny = write_model(&root, &spec);
    let ck = load_checkpoint(&tiny.dir).unwrap();
    assert_eq!(ck.precision(), DType::BF16);
    let weights = Weights::upload(&gpu, &ck).unwrap();
    assert_eq!(weights.layers[0].q.dtype(), DType::BF16);
    let base = logits(&gpu, &Model::load(&gpu, &ck).unwrap());
    let adapter_dir = root.join("adapter");
    let spec = adapter_spec(Method::Boha, 2, 2, 1.0);
    let ads = make_adapter(&gpu, &weights, spec, 5, &adapter_dir);
    let on = logits(
        &gpu,
        &Model {
            weights,
            adapters: Some(ads),
        },
    );

    let out = root.join("merged");
    let summary = merge_to_hf(&gpu, &tiny.dir, &adapter_dir, &out, None).unwrap();
    assert_eq!(summary.dtype, DType::BF16);
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["torch_dtype"], "bfloat16");
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st
        .tensors()
        .iter()
        .all(|(_, v)| v.dtype() == safetensors::Dtype::BF16));
    let merged = load_checkpoint(&out).unwrap();
    for name in ["embed", "final_norm", "layers.1.attn_norm"] {
        assert_eq!(
            ck.tensor(name).unwrap().to_f32().unwrap(),
            merged.tensor(name).unwrap().to_f32().unwrap(),
            "{name} changed"
        );
    }
    let got = logits(&gpu, &Model::load(&gpu, &merged).unwrap());
    let (rounding, effect) = (rel_diff(&got, &on), rel_diff(&on, &base));
    assert!(
        rounding < 2e-2 && effect > 10.0 * rounding,
        "bf16 merge off by {rounding}, the adapter changes {effect}"
    );

    let exact = root.join("merged-f32");
    merge_to_hf(&gpu, &tiny.dir, &adapter_dir, &exact, Some(DType::F32)).unwrap();
    let f32_merge = logits(
        &gpu,
        &Model::load(&gpu, &load_checkpoint(&exact).unwrap()).unwrap(),
    );
    assert_close("f32 merge of a bf16 model", &f32_merge, &on, 1e-4);

    let refused = root.join("merged-q4");
    let err = merge_to_hf(&gpu, &tiny.dir, &adapter_dir, &refused, Some(DType::Q4_0))
        .expect_err("q4_0 is no Hugging Face dtype");
    assert!(err.to_string().contains("f32, f16 or bf16"), "{err}");
    assert!(!refused.exists() && leftovers(&root).is_empty());
}

/// The safetensors file's tensors as (name → (shape, values)).
fn read_weights(dir: &Path) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut out: Vec<_> = st
        .tensors()
        .into_iter()
        .map(|(n, v)| {
            assert_eq!(v.dtype(), safetensors::Dtype::F32, "{n}");
            let data = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (n, v.shape().to_vec(), data)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn gguf_input_merges_to_the_same_hf_output() {
    let Some(gpu) = common::gpu() else { return };
    let root = temp_dir("merge-gguf");
    let tiny = write_model(&root, &tiny_spec("llama"));
    let gguf = root.join("model.gguf");
    gguf_from_tiny(&tiny, false).write(&gguf);
    let ck = load_checkpoint(&tiny.dir).unwrap();
    let weights = Weights::upload(&gpu, &ck).unwrap();
    let adapter_dir = root.join("adapter");
    make_adapter(
        &gpu,
        &weights,
        adapter_spec(Method::Boha, 2, 3, 1.0),
        3,
        &adapter_dir,
    );

    let from_hf = root.join("from-hf");
    let from_gguf = root.join("from-gguf");
    merge_to_hf(&gpu, &tiny.dir, &adapter_dir, &from_hf, Some(DType::F32)).unwrap();
    merge_to_hf(&gpu, &gguf, &adapter_dir, &from_gguf, Some(DType::F32)).unwrap();

    // Same tensors under the same Hugging Face names (q/k in Hugging Face row order).
    let (a, b) = (read_weights(&from_hf), read_weights(&from_gguf));
    assert_eq!(a.len(), b.len());
    assert!(a
        .iter()
        .any(|t| t.0 == "model.layers.1.self_attn.k_proj.weight"));
    for (x, y) in a.iter().zip(&b) {
        assert_eq!((&x.0, &x.1), (&y.0, &y.1));
        assert_close(&x.0, &y.2, &x.2, 1e-6);
    }
    // Same config.json apart from the EOS ids (the GGUF has no generation config).
    let (mut ja, mut jb) = (
        read_json(&from_hf.join("config.json")),
        read_json(&from_gguf.join("config.json")),
    );
    ja.as_object_mut().unwrap().remove("eos_token_id");
    jb.as_object_mut().unwrap().remove("eos_token_id");
    assert_eq!(ja, jb);
    // The GGUF tokenizer, written as tokenizer.json, tokenizes like the original.
    let (ca, cb) = (
        load_checkpoint(&from_hf).unwrap(),
        load_checkpoint(&from_gguf).unwrap(),
    );
    let mut cfg_a = ca.config.clone();
    cfg_a.eos_token_ids = cb.config.eos_token_ids.clone();
    assert_eq!(cfg_a, cb.config);
    assert_eq!(ca.chat_template, cb.chat_template);
    assert_eq!(ca.bos_token, cb.bos_token);
    assert_eq!(ca.add_bos, cb.add_bos);
    let text = "What is the capital of France? cats";
    assert_eq!(ca.encode(text).unwrap(), cb.encode(text).unwrap());
}

#[test]
fn adapter_for_another_model_is_refused_and_leaves_nothing() {
    let Some(gpu) = common::gpu() else { return };
    let root = temp_dir("merge-mismatch");
    let tiny = write_model(&root, &tiny_spec("llama"));
    let ck = load_checkpoint(&tiny.dir).unwrap();
    let weights = Weights::upload(&gpu, &ck).unwrap();
    let adapter_dir = root.join("adapter");
    make_adapter(
        &gpu,
        &weights,
        adapter_spec(Method::Lora, 1, 2, 1.0),
        5,
        &adapter_dir,
    );
    // A different model: hidden 24 instead of 32.
    let other = root.join("other");
    std::fs::create_dir_all(&other).unwrap();
    write_tiny_hf(&other, &TinySpec::llama());

    let out = root.join("merged");
    let err = merge_to_hf(&gpu, &other, &adapter_dir, &out, None)
        .expect_err("an adapter for another model must be refused")
        .to_string();
    assert!(err.contains("does not fit"), "{err}");
    assert!(err.contains("adapter"), "{err}");
    assert!(!err.contains('\n'), "{err}");
    assert!(!out.exists(), "a refused merge left {}", out.display());
    assert_eq!(leftovers(&root), Vec::<String>::new());
}

#[test]
fn destination_must_be_absent_or_empty() {
    let root = temp_dir("merge-dest");
    let empty = root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    check_destination(&empty).unwrap();
    check_destination(&root.join("absent")).unwrap();
    std::fs::write(empty.join("keep.txt"), "x").unwrap();
    let e = check_destination(&empty).unwrap_err().to_string();
    assert!(e.contains("not empty") && e.contains("empty"), "{e}");
    let file = root.join("file");
    std::fs::write(&file, "x").unwrap();
    let e = check_destination(&file).unwrap_err().to_string();
    assert!(e.contains("not a directory"), "{e}");
}

/// The written config.json is a transformers config with the fields each class reads,
/// and parses back to the same `ModelConfig` (no GPU needed).
#[test]
fn config_json_is_a_transformers_config_that_reads_back() {
    let root = temp_dir("merge-config");
    for (name, spec) in model_specs::specs() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        write_tiny_hf(&dir, &spec);
        let cfg = ModelConfig::from_hf_json(&dir.join("config.json")).unwrap();
        let j = hf_config(&cfg).unwrap();
        let (arch, model_type) = match name {
            "llama" => ("LlamaForCausalLM", "llama"),
            "mistral" => ("MistralForCausalLM", "mistral"),
            "gemma2" => ("Gemma2ForCausalLM", "gemma2"),
            _ => ("Qwen2ForCausalLM", "qwen2"),
        };
        assert_eq!(j["architectures"][0], arch);
        assert_eq!(j["model_type"], model_type);
        for field in [
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "head_dim",
            "rms_norm_eps",
            "rope_theta",
            "max_position_embeddings",
            "vocab_size",
            "tie_word_embeddings",
            "hidden_act",
        ] {
            assert!(
                j.get(field).is_some_and(|v| !v.is_null()),
                "{name}: {field}"
            );
        }
        assert!(j.get("rope_scaling").is_some(), "{name}: rope_scaling");
        assert_eq!(j["rms_norm_eps"].as_f64(), Some(1e-5));
        match name {
            "mistral" => assert_eq!(j["sliding_window"], 5),
            "gemma2" => {
                assert_eq!(j["sliding_window"], 4);
                assert_eq!(j["attn_logit_softcapping"], 4.0);
                assert_eq!(j["final_logit_softcapping"], 3.0);
                assert_eq!(j["query_pre_attn_scalar"], 10.0);
                assert_eq!(j["hidden_activation"], "gelu_pytorch_tanh");
            }
            "qwen2" => assert_eq!(j["use_sliding_window"], false),
            _ => {}
        }
        let back = hf::config_from_json(&j, Path::new("config.json")).unwrap();
        assert_eq!(back, cfg, "{name}");
    }

    // RoPE scaling and a windowed Llama (possible from GGUF, written as Mistral).
    let dir = root.join("llama");
    let mut cfg = ModelConfig::from_hf_json(&dir.join("config.json")).unwrap();
    cfg.rope_scaling = Some(boha::model::RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 64,
    });
    cfg.sliding_window = Some(6);
    let j = hf_config(&cfg).unwrap();
    assert_eq!(j["architectures"][0], "MistralForCausalLM");
    assert_eq!(j["rope_scaling"]["rope_type"], "llama3");
    let back = hf::config_from_json(&j, Path::new("config.json")).unwrap();
    assert_eq!(back.rope_scaling, cfg.rope_scaling);
    assert_eq!(back.sliding_window, Some(6));

    // A Qwen2 windowed on every layer has no transformers equivalent: refused.
    let mut q = ModelConfig::from_hf_json(&root.join("qwen2").join("config.json")).unwrap();
    q.sliding_window = Some(8);
    let e = hf_config(&q).unwrap_err().to_string();
    assert!(e.contains("Qwen2"), "{e}");
}

fn boha_bin(args: &[&Path], flags: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_boha"));
    cmd.arg("merge");
    for (f, p) in flags.iter().zip(args) {
        cmd.arg(f).arg(p);
    }
    cmd.output().unwrap()
}

#[test]
fn cli_merge_end_to_end() {
    let Some(gpu) = common::gpu() else { return };
    let root = temp_dir("merge-cli");
    let tiny = write_model(&root, &tiny_spec("llama"));
    let ck = load_checkpoint(&tiny.dir).unwrap();
    let weights = Weights::upload(&gpu, &ck).unwrap();
    let adapter_dir = root.join("adapter");
    let ads = make_adapter(
        &gpu,
        &weights,
        adapter_spec(Method::Boha, 2, 1, 1.0),
        9,
        &adapter_dir,
    );
    let on = logits(
        &gpu,
        &Model {
            weights,
            adapters: Some(ads),
        },
    );
    let out: PathBuf = root.join("merged");
    let flags = ["--model", "--adapter", "--out"];
    let o = boha_bin(&[&tiny.dir, &adapter_dir, &out], &flags);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "boha merge failed: {}{}",
        stdout,
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(stdout.contains("merged 14 adapted matrices"), "{stdout}");

    let merged = load_checkpoint(&out).unwrap();
    same_checkpoint_metadata(&ck, &merged);
    let got = logits(&gpu, &Model::load(&gpu, &merged).unwrap());
    assert_close("CLI-merged logits", &got, &on, 1e-4);

    // A second run onto the now non-empty directory is refused and changes nothing.
    let before = std::fs::read(out.join("model.safetensors")).unwrap();
    let o = boha_bin(&[&tiny.dir, &adapter_dir, &out], &flags);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(stderr.contains("not empty"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(
        std::fs::read(out.join("model.safetensors")).unwrap(),
        before
    );
}
