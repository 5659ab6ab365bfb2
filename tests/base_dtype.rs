//! Frozen weights stored as f16, bf16 and ggml's Q8_0 / Q4_0 / Q4_1 blocks
//! (`--base-dtype`): every kernel that reads a frozen weight gives, with the weight
//! stored low-precision, what it gives with the f32 weight holding the same (rounded or
//! decoded) values; the decoding is the only difference, so the tolerance is rounding
//! noise of the f32 sums (1e-5 of the largest output). Whole models of all four
//! architectures give logits within 2e-3 of the f32 path.

mod common;
mod model_specs;

use boha::adapters::layer::AdaptedLinear;
use boha::adapters::{AdapterSpec, Method};
use boha::gpu::{BaseDType, DType, Dispatch, GemmFamily, GemmTile, Gpu, GpuOptions, Recorder};
use boha::loaders::{load_checkpoint, HostTensor};
use boha::model::kv_cache::{Model, Session};
use boha::ops::gemm::{gemm_tile, gemv::GemvKernel, Gemm, Path};
use boha::rng::Rng;
use common::assert_close;
use common::tiny_checkpoint::{temp_dir, write_tiny_hf};

const LOW: [DType; 5] = [
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
];

/// The dtypes a case runs in: all of [`LOW`] for the first case of a list (every kernel
/// meets every decoder once), q4_1 (SmolLM2's) for the rest. Each dtype is a pipeline per
/// kernel, and llvmpipe takes seconds to compile one.
fn dtypes_for(case: usize) -> &'static [DType] {
    if case == 0 {
        &LOW
    } else {
        &[DType::Q4_1]
    }
}
const TOL: f32 = 1e-5;

fn run(gpu: &Gpu, ds: &[Dispatch]) {
    let mut r = Recorder::new();
    r.run_all(ds);
    gpu.run(&r).unwrap();
}

/// What a kernel reads for a weight stored from `v` as `d`.
fn rounded(d: DType, v: &[f32]) -> Vec<f32> {
    d.round_trip(v).unwrap()
}

fn family_gpu(family: GemmFamily, max_binding: Option<u64>) -> Option<Gpu> {
    common::gpu_with(&GpuOptions {
        gemm_family: Some(family),
        max_binding_override: max_binding,
        untuned: true,
        ..Default::default()
    })
}

#[test]
fn upload_rounds_to_nearest_and_download_widens() {
    let Some(gpu) = common::gpu() else { return };
    let v = [1.0f32, -2.5, 1e-3, 65504.0, 3.140625, 0.1, -7.0e-5];
    for d in [DType::F16, DType::BF16] {
        let t = gpu.upload_as(&[v.len()], &v, d).unwrap();
        assert_eq!(t.dtype(), d);
        assert_eq!(t.bytes(), (v.len() * 2) as u64);
        assert_eq!(gpu.download(&t).unwrap(), rounded(d, &v), "{d}");
    }
    // 0.1 is not a half: the round trip changes it, in the last place only.
    let r = |d: DType| d.round_trip(&[0.1]).unwrap()[0];
    assert_ne!(r(DType::F16), 0.1);
    assert!((r(DType::F16) - 0.1).abs() < 1e-4);
    assert!((r(DType::BF16) - 0.1).abs() < 1e-3);
    // Blocks: the upload is ggml's quantizer, the download its decoder.
    let x: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 7.0).collect();
    for d in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let t = gpu.upload_as(&[2, 32], &x, d).unwrap();
        assert_eq!(t.bytes(), d.bytes_for(64) as u64);
        assert_eq!(gpu.download(&t).unwrap(), rounded(d, &x), "{d}");
        // Rows of 20 are not whole blocks: refused with one line naming both.
        let e = gpu
            .upload_as(&[2, 20], &x[..40], d)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("20") && e.contains("32") && !e.contains('\n'),
            "{e}"
        );
        // A view inside a block is refused too.
        assert!(t.view(16, 32).is_err());
    }
}

/// Every GEMM tile the device holds, NT (forward), NN (dX) and the decode GEMV, with B
/// stored low-precision against B stored as f32 with the same values; a small binding
/// limit makes the planner cut B into ranges at 2-byte element offsets.
#[test]
fn gemm_tiles_and_gemv_read_low_precision_b_like_f32() {
    // (m, n, k, trans_b): y = x·Wᵀ, dX = dY·W, an odd k, and a GEMV-shaped decode (block
    // dtypes skip the odd k: their rows are whole 32-value blocks).
    let shapes = [
        (37, 36, 64, true),
        (37, 64, 36, false),
        (19, 20, 23, true),
        (3, 40, 64, true),
    ];
    // Every tile runs whatever the family; a 4 KiB binding limit cuts B into ranges.
    for (limit, shapes) in [(None, &shapes[..]), (Some(4096), &shapes[..2])] {
        let Some(gpu) = family_gpu(GemmFamily::Register, limit) else {
            return;
        };
        // One tier shape stands for the three: they differ in override constants only.
        let tiles = if limit.is_some() {
            vec![GemmTile::Register]
        } else {
            GemmTile::candidates()
                .into_iter()
                .filter(|t| !matches!(t, GemmTile::Tier { bm, bn } if (*bm, *bn) != (128, 128)))
                .collect()
        };
        let mut rng = Rng::new(5);
        for (case, &(m, n, k, tb)) in shapes.iter().enumerate() {
            let a = rng.vec_f32(m * k, -1.0, 1.0);
            let b = rng.vec_f32(k * n, -1.0, 1.0);
            let b_shape = if tb { [n, k] } else { [k, n] };
            let ta = gpu.upload(&[m, k], &a).unwrap();
            let g = Gemm {
                trans_b: tb,
                ..Gemm::new(m, n, k)
            };
            for &d in dtypes_for(case) {
                if !b_shape[1].is_multiple_of(d.block()) {
                    continue;
                }
                let b32 = gpu.upload(&b_shape, &rounded(d, &b)).unwrap();
                let blow = gpu.upload_as(&b_shape, &b, d).unwrap();
                let mut paths = vec![Path::Tiled];
                if tb && m <= 8 {
                    paths.extend([GemvKernel::Rows, GemvKernel::Split].map(Path::Gemv));
                }
                for &tile in &tiles {
                    for &path in &paths {
                        let want = gpu.zeros(&[m, n]).unwrap();
                        let got = gpu.zeros(&[m, n]).unwrap();
                        run(
                            &gpu,
                            &gemm_tile(&gpu, tile, path, &g, &ta, &b32, &want).unwrap(),
                        );
                        run(
                            &gpu,
                            &gemm_tile(&gpu, tile, path, &g, &ta, &blow, &got).unwrap(),
                        );
                        assert_close(
                            &format!(
                                "{} {d} {m}x{n}x{k} trans_b={tb} {path:?} limit {limit:?}",
                                tile.name()
                            ),
                            &gpu.download(&got).unwrap(),
                            &gpu.download(&want).unwrap(),
                            TOL,
                        );
                    }
                }
            }
        }
    }
}

/// Every adapter kind's fused forward, dX, factor gradients and merge, on both kernel
/// families, with W0 stored low-precision against W0 stored as f32 with the same values.
#[test]
fn fused_adapter_kernels_read_low_precision_w0_like_f32() {
    // d_in whole 32-value blocks, so every dtype stores W0's rows.
    const D_OUT: usize = 96;
    const D_IN: usize = 64;
    const T: usize = 37;
    // r_b = 2 and 12 take different register kernels (reg4c, reg4k); each kind snippet
    // once (LoRA and ABBA's Khatri–Rao path read W0 through the GEMM, tested above).
    let specs = [
        (Method::Boha, 2, 2, 0.8),
        (Method::Boha, 2, 12, 0.3),
        (Method::Additive, 2, 2, 0.6),
        (Method::Hira, 1, 32, 1.0),
        (Method::Abba, 1, 16, 0.4),
    ]
    .map(|(m, b, r, s)| AdapterSpec::new(m, b, r, s));
    for family in [GemmFamily::Register, GemmFamily::Shared] {
        let Some(gpu) = family_gpu(family, None) else {
            return;
        };
        for (n, s) in specs.iter().enumerate() {
            let mut rng = Rng::new(40 + n as u64);
            let a_len: usize = s.a_shape(D_IN).iter().product();
            let b_len: usize = s.b_shape(D_OUT).iter().product();
            let w0 = rng.vec_f32(D_OUT * D_IN, -1.0, 1.0);
            let a = rng.vec_f32(a_len, -0.5, 0.5);
            let b = rng.vec_f32(b_len, -0.5, 0.5);
            let x = gpu
                .upload(&[T, D_IN], &rng.vec_f32(T * D_IN, -1.0, 1.0))
                .unwrap();
            let dy = gpu
                .upload(&[T, D_OUT], &rng.vec_f32(T * D_OUT, -1.0, 1.0))
                .unwrap();
            for &d in dtypes_for(n) {
                let what = format!("{s:?} {} {d}", family.name());
                // Each side: forward y, dX, grad A, grad B, merged W'.
                let side = |w: &boha::gpu::Tensor| -> Vec<Vec<f32>> {
                    let ad = AdaptedLinear::from_host(&gpu, *s, "t", D_OUT, D_IN, &a, &b).unwrap();
                    let y = gpu.zeros(&[T, D_OUT]).unwrap();
                    let dx = gpu.zeros(&[T, D_IN]).unwrap();
                    let merged = gpu.zeros(&[D_OUT, D_IN]).unwrap();
                    run(&gpu, &ad.forward(&gpu, w, &x, &y).unwrap());
                    run(
                        &gpu,
                        &ad.backward(&gpu, w, &x, &dy, Some(&dx), None).unwrap(),
                    );
                    run(&gpu, &ad.merge(&gpu, w, &merged).unwrap());
                    [&y, &dx, &ad.grad_a, &ad.grad_b, &merged]
                        .iter()
                        .map(|t| gpu.download(t).unwrap())
                        .collect()
                };
                let want = side(&gpu.upload(&[D_OUT, D_IN], &rounded(d, &w0)).unwrap());
                let got = side(&gpu.upload_as(&[D_OUT, D_IN], &w0, d).unwrap());
                for (i, name) in ["forward", "dx", "grad A", "grad B", "merge"]
                    .iter()
                    .enumerate()
                {
                    assert_close(&format!("{name} {what}"), &got[i], &want[i], TOL);
                }
            }
        }
    }
}

#[test]
fn embedding_gathers_low_precision_rows() {
    let Some(gpu) = common::gpu() else { return };
    let (v, c) = (50, 64);
    let mut rng = Rng::new(9);
    let table = rng.vec_f32(v * c, -1.0, 1.0);
    let ids: Vec<u32> = vec![0, 49, 7, 7, 31, 60];
    let tid = gpu.upload_u32(&[ids.len()], &ids).unwrap();
    for d in LOW {
        let t = gpu.upload_as(&[v, c], &table, d).unwrap();
        let y = gpu.zeros(&[ids.len(), c]).unwrap();
        run(
            &gpu,
            &boha::ops::embedding::forward(&gpu, &t, &tid, &y, 2.0).unwrap(),
        );
        let r = rounded(d, &table);
        let want: Vec<f32> = ids
            .iter()
            .flat_map(|&id| {
                let row = if (id as usize) < v {
                    r[id as usize * c..(id as usize + 1) * c].to_vec()
                } else {
                    vec![0.0; c]
                };
                row.into_iter().map(|x| 2.0 * x)
            })
            .collect();
        assert_eq!(gpu.download(&y).unwrap(), want, "{d}");
    }
}

/// A kernel that does not read a frozen weight refuses a low-precision tensor with one
/// line naming the binding and both dtypes, instead of reading its bits as f32.
#[test]
fn a_low_precision_tensor_elsewhere_is_refused() {
    let Some(gpu) = common::gpu() else { return };
    let a = gpu.upload_as(&[4, 8], &[0.5; 32], DType::F16).unwrap();
    let b = gpu.upload(&[8, 4], &[0.5; 32]).unwrap();
    let c = gpu.zeros(&[4, 4]).unwrap();
    // A low-precision A (only B may be a frozen weight).
    let e = gemm_tile(
        &gpu,
        GemmTile::Register,
        Path::Tiled,
        &Gemm::new(4, 4, 8),
        &a,
        &b,
        &c,
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("f16") && e.contains("f32") && !e.contains('\n'),
        "{e}"
    );
    let e = gpu.write(&a, &[0.0; 32]).unwrap_err().to_string();
    assert!(e.contains("f16"), "{e}");
}

/// Logits of `ck` (a prefill, then KV-cache decode steps) and the bytes its weights take
/// on the device.
fn logits(gpu: &Gpu, ck: &boha::loaders::Checkpoint, tokens: &[u32]) -> (Vec<f32>, u64) {
    let before = gpu.live_bytes();
    let model = Model::load(gpu, ck).unwrap();
    let bytes = gpu.live_bytes() - before;
    let mut s = Session::new(gpu, &model, 16).unwrap();
    let mut out = s.forward(gpu, &tokens[..9], true).unwrap();
    for t in 9..tokens.len() {
        out.extend(s.forward(gpu, &tokens[t..t + 1], false).unwrap());
    }
    (out, bytes)
}

/// ‖got − want‖ / ‖want‖.
fn rel_error(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| ((g - w) as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|&w| (w as f64).powi(2)).sum();
    (num / den).sqrt()
}

/// A checkpoint stored as bf16 (every architecture) or f16 (Llama) stays so on the device
/// (`keep`, half the bytes) and gives the logits of the same checkpoint widened to f32 at
/// load, within 2e-3, on tiny models (prefill and KV-cache decode).
#[test]
fn f16_and_bf16_checkpoints_keep_their_dtype_and_their_logits() {
    let Some(gpu) = common::gpu() else { return };
    for (name, mut spec) in model_specs::specs() {
        // bf16 on every architecture, f16 on the first.
        let kinds: &[(DType, safetensors::Dtype)] = if name == "llama" {
            &[
                (DType::F16, safetensors::Dtype::F16),
                (DType::BF16, safetensors::Dtype::BF16),
            ]
        } else {
            &[(DType::BF16, safetensors::Dtype::BF16)]
        };
        for &(d, st) in kinds {
            spec.dtype = st;
            let dir = temp_dir(&format!("dtype-{name}-{d}"));
            write_tiny_hf(&dir, &spec);
            let ck = load_checkpoint(&dir).unwrap();
            assert_eq!(ck.tensor("layers.0.q").unwrap().stored, d);
            let mut rng = Rng::new(11);
            let v = ck.config.vocab_size;
            let tokens: Vec<u32> = (0..12).map(|_| rng.below(v) as u32).collect();
            gpu.set_base_dtype(BaseDType::Fixed(DType::F32));
            let (want, f32_bytes) = logits(&gpu, &ck, &tokens);
            gpu.set_base_dtype(BaseDType::Keep);
            let (got, bytes) = logits(&gpu, &ck, &tokens);
            let rel = rel_error(&got, &want);
            assert!(rel <= 2e-3, "{name} {d}: logits differ by {rel:e} of f32's");
            assert!(
                (bytes as f64) < 0.6 * f32_bytes as f64,
                "{name} {d}: {bytes} bytes of weights, f32 takes {f32_bytes}"
            );
        }
    }
}

/// An f32 checkpoint stored as f16 (`--base-dtype f16`) loses only f16's rounding: the
/// tiny Llama's logits stay within 1e-2 of f32's (about 2e-3 measured).
#[test]
fn an_f32_checkpoint_rounded_to_f16_stays_near_f32() {
    let Some(gpu) = common::gpu() else { return };
    let (_, spec) = model_specs::specs().into_iter().next().unwrap();
    let dir = temp_dir("dtype-round");
    write_tiny_hf(&dir, &spec);
    let ck = load_checkpoint(&dir).unwrap();
    let tokens: Vec<u32> = (0..12)
        .map(|i| (i * 7 % ck.config.vocab_size) as u32)
        .collect();
    let (want, _) = logits(&gpu, &ck, &tokens);
    gpu.set_base_dtype(BaseDType::Fixed(DType::F16));
    let (got, _) = logits(&gpu, &ck, &tokens);
    let rel = rel_error(&got, &want);
    assert!(
        rel > 0.0 && rel <= 1e-2,
        "f16 rounding moved the logits by {rel:e}"
    );
}

/// A model stored in ggml's blocks (`--base-dtype q8_0|q4_0|q4_1`) gives the logits of the
/// f32 model whose frozen weights hold the decoded values, within 1e-4 of them (the
/// kernels decode exactly the blocks the quantizer wrote), on a tiny model of every
/// architecture with rows of whole blocks; its weights take under 0.4 of f32's bytes.
#[test]
fn block_quantized_models_give_the_logits_of_their_decoded_weights() {
    let Some(gpu) = common::gpu() else { return };
    for (name, mut spec) in model_specs::specs() {
        spec.intermediate = 64;
        if spec.head_dim.is_some() {
            spec.head_dim = Some(16);
        }
        let dir = temp_dir(&format!("blocks-{name}"));
        write_tiny_hf(&dir, &spec);
        let ck = load_checkpoint(&dir).unwrap();
        let tokens: Vec<u32> = (0..12)
            .map(|i| (i * 5 % ck.config.vocab_size) as u32)
            .collect();
        // Every block dtype on the first model, Q4_1 (SmolLM2's) on the others.
        let dtypes: &[DType] = if name == "llama" {
            &[DType::Q8_0, DType::Q4_0, DType::Q4_1]
        } else {
            &[DType::Q4_1]
        };
        for &d in dtypes {
            let mut decoded = load_checkpoint(&dir).unwrap();
            for (n, t) in decoded.tensors.iter_mut() {
                if boha::graph::memory::is_frozen_weight(n) {
                    let values = rounded(d, &t.to_f32().unwrap());
                    *t = HostTensor::stored_as(t.shape.clone(), values, t.stored);
                }
            }
            gpu.set_base_dtype(BaseDType::Fixed(DType::F32));
            let (want, f32_bytes) = logits(&gpu, &decoded, &tokens);
            gpu.set_base_dtype(BaseDType::Fixed(d));
            let (got, bytes) = logits(&gpu, &ck, &tokens);
            let rel = rel_error(&got, &want);
            assert!(rel <= 1e-4, "{name} {d}: logits differ by {rel:e}");
            assert!(
                (bytes as f64) < 0.4 * f32_bytes as f64,
                "{name} {d}: {bytes} bytes of weights, f32 takes {f32_bytes}"
            );
        }
        gpu.set_base_dtype(BaseDType::Keep);
    }
}

/// SmolLM2-135M-Instruct as its GGUF holds it (Q4_1 projections, Q8_0 embedding, kept as
/// blocks on the device) gives the logits of the same weights decoded to f32 (within
/// 1e-4), and stored as f16 or bf16 (the decoded values rounded) within 2e-3 and 1e-2 of
/// them, on a prefill and KV-cache decode steps. Ignored: it needs the model the demo
/// fetches into the cache (run it with `--ignored` after `boha demo`); it fails rather
/// than skips when the file is missing.
#[test]
#[ignore]
fn smollm2_blocks_f16_and_bf16_give_the_f32_logits() {
    let gpu = common::gpu().expect("a GPU adapter");
    let home = std::env::var_os("HOME").expect("HOME");
    let path = std::path::PathBuf::from(home)
        .join(".cache/boha")
        .join(boha::loaders::fetch::SMOLLM2_FILE);
    assert!(
        path.is_file(),
        "no {} (run boha demo first)",
        path.display()
    );
    let ck = load_checkpoint(&path).unwrap();
    let tokens = ck
        .encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n")
        .unwrap();
    assert!(tokens.len() > 9);
    gpu.set_base_dtype(BaseDType::Fixed(DType::F32));
    let (want, f32_bytes) = logits(&gpu, &ck, &tokens);
    for (base, bound) in [
        (BaseDType::Keep, 1e-4),
        (BaseDType::Fixed(DType::F16), 2e-3),
        (BaseDType::Fixed(DType::BF16), 1e-2),
    ] {
        gpu.set_base_dtype(base);
        let (got, bytes) = logits(&gpu, &ck, &tokens);
        let rel = rel_error(&got, &want);
        eprintln!(
            "{}: logits {rel:.2e} of f32's, weights {:.2} of f32's bytes",
            base.name(),
            bytes as f64 / f32_bytes as f64
        );
        assert!(rel <= bound, "{}: {rel:e} > {bound:e}", base.name());
    }
    gpu.set_base_dtype(BaseDType::Keep);
}
