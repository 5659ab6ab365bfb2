//! Seeds for the fuzz targets: the tiny files the other tests write, and broken variants
//! of them. `cargo test --test fuzz_regressions write_fuzz_seeds -- --ignored` writes
//! them to fuzz/corpus/<target>/ (fuzz/README.md says how they became the corpora).

use std::path::{Path, PathBuf};

use boha::adapters::files::save_adapter;
use boha::adapters::{AdapterSpec, Method};
use serde_json::{json, Value};

use super::common;
use super::{adapter_with_config, corpus_dir, split2};
use common::tiny_checkpoint::{temp_dir, write_tiny_hf, TinySpec};

/// Named inputs for one target.
type Seeds = Vec<(&'static str, Vec<u8>)>;

/// Writes every target's seeds under `fuzz/corpus/` (or `$BOHA_FUZZ_SEEDS`).
#[test]
#[ignore = "writes the fuzz seeds; run by hand (fuzz/README.md)"]
fn write_fuzz_seeds() {
    let root = std::env::var_os("BOHA_FUZZ_SEEDS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus"));
    let all: [(&str, Seeds); 5] = [
        ("gguf", gguf_seeds()),
        ("hf_dir", hf_dir_seeds()),
        ("tokenizer", tokenizer_seeds()),
        ("jsonl", jsonl_seeds()),
        ("adapter", adapter_seeds()),
    ];
    for (target, seeds) in all {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in seeds {
            std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
        }
    }
}

/// The two-file inputs of hf_dir and adapter: u16 LE length of `a`, `a`, `b`.
fn pack2(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut out = u16::try_from(a.len()).unwrap().to_le_bytes().to_vec();
    out.extend_from_slice(a);
    out.extend_from_slice(b);
    out
}

/// A tiny model small enough for a fuzz input (one layer of width 8).
fn seed_spec(arch: &str, dtype: safetensors::Dtype, tie: bool) -> TinySpec {
    TinySpec {
        arch: arch.into(),
        hidden: 8,
        intermediate: 12,
        layers: 1,
        heads: 2,
        kv_heads: 1,
        tie,
        dtype,
        ..TinySpec::llama()
    }
}

/// Overwrites `bytes[at..at + with.len()]` (a broken variant of a valid file).
fn patched(mut bytes: Vec<u8>, at: usize, with: &[u8]) -> Vec<u8> {
    bytes[at..at + with.len()].copy_from_slice(with);
    bytes
}

fn gguf_seeds() -> Seeds {
    use common::tiny_checkpoint::{gguf_from_tiny, GgufWriter};
    use safetensors::Dtype;
    let ck = write_tiny_hf(
        &temp_dir("seed-gguf"),
        &seed_spec("LlamaForCausalLM", Dtype::F32, true),
    );
    let (f16, _) = gguf_from_tiny(&ck, true).to_bytes();
    let (f32, data_start) = gguf_from_tiny(&ck, false).to_bytes();
    let mut bare = GgufWriter::new();
    bare.kv_str("general.architecture", "llama");
    let mut newline_key = GgufWriter::new();
    newline_key
        .kv_str("general.architecture", "llama")
        .kv_raw("a\nb", 99, vec![]);
    let mut odd_type = GgufWriter::new();
    odd_type
        .kv_str("general.architecture", "llama")
        .kv_raw("x", 99, vec![1, 2, 3, 4]);
    vec![
        ("tiny-f16.gguf", f16.clone()),
        ("tiny-f32.gguf", f32.clone()),
        ("truncated-in-data.gguf", f16[..f16.len() / 2 + 7].to_vec()),
        ("truncated-at-data.gguf", f32[..data_start].to_vec()),
        ("bad-magic.gguf", patched(f16.clone(), 0, b"GGUX")),
        (
            "version-1.gguf",
            patched(f16.clone(), 4, &1u32.to_le_bytes()),
        ),
        (
            "nan-weight.gguf",
            patched(f32.clone(), data_start, &[0xFF; 4]),
        ),
        (
            "huge-tensor-count.gguf",
            patched(f16, 8, &u64::MAX.to_le_bytes()),
        ),
        ("metadata-only.gguf", bare.to_bytes().0),
        ("unknown-value-type.gguf", odd_type.to_bytes().0),
        ("newline-in-key.gguf", newline_key.to_bytes().0),
    ]
}

fn hf_dir_seeds() -> Seeds {
    use safetensors::Dtype;
    let pack_dir = |spec: &TinySpec| {
        let dir = temp_dir("seed-hf");
        write_tiny_hf(&dir, spec);
        let config = std::fs::read(dir.join("config.json")).unwrap();
        (
            config,
            std::fs::read(dir.join("model.safetensors")).unwrap(),
        )
    };
    let (config, weights) = pack_dir(&seed_spec("LlamaForCausalLM", Dtype::F32, false));
    let (qc, qw) = pack_dir(&seed_spec("Qwen2ForCausalLM", Dtype::F16, true));
    let (gc, gw) = pack_dir(&seed_spec("Gemma2ForCausalLM", Dtype::BF16, true));
    let mut scaled = seed_spec("LlamaForCausalLM", Dtype::BF16, true);
    scaled.extra_config = json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0,
        "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64}});
    let (sc, sw) = pack_dir(&scaled);
    let mut wider: Value = serde_json::from_slice(&config).unwrap();
    wider["hidden_size"] = json!(16);
    let wider = wider.to_string();
    vec![
        ("llama-f32", pack2(&config, &weights)),
        ("qwen2-f16", pack2(&qc, &qw)),
        ("gemma2-bf16", pack2(&gc, &gw)),
        ("llama3-rope-scaling", pack2(&sc, &sw)),
        ("empty-config", pack2(b"{}", &weights)),
        ("config-not-json", pack2(b"{\"architectures\": [", &weights)),
        (
            "config-wider-than-weights",
            pack2(wider.as_bytes(), &weights),
        ),
        (
            "weights-truncated",
            pack2(&config, &weights[..weights.len() / 2]),
        ),
        (
            "weights-header-too-long",
            pack2(
                &config,
                &patched(weights.clone(), 0, &u64::MAX.to_le_bytes()),
            ),
        ),
        (
            "newline-in-tensor-name",
            pack2(&config, &one_tensor_named("a\nb")),
        ),
        ("nan-weight", pack2(&config, &nan_first_value(weights))),
    ]
}

fn tokenizer_seeds() -> Seeds {
    use common::tiny_checkpoint::{TinyTokenizer, CHATML_TEMPLATE};
    let json = TinyTokenizer::new()
        .tokenizer_json()
        .to_string()
        .into_bytes();
    let with_mode = |mode: u8, rest: &[u8]| [&[mode][..], rest].concat();
    let saved = |name: &str| std::fs::read(corpus_dir("tokenizer").join(name)).unwrap();
    vec![
        ("tiny-tokenizer", with_mode(0, &json)),
        ("tiny-tokenizer-truncated", with_mode(0, &json[..json.len() / 2])),
        ("empty-object", with_mode(0, b"{}")),
        ("chatml", with_mode(1, CHATML_TEMPLATE.as_bytes())),
        ("chatml-generation-prompt", with_mode(3, CHATML_TEMPLATE.as_bytes())),
        ("raise-exception", with_mode(1, b"{{ raise_exception('no system role') }}")),
        (
            "filters-and-specials",
            with_mode(3, b"{{ bos_token }}{% for m in messages %}{{ m['role'] | upper }}: {{ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}{{ eos_token }}"),
        ),
        ("unclosed-tag", with_mode(1, b"{% for m in messages %}{{ m.content }")),
        ("newline-in-raise-exception", with_mode(1, b"{{ raise_exception('a\\nb') }}")),
        ("newline-in-model-type", with_mode(0, b"{\"model\": {\"type\": \"x\\ny\"}}")),
        ("decoder-not-json", saved("decoder-not-json")),
        ("post-processor-missing-token", saved("post-processor-missing-token")),
    ]
}

fn jsonl_seeds() -> Seeds {
    let seeds: [(&'static str, &[u8]); 11] = [
        ("completion", b"{\"prompt\": \"2+2=\", \"completion\": \" 4\"}\n{\"prompt\": \"3+3=\", \"completion\": \" 6\", \"answer\": 6}\n"),
        ("alpaca", b"{\"instruction\": \"Add.\", \"input\": \"2 2\", \"output\": \"4\", \"task\": \"add\"}\n{\"instruction\": \"Say hi.\", \"input\": null, \"output\": \"hi\"}\n"),
        ("chat", b"{\"messages\": [{\"role\": \"system\", \"content\": \"Be brief.\"}, {\"role\": \"user\", \"content\": \"hi\"}, {\"role\": \"assistant\", \"content\": \"hello\"}], \"answer\": true}\n"),
        ("crlf-and-blank-lines", b"\r\n{\"prompt\": \"a\", \"completion\": \"b\"}\r\n\r\n   \n{\"prompt\": \"c\", \"completion\": \"d\"}"),
        ("invalid-utf8", b"{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"\xff\", \"completion\": \"b\"}\n"),
        ("not-json", b"{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \n"),
        ("not-an-object", b"[1, 2, 3]\n"),
        ("wrong-types", b"{\"prompt\": 1, \"completion\": \"b\"}\n{\"instruction\": \"a\", \"output\": [\"b\"]}\n{\"prompt\": \"a\", \"completion\": \"b\", \"answer\": {}}\n"),
        ("bad-messages", b"{\"messages\": []}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n{\"messages\": [3]}\n"),
        ("empty", b""),
        ("newline-in-role", b"{\"messages\": [{\"role\": \"user\", \"content\": \"a\"}, {\"role\": \"x\\ny\", \"content\": \"b\"}]}\n"),
    ];
    seeds.iter().map(|(n, b)| (*n, b.to_vec())).collect()
}

fn adapter_seeds() -> Seeds {
    let spec = |method, blocks, block_rank| AdapterSpec {
        method,
        blocks,
        block_rank,
        scale: 0.5,
    };
    let boha = saved_adapter(
        &spec(Method::Boha, 2, 1),
        &[(0, "q", 8, 8), (0, "down", 8, 12)],
    );
    let broken = |f: fn(&mut Value)| {
        let dir = adapter_with_config("seed-adapter", f);
        pack_adapter(&dir)
    };
    let (config, weights) = split2(&boha)
        .map(|(c, w)| (c.to_vec(), w.to_vec()))
        .unwrap();
    vec![
        ("boha-q-down", boha.clone()),
        (
            "lora",
            saved_adapter(&spec(Method::Lora, 1, 2), &[(0, "q", 8, 8), (1, "q", 8, 8)]),
        ),
        (
            "hira",
            saved_adapter(&spec(Method::Hira, 1, 1), &[(0, "v_proj", 4, 8)]),
        ),
        (
            "additive",
            saved_adapter(&spec(Method::Additive, 4, 1), &[(0, "o", 8, 8)]),
        ),
        ("scale-beyond-f32", broken(|c| c["scale"] = json!(1e300))),
        (
            "sizes-overflow",
            broken(|c| {
                c["blocks"] = json!(u64::MAX);
                c["block_rank"] = json!(u64::MAX);
            }),
        ),
        (
            "lora-over-boha-tensors",
            broken(|c| c["peft_type"] = json!("LORA")),
        ),
        ("config-not-json", pack2(b"{\"peft_type\": ", &weights)),
        (
            "weights-truncated",
            pack2(&config, &weights[..weights.len() - 5]),
        ),
        ("nan-factor", pack2(&config, &nan_first_value(weights))),
        (
            "newline-in-peft-type",
            broken(|c| c["peft_type"] = json!("BOHA\nX")),
        ),
    ]
}

/// Saves an adapter with factors for `layers` (layer, projection, d_out, d_in) and
/// packs its two files.
fn saved_adapter(spec: &AdapterSpec, layers: &[(usize, &str, usize, usize)]) -> Vec<u8> {
    let r = spec.blocks * spec.block_rank;
    let values = |n: usize| -> Vec<f32> { (0..n).map(|i| (i as f32 * 0.37).sin() * 0.1).collect() };
    let factors: Vec<(Vec<f32>, Vec<f32>)> = layers
        .iter()
        .map(|&(_, _, d_out, d_in)| (values(r * d_in), values(r * d_out)))
        .collect();
    let refs: Vec<_> = layers
        .iter()
        .zip(&factors)
        .map(|(&(l, name, d_out, d_in), (a, b))| (l, name, &a[..], &b[..], d_out, d_in))
        .collect();
    let dir = temp_dir("seed-adapter").join("adapter");
    save_adapter(&dir, spec, "tiny", &refs).unwrap();
    pack_adapter(&dir)
}

/// An adapter directory's two files as one adapter-target input.
fn pack_adapter(dir: &Path) -> Vec<u8> {
    let config = std::fs::read(dir.join("adapter_config.json")).unwrap();
    pack2(
        &config,
        &std::fs::read(dir.join("adapter_model.safetensors")).unwrap(),
    )
}

/// A safetensors file holding one F32 scalar named `name`.
fn one_tensor_named(name: &str) -> Vec<u8> {
    let header = json!({ name: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} });
    let header = header.to_string().into_bytes();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(1f32.to_le_bytes());
    out
}

/// A safetensors file with its first value made NaN.
fn nan_first_value(weights: Vec<u8>) -> Vec<u8> {
    let header = u64::from_le_bytes(weights[..8].try_into().unwrap()) as usize;
    patched(weights, 8 + header, &[0xFF; 4])
}

/// The `tokenizers` crate panics (an `expect`) on this tokenizer.json's decoder; boha
/// must return an error instead, through the library and through the CLI.
#[test]
fn tokenizer_whose_decoder_panics_the_parser() {
    let data = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz/tokenizer/decoder-not-json"),
    )
    .unwrap();
    let e = boha::loaders::tokenizer::from_bytes(&data[1..]).unwrap_err();
    assert!(!e.is_empty());

    let ck = temp_dir("fz-tok-cli");
    write_tiny_hf(&ck, &TinySpec::llama());
    std::fs::write(ck.join("tokenizer.json"), &data[1..]).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_boha"))
        .args(["score", "--text", "hi", "--model"])
        .arg(&ck)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("tokenizer.json") && !stderr.contains("panicked"),
        "{stderr}"
    );
}
