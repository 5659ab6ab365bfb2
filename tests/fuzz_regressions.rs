//! Inputs that once crashed (or would have crashed) boha's file readers, found by the
//! fuzz targets in `fuzz/` or while writing them; each must now be a clean error.
//! Larger inputs live in `tests/data/fuzz/<target>/` and are replayed through the same
//! entry points as the fuzz targets.

mod common;

use std::path::Path;

use boha::adapters::files::{load_adapter, save_adapter};
use boha::adapters::{AdapterSpec, Method};
use common::tiny_checkpoint::{temp_dir, write_tiny_hf, TinySpec};
use serde_json::{json, Value};

/// A valid 1-layer BoHA adapter on q (8 × 8, b = 2, r_b = 1), its config edited by `f`.
fn adapter_with_config(tag: &str, f: impl FnOnce(&mut Value)) -> std::path::PathBuf {
    let dir = temp_dir(tag).join("adapter");
    let spec = AdapterSpec {
        method: Method::Boha,
        blocks: 2,
        block_rank: 1,
        scale: 1.0,
    };
    let (a, b) = (vec![0.1f32; 16], vec![0.2f32; 16]);
    save_adapter(&dir, &spec, "tiny", &[(0, "q", &a, &b, 8, 8)]).unwrap();
    let p = dir.join("adapter_config.json");
    let mut c: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut c);
    std::fs::write(&p, c.to_string()).unwrap();
    dir
}

fn err_of<T>(r: boha::Result<T>) -> String {
    match r {
        Ok(_) => panic!("accepted a bad file"),
        Err(e) => e.to_string(),
    }
}

/// blocks × block_rank overflowed (a panic in debug builds) when "r" was checked.
#[test]
fn adapter_sizes_whose_product_overflows() {
    let dir = adapter_with_config("fz-overflow", |c| {
        c["blocks"] = json!(u64::MAX);
        c["block_rank"] = json!(u64::MAX);
        c["r"] = json!(7);
    });
    let e = err_of(load_adapter(&dir));
    assert!(
        e.contains("adapter_config.json") && e.contains("blocks"),
        "{e}"
    );
}

/// A finite f64 scale that is infinite as f32 was accepted (every output became NaN).
#[test]
fn adapter_scale_beyond_f32() {
    let dir = adapter_with_config("fz-scale", |c| c["scale"] = json!(1e300));
    let e = err_of(load_adapter(&dir));
    assert!(e.contains("scale"), "{e}");
    let dir = adapter_with_config("fz-alpha", |c| {
        c["peft_type"] = json!("LORA");
        c["lora_alpha"] = json!(-1e300);
    });
    // (A LoRA config over BoHA tensors fails somewhere; it must not be accepted.)
    let _ = err_of(load_adapter(&dir));
}

/// NaN factors were accepted and turned every output into NaN.
#[test]
fn adapter_nan_factors() {
    let dir = adapter_with_config("fz-nan", |_| {});
    let p = dir.join("adapter_model.safetensors");
    let mut b = std::fs::read(&p).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    b[8 + n..8 + n + 4].copy_from_slice(&[0xFF; 4]);
    std::fs::write(&p, b).unwrap();
    let e = err_of(load_adapter(&dir));
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("NaN"),
        "{e}"
    );
}

/// Bytes that are not UTF-8 made the whole file unreadable without naming the line.
#[test]
fn jsonl_invalid_utf8_names_the_line() {
    let dir = temp_dir("fz-jsonl");
    let p = dir.join("d.jsonl");
    std::fs::write(
        &p,
        b"{\"prompt\": \"a\", \"completion\": \"b\"}\r\n{\"prompt\": \"\xff\", \"completion\": \"b\"}\n",
    )
    .unwrap();
    let e = err_of(boha::data::jsonl::read_jsonl(&p));
    assert!(e.contains("d.jsonl:2:") && e.contains("UTF-8"), "{e}");
}

// ---------------------------------------------------------------------------------
// Saved fuzzer inputs, replayed through the fuzz targets' entry points.

fn saved(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/fuzz")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    (
                        e.file_name().to_string_lossy().to_string(),
                        std::fs::read(e.path()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The fuzz targets' split: a u16 LE length, then two files.
fn split2(data: &[u8]) -> Option<(&[u8], &[u8])> {
    if data.len() < 2 {
        return None;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    Some(data[2..].split_at(n))
}

#[test]
fn saved_gguf_inputs() {
    for (name, data) in saved("gguf") {
        let p = temp_dir("fz-gguf").join(format!("{name}.gguf"));
        std::fs::write(&p, &data).unwrap();
        assert!(boha::loaders::load_checkpoint(&p).is_err(), "{name}");
    }
}

#[test]
fn saved_hf_dir_inputs() {
    for (name, data) in saved("hf_dir") {
        let Some((config, weights)) = split2(&data) else {
            continue;
        };
        let dir = temp_dir("fz-hf");
        std::fs::write(dir.join("config.json"), config).unwrap();
        std::fs::write(dir.join("model.safetensors"), weights).unwrap();
        let _ = boha::loaders::safetensors::read_file(&dir.join("model.safetensors"));
        assert!(boha::loaders::load_checkpoint(&dir).is_err(), "{name}");
    }
}

#[test]
fn saved_adapter_inputs() {
    for (name, data) in saved("adapter") {
        let Some((config, weights)) = split2(&data) else {
            continue;
        };
        let dir = temp_dir("fz-adapter");
        std::fs::write(dir.join("adapter_config.json"), config).unwrap();
        std::fs::write(dir.join("adapter_model.safetensors"), weights).unwrap();
        if let Ok(a) = load_adapter(&dir) {
            for t in &a.tensors {
                let _ = a.spec.check_shape(&t.target, t.d_out, t.d_in);
                let _ = a.spec.param_count(t.d_out, t.d_in);
            }
        }
        let _ = name;
    }
}

#[test]
fn saved_jsonl_inputs() {
    for (name, data) in saved("jsonl") {
        if let Ok(text) = std::str::from_utf8(&data) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let _ = boha::data::jsonl::parse_line(line);
            }
        }
        let p = temp_dir("fz-jsonl").join(format!("{name}.jsonl"));
        std::fs::write(&p, &data).unwrap();
        let _ = boha::data::jsonl::read_jsonl(&p);
    }
}

#[test]
fn saved_tokenizer_inputs() {
    use boha::loaders::tokenizer::{encode, render_chat_template};
    use boha::loaders::ChatMessage;
    for (_, data) in saved("tokenizer") {
        let Some((&mode, rest)) = data.split_first() else {
            continue;
        };
        if mode % 2 == 0 {
            if let Ok(tok) = boha::loaders::tokenizer::from_bytes(rest) {
                let _ = boha::loaders::tokenizer::post_processor_adds(&tok, Some(0));
                let _ = encode(&tok, "What is the capital of France? <|im_end|> é\u{0}");
                let _ = boha::loaders::tokenizer::decode(&tok, &[0, 1, 2, 3, u32::MAX]);
            }
        } else if let Ok(t) = std::str::from_utf8(rest) {
            let m = [ChatMessage {
                role: "user".into(),
                content: "hi".into(),
            }];
            let _ = render_chat_template(t, &m, true, Some("<s>"), Some("</s>"));
        }
    }
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
