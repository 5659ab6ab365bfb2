//! GGUF: every supported tensor type dequantizes to hand-computed values (blocks packed
//! here the way ggml's reference quantizers pack them); a tiny Llama converted the way
//! llama.cpp converts (names, q/k row permutation, reversed dims) loads equal to its
//! Hugging Face original; hostile files (truncated, flipped bytes, absurd counts,
//! offsets past the end) give one-line errors naming the file, never a panic.

mod common;

use std::path::{Path, PathBuf};

use boha::loaders::gguf::{dequantize, permute_rows, unpermute_rows, GgmlType, GgufFile};
use boha::loaders::load_checkpoint;
use boha::rng::Rng;
use common::tiny_checkpoint::{
    gguf_from_tiny, gguf_type, llama_cpp_permute, round_to, temp_dir, write_tiny_hf, GgufWriter,
    TinySpec, TinyTokenizer,
};

fn f16b(v: f32) -> [u8; 2] {
    let h = half::f16::from_f32(v);
    assert_eq!(h.to_f32(), v, "test constants must be exact in f16");
    h.to_le_bytes()
}

/// Random integers in [lo, hi].
fn ints(rng: &mut Rng, n: usize, lo: i32, hi: i32) -> Vec<i32> {
    (0..n)
        .map(|_| lo + rng.below((hi - lo + 1) as usize) as i32)
        .collect()
}

/// One tensor per type: (type id, ne, raw bytes, expected values).
/// (type, ggml dims, raw bytes, expected values).
type Case = (GgmlType, Vec<u64>, Vec<u8>, Vec<f32>);

fn quantized_cases() -> Vec<Case> {
    let mut rng = Rng::new(11);
    let mut cases = Vec::new();

    // Plain float types, [3, 5].
    let vals: Vec<f32> = (0..15).map(|i| (i as f32 - 7.0) * 0.375).collect();
    cases.push((
        GgmlType::F32,
        vec![5, 3],
        vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
        vals.clone(),
    ));
    cases.push((
        GgmlType::F16,
        vec![5, 3],
        vals.iter().flat_map(|v| f16b(*v)).collect(),
        vals.clone(),
    ));
    let bf: Vec<u8> = vals
        .iter()
        .flat_map(|v| half::bf16::from_f32(*v).to_le_bytes())
        .collect();
    cases.push((GgmlType::BF16, vec![5, 3], bf, vals));

    // 32-value block types, [3, 64] = 6 blocks.
    let blocks32 = 6;
    let (mut b, mut e) = (Vec::new(), Vec::new());
    for _ in 0..blocks32 {
        let q = ints(&mut rng, 32, -128, 127);
        b.extend(f16b(0.5));
        b.extend(q.iter().map(|&v| v as i8 as u8));
        e.extend(q.iter().map(|&v| v as f32 * 0.5));
    }
    cases.push((GgmlType::Q8_0, vec![64, 3], b, e));

    let (mut b, mut e) = (Vec::new(), Vec::new());
    for _ in 0..blocks32 {
        let q = ints(&mut rng, 32, 0, 15);
        b.extend(f16b(0.25));
        b.extend((0..16).map(|j| (q[j] | (q[j + 16] << 4)) as u8));
        e.extend(q.iter().map(|&v| (v - 8) as f32 * 0.25));
    }
    cases.push((GgmlType::Q4_0, vec![64, 3], b, e));

    let (mut b, mut e) = (Vec::new(), Vec::new());
    for _ in 0..blocks32 {
        let q = ints(&mut rng, 32, 0, 15);
        b.extend(f16b(0.5));
        b.extend(f16b(-1.5));
        b.extend((0..16).map(|j| (q[j] | (q[j + 16] << 4)) as u8));
        e.extend(q.iter().map(|&v| v as f32 * 0.5 - 1.5));
    }
    cases.push((GgmlType::Q4_1, vec![64, 3], b, e));

    for with_min in [false, true] {
        let (mut b, mut e) = (Vec::new(), Vec::new());
        for _ in 0..blocks32 {
            let q = ints(&mut rng, 32, 0, 31);
            let mut qh = 0u32;
            let mut qs = [0u8; 16];
            for j in 0..16 {
                qs[j] = ((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4)) as u8;
                qh |= (((q[j] as u32) & 0x10) >> 4) << j;
                qh |= (((q[j + 16] as u32) & 0x10) >> 4) << (j + 16);
            }
            b.extend(f16b(0.125));
            if with_min {
                b.extend(f16b(0.75));
                e.extend(q.iter().map(|&v| v as f32 * 0.125 + 0.75));
            } else {
                e.extend(q.iter().map(|&v| (v - 16) as f32 * 0.125));
            }
            b.extend(qh.to_le_bytes());
            b.extend(qs);
        }
        cases.push((
            if with_min {
                GgmlType::Q5_1
            } else {
                GgmlType::Q5_0
            },
            vec![64, 3],
            b,
            e,
        ));
    }

    // 256-value super-block types, [2, 256] = 2 blocks.
    let (d, dmin) = (1.0 / 16.0, 1.0 / 32.0);
    let (mut b, mut e) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let q = ints(&mut rng, 256, 0, 3);
        let sc = ints(&mut rng, 16, 0, 15);
        let mn = ints(&mut rng, 16, 0, 15);
        b.extend((0..16).map(|j| (sc[j] | (mn[j] << 4)) as u8));
        b.extend(pack_2bit(&q));
        b.extend(f16b(d));
        b.extend(f16b(dmin));
        e.extend((0..256).map(|i| d * sc[i / 16] as f32 * q[i] as f32 - dmin * mn[i / 16] as f32));
    }
    cases.push((GgmlType::Q2_K, vec![256, 2], b, e));

    let (mut b, mut e) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let l = ints(&mut rng, 256, 0, 7); // value l − 4
        let s = ints(&mut rng, 16, 0, 63); // scale s − 32
        let mut hmask = [0u8; 32];
        let mut low = l.clone();
        for (j, v) in low.iter_mut().enumerate() {
            if *v > 3 {
                hmask[j % 32] |= 1 << (j / 32);
                *v -= 4;
            }
        }
        let mut scales = [0u8; 12];
        for (j, &v) in s.iter().enumerate() {
            if j < 8 {
                scales[j] = (v & 0x0f) as u8;
            } else {
                scales[j - 8] |= ((v & 0x0f) << 4) as u8;
            }
            scales[j % 4 + 8] |= ((v >> 4) << (2 * (j / 4))) as u8;
        }
        b.extend(hmask);
        b.extend(pack_2bit(&low));
        b.extend(scales);
        b.extend(f16b(d));
        e.extend((0..256).map(|i| d * (s[i / 16] - 32) as f32 * (l[i] - 4) as f32));
    }
    cases.push((GgmlType::Q3_K, vec![256, 2], b, e));

    for five in [false, true] {
        let (mut b, mut e) = (Vec::new(), Vec::new());
        for _ in 0..2 {
            let q = ints(&mut rng, 256, 0, if five { 31 } else { 15 });
            let sc = ints(&mut rng, 8, 0, 63);
            let mn = ints(&mut rng, 8, 0, 63);
            b.extend(f16b(d));
            b.extend(f16b(dmin));
            b.extend(pack_k4_scales(&sc, &mn));
            if five {
                let mut qh = [0u8; 32];
                let mut ql = [0u8; 128];
                for n in 0..4 {
                    for j in 0..32 {
                        let (l1, l2) = (q[64 * n + j], q[64 * n + j + 32]);
                        if l1 > 15 {
                            qh[j] |= 1 << (2 * n);
                        }
                        if l2 > 15 {
                            qh[j] |= 2 << (2 * n);
                        }
                        ql[32 * n + j] = ((l1 & 0x0f) | ((l2 & 0x0f) << 4)) as u8;
                    }
                }
                b.extend(qh);
                b.extend(ql);
            } else {
                for n in 0..4 {
                    b.extend((0..32).map(|l| (q[64 * n + l] | (q[64 * n + l + 32] << 4)) as u8));
                }
            }
            e.extend(
                (0..256).map(|i| d * sc[i / 32] as f32 * q[i] as f32 - dmin * mn[i / 32] as f32),
            );
        }
        cases.push((
            if five { GgmlType::Q5_K } else { GgmlType::Q4_K },
            vec![256, 2],
            b,
            e,
        ));
    }

    let d6 = 1.0 / 64.0;
    let (mut b, mut e) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let l = ints(&mut rng, 256, 0, 63); // value l − 32
        let sc = ints(&mut rng, 16, -128, 127);
        let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
        for n in 0..2 {
            let (j, ql, qh) = (128 * n, &mut ql[64 * n..], &mut qh[32 * n..]);
            for k in 0..32 {
                let q = |o: usize| l[j + k + o];
                ql[k] = ((q(0) & 0x0f) | ((q(64) & 0x0f) << 4)) as u8;
                ql[k + 32] = ((q(32) & 0x0f) | ((q(96) & 0x0f) << 4)) as u8;
                qh[k] =
                    ((q(0) >> 4) | ((q(32) >> 4) << 2) | ((q(64) >> 4) << 4) | ((q(96) >> 4) << 6))
                        as u8;
            }
        }
        b.extend(ql);
        b.extend(qh);
        b.extend(sc.iter().map(|&s| s as i8 as u8));
        b.extend(f16b(d6));
        e.extend((0..256).map(|i| d6 * sc[i / 16] as f32 * (l[i] - 32) as f32));
    }
    cases.push((GgmlType::Q6_K, vec![256, 2], b, e));
    cases
}

/// 2-bit packing shared by Q2_K and Q3_K: byte 32n + l holds values 128n + l + 32k at
/// bit 2k.
fn pack_2bit(q: &[i32]) -> Vec<u8> {
    let mut out = vec![0u8; 64];
    for n in 0..2 {
        for l in 0..32 {
            let v = |k: usize| q[128 * n + l + 32 * k];
            out[32 * n + l] = (v(0) | (v(1) << 2) | (v(2) << 4) | (v(3) << 6)) as u8;
        }
    }
    out
}

/// Q4_K / Q5_K: eight 6-bit scales and mins in 12 bytes.
fn pack_k4_scales(sc: &[i32], mn: &[i32]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..8 {
        let (ls, lm) = (sc[j] as u8, mn[j] as u8);
        if j < 4 {
            s[j] = ls;
            s[j + 4] = lm;
        } else {
            s[j + 4] = (ls & 0x0f) | ((lm & 0x0f) << 4);
            s[j - 4] |= (ls >> 4) << 6;
            s[j] |= (lm >> 4) << 6;
        }
    }
    s
}

#[test]
fn every_type_dequantizes_exactly() {
    let cases = quantized_cases();
    let mut w = GgufWriter::new();
    for (t, ne, bytes, _) in &cases {
        assert_eq!(
            bytes.len() as u64,
            ne.iter().product::<u64>() / t.block_size() as u64 * t.type_size() as u64
        );
        w.tensor(t.name(), ne, t.id(), bytes.clone());
    }
    let path = temp_dir("gguf-types").join("types.gguf");
    w.write(&path);
    let g = GgufFile::open(&path).unwrap();
    assert_eq!(g.tensors.len(), cases.len());
    for (t, ne, _, want) in &cases {
        let info = g.tensor(t.name()).unwrap();
        assert_eq!(info.ggml_type, *t);
        let got = g.read_f32(info).unwrap();
        // The dtype `--base-dtype keep` stores it in (tests/streamed_load.rs checks that
        // the bytes uploaded are the file's).
        assert_eq!(got.stored, t.kept(), "{}", t.name());
        let shape: Vec<usize> = ne.iter().rev().map(|&d| d as usize).collect();
        assert_eq!(
            got.shape,
            shape,
            "{}: PyTorch shape is ne reversed",
            t.name()
        );
        assert!(want.iter().any(|v| *v != want[0]), "non-constant data");
        for (i, (g, w)) in got.to_f32().unwrap().iter().zip(want).enumerate() {
            assert_eq!(g, w, "{} value {i}", t.name());
        }
    }
}

#[test]
fn qk_permutation_round_trip() {
    // One head of size 4, two columns: HF rows [a, b, c, d] (pairs (a, c), (b, d)) are
    // stored by llama.cpp as [a, c, b, d].
    let w: Vec<f32> = (0..8).map(|v| v as f32).collect();
    let stored = llama_cpp_permute(&w, 4, 2, 1);
    assert_eq!(stored, vec![0., 1., 4., 5., 2., 3., 6., 7.]);
    assert_eq!(permute_rows(&w, 4, 2, 1).unwrap(), stored);
    assert_eq!(unpermute_rows(&stored, 4, 2, 1).unwrap(), w);
    // Odd column count, three heads of size 6.
    let mut rng = Rng::new(5);
    let w = rng.vec_f32(18 * 7, -1.0, 1.0);
    let p = llama_cpp_permute(&w, 18, 7, 3);
    assert_ne!(p, w);
    assert_eq!(permute_rows(&w, 18, 7, 3).unwrap(), p);
    assert_eq!(unpermute_rows(&p, 18, 7, 3).unwrap(), w);
    // Shapes the permutation cannot apply to are refused, not panicked on.
    assert!(unpermute_rows(&w, 18, 7, 4).is_none());
    assert!(unpermute_rows(&w, 18, 7, 0).is_none());
    assert!(unpermute_rows(&w[1..], 18, 7, 3).is_none());
}

/// The loader moves a kept block tensor's bytes with Llama's q/k un-permutation as rows
/// of whole blocks; for the K-quants a row is whole super-blocks (the reader refuses
/// others), so the moved bytes decode to the moved values.
#[test]
fn qk_unpermutation_moves_k_quant_rows_as_whole_super_blocks() {
    let cases = quantized_cases();
    for t in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
        let (_, _, bytes, _) = cases.iter().find(|c| c.0 == t).unwrap();
        // Four rows of one super-block (the case's two, twice): one head of size 4.
        let stored = [&bytes[..], &bytes[..]].concat();
        let moved = unpermute_rows(&stored, 4, stored.len() / 4, 1).unwrap();
        assert_ne!(moved, stored);
        let values = dequantize(t, &stored, 1024).unwrap();
        assert_eq!(
            dequantize(t, &moved, 1024).unwrap(),
            unpermute_rows(&values, 4, 256, 1).unwrap(),
            "{}",
            t.name()
        );
    }
}

#[test]
fn tiny_llama_gguf_equals_its_hf_original() {
    let dir = temp_dir("gguf-tiny");
    let ck = write_tiny_hf(&dir, &TinySpec::llama());
    let hf = load_checkpoint(&dir).unwrap();
    for f16 in [false, true] {
        let path = dir.join(if f16 {
            "tiny-f16.gguf"
        } else {
            "tiny-f32.gguf"
        });
        gguf_from_tiny(&ck, f16).write(&path);
        let gg = load_checkpoint(&path).unwrap();
        let (a, b) = (&hf.config, &gg.config);
        assert_eq!(
            (
                a.vocab_size,
                a.hidden_size,
                a.intermediate_size,
                a.num_layers,
                a.num_heads,
                a.num_kv_heads,
                a.head_dim
            ),
            (
                b.vocab_size,
                b.hidden_size,
                b.intermediate_size,
                b.num_layers,
                b.num_heads,
                b.num_kv_heads,
                b.head_dim
            )
        );
        assert_eq!(
            (a.rope_theta, a.rms_norm_eps, a.tie_word_embeddings),
            (b.rope_theta, b.rms_norm_eps, b.tie_word_embeddings)
        );
        assert_eq!(b.max_position_embeddings, 128);
        assert_eq!(hf.tensors.len(), gg.tensors.len());
        for (name, t) in &hf.tensors {
            let u = gg.tensor(name).unwrap();
            assert_eq!(t.shape, u.shape, "{name}");
            let data = t.to_f32().unwrap();
            let want: Vec<f32> = if f16 && t.shape.len() == 2 {
                data.iter()
                    .map(|v| round_to(safetensors::Dtype::F16, *v))
                    .collect()
            } else {
                data
            };
            assert!(
                u.to_f32().unwrap() == want,
                "{name} (f16 {f16}): values differ"
            );
        }
        // Same tokenizer, same special tokens, same template.
        let tok = TinyTokenizer::new();
        assert_eq!(gg.bos_token, Some(("<|bos|>".into(), tok.id("<|bos|>"))));
        assert_eq!(gg.eos_tokens, vec![tok.id("<|eos|>")]);
        assert!(gg.add_bos);
        for text in [
            "What is the capital of France?",
            " the cats of  France\n\n<|im_start|>x 42é",
        ] {
            assert_eq!(
                hf.encode(text).unwrap(),
                gg.encode(text).unwrap(),
                "{text:?}"
            );
            assert_eq!(gg.decode(&gg.encode(text).unwrap()).unwrap(), text);
        }
        let m = [boha::loaders::ChatMessage::new("user", "hi")];
        assert_eq!(
            hf.render_chat(&m, true).unwrap(),
            gg.render_chat(&m, true).unwrap()
        );
    }
}

/// A small valid GGUF for corruption tests: a few metadata types and two tensors.
fn small_gguf() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama")
        .kv_u32("general.alignment", 32)
        .kv_str_array("tokenizer.ggml.tokens", &["a", "bb", "ccc"])
        .kv_f32_array("tokenizer.ggml.scores", &[0.5, -1.0, 2.0])
        .kv_bool("tokenizer.ggml.add_bos_token", true)
        .tensor_f32("blk.0.attn_q.weight", &[2, 3], &[1., 2., 3., 4., 5., 6.])
        .tensor_f16("token_embd.weight", &[3, 2], &[0.5, -0.5, 1., -1., 2., -2.]);
    w.to_bytes().0
}

fn write(tag: &str, bytes: &[u8]) -> PathBuf {
    let path = temp_dir(tag).join("model.gguf");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Opens and reads every tensor; returns the first error as text.
fn open_all(path: &Path) -> Result<(), String> {
    let g = GgufFile::open(path).map_err(|e| e.to_string())?;
    for t in &g.tensors {
        g.read_f32(t).map_err(|e| e.to_string())?;
    }
    Ok(())
}

fn expect_err(path: &Path, needle: &str) -> String {
    let e = open_all(path)
        .err()
        .unwrap_or_else(|| panic!("expected an error containing {needle:?}"));
    assert!(e.contains(needle), "{e}");
    assert!(
        e.contains("model.gguf") && !e.contains('\n'),
        "one line naming the file: {e}"
    );
    e
}

#[test]
fn truncated_and_flipped_files_never_panic() {
    let good = small_gguf();
    let path = write("gguf-fuzz", &good);
    open_all(&path).unwrap();
    // Every truncation point fails with an error.
    for cut in 0..good.len() {
        std::fs::write(&path, &good[..cut]).unwrap();
        let e = open_all(&path)
            .err()
            .unwrap_or_else(|| panic!("cut at {cut} accepted"));
        assert!(e.contains("model.gguf") && !e.contains('\n'), "{cut}: {e}");
    }
    // Every byte flipped three ways: any outcome but a panic (or a huge allocation,
    // which would abort the test process).
    let header_len = good.len() - 64;
    for pos in 0..header_len {
        for mask in [0xff, 0x80, 0x01] {
            let mut bad = good.clone();
            bad[pos] ^= mask;
            std::fs::write(&path, &bad).unwrap();
            if let Err(e) = open_all(&path) {
                assert!(e.contains("model.gguf") && !e.contains('\n'), "{pos}: {e}");
            }
        }
    }
}

/// Position just after the first occurrence of `needle`.
fn after(bytes: &[u8], needle: &str) -> usize {
    bytes
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
        .unwrap()
        + needle.len()
}

#[test]
fn hostile_headers_give_clear_errors() {
    let good = small_gguf();
    let patch = |at: usize, v: &[u8]| {
        let mut b = good.clone();
        b[at..at + v.len()].copy_from_slice(v);
        b
    };
    // Counts: 2^60 tensors, 2^60 metadata entries.
    expect_err(
        &write("gguf-h", &patch(8, &(1u64 << 60).to_le_bytes())),
        "1152921504606846976 tensors",
    );
    expect_err(
        &write("gguf-h", &patch(16, &(1u64 << 60).to_le_bytes())),
        "1152921504606846976 metadata entries",
    );
    // An array claiming 2^60 strings; a string claiming 2^63 bytes.
    let arr = after(&good, "tokenizer.ggml.tokens") + 4 + 4;
    expect_err(
        &write("gguf-h", &patch(arr, &(1u64 << 60).to_le_bytes())),
        "elements in metadata tokenizer.ggml.tokens",
    );
    expect_err(
        &write("gguf-h", &patch(arr + 8, &(1u64 << 63).to_le_bytes())),
        "truncated",
    );
    // Key length beyond reason.
    expect_err(
        &write("gguf-h", &patch(24, &(1u64 << 40).to_le_bytes())),
        "too long",
    );
    // Tensor data offset past the end (and one that would overflow u64).
    let info = after(&good, "blk.0.attn_q.weight");
    let offset_at = info + 4 + 2 * 8 + 4;
    let e = expect_err(
        &write("gguf-h", &patch(offset_at, &(1u64 << 20).to_le_bytes())),
        "runs past the end of the file",
    );
    assert!(
        e.contains("'blk.0.attn_q.weight'") && e.contains(&format!("({} bytes)", good.len())),
        "{e}"
    );
    expect_err(
        &write("gguf-h", &patch(offset_at, &(u64::MAX - 31).to_le_bytes())),
        "runs past the end of the file",
    );
    // Data cut short: the last tensor runs past the end.
    expect_err(
        &write("gguf-h", &good[..good.len() - 2]),
        "'token_embd.weight' data at offset",
    );
    // Misaligned offset, bad dims, unknown type, absurd shape.
    expect_err(
        &write("gguf-h", &patch(offset_at, &8u64.to_le_bytes())),
        "not a multiple of the alignment 32",
    );
    expect_err(
        &write("gguf-h", &patch(info, &5u32.to_le_bytes())),
        "5 dimensions",
    );
    expect_err(
        &write("gguf-h", &patch(info + 4 + 16, &99u32.to_le_bytes())),
        "unknown or unsupported ggml type 99",
    );
    expect_err(
        &write("gguf-h", &patch(info + 4, &(1u64 << 62).to_le_bytes())),
        "absurd shape",
    );
    // Row length not a multiple of the block size (F32 tensor relabelled Q8_0).
    expect_err(
        &write("gguf-h", &patch(info + 4 + 16, &8u32.to_le_bytes())),
        "block size 32",
    );
    // Magic, version, byte order.
    expect_err(&write("gguf-h", &patch(0, b"GGUX")), "not a GGUF file");
    expect_err(
        &write("gguf-h", &patch(4, &1u32.to_le_bytes())),
        "version 1",
    );
    expect_err(
        &write("gguf-h", &patch(4, &3u32.to_be_bytes())),
        "big-endian",
    );
    expect_err(
        &write("gguf-h", &patch(4, &7u32.to_le_bytes())),
        "unsupported GGUF version 7",
    );
    // A bool that is neither 0 nor 1, an unknown value type, an alignment of 3.
    let b = after(&good, "tokenizer.ggml.add_bos_token") + 4;
    expect_err(&write("gguf-h", &patch(b, &[2])), "bool byte 2");
    expect_err(
        &write("gguf-h", &patch(b - 4, &13u32.to_le_bytes())),
        "unknown value type 13",
    );
    let a = after(&good, "general.alignment") + 4;
    expect_err(
        &write("gguf-h", &patch(a, &3u32.to_le_bytes())),
        "not a power of two",
    );

    // Duplicate keys and tensors; arrays nested too deep.
    let mut w = GgufWriter::new();
    w.kv_u32("x", 1).kv_u32("x", 2);
    expect_err(
        &write("gguf-h", &w.to_bytes().0),
        "metadata key x appears twice",
    );
    let mut w = GgufWriter::new();
    w.tensor_f32("t", &[1], &[1.0])
        .tensor_f32("t", &[1], &[2.0]);
    expect_err(
        &write("gguf-h", &w.to_bytes().0),
        "tensor 't' appears twice",
    );
    let mut nested = Vec::new();
    for _ in 0..4 {
        nested.extend(gguf_type::ARRAY.to_le_bytes());
        nested.extend(1u64.to_le_bytes());
    }
    nested.extend(gguf_type::U8.to_le_bytes());
    nested.extend(1u64.to_le_bytes());
    nested.push(7);
    let mut w = GgufWriter::new();
    w.kv_raw("deep", gguf_type::ARRAY, nested);
    expect_err(&write("gguf-h", &w.to_bytes().0), "nested deeper");
}

#[test]
fn unsupported_models_are_named() {
    let dir = temp_dir("gguf-unsup");
    let ck = write_tiny_hf(&dir, &TinySpec::llama());
    let path = dir.join("model.gguf");
    // Wrong architecture.
    let mut w = gguf_from_tiny(&ck, false);
    w.kv_str("general.architecture", "gemma2");
    let bytes = w.to_bytes().0;
    std::fs::write(&path, &bytes).unwrap();
    let e = load_checkpoint(&path).err().unwrap().to_string();
    assert!(
        e.contains("metadata key general.architecture appears twice"),
        "{e}"
    );
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "gemma2");
    w.write(&path);
    let e = load_checkpoint(&path).err().unwrap().to_string();
    assert!(
        e.contains("unsupported general.architecture \"gemma2\"") && e.contains("model.gguf"),
        "{e}"
    );
    // A tensor boha does not know, and a tokenizer model it does not build.
    let mut w = gguf_from_tiny(&ck, false);
    w.tensor_f32("blk.0.attn_qkv.weight", &[2], &[1.0, 2.0]);
    w.write(&path);
    let e = load_checkpoint(&path).err().unwrap().to_string();
    assert!(
        e.contains("unrecognized tensor 'blk.0.attn_qkv.weight'"),
        "{e}"
    );
    let mut w = GgufWriter::new();
    w.kv_str("tokenizer.ggml.model", "bert")
        .kv_str_array("tokenizer.ggml.tokens", &["a"]);
    w.write(&path);
    let g = GgufFile::open(&path).unwrap();
    let e = boha::loaders::tokenizer::from_gguf(&g.metadata)
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("unsupported tokenizer.ggml.model \"bert\""),
        "{e}"
    );
    // A missing required key is named.
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama")
        .kv_u32("llama.embedding_length", 8);
    w.write(&path);
    let e = load_checkpoint(&path).err().unwrap().to_string();
    assert!(
        e.contains("metadata llama.attention.head_count is missing"),
        "{e}"
    );
    // A key of the wrong type is named with both types.
    let mut w = GgufWriter::new();
    w.kv_str("general.architecture", "llama")
        .kv_str("llama.embedding_length", "8");
    w.write(&path);
    let e = load_checkpoint(&path).err().unwrap().to_string();
    assert!(
        e.contains("llama.embedding_length is a string, expected a non-negative integer"),
        "{e}"
    );
}

/// llama.cpp's converter: Llama-3 RoPE divisors per frequency pair.
fn converter_rope_factors(head_dim: usize, theta: f64, factor: f64) -> Vec<f32> {
    let (lo, hi, old) = (1.0, 4.0, 8192.0);
    (0..head_dim / 2)
        .map(|i| {
            let freq = 1.0 / theta.powf((2 * i) as f64 / head_dim as f64);
            let wavelen = 2.0 * std::f64::consts::PI / freq;
            if wavelen < old / hi {
                1.0
            } else if wavelen > old / lo {
                factor as f32
            } else {
                let smooth = (old / wavelen - lo) / (hi - lo);
                (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
            }
        })
        .collect()
}

#[test]
fn llama3_rope_from_rope_freqs() {
    use boha::loaders::gguf::llama3_from_rope_freqs;
    use boha::model::RopeScaling;
    let dir = temp_dir("gguf-rope");
    let ck = write_tiny_hf(&dir, &TinySpec::llama());
    let mut c = load_checkpoint(&dir).unwrap().config;
    c.head_dim = 64;
    c.rope_theta = 500000.0;
    let f = converter_rope_factors(64, 500000.0, 8.0);
    assert!(f.contains(&1.0) && f.contains(&8.0) && f.iter().any(|&v| v > 1.0 && v < 8.0));
    let want = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    assert_eq!(llama3_from_rope_freqs(&c, &f), Some(want));
    let mut bent = f.clone();
    bent[20] *= 1.1;
    assert_eq!(llama3_from_rope_freqs(&c, &bent), None);
    assert_eq!(llama3_from_rope_freqs(&c, &f[1..]), None);

    // Through the loader: the tensor becomes the config's scaling, or a named error.
    let path = dir.join("rope.gguf");
    let mut w = gguf_from_tiny(&ck, false);
    w.tensor_f32(
        "rope_freqs.weight",
        &[3],
        &converter_rope_factors(6, 10000.0, 8.0),
    );
    w.write(&path);
    // Head size 6 at θ = 10⁴: the lowest frequency sits on the ramp, so `factor` is
    // solved from it rather than read off.
    match load_checkpoint(&path).unwrap().config.rope_scaling {
        Some(RopeScaling::Llama3 { factor, .. }) => {
            assert!((factor - 8.0).abs() < 1e-3, "{factor}")
        }
        other => panic!("{other:?}"),
    }
    let mut w = gguf_from_tiny(&ck, false);
    w.tensor_f32("rope_freqs.weight", &[3], &[1.0, 3.0, 2.0]);
    w.write(&path);
    let e = load_checkpoint(&path).err().unwrap().to_string();
    assert!(
        e.contains("'rope_freqs.weight' does not match Llama-3 RoPE scaling"),
        "{e}"
    );
}

/// A GGUF handed over as bytes (a file a web page got from the File API) loads as the
/// same file read from disk: config, every tensor's values, tokenizer.
#[test]
fn gguf_from_bytes_equals_gguf_from_path() {
    let dir = temp_dir("gguf-bytes");
    let ck = write_tiny_hf(&dir, &TinySpec::llama());
    let path = dir.join("tiny.gguf");
    gguf_from_tiny(&ck, true).write(&path);
    let from_path = load_checkpoint(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let from_bytes = boha::loaders::gguf::load_gguf_bytes(Path::new("tiny.gguf"), bytes).unwrap();
    assert_eq!(from_path.config, from_bytes.config);
    assert_eq!(
        from_path.tensors.keys().collect::<Vec<_>>(),
        from_bytes.tensors.keys().collect::<Vec<_>>()
    );
    for (name, t) in &from_path.tensors {
        let u = from_bytes.tensor(name).unwrap();
        assert_eq!(t.shape, u.shape, "{name}");
        assert!(
            t.to_f32().unwrap() == u.to_f32().unwrap(),
            "{name}: values differ"
        );
    }
    let text = "What is the capital of France?";
    assert_eq!(
        from_path.encode(text).unwrap(),
        from_bytes.encode(text).unwrap()
    );
    // A truncated buffer is the same clear error a truncated file is.
    let short = std::fs::read(&path).unwrap()[..100].to_vec();
    let err = boha::loaders::gguf::load_gguf_bytes(Path::new("short.gguf"), short)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("short.gguf") && err.contains("76 bytes left"),
        "{err}"
    );
}
