//! Bad input files through the real `boha` binary: for every file a command reads (GGUF,
//! a Hugging Face directory's config.json / model.safetensors / tokenizer.json, JSONL
//! datasets, adapter_config.json / adapter_model.safetensors), each kind of damage
//! (missing, empty, truncated in the header and in the data, bytes flipped in the header
//! and in the data, and files that do not fit: an adapter made for another model, a
//! tokenizer larger than the model's vocabulary, a config whose shapes disagree with the
//! tensors, a safetensors offset past the end, GGUF counts and sizes that claim absurd
//! amounts) must end the command with a non-zero exit and one line on stderr that names
//! the file and the problem, no panic, and no partial output.
//!
//! One tiny model is shared by every case; each command family is one test.

mod common;
mod model_specs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use boha::adapters::files::save_adapter;
use boha::adapters::{AdapterSpec, Method};
use common::tiny_checkpoint::{
    gguf_from_tiny, gguf_type, temp_dir, write_tiny_hf, GgufWriter, TinySpec,
};
use serde_json::{json, Value};

/// The good files every case starts from.
struct Fixture {
    hf: PathBuf,
    gguf: PathBuf,
    /// Where the GGUF's data section starts.
    gguf_data: usize,
    data: PathBuf,
    adapter: PathBuf,
    /// An adapter made for another (smaller) model.
    other_adapter: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let root = temp_dir("bad-files");
        let (_, spec) = model_specs::specs()
            .into_iter()
            .find(|(n, _)| *n == "llama")
            .unwrap();
        let hf = root.join("hf");
        std::fs::create_dir_all(&hf).unwrap();
        let ck = write_tiny_hf(&hf, &spec);
        let gguf = root.join("model.gguf");
        let (bytes, gguf_data) = gguf_from_tiny(&ck, false).to_bytes();
        std::fs::write(&gguf, bytes).unwrap();

        let data = root.join("data.jsonl");
        let mut text = String::new();
        for (p, c) in [
            ("What is", "the cat"),
            ("cats of", "France"),
            ("the", "capital"),
        ] {
            text.push_str(&format!(
                "{}\n",
                json!({"prompt": p, "completion": c, "task": "boolq"})
            ));
        }
        std::fs::write(&data, text).unwrap();

        let adapter = root.join("adapter");
        write_adapter(&adapter, &spec);
        let other_adapter = root.join("other_adapter");
        write_adapter(&other_adapter, &TinySpec::llama());
        Fixture {
            hf,
            gguf,
            gguf_data,
            data,
            adapter,
            other_adapter,
        }
    })
}

/// A BoHA adapter (b = 2, r_b = 2) on q and v of every layer of `spec`'s model.
fn write_adapter(dir: &Path, spec: &TinySpec) {
    let s = AdapterSpec {
        method: Method::Boha,
        blocks: 2,
        block_rank: 2,
        scale: 1.0,
    };
    let hs = spec.head_size();
    let shapes = [("q", spec.heads * hs), ("v", spec.kv_heads * hs)];
    let mut owned = Vec::new();
    for layer in 0..spec.layers {
        for (name, d_out) in shapes {
            let d_in = spec.hidden;
            let a: Vec<f32> = (0..2 * 2 * d_in).map(|i| (i % 7) as f32 * 0.01).collect();
            let b: Vec<f32> = (0..2 * 2 * d_out).map(|i| (i % 5) as f32 * 0.01).collect();
            owned.push((layer, name, a, b, d_out, d_in));
        }
    }
    let layers: Vec<_> = owned
        .iter()
        .map(|(l, n, a, b, o, i)| (*l, *n, a.as_slice(), b.as_slice(), *o, *i))
        .collect();
    save_adapter(dir, &s, "tiny", &layers).unwrap();
}

// ---------------------------------------------------------------------------------
// Damage

fn copy_dir(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
    }
}

fn edit(path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
    let mut b = std::fs::read(path).unwrap();
    f(&mut b);
    std::fs::write(path, b).unwrap();
}

/// Ways to damage one file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    Missing,
    Empty,
    /// Keep only the first `n` bytes.
    CutAt(usize),
    /// Drop the last `n` bytes.
    CutEnd(usize),
    /// XOR 0xFF into the byte at this offset (negative: from the end).
    Flip(isize),
    /// Four 0xFF bytes (an f32 NaN) at this offset.
    Nan(usize),
}

fn damage(path: &Path, d: Damage) {
    match d {
        Damage::Missing => std::fs::remove_file(path).unwrap(),
        Damage::Empty => std::fs::write(path, b"").unwrap(),
        Damage::CutAt(n) => edit(path, |b| b.truncate(n)),
        Damage::CutEnd(n) => edit(path, |b| b.truncate(b.len() - n)),
        Damage::Flip(at) => edit(path, |b| {
            let i = if at < 0 {
                (b.len() as isize + at) as usize
            } else {
                at as usize
            };
            b[i] ^= 0xFF;
        }),
        Damage::Nan(at) => edit(path, |b| b[at..at + 4].copy_from_slice(&[0xFF; 4])),
    }
}

/// The length of a safetensors file's JSON header (its data starts at 8 + this).
fn st_header_len(path: &Path) -> usize {
    let b = std::fs::read(path).unwrap();
    u64::from_le_bytes(b[..8].try_into().unwrap()) as usize
}

/// Rewrites a safetensors header with `f` applied to its JSON.
fn edit_st_header(path: &Path, f: impl FnOnce(&mut Value)) {
    edit(path, |b| {
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let mut h: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
        f(&mut h);
        let mut text = serde_json::to_vec(&h).unwrap();
        while !text.len().is_multiple_of(8) {
            text.push(b' ');
        }
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend(text);
        out.extend_from_slice(&b[8 + n..]);
        *b = out;
    });
}

/// Moves the end of the tensor whose data ends last past the end of the file.
fn offset_past_end(path: &Path) {
    edit_st_header(path, |h| {
        let obj = h.as_object_mut().unwrap();
        let last = obj
            .iter()
            .filter(|(k, _)| *k != "__metadata__")
            .max_by_key(|(_, v)| v["data_offsets"][1].as_u64().unwrap())
            .map(|(k, _)| k.clone())
            .unwrap();
        let end = obj[&last]["data_offsets"][1].as_u64().unwrap();
        obj.get_mut(&last).unwrap()["data_offsets"][1] = json!(end + 4096);
    });
}

// ---------------------------------------------------------------------------------
// Cases

/// One bad-file case: where its files are, the command line, what the error must say.
struct Run {
    args: Vec<String>,
    /// The file at fault: the error names its file name and its directory.
    file: PathBuf,
    /// The error mentions at least one of these (case-insensitive).
    problem: &'static [&'static str],
    /// The command's --out, which must be absent after the failure (its parent must
    /// hold nothing else either: no temporary siblings).
    out: Option<PathBuf>,
    /// Run under a 2 GiB address-space limit and a time limit (absurd sizes must fail
    /// fast without allocating them).
    limited: bool,
}

impl Run {
    /// A case with no --out to watch and no resource limit.
    fn plain(args: Vec<String>, file: PathBuf, problem: &'static [&'static str]) -> Run {
        Run {
            args,
            file,
            problem,
            out: None,
            limited: false,
        }
    }

    /// The same case, also checking that `out` is absent afterwards.
    fn with_out(self, out: PathBuf) -> Run {
        Run {
            out: Some(out),
            ..self
        }
    }
}

/// A model case: a damaged copy of the fixture's model; returns (model path, file at
/// fault).
type ModelCase = (
    &'static str,
    &'static [&'static str],
    fn(&Path) -> (PathBuf, PathBuf),
);

const MISSING: &[&str] = &["no such file", "not found", "no model.safetensors"];
const EMPTY: &[&str] = &[
    "empty",
    "eof",
    "too small",
    "truncated",
    "header",
    "invalid",
];
const TRUNC: &[&str] = &[
    "eof",
    "truncated",
    "incomplete",
    "past the end",
    "header",
    "invalid",
    "too small",
];
const CORRUPT: &[&str] = &[
    "invalid",
    "utf-8",
    "header",
    "expected",
    "not a",
    "unsupported",
];
const NAN: &[&str] = &["nan"];

fn hf_copy(dir: &Path) -> PathBuf {
    let m = dir.join("model");
    copy_dir(&fixture().hf, &m);
    m
}

fn hf_damaged(dir: &Path, file: &str, d: Damage) -> (PathBuf, PathBuf) {
    let m = hf_copy(dir);
    damage(&m.join(file), d);
    (m.clone(), m.join(file))
}

fn gguf_copy(dir: &Path) -> PathBuf {
    let g = dir.join("model.gguf");
    std::fs::copy(&fixture().gguf, &g).unwrap();
    g
}

fn gguf_damaged(dir: &Path, d: Damage) -> (PathBuf, PathBuf) {
    let g = gguf_copy(dir);
    damage(&g, d);
    (g.clone(), g)
}

fn gguf_custom(dir: &Path, w: &GgufWriter) -> (PathBuf, PathBuf) {
    let g = dir.join("model.gguf");
    w.write(&g);
    (g.clone(), g)
}

fn tiny_gguf_header() -> GgufWriter {
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama");
    w
}

fn model_cases() -> Vec<ModelCase> {
    vec![
        // --- config.json
        ("config.json missing", MISSING, |d| {
            hf_damaged(d, "config.json", Damage::Missing)
        }),
        ("config.json empty", &["invalid json", "eof"], |d| {
            hf_damaged(d, "config.json", Damage::Empty)
        }),
        ("config.json truncated", &["invalid json", "eof"], |d| {
            hf_damaged(d, "config.json", Damage::CutAt(40))
        }),
        ("config.json flipped at the start", CORRUPT, |d| {
            hf_damaged(d, "config.json", Damage::Flip(0))
        }),
        ("config.json flipped at the end", CORRUPT, |d| {
            hf_damaged(d, "config.json", Damage::Flip(-1))
        }),
        (
            "config.json hidden_size disagrees with the tensors",
            &["shape", "config"],
            |d| {
                let m = hf_copy(d);
                let p = m.join("config.json");
                let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                c["hidden_size"] = json!(16);
                c["num_attention_heads"] = json!(2);
                c["num_key_value_heads"] = json!(1);
                std::fs::write(&p, c.to_string()).unwrap();
                (m.clone(), p)
            },
        ),
        (
            "config.json layer count disagrees with the tensors",
            &["tensor"],
            |d| {
                let m = hf_copy(d);
                let p = m.join("config.json");
                let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                c["num_hidden_layers"] = json!(3);
                std::fs::write(&p, c.to_string()).unwrap();
                (m.clone(), p)
            },
        ),
        ("config.json absurd vocab_size", &["vocab", "shape"], |d| {
            let m = hf_copy(d);
            let p = m.join("config.json");
            let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            c["vocab_size"] = json!(1u64 << 62);
            std::fs::write(&p, c.to_string()).unwrap();
            (m.clone(), p)
        }),
        // --- model.safetensors
        ("model.safetensors missing", MISSING, |d| {
            hf_damaged(d, "model.safetensors", Damage::Missing)
        }),
        ("model.safetensors empty", EMPTY, |d| {
            hf_damaged(d, "model.safetensors", Damage::Empty)
        }),
        ("model.safetensors cut in the header", TRUNC, |d| {
            hf_damaged(d, "model.safetensors", Damage::CutAt(64))
        }),
        ("model.safetensors cut in the data", TRUNC, |d| {
            hf_damaged(d, "model.safetensors", Damage::CutEnd(100))
        }),
        ("model.safetensors flipped header length", CORRUPT, |d| {
            hf_damaged(d, "model.safetensors", Damage::Flip(0))
        }),
        ("model.safetensors flipped in the header", CORRUPT, |d| {
            hf_damaged(d, "model.safetensors", Damage::Flip(9))
        }),
        ("model.safetensors NaN in the data", NAN, |d| {
            let m = hf_copy(d);
            let p = m.join("model.safetensors");
            let n = st_header_len(&p);
            damage(&p, Damage::Nan(8 + n + 400));
            (m.clone(), p)
        }),
        (
            "model.safetensors offset past the end",
            &["offset", "buffer", "invalid"],
            |d| {
                let m = hf_copy(d);
                let p = m.join("model.safetensors");
                offset_past_end(&p);
                (m.clone(), p)
            },
        ),
        (
            "model.safetensors tensor shape disagrees",
            &["shape"],
            |d| {
                let m = hf_copy(d);
                let p = m.join("model.safetensors");
                // Same bytes, another shape: [32, 32] → [16, 64].
                edit_st_header(&p, |h| {
                    h["model.layers.0.self_attn.q_proj.weight"]["shape"] = json!([16, 64]);
                });
                (m.clone(), p)
            },
        ),
        // --- tokenizer.json
        ("tokenizer.json missing", &["no tokenizer.json"], |d| {
            hf_damaged(d, "tokenizer.json", Damage::Missing)
        }),
        ("tokenizer.json empty", &["tokenizer", "eof"], |d| {
            hf_damaged(d, "tokenizer.json", Damage::Empty)
        }),
        ("tokenizer.json truncated", &["tokenizer", "eof"], |d| {
            hf_damaged(d, "tokenizer.json", Damage::CutAt(300))
        }),
        ("tokenizer.json flipped at the start", &["tokenizer"], |d| {
            hf_damaged(d, "tokenizer.json", Damage::Flip(0))
        }),
        (
            "tokenizer.json flipped in the vocabulary",
            &["tokenizer"],
            |d| hf_damaged(d, "tokenizer.json", Damage::Flip(-30)),
        ),
        ("tokenizer.json larger than vocab_size", &["vocab"], |d| {
            // A model whose vocabulary (280) is smaller than its tokenizer's (285 tokens).
            let spec = TinySpec {
                vocab: common::tiny_checkpoint::TINY_VOCAB_LEN - 5,
                ..llama_spec()
            };
            let m = d.join("model");
            std::fs::create_dir_all(&m).unwrap();
            write_tiny_hf(&m, &spec);
            (m.clone(), m.join("tokenizer.json"))
        }),
        // --- GGUF
        ("gguf missing", MISSING, |d| {
            gguf_damaged(d, Damage::Missing)
        }),
        ("gguf empty", &["truncated", "magic"], |d| {
            gguf_damaged(d, Damage::Empty)
        }),
        ("gguf cut in the header", &["truncated", "claims"], |d| {
            gguf_damaged(d, Damage::CutAt(200))
        }),
        ("gguf cut in the data", &["past the end"], |d| {
            gguf_damaged(d, Damage::CutEnd(64))
        }),
        ("gguf flipped magic", &["not a gguf"], |d| {
            gguf_damaged(d, Damage::Flip(0))
        }),
        ("gguf flipped version", &["version"], |d| {
            gguf_damaged(d, Damage::Flip(4))
        }),
        (
            "gguf flipped key length",
            &["name", "truncated", "metadata"],
            |d| gguf_damaged(d, Damage::Flip(24)),
        ),
        ("gguf NaN in the data", NAN, |d| {
            let (g, p) = gguf_damaged(d, Damage::Missing);
            std::fs::copy(&fixture().gguf, &g).unwrap();
            damage(&g, Damage::Nan(fixture().gguf_data + 256));
            (g, p)
        }),
        ("gguf absurd tensor count", &["claims"], |d| {
            let (g, p) = gguf_damaged(d, Damage::Missing);
            std::fs::copy(&fixture().gguf, &g).unwrap();
            edit(&g, |b| {
                b[8..16].copy_from_slice(&(1u64 << 62).to_le_bytes())
            });
            (g, p)
        }),
        ("gguf absurd metadata count", &["claims"], |d| {
            let (g, p) = gguf_damaged(d, Damage::Missing);
            std::fs::copy(&fixture().gguf, &g).unwrap();
            edit(&g, |b| b[16..24].copy_from_slice(&u64::MAX.to_le_bytes()));
            (g, p)
        }),
        ("gguf absurd tensor shape", &["absurd"], |d| {
            let mut w = tiny_gguf_header();
            w.tensor("token_embd.weight", &[1 << 32, 1 << 32], 0, vec![0; 64]);
            gguf_custom(d, &w)
        }),
        ("gguf tensor size past the end", &["past the end"], |d| {
            let mut w = tiny_gguf_header();
            w.tensor("token_embd.weight", &[1 << 39, 1], 0, vec![0; 64]);
            gguf_custom(d, &w)
        }),
        ("gguf absurd string length", &["truncated"], |d| {
            let mut w = tiny_gguf_header();
            w.kv_raw(
                "general.name",
                gguf_type::STRING,
                u64::MAX.to_le_bytes().to_vec(),
            );
            gguf_custom(d, &w)
        }),
        ("gguf absurd array count", &["claims"], |d| {
            let mut w = tiny_gguf_header();
            let mut v = gguf_type::U8.to_le_bytes().to_vec();
            v.extend((1u64 << 61).to_le_bytes());
            w.kv_raw("tokenizer.ggml.tokens", gguf_type::ARRAY, v);
            gguf_custom(d, &w)
        }),
        ("gguf tokenizer larger than vocab_size", &["vocab"], |d| {
            // A model whose vocabulary (280) is smaller than its tokenizer's (285 tokens).
            let spec = TinySpec {
                vocab: common::tiny_checkpoint::TINY_VOCAB_LEN - 5,
                ..llama_spec()
            };
            std::fs::create_dir_all(d.join("hf")).unwrap();
            let ck = write_tiny_hf(&d.join("hf"), &spec);
            gguf_custom(d, &gguf_from_tiny(&ck, false))
        }),
    ]
}

fn llama_spec() -> TinySpec {
    model_specs::specs()
        .into_iter()
        .find(|(n, _)| *n == "llama")
        .unwrap()
        .1
}

/// A data case: a damaged copy of the fixture's JSONL; returns its path.
type DataCase = (&'static str, &'static [&'static str], fn(&Path) -> PathBuf);

fn data_damaged(dir: &Path, d: Damage) -> PathBuf {
    let p = dir.join("data.jsonl");
    std::fs::copy(&fixture().data, &p).unwrap();
    damage(&p, d);
    p
}

fn data_text(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("data.jsonl");
    std::fs::write(&p, text).unwrap();
    p
}

fn data_cases() -> Vec<DataCase> {
    vec![
        ("jsonl missing", MISSING, |d| {
            data_damaged(d, Damage::Missing)
        }),
        ("jsonl empty", &["no records"], |d| {
            data_damaged(d, Damage::Empty)
        }),
        ("jsonl blank lines only", &["no records"], |d| {
            data_text(d, "\n  \n\n")
        }),
        ("jsonl cut in the first line", &[":1: invalid json"], |d| {
            data_damaged(d, Damage::CutAt(20))
        }),
        ("jsonl cut in the last line", &[":3: invalid json"], |d| {
            data_damaged(d, Damage::CutEnd(10))
        }),
        ("jsonl flipped first byte", &[":1:"], |d| {
            data_damaged(d, Damage::Flip(0))
        }),
        ("jsonl flipped in the last line", &[":3:"], |d| {
            data_damaged(d, Damage::Flip(-5))
        }),
        ("jsonl NUL bytes", &[":2:"], |d| {
            data_text(d, "{\"prompt\": \"a\", \"completion\": \"b\"}\n\0\0\0\0\n")
        }),
        (
            "jsonl record of the wrong shape",
            &[":2:", "completion"],
            |d| {
                data_text(
                d,
                "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\", \"completion\": 5}\n",
            )
            },
        ),
        ("jsonl not objects", &[":1:", "object"], |d| {
            data_text(d, "[1, 2]\n")
        }),
    ]
}

/// An adapter case: a damaged copy of the fixture's adapter; returns (dir, file at
/// fault).
type AdapterCase = (
    &'static str,
    &'static [&'static str],
    fn(&Path) -> (PathBuf, PathBuf),
);

const CFG: &str = "adapter_config.json";
const WTS: &str = "adapter_model.safetensors";

fn adapter_copy(dir: &Path) -> PathBuf {
    let a = dir.join("adapter");
    copy_dir(&fixture().adapter, &a);
    a
}

fn adapter_damaged(dir: &Path, file: &str, d: Damage) -> (PathBuf, PathBuf) {
    let a = adapter_copy(dir);
    damage(&a.join(file), d);
    (a.clone(), a.join(file))
}

fn adapter_config_edit(dir: &Path, f: impl FnOnce(&mut Value)) -> (PathBuf, PathBuf) {
    let a = adapter_copy(dir);
    let p = a.join(CFG);
    let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&p, c.to_string()).unwrap();
    (a, p)
}

fn adapter_cases() -> Vec<AdapterCase> {
    vec![
        ("adapter dir missing", MISSING, |d| {
            let a = d.join("adapter");
            (a.clone(), a.join(CFG))
        }),
        ("adapter_config.json missing", MISSING, |d| {
            adapter_damaged(d, CFG, Damage::Missing)
        }),
        ("adapter_config.json empty", &["invalid json"], |d| {
            adapter_damaged(d, CFG, Damage::Empty)
        }),
        ("adapter_config.json truncated", &["invalid json"], |d| {
            adapter_damaged(d, CFG, Damage::CutAt(30))
        }),
        ("adapter_config.json flipped at the start", CORRUPT, |d| {
            adapter_damaged(d, CFG, Damage::Flip(0))
        }),
        ("adapter_config.json flipped at the end", CORRUPT, |d| {
            adapter_damaged(d, CFG, Damage::Flip(-1))
        }),
        (
            "adapter_config.json blocks disagree with the tensors",
            &["shape", "fit"],
            |d| {
                adapter_config_edit(d, |c| {
                    c["blocks"] = json!(4);
                    c["r"] = json!(8);
                })
            },
        ),
        (
            "adapter_config.json absurd sizes",
            &["blocks", "block_rank", "rank", "fit", "too"],
            |d| {
                adapter_config_edit(d, |c| {
                    c["blocks"] = json!(u64::MAX);
                    c["block_rank"] = json!(u64::MAX);
                    c["r"] = Value::Null;
                })
            },
        ),
        (
            "adapter_config.json zero rank",
            &["block_rank", "rank", "zero", "positive", "fit", "at least"],
            |d| {
                adapter_config_edit(d, |c| {
                    c["block_rank"] = json!(0);
                    c["r"] = Value::Null;
                })
            },
        ),
        ("adapter_config.json infinite scale", &["scale"], |d| {
            adapter_config_edit(d, |c| c["scale"] = json!(1e300))
        }),
        ("adapter_model.safetensors missing", MISSING, |d| {
            adapter_damaged(d, WTS, Damage::Missing)
        }),
        ("adapter_model.safetensors empty", EMPTY, |d| {
            adapter_damaged(d, WTS, Damage::Empty)
        }),
        ("adapter_model.safetensors cut in the header", TRUNC, |d| {
            adapter_damaged(d, WTS, Damage::CutAt(50))
        }),
        ("adapter_model.safetensors cut in the data", TRUNC, |d| {
            adapter_damaged(d, WTS, Damage::CutEnd(40))
        }),
        (
            "adapter_model.safetensors flipped header length",
            CORRUPT,
            |d| adapter_damaged(d, WTS, Damage::Flip(1)),
        ),
        (
            "adapter_model.safetensors flipped in the header",
            CORRUPT,
            |d| adapter_damaged(d, WTS, Damage::Flip(12)),
        ),
        ("adapter_model.safetensors NaN in the data", NAN, |d| {
            let a = adapter_copy(d);
            let p = a.join(WTS);
            let n = st_header_len(&p);
            damage(&p, Damage::Nan(8 + n + 16));
            (a, p)
        }),
        (
            "adapter_model.safetensors offset past the end",
            &["offset", "buffer", "invalid"],
            |d| {
                let a = adapter_copy(d);
                let p = a.join(WTS);
                offset_past_end(&p);
                (a, p)
            },
        ),
        (
            "adapter made for another model",
            &["does not fit", "another model"],
            |d| {
                let a = d.join("adapter");
                copy_dir(&fixture().other_adapter, &a);
                (a.clone(), a.clone())
            },
        ),
    ]
}

// ---------------------------------------------------------------------------------
// Running

fn boha(args: &[String], limited: bool) -> (Output, Duration) {
    let t0 = Instant::now();
    let out = if limited {
        // 2 GiB of address space: an absurd size that got allocated would abort.
        Command::new("sh")
            .arg("-c")
            .arg("ulimit -v 2097152; exec \"$0\" \"$@\"")
            .arg(env!("CARGO_BIN_EXE_boha"))
            .args(args)
            .output()
    } else {
        Command::new(env!("CARGO_BIN_EXE_boha")).args(args).output()
    }
    .expect("run boha");
    (out, t0.elapsed())
}

/// Runs every case and checks it; panics listing every failure at the end.
fn check_all(family: &str, runs: Vec<(String, Run)>) {
    let mut failures = Vec::new();
    let n = runs.len();
    for (name, r) in runs {
        let (out, took) = boha(&r.args, r.limited);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.contains("XDG_RUNTIME_DIR") && !l.trim().is_empty())
            .collect();
        let line = lines.first().copied().unwrap_or("");
        let lower = line.to_lowercase();
        let dir = r.file.parent().unwrap().to_string_lossy().to_string();
        let fname = r.file.file_name().unwrap().to_string_lossy().to_string();
        let mut why = Vec::new();
        if out.status.success() {
            why.push("succeeded".to_string());
        }
        if stderr.contains("panicked") {
            why.push("panicked".into());
        }
        if lines.len() != 1 {
            why.push(format!("{} lines on stderr", lines.len()));
        }
        if !(line.contains(&dir) && line.contains(&fname)) {
            why.push(format!("does not name {}", r.file.display()));
        }
        if !r.problem.iter().any(|p| lower.contains(&p.to_lowercase())) {
            why.push(format!("does not say any of {:?}", r.problem));
        }
        if r.limited && took > Duration::from_secs(20) {
            why.push(format!("took {took:?}"));
        }
        if let Some(o) = &r.out {
            if o.exists() {
                why.push(format!("left {} behind", o.display()));
            }
            let parent = o.parent().unwrap();
            let left: Vec<_> = std::fs::read_dir(parent)
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            if !left.is_empty() {
                why.push(format!("left {left:?} in {}", parent.display()));
            }
        }
        let verdict = if why.is_empty() { "ok" } else { "FAIL" };
        eprintln!(
            "[{family}] {verdict:4} {name}: {}",
            stderr.trim_end().replace('\n', " ⏎ ")
        );
        if !why.is_empty() {
            failures.push(format!("{name}: {} — stderr: {stderr}", why.join(", ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {n} {family} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn s(p: &Path) -> String {
    p.to_string_lossy().to_string()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// Fresh per-case directory, named after the family and case number.
fn case_dir(family: &str, i: usize) -> PathBuf {
    temp_dir(&format!("bad-{family}-{i}"))
}

/// Is there a device to run on? (Without one: a failure, or a skip with BOHA_SKIP_GPU=1.)
fn have_gpu() -> bool {
    common::gpu().is_some()
}

#[test]
fn generate_and_score_refuse_bad_models() {
    if !have_gpu() {
        return;
    }
    let mut runs = Vec::new();
    for (i, (name, problem, make)) in model_cases().into_iter().enumerate() {
        for (j, cmd) in ["score", "generate"].into_iter().enumerate() {
            let d = case_dir("model", 2 * i + j);
            let (m, file) = make(&d);
            let mut args = strings(&[cmd, "--model", &s(&m)]);
            args.extend(strings(match cmd {
                "score" => &["--text", "What is the cat"],
                _ => &["--prompt", "What is", "--max-new-tokens", "2"],
            }));
            runs.push((
                format!("{cmd}: {name}"),
                Run {
                    args,
                    file,
                    problem,
                    out: None,
                    limited: true,
                },
            ));
        }
    }
    check_all("generate/score", runs);
}

/// A few model cases per command for the commands that open the device first.
const MODEL_SAMPLE: [&str; 6] = [
    "config.json truncated",
    "model.safetensors cut in the data",
    "tokenizer.json larger than vocab_size",
    "gguf cut in the header",
    "gguf absurd tensor count",
    "model.safetensors NaN in the data",
];

fn sampled_model_cases() -> Vec<ModelCase> {
    model_cases()
        .into_iter()
        .filter(|c| MODEL_SAMPLE.contains(&c.0))
        .collect()
}

#[test]
fn bench_step_refuses_bad_models() {
    if !have_gpu() {
        return;
    }
    let mut runs = Vec::new();
    for (i, (name, problem, make)) in sampled_model_cases().into_iter().enumerate() {
        let d = case_dir("bench", i);
        let (m, file) = make(&d);
        let args = strings(&[
            "bench",
            "step",
            "--model",
            &s(&m),
            "--batch",
            "1",
            "--max-len",
            "8",
        ]);
        runs.push((name.to_string(), Run::plain(args, file, problem)));
    }
    check_all("bench step", runs);
}

#[test]
fn eval_refuses_bad_models_data_and_adapters() {
    if !have_gpu() {
        return;
    }
    let f = fixture();
    let mut runs = Vec::new();
    let base = |m: &Path, data: &Path| {
        strings(&[
            "eval",
            "--model",
            &s(m),
            "--data",
            &s(data),
            "--max-new-tokens",
            "2",
        ])
    };
    for (i, (name, problem, make)) in sampled_model_cases().into_iter().enumerate() {
        let d = case_dir("eval-model", i);
        let (m, file) = make(&d);
        runs.push((
            format!("--model: {name}"),
            Run::plain(base(&m, &f.data), file, problem),
        ));
    }
    for (i, (name, problem, make)) in data_cases().into_iter().enumerate() {
        let d = case_dir("eval-data", i);
        let data = make(&d);
        runs.push((
            format!("--data: {name}"),
            Run::plain(base(&f.hf, &data), data, problem),
        ));
    }
    for (i, (name, problem, make)) in adapter_cases().into_iter().enumerate() {
        let d = case_dir("eval-adapter", i);
        let (a, file) = make(&d);
        let mut args = base(&f.hf, &f.data);
        args.extend(strings(&["--adapter", &s(&a)]));
        runs.push((
            format!("--adapter: {name}"),
            Run::plain(args, file, problem),
        ));
    }
    check_all("eval", runs);
}

#[test]
fn finetune_refuses_bad_inputs_and_leaves_no_output() {
    if !have_gpu() {
        return;
    }
    let f = fixture();
    let mut runs = Vec::new();
    let base = |m: &Path, data: &Path, out: &Path| {
        strings(&[
            "finetune",
            "--model",
            &s(m),
            "--data",
            &s(data),
            "--out",
            &s(out),
            "--steps",
            "1",
            "--batch",
            "1",
            "--max-len",
            "16",
            "--blocks",
            "2",
            "--block-rank",
            "2",
        ])
    };
    let out_of = |d: &Path| {
        let parent = d.join("outparent");
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("run")
    };
    for (i, (name, problem, make)) in sampled_model_cases().into_iter().enumerate() {
        let d = case_dir("ft-model", i);
        let (m, file) = make(&d);
        let out = out_of(&d);
        runs.push((
            format!("--model: {name}"),
            Run::plain(base(&m, &f.data, &out), file, problem).with_out(out),
        ));
    }
    for (i, (name, problem, make)) in data_cases().into_iter().enumerate() {
        for (j, flag) in ["--data", "--eval-data"].into_iter().enumerate() {
            let d = case_dir("ft-data", 2 * i + j);
            let data = make(&d);
            let out = out_of(&d);
            let args = if flag == "--data" {
                base(&f.hf, &data, &out)
            } else {
                let mut a = base(&f.hf, &f.data, &out);
                a.extend(strings(&["--eval-data", &s(&data)]));
                a
            };
            runs.push((
                format!("{flag}: {name}"),
                Run::plain(args, data, problem).with_out(out),
            ));
        }
    }
    for (i, (name, problem, make)) in adapter_cases().into_iter().enumerate() {
        let d = case_dir("ft-adapter", i);
        let (a, file) = make(&d);
        let out = out_of(&d);
        let mut args = base(&f.hf, &f.data, &out);
        args.extend(strings(&["--init-adapter", &s(&a)]));
        runs.push((
            format!("--init-adapter: {name}"),
            Run::plain(args, file, problem).with_out(out),
        ));
    }
    check_all("finetune", runs);
}

#[test]
fn merge_refuses_bad_inputs_and_leaves_no_output() {
    if !have_gpu() {
        return;
    }
    let f = fixture();
    let mut runs = Vec::new();
    let out_of = |d: &Path| {
        let parent = d.join("outparent");
        std::fs::create_dir_all(&parent).unwrap();
        parent.join("merged")
    };
    let args = |m: &Path, a: &Path, out: &Path| {
        strings(&[
            "merge",
            "--model",
            &s(m),
            "--adapter",
            &s(a),
            "--out",
            &s(out),
        ])
    };
    for (i, (name, problem, make)) in sampled_model_cases().into_iter().enumerate() {
        let d = case_dir("merge-model", i);
        let (m, file) = make(&d);
        let out = out_of(&d);
        runs.push((
            format!("--model: {name}"),
            Run::plain(args(&m, &f.adapter, &out), file, problem).with_out(out),
        ));
    }
    for (i, (name, problem, make)) in adapter_cases().into_iter().enumerate() {
        let d = case_dir("merge-adapter", i);
        let (a, file) = make(&d);
        let out = out_of(&d);
        runs.push((
            format!("--adapter: {name}"),
            Run::plain(args(&f.hf, &a, &out), file, problem).with_out(out),
        ));
    }
    check_all("merge", runs);
}

/// The fixture itself works with every command used above (so the failures come from
/// the damage, not from the setup).
#[test]
fn the_undamaged_files_work() {
    if !have_gpu() {
        return;
    }
    let f = fixture();
    for args in [
        strings(&[
            "score",
            "--model",
            &s(&f.hf),
            "--text",
            "What is",
            "--adapter",
            &s(&f.adapter),
        ]),
        strings(&["score", "--model", &s(&f.gguf), "--text", "What is"]),
        strings(&[
            "eval",
            "--model",
            &s(&f.hf),
            "--data",
            &s(&f.data),
            "--max-new-tokens",
            "2",
        ]),
    ] {
        let (out, _) = boha(&args, false);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
