//! Writers of tiny checkpoints for tests: Hugging Face directories (config.json,
//! safetensors single or sharded, tokenizer.json, tokenizer_config.json,
//! generation_config.json) and GGUF files, with random weights from a seed. Nothing is
//! fetched; everything lives under a fresh directory in the system temp dir.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use boha::rng::Rng;
use safetensors::Dtype;
use serde_json::{json, Value};

/// A fresh empty directory under the system temp dir (unique per process and call).
pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("boha-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// What to write.
#[derive(Clone, Debug)]
pub struct TinySpec {
    /// `architectures[0]`, e.g. "LlamaForCausalLM".
    pub arch: String,
    /// Config vocabulary (≥ the tokenizer's, which has [`TINY_VOCAB_LEN`] tokens).
    pub vocab: usize,
    pub hidden: usize,
    pub intermediate: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    /// Written as `head_dim` when set (else hidden / heads).
    pub head_dim: Option<usize>,
    pub tie: bool,
    /// 1: model.safetensors; n > 1: n shards and an index.
    pub shards: usize,
    pub dtype: Dtype,
    /// Merged into config.json last (may override anything).
    pub extra_config: Value,
    pub seed: u64,
}

impl TinySpec {
    /// A tiny Llama with odd sizes, grouped-query attention (4 heads of 6, 2 kv heads;
    /// a head size of 4 would make llama.cpp's q/k permutation its own inverse) and
    /// untied embeddings.
    pub fn llama() -> TinySpec {
        TinySpec {
            arch: "LlamaForCausalLM".into(),
            vocab: TINY_VOCAB_LEN + 3,
            hidden: 24,
            intermediate: 36,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: None,
            tie: false,
            shards: 1,
            dtype: Dtype::F32,
            extra_config: json!({}),
            seed: 1,
        }
    }

    pub fn head_size(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden / self.heads)
    }
}

/// A written checkpoint: where, and the tensors under their Hugging Face names with the
/// values as stored (already rounded to the dtype).
pub struct TinyCheckpoint {
    pub dir: PathBuf,
    pub spec: TinySpec,
    pub tensors: Vec<(String, Vec<usize>, Vec<f32>)>,
}

impl TinyCheckpoint {
    /// The stored values of a Hugging Face tensor.
    pub fn get(&self, hf_name: &str) -> &(String, Vec<usize>, Vec<f32>) {
        self.tensors
            .iter()
            .find(|t| t.0 == hf_name)
            .unwrap_or_else(|| panic!("no {hf_name}"))
    }
}

/// Hugging Face tensor names and shapes of a spec, in a fixed order.
pub fn hf_tensor_shapes(s: &TinySpec) -> Vec<(String, Vec<usize>)> {
    let (c, f, hs) = (s.hidden, s.intermediate, s.head_size());
    let (qd, kvd) = (s.heads * hs, s.kv_heads * hs);
    let gemma = s.arch == "Gemma2ForCausalLM";
    let qwen = s.arch == "Qwen2ForCausalLM";
    let mut out = vec![("model.embed_tokens.weight".to_string(), vec![s.vocab, c])];
    for i in 0..s.layers {
        let p = |n: &str| format!("model.layers.{i}.{n}");
        out.push((p("input_layernorm.weight"), vec![c]));
        out.push((p("self_attn.q_proj.weight"), vec![qd, c]));
        out.push((p("self_attn.k_proj.weight"), vec![kvd, c]));
        out.push((p("self_attn.v_proj.weight"), vec![kvd, c]));
        if qwen {
            out.push((p("self_attn.q_proj.bias"), vec![qd]));
            out.push((p("self_attn.k_proj.bias"), vec![kvd]));
            out.push((p("self_attn.v_proj.bias"), vec![kvd]));
        }
        out.push((p("self_attn.o_proj.weight"), vec![c, qd]));
        out.push((p("post_attention_layernorm.weight"), vec![c]));
        if gemma {
            out.push((p("pre_feedforward_layernorm.weight"), vec![c]));
            out.push((p("post_feedforward_layernorm.weight"), vec![c]));
        }
        out.push((p("mlp.gate_proj.weight"), vec![f, c]));
        out.push((p("mlp.up_proj.weight"), vec![f, c]));
        out.push((p("mlp.down_proj.weight"), vec![c, f]));
    }
    out.push(("model.norm.weight".to_string(), vec![c]));
    if !s.tie {
        out.push(("lm_head.weight".to_string(), vec![s.vocab, c]));
    }
    out
}

/// Writes a whole Hugging Face directory for `spec` into `dir`.
pub fn write_tiny_hf(dir: &Path, spec: &TinySpec) -> TinyCheckpoint {
    let mut rng = Rng::new(spec.seed);
    let tensors: Vec<(String, Vec<usize>, Vec<f32>)> = hf_tensor_shapes(spec)
        .into_iter()
        .map(|(name, shape)| {
            let n = shape.iter().product();
            let data = rng
                .vec_f32(n, -1.0, 1.0)
                .into_iter()
                .map(|v| round_to(spec.dtype, v))
                .collect();
            (name, shape, data)
        })
        .collect();
    write_safetensors(dir, &tensors, spec.dtype, spec.shards);

    let tok = TinyTokenizer::new();
    let mut config = json!({
        "architectures": [spec.arch],
        "vocab_size": spec.vocab,
        "hidden_size": spec.hidden,
        "intermediate_size": spec.intermediate,
        "num_hidden_layers": spec.layers,
        "num_attention_heads": spec.heads,
        "num_key_value_heads": spec.kv_heads,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 128,
        "tie_word_embeddings": spec.tie,
        "bos_token_id": tok.id("<|bos|>"),
        "eos_token_id": tok.id("<|eos|>"),
        "torch_dtype": "float32",
    });
    if let Some(hd) = spec.head_dim {
        config["head_dim"] = json!(hd);
    }
    if spec.arch == "Gemma2ForCausalLM" {
        config["hidden_activation"] = json!("gelu_pytorch_tanh");
        config["hidden_act"] = json!("gelu_pytorch_tanh");
    }
    merge(&mut config, &spec.extra_config);
    write_json(&dir.join("config.json"), &config);

    std::fs::write(dir.join("tokenizer.json"), tok.tokenizer_json().to_string()).unwrap();
    write_json(
        &dir.join("tokenizer_config.json"),
        &json!({
            "bos_token": "<|bos|>",
            "eos_token": {"content": "<|im_end|>", "__type": "AddedToken"},
            "add_bos_token": true,
            "chat_template": CHATML_TEMPLATE,
        }),
    );
    write_json(
        &dir.join("generation_config.json"),
        &json!({
            "eos_token_id": [tok.id("<|im_end|>"), tok.id("<|eos|>")],
            "temperature": 0.7, "top_p": 0.9, "top_k": 20, "do_sample": true,
        }),
    );
    TinyCheckpoint {
        dir: dir.to_path_buf(),
        spec: spec.clone(),
        tensors,
    }
}

/// A ChatML template in the style of SmolLM2's, using `.strip()` and `raise_exception`.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are tiny.<|im_end|>\n' }}{% endif %}\
{% if message['role'] not in ['system', 'user', 'assistant'] %}{{ raise_exception('unknown role ' + message['role']) }}{% endif %}\
{{ '<|im_start|>' + message['role'] + '\n' + message['content'].strip() + '<|im_end|>' + '\n' }}\
{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The value `v` becomes when stored as `dtype`.
pub fn round_to(dtype: Dtype, v: f32) -> f32 {
    match dtype {
        Dtype::F16 => half::f16::from_f32(v).to_f32(),
        Dtype::BF16 => half::bf16::from_f32(v).to_f32(),
        _ => v,
    }
}

fn to_bytes(dtype: Dtype, data: &[f32]) -> Vec<u8> {
    match dtype {
        Dtype::F32 => data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        Dtype::F16 => data
            .iter()
            .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
            .collect(),
        Dtype::BF16 => data
            .iter()
            .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
            .collect(),
        other => panic!("tiny checkpoints are F32/F16/BF16, not {other:?}"),
    }
}

/// Writes `tensors` as model.safetensors (shards ≤ 1) or as `shards` files plus
/// model.safetensors.index.json.
pub fn write_safetensors(
    dir: &Path,
    tensors: &[(String, Vec<usize>, Vec<f32>)],
    dtype: Dtype,
    shards: usize,
) {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| to_bytes(dtype, &t.2)).collect();
    let views =
        |pick: &dyn Fn(usize) -> bool| -> Vec<(String, safetensors::tensor::TensorView<'_>)> {
            tensors
                .iter()
                .enumerate()
                .filter(|(i, _)| pick(*i))
                .map(|(i, t)| {
                    (
                        t.0.clone(),
                        safetensors::tensor::TensorView::new(dtype, t.1.clone(), &bytes[i])
                            .unwrap(),
                    )
                })
                .collect()
        };
    if shards <= 1 {
        let data = safetensors::tensor::serialize(views(&|_| true), None).unwrap();
        std::fs::write(dir.join("model.safetensors"), data).unwrap();
        return;
    }
    let mut map = serde_json::Map::new();
    for s in 0..shards {
        let file = format!("model-{:05}-of-{:05}.safetensors", s + 1, shards);
        let data = safetensors::tensor::serialize(views(&|i| i % shards == s), None).unwrap();
        std::fs::write(dir.join(&file), data).unwrap();
        for (i, t) in tensors.iter().enumerate() {
            if i % shards == s {
                map.insert(t.0.clone(), json!(file));
            }
        }
    }
    write_json(
        &dir.join("model.safetensors.index.json"),
        &json!({"metadata": {}, "weight_map": map}),
    );
}

pub fn write_json(path: &Path, v: &Value) {
    std::fs::write(path, serde_json::to_string_pretty(v).unwrap()).unwrap();
}

/// Recursively overwrites `base` with `extra`'s fields (null values remove nothing:
/// they are written as null).
pub fn merge(base: &mut Value, extra: &Value) {
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
}

/// Tokens in the tiny tokenizer: 256 byte tokens, the merges' results, 4 specials.
pub const TINY_VOCAB_LEN: usize = 256 + TINY_MERGE_COUNT + 4;
const TINY_WORDS: [&str; 8] = [
    "Ġthe",
    "Ġcapital",
    "Ġof",
    "ĠFrance",
    "What",
    "Ġis",
    "Ġcat",
    "Ġcats",
];
const TINY_MERGE_COUNT: usize = 25;

/// A byte-level BPE tokenizer small enough to build by hand: GPT-2's byte alphabet,
/// merges that spell a few words left to right, and the specials
/// `<|bos|>`, `<|eos|>`, `<|im_start|>`, `<|im_end|>`.
pub struct TinyTokenizer {
    pub tokens: Vec<String>,
    pub merges: Vec<(String, String)>,
    /// Token types as GGUF writes them (1 normal, 3 control).
    pub types: Vec<i32>,
}

impl TinyTokenizer {
    pub fn new() -> TinyTokenizer {
        let mut tokens: Vec<String> = gpt2_byte_chars()
            .into_iter()
            .map(|c| c.to_string())
            .collect();
        let mut merges = Vec::new();
        for w in TINY_WORDS {
            let chars: Vec<char> = w.chars().collect();
            let mut acc = chars[0].to_string();
            for c in &chars[1..] {
                let next = format!("{acc}{c}");
                if !tokens.contains(&next) {
                    merges.push((acc.clone(), c.to_string()));
                    tokens.push(next.clone());
                }
                acc = next;
            }
        }
        assert_eq!(merges.len(), TINY_MERGE_COUNT, "update TINY_MERGE_COUNT");
        let mut types = vec![1; tokens.len()];
        for s in ["<|bos|>", "<|eos|>", "<|im_start|>", "<|im_end|>"] {
            tokens.push(s.to_string());
            types.push(3);
        }
        TinyTokenizer {
            tokens,
            merges,
            types,
        }
    }

    pub fn id(&self, token: &str) -> u32 {
        self.tokens
            .iter()
            .position(|t| t == token)
            .unwrap_or_else(|| panic!("no token {token}")) as u32
    }

    /// The Hugging Face tokenizer.json of this vocabulary (GPT-2 style byte level).
    pub fn tokenizer_json(&self) -> Value {
        let vocab: serde_json::Map<String, Value> = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), json!(i)))
            .collect();
        let added: Vec<Value> = (0..self.tokens.len())
            .filter(|&i| self.types[i] == 3)
            .map(|i| json!({"id": i, "content": self.tokens[i], "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}))
            .collect();
        let bos = "<|bos|>";
        json!({
            "version": "1.0", "truncation": null, "padding": null,
            "added_tokens": added,
            "normalizer": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": bos, "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                         {"SpecialToken": {"id": bos, "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {bos: {"id": bos, "ids": [self.id(bos)], "tokens": [bos]}}},
            "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                      "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                      "vocab": vocab, "merges": self.merges.iter().map(|(a, b)| format!("{a} {b}")).collect::<Vec<_>>()},
        })
    }
}

/// GPT-2's printable stand-ins for the 256 byte values, in byte order.
pub fn gpt2_byte_chars() -> Vec<char> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32)
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    let mut out = vec![' '; 256];
    for (b, c) in bs.iter().zip(cs) {
        out[*b as usize] = char::from_u32(c).unwrap();
    }
    out
}

// ---------------------------------------------------------------------------------
// GGUF

/// GGUF metadata value types.
pub mod gguf_type {
    pub const U8: u32 = 0;
    pub const I32: u32 = 5;
    pub const U32: u32 = 4;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STRING: u32 = 8;
    pub const ARRAY: u32 = 9;
    pub const U64: u32 = 10;
}

/// A minimal GGUF writer (v3, little-endian) for tests.
pub struct GgufWriter {
    pub version: u32,
    pub alignment: usize,
    kvs: Vec<(String, u32, Vec<u8>)>,
    tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
}

fn gguf_str(s: &str) -> Vec<u8> {
    let mut b = (s.len() as u64).to_le_bytes().to_vec();
    b.extend_from_slice(s.as_bytes());
    b
}

impl GgufWriter {
    pub fn new() -> GgufWriter {
        GgufWriter {
            version: 3,
            alignment: 32,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    /// A key with an already encoded value of GGUF type `ty`.
    pub fn kv_raw(&mut self, key: &str, ty: u32, value: Vec<u8>) -> &mut Self {
        self.kvs.push((key.to_string(), ty, value));
        self
    }
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut Self {
        self.kv_raw(key, gguf_type::U32, v.to_le_bytes().to_vec())
    }
    pub fn kv_f32(&mut self, key: &str, v: f32) -> &mut Self {
        self.kv_raw(key, gguf_type::F32, v.to_le_bytes().to_vec())
    }
    pub fn kv_bool(&mut self, key: &str, v: bool) -> &mut Self {
        self.kv_raw(key, gguf_type::BOOL, vec![v as u8])
    }
    pub fn kv_str(&mut self, key: &str, v: &str) -> &mut Self {
        self.kv_raw(key, gguf_type::STRING, gguf_str(v))
    }
    pub fn kv_str_array(&mut self, key: &str, v: &[&str]) -> &mut Self {
        let mut b = gguf_type::STRING.to_le_bytes().to_vec();
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|s| b.extend(gguf_str(s)));
        self.kv_raw(key, gguf_type::ARRAY, b)
    }
    pub fn kv_f32_array(&mut self, key: &str, v: &[f32]) -> &mut Self {
        let mut b = gguf_type::F32.to_le_bytes().to_vec();
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| b.extend(x.to_le_bytes()));
        self.kv_raw(key, gguf_type::ARRAY, b)
    }
    pub fn kv_i32_array(&mut self, key: &str, v: &[i32]) -> &mut Self {
        let mut b = gguf_type::I32.to_le_bytes().to_vec();
        b.extend_from_slice(&(v.len() as u64).to_le_bytes());
        v.iter().for_each(|x| b.extend(x.to_le_bytes()));
        self.kv_raw(key, gguf_type::ARRAY, b)
    }

    /// A tensor with ggml dims `ne` (ne[0] innermost), ggml type id and raw data.
    pub fn tensor(&mut self, name: &str, ne: &[u64], ggml_type: u32, data: Vec<u8>) -> &mut Self {
        self.tensors
            .push((name.to_string(), ne.to_vec(), ggml_type, data));
        self
    }

    /// An F32 tensor of PyTorch shape `shape` (written with reversed dims).
    pub fn tensor_f32(&mut self, name: &str, shape: &[usize], data: &[f32]) -> &mut Self {
        let ne: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensor(
            name,
            &ne,
            0,
            data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )
    }

    /// An F16 tensor of PyTorch shape `shape`.
    pub fn tensor_f16(&mut self, name: &str, shape: &[usize], data: &[f32]) -> &mut Self {
        let ne: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        self.tensor(
            name,
            &ne,
            1,
            data.iter()
                .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                .collect(),
        )
    }

    /// The file's bytes; also returns where the data section starts.
    pub fn to_bytes(&self) -> (Vec<u8>, usize) {
        let mut b = b"GGUF".to_vec();
        b.extend(self.version.to_le_bytes());
        b.extend((self.tensors.len() as u64).to_le_bytes());
        b.extend((self.kvs.len() as u64).to_le_bytes());
        for (k, ty, v) in &self.kvs {
            b.extend(gguf_str(k));
            b.extend(ty.to_le_bytes());
            b.extend(v);
        }
        let align = |n: usize| n.div_ceil(self.alignment) * self.alignment;
        let mut offset = 0;
        let mut offsets = Vec::new();
        for (name, ne, ty, data) in &self.tensors {
            b.extend(gguf_str(name));
            b.extend((ne.len() as u32).to_le_bytes());
            ne.iter().for_each(|d| b.extend(d.to_le_bytes()));
            b.extend(ty.to_le_bytes());
            b.extend((offset as u64).to_le_bytes());
            offsets.push(offset);
            offset = align(offset + data.len());
        }
        let data_start = align(b.len());
        b.resize(data_start, 0);
        for ((_, _, _, data), off) in self.tensors.iter().zip(offsets) {
            b.resize(data_start + off, 0);
            b.extend(data);
        }
        (b, data_start)
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.to_bytes().0).unwrap();
    }
}

/// llama.cpp's converter permutation of q/k rows (`permute` in convert_hf_to_gguf.py:
/// reshape(n_head, 2, hs/2, cols).swapaxes(1, 2)), written independently of boha's.
pub fn llama_cpp_permute(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let hs = rows / n_head;
    let mut out = vec![0f32; w.len()];
    // out[h][j][s][:] = w[h][s][j][:]
    for h in 0..n_head {
        for j in 0..hs / 2 {
            for s in 0..2 {
                let dst = (h * (hs / 2) + j) * 2 + s;
                let src = (h * 2 + s) * (hs / 2) + j;
                out[dst * cols..(dst + 1) * cols].copy_from_slice(&w[src * cols..(src + 1) * cols]);
            }
        }
    }
    out
}

/// A GGUF (llama architecture, "gpt2" tokenizer) holding the same model as a tiny Llama
/// Hugging Face checkpoint, converted the way llama.cpp does (names, q/k permutation,
/// reversed dims). Norms stay F32; other tensors are F32 or, with `f16`, F16.
pub fn gguf_from_tiny(ck: &TinyCheckpoint, f16: bool) -> GgufWriter {
    let s = &ck.spec;
    assert_eq!(s.arch, "LlamaForCausalLM");
    let tok = TinyTokenizer::new();
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama")
        .kv_str("general.name", "tiny")
        .kv_u32("llama.context_length", 128)
        .kv_u32("llama.embedding_length", s.hidden as u32)
        .kv_u32("llama.block_count", s.layers as u32)
        .kv_u32("llama.feed_forward_length", s.intermediate as u32)
        .kv_u32("llama.attention.head_count", s.heads as u32)
        .kv_u32("llama.attention.head_count_kv", s.kv_heads as u32)
        .kv_u32("llama.rope.dimension_count", s.head_size() as u32)
        .kv_f32("llama.rope.freq_base", 10000.0)
        .kv_f32("llama.attention.layer_norm_rms_epsilon", 1e-5)
        .kv_u32("llama.vocab_size", s.vocab as u32)
        .kv_str("tokenizer.ggml.model", "gpt2")
        .kv_str("tokenizer.ggml.pre", "default");
    // The config vocabulary is padded past the tokenizer's: pad like the converter does.
    let mut tokens: Vec<String> = tok.tokens.clone();
    let mut types = tok.types.clone();
    for i in tokens.len()..s.vocab {
        tokens.push(format!("[PAD{i}]"));
        types.push(4);
    }
    let token_refs: Vec<&str> = tokens.iter().map(|t| t.as_str()).collect();
    let merges: Vec<String> = tok.merges.iter().map(|(a, b)| format!("{a} {b}")).collect();
    let merge_refs: Vec<&str> = merges.iter().map(|t| t.as_str()).collect();
    w.kv_str_array("tokenizer.ggml.tokens", &token_refs)
        .kv_i32_array("tokenizer.ggml.token_type", &types)
        .kv_str_array("tokenizer.ggml.merges", &merge_refs)
        .kv_u32("tokenizer.ggml.bos_token_id", tok.id("<|bos|>"))
        .kv_u32("tokenizer.ggml.eos_token_id", tok.id("<|eos|>"))
        .kv_bool("tokenizer.ggml.add_bos_token", true)
        .kv_str("tokenizer.chat_template", CHATML_TEMPLATE);

    let names: HashMap<&str, &str> = [
        ("input_layernorm.weight", "attn_norm.weight"),
        ("self_attn.q_proj.weight", "attn_q.weight"),
        ("self_attn.k_proj.weight", "attn_k.weight"),
        ("self_attn.v_proj.weight", "attn_v.weight"),
        ("self_attn.o_proj.weight", "attn_output.weight"),
        ("post_attention_layernorm.weight", "ffn_norm.weight"),
        ("mlp.gate_proj.weight", "ffn_gate.weight"),
        ("mlp.up_proj.weight", "ffn_up.weight"),
        ("mlp.down_proj.weight", "ffn_down.weight"),
    ]
    .into_iter()
    .collect();
    for (hf, shape, data) in &ck.tensors {
        let name = match hf.as_str() {
            "model.embed_tokens.weight" => "token_embd.weight".to_string(),
            "model.norm.weight" => "output_norm.weight".to_string(),
            "lm_head.weight" => "output.weight".to_string(),
            other => {
                let rest = other.strip_prefix("model.layers.").unwrap();
                let (i, part) = rest.split_once('.').unwrap();
                format!("blk.{i}.{}", names[part])
            }
        };
        let data = if name.ends_with("attn_q.weight") {
            llama_cpp_permute(data, shape[0], shape[1], s.heads)
        } else if name.ends_with("attn_k.weight") {
            llama_cpp_permute(data, shape[0], shape[1], s.kv_heads)
        } else {
            data.clone()
        };
        if f16 && shape.len() == 2 {
            w.tensor_f16(&name, shape, &data);
        } else {
            w.tensor_f32(&name, shape, &data);
        }
    }
    w
}
