//! Frozen weights stored as f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k and q6_k, decoded in
//! the tile loads of every GEMM tile, the GEMV, the fused adapter kernels, the merge and
//! the embedding gather, against the same kernels on f32 weights holding the decoded
//! values; written once for the browser and the native build (see tests/web/common.rs).
//!
//! The cases and tolerances of the native suites these replaced (one binding limit is
//! raised for WebGPU's offset alignment, said where); errors are relative to each
//! reference's largest magnitude (`assert_rel_close`). Small shapes: SwiftShader runs
//! WebGPU on the CPU, where most of this suite's time is compiling its many pipelines
//! (each adapter spec, dtype and tile is one).

// Each test's doc comment sits on its `web_test!` call, where rustdoc never renders it
// (nor any test crate); it is there for the reader.
#![allow(unused_doc_comments)]

#[path = "web/common.rs"]
mod common;
#[path = "web/kernels.rs"]
mod kernels;

use common::{down, run, submit};

use boha::adapters::layer::AdaptedLinear;
use boha::adapters::{AdapterSpec, Method};
use boha::gpu::{DType, GemmFamily, GemmTile, Gpu, GpuOptions, Tensor};
use boha::loaders::gguf::{dequantize, GgmlType};
use boha::ops::gemm::{gemm_tile, Gemm, GemvKernel, Path};
use boha::rng::Rng;
use common::assert_rel_close;
use kernels::*;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

// ---------------------------------------------------------------- frozen-weight dtypes

/// The half and ggml block dtypes, which have quantizers.
const LOW: [DType; 5] = [
    DType::F16,
    DType::BF16,
    DType::Q8_0,
    DType::Q4_0,
    DType::Q4_1,
];

/// The K-quants: no quantizer, so a test weight is random super-blocks, and rows (the
/// last dimension) are whole 256-value super-blocks, which needs shapes of its own.
const K_QUANTS: [DType; 3] = [DType::Q4_K, DType::Q5_K, DType::Q6_K];

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

/// The decoding is the only difference from the f32 weight holding the decoded values:
/// rounding noise of the f32 sums.
const DTYPE_TOL: f32 = 1e-5;

/// What a kernel reads for a weight stored from `v` as `d`.
fn rounded(d: DType, v: &[f32]) -> Vec<f32> {
    d.round_trip(v).unwrap()
}

fn ggml(d: DType) -> GgmlType {
    match d {
        DType::Q4_K => GgmlType::Q4_K,
        DType::Q5_K => GgmlType::Q5_K,
        DType::Q6_K => GgmlType::Q6_K,
        _ => unreachable!("{d} is not a K-quant"),
    }
}

/// `n` values (whole super-blocks) of K-quant `d` as a GGUF file holds them: random
/// codes and sub-block scales (and mins) under f16 super-block scales near 1e-2.
fn k_blocks(rng: &mut Rng, d: DType, n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(d.bytes_for(n));
    let f16 =
        |rng: &mut Rng, lo: f64, hi: f64| half::f16::from_f64(rng.range(lo, hi)).to_le_bytes();
    for _ in 0..n / 256 {
        let random = |rng: &mut Rng, n: usize| (0..n).map(|_| rng.next_u64() as u8).collect();
        let b: Vec<u8> = match d {
            // { d, dmin, scales[12], (qh[32],) qs[128] }
            DType::Q4_K | DType::Q5_K => {
                let mut b = [f16(rng, 0.005, 0.02), f16(rng, 0.001, 0.01)].concat();
                let codes = if d == DType::Q5_K {
                    12 + 32 + 128
                } else {
                    12 + 128
                };
                b.extend::<Vec<u8>>(random(rng, codes));
                b
            }
            // { ql[128], qh[64], scales[16], d }
            _ => {
                let mut b: Vec<u8> = random(rng, 128 + 64 + 16);
                b.extend(f16(rng, 0.002, 0.01));
                b
            }
        };
        out.extend(b);
    }
    assert_eq!(out.len(), d.bytes_for(n));
    out
}

/// A frozen weight of `shape` stored as `d`, and the f32 tensor of what a kernel should
/// read from it: `v` rounded or quantized by ggml's reference quantizers, or for a
/// K-quant random super-blocks and the host's decoding of the same bytes.
fn weight_pair(gpu: &Gpu, rng: &mut Rng, d: DType, shape: &[usize], v: &[f32]) -> (Tensor, Tensor) {
    if K_QUANTS.contains(&d) {
        let bytes = k_blocks(rng, d, v.len());
        let decoded = dequantize(ggml(d), &bytes, v.len()).unwrap();
        (
            up(gpu, shape, &decoded),
            gpu.upload_bytes(shape, d, &bytes).unwrap(),
        )
    } else {
        (
            up(gpu, shape, &rounded(d, v)),
            gpu.upload_as(shape, v, d).unwrap(),
        )
    }
}

/// A GEMM case: (m, n, k, trans_b), the dtypes B is stored in, the tiles and the paths.
type GemmCase<'a> = (
    (usize, usize, usize, bool),
    &'a [DType],
    &'a [GemmTile],
    Vec<Path>,
);

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The untuned device on `family`, with an optional binding limit.
async fn dtype_gpu(family: GemmFamily, max_binding: Option<u64>) -> Option<Gpu> {
    common::gpu_with(&GpuOptions {
        gemm_family: Some(family),
        max_binding_override: max_binding,
        untuned: true,
        ..Default::default()
    })
    .await
}

/// Uploading as f16 / bf16 rounds to nearest (half the bytes) and the download widens;
/// the block dtypes' upload is ggml's quantizer and the download its decoder, rows that
/// are not whole blocks and views inside a block are refused; the K-quants have no
/// quantizer (refused with one line) and go up as a file's bytes, which download as the
/// host's decoding.
web_test!(upload_rounds_to_nearest_and_download_widens, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let v = [1.0f32, -2.5, 1e-3, 65504.0, 3.140625, 0.1, -7.0e-5];
    for d in [DType::F16, DType::BF16] {
        let t = gpu.upload_as(&[v.len()], &v, d).unwrap();
        assert_eq!(t.dtype(), d);
        assert_eq!(t.bytes(), (v.len() * 2) as u64);
        assert_eq!(down(&gpu, &t).await, rounded(d, &v), "{d}");
    }
    // 0.1 is not a half: the round trip changes it, in the last place only.
    let r = |d: DType| d.round_trip(&[0.1]).unwrap()[0];
    assert_ne!(r(DType::F16), 0.1);
    assert!((r(DType::F16) - 0.1).abs() < 1e-4);
    assert!((r(DType::BF16) - 0.1).abs() < 1e-3);
    let x: Vec<f32> = (0..64).map(|i| (i as f32 - 30.0) / 7.0).collect();
    for d in [DType::Q8_0, DType::Q4_0, DType::Q4_1] {
        let t = gpu.upload_as(&[2, 32], &x, d).unwrap();
        assert_eq!(t.bytes(), d.bytes_for(64) as u64);
        assert_eq!(down(&gpu, &t).await, rounded(d, &x), "{d}");
        let e = gpu
            .upload_as(&[2, 20], &x[..40], d)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("20") && e.contains("32") && !e.contains('\n'),
            "{e}"
        );
        assert!(t.view(16, 32).is_err());
    }
    let mut rng = Rng::new(3);
    let x = rng.vec_f32(512, -1.0, 1.0);
    for d in K_QUANTS {
        let e = gpu.upload_as(&[2, 256], &x, d).unwrap_err().to_string();
        assert!(
            e.contains(&format!("no quantizer for {d}")) && !e.contains('\n'),
            "{e}"
        );
        assert!(d.round_trip(&x).is_none());
        let bytes = k_blocks(&mut rng, d, 512);
        let t = gpu.upload_bytes(&[2, 256], d, &bytes).unwrap();
        assert_eq!(t.bytes(), d.bytes_for(512) as u64);
        let want = dequantize(ggml(d), &bytes, 512).unwrap();
        assert_eq!(down(&gpu, &t).await, want, "{d}");
        assert!(t.view(32, 256).is_err());
        assert!(gpu
            .upload_bytes(&[2, 128], d, &bytes[..d.bytes_for(256)])
            .is_err());
    }
});

/// Every GEMM tile the device holds, NT (forward), NN (dX) and the decode GEMV, with B
/// stored low-precision against B stored as f32 with the same values; a small binding
/// limit makes the planner cut B into ranges at 2-byte element offsets (and between
/// super-blocks of 144, 176 and 210 bytes).
web_test!(gemm_tiles_and_gemv_read_low_precision_b_like_f32, {
    // (m, n, k, trans_b): y = x·Wᵀ, dX = dY·W, an odd k, and a GEMV-shaped decode (block
    // dtypes skip the odd k: their rows are whole 32-value blocks).
    let shapes = [
        (37, 36, 64, true),
        (37, 64, 36, false),
        (19, 20, 23, true),
        (3, 40, 64, true),
    ];
    // The K-quants' rows are whole 256-value super-blocks: shapes of their own. Each
    // meets the register tile NT, where the decode GEMV runs too (m ≤ 8), and one other
    // tile NN, in turn (llvmpipe takes ~10 s to compile the register tile per decoder).
    let k_nt = (5, 40, 256, true);
    let k_nn = (7, 256, 40, false);
    for limit in [None, Some(4096)] {
        let Some(gpu) = dtype_gpu(GemmFamily::Register, limit).await else {
            return;
        };
        // One tier shape stands for the three: they differ in override constants only.
        let tiles: Vec<GemmTile> = if limit.is_some() {
            vec![GemmTile::Register]
        } else {
            GemmTile::candidates()
                .into_iter()
                .filter(|t| !matches!(t, GemmTile::Tier { bm, bn } if (*bm, *bn) != (128, 128)))
                .collect()
        };
        let gemv = [GemvKernel::Rows, GemvKernel::Split].map(Path::Gemv);
        let register = [GemmTile::Register];
        let others: Vec<GemmTile> = tiles
            .iter()
            .copied()
            .filter(|&t| t != GemmTile::Register)
            .collect();
        let mut cases: Vec<GemmCase> = Vec::new();
        let n_shapes = if limit.is_some() { 2 } else { shapes.len() };
        for (case, &s) in shapes[..n_shapes].iter().enumerate() {
            let mut paths = vec![Path::Tiled];
            if s.3 && s.0 <= 8 {
                paths.extend(gemv);
            }
            cases.push((s, dtypes_for(case), &tiles, paths));
        }
        for (i, d) in K_QUANTS.iter().enumerate() {
            let d = std::slice::from_ref(d);
            if limit.is_some() {
                // The cut between super-blocks, on the GEMV (the tile's pipeline would
                // compile again for this device), where 4 KiB hold the rows of one
                // aligned range start (Q6_K's 210-byte rows need 128 at a 256-byte
                // alignment).
                let (row, align) = (d[0].bytes_for(k_nt.2), gpu.binding_offset_align());
                let step = align / gcd(align, row as u64);
                if step.max(4) * row as u64 <= 4096 {
                    cases.push((k_nt, d, &register, gemv.to_vec()));
                }
            } else {
                let tiled_and_gemv = [&[Path::Tiled][..], &gemv].concat();
                cases.push((k_nt, d, &register, tiled_and_gemv));
                let other = std::slice::from_ref(&others[i % others.len()]);
                cases.push((k_nn, d, other, vec![Path::Tiled]));
            }
        }
        let mut rng = Rng::new(5);
        for ((m, n, k, tb), dtypes, tiles, paths) in cases {
            let a = rng.vec_f32(m * k, -1.0, 1.0);
            let b = rng.vec_f32(k * n, -1.0, 1.0);
            let b_shape = if tb { [n, k] } else { [k, n] };
            let ta = up(&gpu, &[m, k], &a);
            let g = Gemm {
                trans_b: tb,
                ..Gemm::new(m, n, k)
            };
            for &d in dtypes {
                if !b_shape[1].is_multiple_of(d.block()) {
                    continue;
                }
                let (b32, blow) = weight_pair(&gpu, &mut rng, d, &b_shape, &b);
                for &tile in tiles {
                    for &path in &paths {
                        let want = gpu.zeros(&[m, n]).unwrap();
                        let got = gpu.zeros(&[m, n]).unwrap();
                        let ds = gemm_tile(&gpu, tile, path, &g, &ta, &b32, &want).unwrap();
                        let want = run(&gpu, &ds, &want).await;
                        let ds = gemm_tile(&gpu, tile, path, &g, &ta, &blow, &got).unwrap();
                        let got = run(&gpu, &ds, &got).await;
                        assert_rel_close(
                            &format!(
                                "{} {d} {m}x{n}x{k} trans_b={tb} {path:?} limit {limit:?}",
                                tile.name()
                            ),
                            &got,
                            &want,
                            DTYPE_TOL,
                        );
                    }
                }
            }
        }
    }
});

/// Every adapter kind's fused forward, dX, factor gradients and merge, on both kernel
/// families, with W0 stored low-precision against W0 stored as f32 with the same values.
web_test!(fused_adapter_kernels_read_low_precision_w0_like_f32, {
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
    for family in FAMILIES {
        let Some(gpu) = dtype_gpu(family, None).await else {
            return;
        };
        // d_in whole 32-value blocks, so every dtype of LOW stores W0's rows.
        for (n, s) in specs.iter().enumerate() {
            fused_dtype_case(&gpu, family, s, (96, 64), 40 + n as u64, dtypes_for(n)).await;
        }
        // The K-quants on the first spec, with rows of one 256-value super-block, on the
        // shared family only: the register family's kernels read W0 through the same
        // wload / wload4 and take llvmpipe ~15 s each to compile per decoder.
        if family == GemmFamily::Shared {
            fused_dtype_case(&gpu, family, &specs[0], (32, 256), 50, &K_QUANTS).await;
        }
    }
});

/// The adapter's forward y, dX, grad A, grad B and merged W′ with the frozen weight `w`.
async fn fused_outputs(
    gpu: &Gpu,
    ad: &AdaptedLinear,
    w: &Tensor,
    x: &Tensor,
    dy: &Tensor,
) -> Vec<Vec<f32>> {
    let (t, d_out, d_in) = (x.shape()[0], w.shape()[0], w.shape()[1]);
    let y = gpu.zeros(&[t, d_out]).unwrap();
    let dx = gpu.zeros(&[t, d_in]).unwrap();
    let merged = gpu.zeros(&[d_out, d_in]).unwrap();
    submit(gpu, &ad.forward(gpu, w, x, &y).unwrap());
    submit(gpu, &ad.backward(gpu, w, x, dy, Some(&dx), None).unwrap());
    submit(gpu, &ad.merge(gpu, w, &merged).unwrap());
    let mut out = Vec::new();
    for t in [&y, &dx, &ad.grad_a, &ad.grad_b, &merged] {
        out.push(down(gpu, t).await);
    }
    out
}

/// One adapter's forward y, dX, grad A, grad B and merged W′ with a [d_out, d_in] W0
/// stored in each of `dtypes`, against the same with W0 in f32.
async fn fused_dtype_case(
    gpu: &Gpu,
    family: GemmFamily,
    s: &AdapterSpec,
    (d_out, d_in): (usize, usize),
    seed: u64,
    dtypes: &[DType],
) {
    const T: usize = 37;
    let mut rng = Rng::new(seed);
    let a_len: usize = s.a_shape(d_in).iter().product();
    let b_len: usize = s.b_shape(d_out).iter().product();
    let w0 = rng.vec_f32(d_out * d_in, -1.0, 1.0);
    let a = rng.vec_f32(a_len, -0.5, 0.5);
    let b = rng.vec_f32(b_len, -0.5, 0.5);
    let x = up(gpu, &[T, d_in], &rng.vec_f32(T * d_in, -1.0, 1.0));
    let dy = up(gpu, &[T, d_out], &rng.vec_f32(T * d_out, -1.0, 1.0));
    for &d in dtypes {
        let what = format!("{s:?} {} {d}", family.name());
        let (w32, wlow) = weight_pair(gpu, &mut rng, d, &[d_out, d_in], &w0);
        // A fresh layer for each side: the gradients accumulate.
        let layer = || AdaptedLinear::from_host(gpu, *s, "t", d_out, d_in, &a, &b).unwrap();
        let want = fused_outputs(gpu, &layer(), &w32, &x, &dy).await;
        let got = fused_outputs(gpu, &layer(), &wlow, &x, &dy).await;
        for (i, name) in ["forward", "dx", "grad A", "grad B", "merge"]
            .iter()
            .enumerate()
        {
            assert_rel_close(&format!("{name} {what}"), &got[i], &want[i], DTYPE_TOL);
        }
    }
}

/// The embedding gather y[i] = 2·table[ids[i]] from a table stored in every dtype
/// (rows of 64, of one super-block for the K-quants) is exactly the gather from the
/// decoded table, and an out-of-range id gives a zero row.
web_test!(embedding_gathers_low_precision_rows, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let v = 50;
    let mut rng = Rng::new(9);
    let ids: Vec<u32> = vec![0, 49, 7, 7, 31, 60];
    let tid = gpu.upload_u32(&[ids.len()], &ids).unwrap();
    let cases = LOW
        .iter()
        .map(|&d| (d, 64))
        .chain(K_QUANTS.map(|d| (d, 256)));
    for (d, c) in cases {
        let table = rng.vec_f32(v * c, -1.0, 1.0);
        let (t32, t) = weight_pair(&gpu, &mut rng, d, &[v, c], &table);
        let y = gpu.zeros(&[ids.len(), c]).unwrap();
        let ds = boha::ops::embedding::forward(&gpu, &t, &tid, &y, 2.0).unwrap();
        let got = run(&gpu, &ds, &y).await;
        let r = down(&gpu, &t32).await;
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
        assert_eq!(got, want, "{d}");
    }
});

/// A kernel that does not read a frozen weight refuses a low-precision tensor with one
/// line naming the binding and both dtypes, instead of reading its bits as f32; and a
/// low-precision tensor is not written in place.
web_test!(a_low_precision_tensor_elsewhere_is_refused, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let a = gpu.upload_as(&[4, 8], &[0.5; 32], DType::F16).unwrap();
    let b = up(&gpu, &[8, 4], &[0.5; 32]);
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
});
