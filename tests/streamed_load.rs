//! Loading without a host copy: checkpoints open with their headers only, tensors are
//! read a few rows at a time (Llama's permuted q/k rows of a GGUF included), and
//! `Gpu::upload_rows` builds a tensor chunk by chunk exactly as a whole upload would.

mod common;

use boha::gpu::DType;
use boha::loaders::load_checkpoint;
use boha::rng::Rng;
use common::tiny_checkpoint::{gguf_from_tiny, temp_dir, write_tiny_hf, TinySpec};

/// Any row range of any tensor reads what the whole tensor holds there, from a GGUF
/// (q/k rows un-permuted on the fly, f16 and f32 types) and from safetensors.
#[test]
fn row_ranges_read_what_the_whole_tensor_holds() {
    let root = temp_dir("streamed-rows");
    let hf_dir = root.join("hf");
    std::fs::create_dir_all(&hf_dir).unwrap();
    let tiny = write_tiny_hf(&hf_dir, &TinySpec::llama());
    let gguf = root.join("tiny.gguf");
    gguf_from_tiny(&tiny, true).write(&gguf);
    for path in [&hf_dir, &gguf] {
        let ck = load_checkpoint(path).unwrap();
        for (name, t) in &ck.tensors {
            let whole = t.to_f32().unwrap();
            let rows = t.rows().unwrap();
            let n = t.row_count();
            let cols = t.len() / n;
            for (start, count) in [(0, 1), (1, n.min(3) - 1), (n / 2, n - n / 2), (n - 1, 1)] {
                let got = rows.get(start, count).unwrap();
                assert_eq!(
                    got,
                    whole[start * cols..(start + count) * cols],
                    "{}: {name} rows {start}..{}",
                    path.display(),
                    start + count
                );
            }
            assert!(rows.get(n, 1).is_err(), "{name}: past the end");
        }
    }
}

/// A tensor kept in the file's dtype is uploaded from the file's own bytes: `Rows::raw`
/// of a GGUF's F16 q projection (rows un-permuted) is exactly the f16 encoding of its
/// values, and the tensor on the device downloads to them.
#[test]
fn kept_tensors_upload_the_files_bytes() {
    let root = temp_dir("streamed-raw");
    let hf_dir = root.join("hf");
    std::fs::create_dir_all(&hf_dir).unwrap();
    let tiny = write_tiny_hf(&hf_dir, &TinySpec::llama());
    let gguf = root.join("tiny.gguf");
    gguf_from_tiny(&tiny, true).write(&gguf);
    let ck = load_checkpoint(&gguf).unwrap();
    let q = ck.tensor("layers.0.q").unwrap();
    assert!(q.file_holds(DType::F16) && !q.file_holds(DType::BF16));
    let values = q.to_f32().unwrap();
    let raw = q.rows().unwrap().raw(0, q.row_count()).unwrap();
    assert_eq!(raw, DType::F16.encode(&values).unwrap());
    let Some(gpu) = common::gpu() else { return };
    let w = boha::model::transformer::Weights::upload(&gpu, &ck).unwrap();
    assert_eq!(w.layers[0].q.dtype(), DType::F16);
    assert_eq!(gpu.download(&w.layers[0].q).unwrap(), values);
}

/// `upload_rows` in chunks of 8 rows gives the tensor `upload_as` gives at once, for
/// every dtype it can encode, with a last chunk shorter than the rest and (Q4_0's
/// 18-byte blocks, an odd count) not ending on a 4-byte word.
#[test]
fn chunked_uploads_equal_whole_uploads() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(31);
    let shape = [21usize, 32];
    let data = rng.vec_f32(shape[0] * shape[1], -2.0, 2.0);
    for dtype in [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
    ] {
        let whole = gpu.upload_as(&shape, &data, dtype).unwrap();
        let mut calls = 0;
        let chunked = gpu
            .upload_rows(&shape, dtype, 8 * shape[1], |start, n| {
                calls += 1;
                Ok(dtype
                    .encode(&data[start * shape[1]..(start + n) * shape[1]])
                    .unwrap())
            })
            .unwrap();
        assert_eq!(calls, 3, "{dtype}: 8 + 8 + 5 rows");
        assert_eq!(
            gpu.download(&chunked).unwrap(),
            gpu.download(&whole).unwrap(),
            "{dtype}"
        );
    }
    // A chunk of the wrong size is an error, not a short tensor.
    let err = gpu
        .upload_rows(&shape, DType::F16, 64, |_, _| Ok(vec![0u8; 6]))
        .expect_err("short chunk refused");
    assert!(err.to_string().contains("take"), "{err}");
}

/// `boha bench load` measures one load per listed `--base-dtype`: bf16 weights take
/// fewer device bytes than f32 ones, and a tiny model's load stays far inside the host
/// target (the largest tensor + 64 MiB over the baseline).
#[test]
fn bench_load_reports_each_base_dtype() {
    if common::gpu().is_none() {
        return;
    }
    let root = temp_dir("streamed-bench");
    let dir = root.join("hf");
    std::fs::create_dir_all(&dir).unwrap();
    write_tiny_hf(&dir, &TinySpec::llama());
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_boha"))
        .args([
            "bench",
            "load",
            "--json",
            "--base-dtypes",
            "f32,bf16",
            "--model",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let runs = v["runs"].as_array().unwrap();
    let field = |i: usize, k: &str| runs[i][k].as_f64().unwrap();
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (
            runs[0]["base_dtype"].as_str(),
            runs[1]["base_dtype"].as_str()
        ),
        (Some("f32"), Some("bf16"))
    );
    assert!(field(1, "device_bytes") < field(0, "device_bytes"));
    assert_eq!(
        field(0, "largest_tensor_bytes"),
        2.0 * field(1, "largest_tensor_bytes")
    );
    for i in 0..2 {
        assert!(field(i, "host_over_target") <= 1.0, "{stdout}");
        assert!(field(i, "peak_rss_bytes") >= field(i, "baseline_rss_bytes"));
    }
    assert!(v["record"]["command"]
        .as_str()
        .unwrap()
        .contains("bench load"));
}
