//! The remaining kernel families against their CPU references, written once for the
//! browser and the native build (see tests/web/common.rs):
//!
//! - the GEMM's training products, transposes with alpha/beta and k = 0, strided and
//!   padded batches, operands bound in ranges, and the decode GEMV (each kernel, its
//!   automatic choice, batches, ranges and the loop budget's cut of a long k);
//! - the Khatri–Rao pair products (ABBA's and LoHa's factors), forward and accumulating
//!   backward, bound in ranges and as views of shared buffers;
//! - the fused adapter kernels of every kind (BoHA, the additive control, HiRA, LoRA,
//!   ABBA, LoHa): forward and dX on both families, the register family's cached-factor
//!   and rank-chunk kernels and their fallback, the adapted layer, the block-grid merge
//!   and its exact unmerge;
//! - the fused adapter gradients against a dense f64 computation, for every kind, grid
//!   and family, the vec4 kernel and its fallback, long token counts and tokens bound in
//!   ranges;
//! - frozen weights stored as f16, bf16, q8_0, q4_0, q4_1, q4_k, q5_k and q6_k, decoded in
//!   the tile loads of every GEMM tile, the GEMV, the fused adapter kernels, the merge and
//!   the embedding gather, against the same kernels on f32 weights holding the decoded
//!   values.
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

use common::{down, run, submit};

use boha::adapters::grad::{adapter_grads, scratch_bytes, GradScratch};
use boha::adapters::khatri_rao::{self, reference as kr_ref};
use boha::adapters::layer::AdaptedLinear;
use boha::adapters::reference as cpu;
use boha::adapters::{fused, merge, AdapterSpec, Method, Update};
use boha::gpu::{DType, GemmFamily, GemmTile, Gpu, GpuOptions, Recorder, Tensor};
use boha::loaders::gguf::{dequantize, GgmlType};
use boha::ops::gemm::{self, gemm_tile, reference, Gemm, GemvKernel, Path};
use boha::rng::Rng;
use common::{assert_rel_close, f32s, f64s};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const FAMILIES: [GemmFamily; 2] = [GemmFamily::Register, GemmFamily::Shared];

fn up(gpu: &Gpu, shape: &[usize], v: &[f32]) -> Tensor {
    gpu.upload(shape, v).unwrap()
}

/// The device with the GEMM family forced to `family`.
async fn family_gpu(family: GemmFamily) -> Option<Gpu> {
    common::gpu_with(&GpuOptions {
        gemm_family: Some(family),
        ..Default::default()
    })
    .await
}

/// The device with a storage-binding limit of `bytes`, so that larger tensors are bound
/// in ranges.
async fn limited_gpu(bytes: u64) -> Option<Gpu> {
    common::gpu_with(&GpuOptions {
        max_binding_override: Some(bytes),
        ..Default::default()
    })
    .await
}

// ---------------------------------------------------------------- GEMM and GEMV

/// f32 sums of up to ~130 products of values in [-1, 1) against f64.
const TOL: f32 = 2e-5;

/// Runs `g` with `family` on random A, B and C (C = NaN when beta = 0, which must not be
/// read) and compares with the reference. Returns the number of dispatches.
async fn check_gemm(gpu: &Gpu, family: GemmFamily, g: &Gemm, seed: u64) -> usize {
    check_path(gpu, family, Path::Auto, g, seed, TOL)
        .await
        .len()
}

/// [`check_gemm`] on the kernels `path` picks, within `tol`; returns the dispatches'
/// entry points.
async fn check_path(
    gpu: &Gpu,
    family: GemmFamily,
    path: Path,
    g: &Gemm,
    seed: u64,
    tol: f32,
) -> Vec<&'static str> {
    let mut rng = Rng::new(seed);
    let len = |stride: usize, size: usize| (g.batch - 1) * stride + size;
    let a = rng.vec_f32(len(g.stride_a, g.m * g.k), -1.0, 1.0);
    let b = rng.vec_f32(len(g.stride_b, g.k * g.n), -1.0, 1.0);
    let c = if g.beta == 0.0 {
        vec![f32::NAN; len(g.stride_c, g.m * g.n)]
    } else {
        rng.vec_f32(len(g.stride_c, g.m * g.n), -1.0, 1.0)
    };
    let (ta, tb, tc) = (
        up(gpu, &[a.len()], &a),
        up(gpu, &[b.len()], &b),
        up(gpu, &[c.len()], &c),
    );
    let ds = gemm::gemm_path(gpu, family, path, g, &ta, &tb, &tc).unwrap();
    let got = run(gpu, &ds, &tc).await;
    assert_rel_close(
        &format!("{family:?} {path:?} {g:?}"),
        &got,
        &reference::gemm(g, &a, &b, &c),
        tol,
    );
    ds.iter().map(|d| d.label()).collect()
}

/// The three training products through their public entry points, y = x·Wᵀ + β·y,
/// dX = dY·W + β·dX and dW = dYᵀ·X + β·dW, with β = 0 (on NaN) and 1. Returns the
/// number of dispatches.
async fn check_products(gpu: &Gpu, m: usize, n: usize, k: usize, seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    let x = rng.vec_f32(m * k, -1.0, 1.0);
    let w = rng.vec_f32(n * k, -1.0, 1.0);
    let dy = rng.vec_f32(m * n, -1.0, 1.0);
    let (tx, tw, tdy) = (
        up(gpu, &[m, k], &x),
        up(gpu, &[n, k], &w),
        up(gpu, &[m, n], &dy),
    );
    let mut dispatches = 0;
    for beta in [0.0f32, 1.0] {
        let init = |len: usize, seed: u64| {
            if beta == 0.0 {
                vec![f32::NAN; len]
            } else {
                Rng::new(seed).vec_f32(len, -1.0, 1.0)
            }
        };
        let what = format!("m {m} n {n} k {k} beta {beta}");

        let y0 = init(m * n, seed + 1);
        let y = up(gpu, &[m, n], &y0);
        let ds = gemm::matmul_nt(gpu, &tx, &tw, &y, beta).unwrap();
        dispatches += ds.len();
        let want = reference::matmul_nt(&x, &w, &y0, m, n, k, beta);
        assert_rel_close(&format!("nt {what}"), &run(gpu, &ds, &y).await, &want, TOL);

        let dx0 = init(m * k, seed + 2);
        let dx = up(gpu, &[m, k], &dx0);
        let ds = gemm::matmul_nn(gpu, &tdy, &tw, &dx, beta).unwrap();
        dispatches += ds.len();
        let want = reference::matmul_nn(&dy, &w, &dx0, m, n, k, beta);
        assert_rel_close(&format!("nn {what}"), &run(gpu, &ds, &dx).await, &want, TOL);

        let dw0 = init(n * k, seed + 3);
        let dw = up(gpu, &[n, k], &dw0);
        let ds = gemm::matmul_tn(gpu, &tdy, &tx, &dw, beta).unwrap();
        dispatches += ds.len();
        let want = reference::matmul_tn(&dy, &x, &dw0, m, n, k, beta);
        assert_rel_close(&format!("tn {what}"), &run(gpu, &ds, &dw).await, &want, TOL);
    }
    dispatches
}

/// (m, n, k): shapes no tile divides, degenerate ones, multiples of 4 (vec4 path), and an
/// odd token count M, which dW = dYᵀ·X takes through the vec4 path's masked last k-step.
const SHAPES: [(usize, usize, usize); 7] = [
    (37, 45, 65),
    (1, 7, 3),
    (130, 67, 129),
    (1, 1, 1),
    (20, 36, 44),
    (64, 48, 32),
    (37, 20, 36),
];

/// The three training products through the public entry points on both kernel families,
/// at every shape of [`SHAPES`].
web_test!(products_match_reference_with_both_families, {
    for family in FAMILIES {
        let Some(gpu) = family_gpu(family).await else {
            return;
        };
        for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
            check_products(&gpu, m, n, k, 10 + i as u64).await;
        }
    }
});

/// C = α·op(A)·op(B) + β·C for every transpose pair, with α, β = (0.7, −1.3) and (−2, 0)
/// (C = NaN, never read), on both families, including k = 0 (C = β·C).
web_test!(gemm_transposes_alpha_beta_and_k_zero, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    for family in FAMILIES {
        for (i, &(m, n, k)) in [(37, 45, 65), (20, 36, 44), (5, 3, 0)].iter().enumerate() {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                for (alpha, beta) in [(0.7f32, -1.3f32), (-2.0, 0.0)] {
                    let g = Gemm {
                        trans_a: ta,
                        trans_b: tb,
                        alpha,
                        beta,
                        ..Gemm::new(m, n, k)
                    };
                    check_gemm(&gpu, family, &g, 100 + i as u64).await;
                }
            }
        }
    }
});

/// Strided batches of three products on both families: tight strides, a B shared by
/// every entry (stride 0), and padded strides of A and C.
web_test!(gemm_batched_products_with_shared_and_padded_operands, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    for family in FAMILIES {
        for &(m, n, k) in &[(7, 9, 13), (8, 12, 16)] {
            let tight = Gemm {
                batch: 3,
                trans_b: true,
                alpha: 1.5,
                beta: 0.5,
                ..Gemm::new(m, n, k)
            };
            check_gemm(&gpu, family, &tight, 200).await;
            let shared_b = Gemm {
                stride_b: 0,
                beta: 0.0,
                trans_b: false,
                ..tight.clone()
            };
            check_gemm(&gpu, family, &shared_b, 201).await;
            let padded = Gemm {
                trans_a: true,
                stride_a: m * k + 4,
                stride_c: m * n + 8,
                ..tight.clone()
            };
            check_gemm(&gpu, family, &padded, 202).await;
        }
    }
});

/// Under a small binding limit the three products and a batch of nine are cut into more
/// dispatches (operands bound in ranges) and still match, on both families.
web_test!(gemm_large_operands_are_bound_in_ranges, {
    // 130 × 67 × 129 under 36 KiB, not 8 KiB: WebGPU aligns binding offsets to 256 bytes,
    // so ranges of X's and dX's 516-byte rows (k = 129) start every 64 rows (33 024
    // bytes), which 8 KiB cannot bind (lavapipe's finer alignment can); 36 KiB still cuts
    // those operands (67 KB) in three.
    for (limit, (m, n, k)) in [(36 << 10, (130, 67, 129)), (8 << 10, (64, 40, 96))] {
        for family in FAMILIES {
            let opts = GpuOptions {
                max_binding_override: Some(limit),
                gemm_family: Some(family),
                ..Default::default()
            };
            let Some(gpu) = common::gpu_with(&opts).await else {
                return;
            };
            // 6 products (3 × 2 betas); more dispatches means operands were cut.
            let n_dispatch = check_products(&gpu, m, n, k, 300).await;
            assert!(
                n_dispatch > 6 * 2,
                "{family:?} {m}x{n}x{k} within {limit} bytes: {n_dispatch} dispatches"
            );
            if limit == 8 << 10 {
                let g = Gemm {
                    batch: 9,
                    alpha: 0.5,
                    beta: 2.0,
                    ..Gemm::new(12, 20, 16)
                };
                assert!(check_gemm(&gpu, family, &g, 301).await > 1);
            }
        }
    }
});

/// Operands whose shapes disagree, or a B too short for the product, are errors.
web_test!(gemm_bad_shapes_are_errors, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let x = gpu.zeros(&[4, 5]).unwrap();
    let w = gpu.zeros(&[3, 6]).unwrap();
    let y = gpu.zeros(&[4, 3]).unwrap();
    assert!(gemm::matmul_nt(&gpu, &x, &w, &y, 0.0).is_err());
    let small = gpu.zeros(&[10]).unwrap();
    assert!(gemm::gemm(&gpu, &Gemm::new(4, 3, 5), &x, &small, &y).is_err());
});

const GEMV_KERNELS: [GemvKernel; 2] = [GemvKernel::Rows, GemvKernel::Split];

/// Y = α·X·Wᵀ + β·Y for m = 1..8 on both GEMV kernels: n and m that no block divides,
/// β = 0 (Y = NaN, never read) and β ≠ 0, and every dispatch a GEMV.
web_test!(gemv_matches_reference_for_small_m, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    for kernel in GEMV_KERNELS {
        for (i, m) in (1..=8).enumerate() {
            for &(n, k) in &[(37, 64), (130, 36), (5, 4)] {
                for (alpha, beta) in [(1.0f32, 0.0f32), (0.7, -1.3)] {
                    let g = Gemm {
                        trans_b: true,
                        alpha,
                        beta,
                        ..Gemm::new(m, n, k)
                    };
                    let names = check_path(
                        &gpu,
                        gpu.gemm_family(),
                        Path::Gemv(kernel),
                        &g,
                        400 + i as u64,
                        TOL,
                    )
                    .await;
                    assert!(
                        names.iter().all(|n| n.starts_with("gemv")),
                        "{kernel:?} {g:?}: {names:?}"
                    );
                }
            }
        }
    }
});

/// The public entry points choose a GEMV for small m (NT only) and the tiles otherwise;
/// shapes GEMV cannot load as vec4 (k % 4 != 0) stay on the tiles and stay correct.
web_test!(small_m_products_choose_gemv_automatically, {
    for family in FAMILIES {
        let Some(gpu) = family_gpu(family).await else {
            return;
        };
        for (i, &(m, n, k)) in [(1, 37, 64), (4, 45, 36), (8, 20, 16), (3, 9, 7)]
            .iter()
            .enumerate()
        {
            check_products(&gpu, m, n, k, 500 + i as u64).await;
            let x = gpu.zeros(&[m, k]).unwrap();
            let w = gpu.zeros(&[n, k]).unwrap();
            let y = gpu.zeros(&[m, n]).unwrap();
            let ds = gemm::matmul_nt(&gpu, &x, &w, &y, 0.0).unwrap();
            let gemv = ds.iter().all(|d| d.label().starts_with("gemv"));
            assert_eq!(gemv, k % 4 == 0, "{family:?} {m}x{n}x{k}");
        }
        let x = gpu.zeros(&[9, 16]).unwrap();
        let w = gpu.zeros(&[20, 16]).unwrap();
        let y = gpu.zeros(&[9, 20]).unwrap();
        let ds = gemm::matmul_nt(&gpu, &x, &w, &y, 0.0).unwrap();
        assert!(ds.iter().all(|d| !d.label().starts_with("gemv")));
    }
});

/// Batched GEMV on both kernels: tight strides, a W shared by every entry, padded
/// strides.
web_test!(gemv_batched_products, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    for kernel in GEMV_KERNELS {
        let tight = Gemm {
            batch: 3,
            trans_b: true,
            alpha: 1.5,
            beta: 0.5,
            ..Gemm::new(2, 9, 12)
        };
        let shared_w = Gemm {
            stride_b: 0,
            beta: 0.0,
            ..tight.clone()
        };
        let padded = Gemm {
            stride_a: 2 * 12 + 4,
            stride_b: 9 * 12 + 8,
            stride_c: 2 * 9 + 3,
            ..tight.clone()
        };
        for (i, g) in [tight, shared_w, padded].iter().enumerate() {
            let names = check_path(
                &gpu,
                gpu.gemm_family(),
                Path::Gemv(kernel),
                g,
                600 + i as u64,
                TOL,
            )
            .await;
            assert!(names.iter().all(|n| n.starts_with("gemv")), "{names:?}");
        }
    }
});

/// A W over the (forced, 8 KiB) binding limit is bound in row ranges, as is a Y whose m
/// rows do not fit; with β ≠ 0 and on both kernels.
web_test!(gemv_binds_large_operands_in_ranges, {
    let Some(gpu) = limited_gpu(8192).await else {
        return;
    };
    for kernel in GEMV_KERNELS {
        // W: 300 × 64 floats (75 KiB); Y: 6 × 400 floats (9.4 KiB) with k = 8.
        for (i, &(m, n, k)) in [(1, 300, 64), (5, 300, 64), (6, 400, 8)].iter().enumerate() {
            let g = Gemm {
                trans_b: true,
                alpha: 0.5,
                beta: 2.0,
                ..Gemm::new(m, n, k)
            };
            let names = check_path(
                &gpu,
                gpu.gemm_family(),
                Path::Gemv(kernel),
                &g,
                700 + i as u64,
                TOL,
            )
            .await;
            assert!(names.len() > 1, "{kernel:?} {g:?}: one dispatch");
            assert!(names.iter().all(|n| n.starts_with("gemv")), "{names:?}");
        }
    }
});

/// A k long enough that one invocation's loop would pass llvmpipe's loop budget is cut
/// into dispatches that accumulate; elsewhere it is one dispatch.
web_test!(gemv_cuts_long_k_for_the_loop_budget, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let g = Gemm {
        trans_b: true,
        alpha: 1.0,
        beta: 0.5,
        ..Gemm::new(1, 5, 140_000)
    };
    // f32 sums of 140 000 products against f64.
    let names = check_path(
        &gpu,
        gpu.gemm_family(),
        Path::Gemv(GemvKernel::Rows),
        &g,
        800,
        1e-4,
    )
    .await;
    // Only a profile with a loop budget (llvmpipe's) cuts k.
    if gpu.profile().loop_budget.is_some() {
        assert_eq!(names, ["gemv_rows", "gemv_rows"]);
    } else {
        assert_eq!(names, ["gemv_rows"]);
    }
});

// ---------------------------------------------------------------- Khatri–Rao

/// (h, d): ranks per pair and the factor's long side.
const KR_SHAPES: &[(usize, usize)] = &[(1, 7), (2, 12), (3, 33), (5, 7), (5, 33), (8, 12)];

/// The forward and accumulating backward of one side (`b_side`: pair_b, else pair_a) at
/// h, d: pair_b maps B = [d, 2h] to the row-wise Khatri–Rao product of its halves,
/// [d, h²] with (B₁ ⊙ B₂)[i, j·h + k] = B₁[i, j]·B₂[i, k] (pair_a the same along
/// columns), and the backward adds the product's gradient through it. Recording the
/// backward twice adds twice.
async fn check_side(gpu: &Gpu, rng: &mut Rng, b_side: bool, h: usize, d: usize) {
    let what = format!("{} h {h} d {d}", if b_side { "pair_b" } else { "pair_a" });
    let (x_shape, kr_shape) = if b_side {
        ([d, 2 * h], [d, h * h])
    } else {
        ([2 * h, d], [h * h, d])
    };
    let x = rng.vec_f32(2 * h * d, -1.5, 1.5);
    let dkr = rng.vec_f32(h * h * d, -1.0, 1.0);
    let start = rng.vec_f32(2 * h * d, -0.5, 0.5);

    let mut kr_want = vec![0.0; h * h * d];
    let mut grad_want = f64s(&start);
    if b_side {
        kr_ref::pair_b(&f64s(&x), h, d, &mut kr_want).unwrap();
        kr_ref::pair_b_backward(&f64s(&x), &f64s(&dkr), h, d, &mut grad_want).unwrap();
    } else {
        kr_ref::pair_a(&f64s(&x), h, d, &mut kr_want).unwrap();
        kr_ref::pair_a_backward(&f64s(&x), &f64s(&dkr), h, d, &mut grad_want).unwrap();
    }

    let xt = up(gpu, &x_shape, &x);
    // Garbage in the output: the forward overwrites it.
    let krt = up(gpu, &kr_shape, &vec![7.0; h * h * d]);
    let dkrt = up(gpu, &kr_shape, &dkr);
    let gt = up(gpu, &x_shape, &start);
    let (fwd, bwd) = if b_side {
        (
            khatri_rao::pair_b(gpu, &xt, h, d, &krt).unwrap(),
            khatri_rao::pair_b_backward(gpu, &xt, &dkrt, h, d, &gt).unwrap(),
        )
    } else {
        (
            khatri_rao::pair_a(gpu, &xt, h, d, &krt).unwrap(),
            khatri_rao::pair_a_backward(gpu, &xt, &dkrt, h, d, &gt).unwrap(),
        )
    };
    submit(gpu, &fwd);
    submit(gpu, &bwd);
    assert_rel_close(
        &format!("{what} forward"),
        &down(gpu, &krt).await,
        &f32s(&kr_want),
        1e-6,
    );
    assert_rel_close(
        &format!("{what} backward"),
        &down(gpu, &gt).await,
        &f32s(&grad_want),
        1e-5,
    );

    submit(gpu, &bwd);
    let twice: Vec<f64> = grad_want
        .iter()
        .zip(&start)
        .map(|(g, &s)| 2.0 * g - s as f64)
        .collect();
    assert_rel_close(
        &format!("{what} backward twice"),
        &down(gpu, &gt).await,
        &f32s(&twice),
        1e-5,
    );
}

/// pair_b (the B side's row-wise product) forward and backward at every shape of
/// [`KR_SHAPES`].
web_test!(pair_b_matches_reference, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let mut rng = Rng::new(1);
    for &(h, d) in KR_SHAPES {
        check_side(&gpu, &mut rng, true, h, d).await;
    }
});

/// pair_a (the A side's column-wise product) forward and backward at every shape of
/// [`KR_SHAPES`].
web_test!(pair_a_matches_reference, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let mut rng = Rng::new(2);
    for &(h, d) in KR_SHAPES {
        check_side(&gpu, &mut rng, false, h, d).await;
    }
});

/// Products over a 2 KiB binding limit are bound in ranges, one dispatch each; the
/// backward adds every range's terms.
web_test!(
    khatri_rao_products_over_the_binding_limit_are_bound_in_ranges,
    {
        let Some(gpu) = limited_gpu(2048).await else {
            return;
        };
        let mut rng = Rng::new(4);
        for &(h, d) in &[(5usize, 33usize), (8, 12), (3, 61)] {
            let n = h * h * d;
            let xt = gpu.zeros(&[2 * h * d]).unwrap();
            let krt = gpu.zeros(&[n]).unwrap();
            let gt = gpu.zeros(&[2 * h * d]).unwrap();
            assert!(khatri_rao::pair_b(&gpu, &xt, h, d, &krt).unwrap().len() > 1);
            assert!(
                khatri_rao::pair_a_backward(&gpu, &xt, &krt, h, d, &gt)
                    .unwrap()
                    .len()
                    > 1
            );
            check_side(&gpu, &mut rng, true, h, d).await;
            check_side(&gpu, &mut rng, false, h, d).await;
        }
    }
);

/// Factors and products handed in as reshaped views at offsets of shared buffers (as a
/// trainer hands out scratch): the parameters in one buffer, the products and their
/// gradients in another, the factor gradients in a third; the padding between the views
/// stays untouched.
web_test!(khatri_rao_views_of_shared_buffers, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let mut rng = Rng::new(3);
    let (h, d_out, d_in) = (3usize, 12usize, 33usize);
    // Aligned element offsets for views that kernels bind.
    let step = (gpu.binding_offset_align() as usize / 4).max(1);
    let pad = |n: usize| n.div_ceil(step) * step;
    let (nb, na) = (d_out * 2 * h, 2 * h * d_in);
    let (nbk, nak) = (d_out * h * h, h * h * d_in);

    let b = rng.vec_f32(nb, -1.0, 1.0);
    let a = rng.vec_f32(na, -1.0, 1.0);
    let params = gpu.zeros(&[pad(nb) + na]).unwrap();
    let mut host = vec![0.0; pad(nb) + na];
    host[..nb].copy_from_slice(&b);
    host[pad(nb)..].copy_from_slice(&a);
    gpu.write(&params, &host).unwrap();
    let bt = params
        .view(0, nb)
        .unwrap()
        .reshape(&[d_out, 2 * h])
        .unwrap();
    let at = params
        .view(pad(nb), na)
        .unwrap()
        .reshape(&[2 * h, d_in])
        .unwrap();

    // Products [b_kr | a_kr | d_b_kr | d_a_kr] in one scratch buffer.
    let offs = [0, pad(nbk), pad(nbk) + pad(nak), 2 * pad(nbk) + pad(nak)];
    let scratch = gpu.zeros(&[offs[3] + pad(nak)]).unwrap();
    let b_kr = scratch.view(offs[0], nbk).unwrap();
    let a_kr = scratch.view(offs[1], nak).unwrap();
    let d_b_kr = scratch.view(offs[2], nbk).unwrap();
    let d_a_kr = scratch.view(offs[3], nak).unwrap();
    let dbk = rng.vec_f32(nbk, -1.0, 1.0);
    let dak = rng.vec_f32(nak, -1.0, 1.0);
    gpu.write(&d_b_kr, &dbk).unwrap();
    gpu.write(&d_a_kr, &dak).unwrap();

    let grads = gpu.zeros(&[pad(nb) + na]).unwrap();
    let gb = grads.view(0, nb).unwrap();
    let ga = grads.view(pad(nb), na).unwrap();
    let (sb, sa) = (rng.vec_f32(nb, -1.0, 1.0), rng.vec_f32(na, -1.0, 1.0));
    gpu.write(&gb, &sb).unwrap();
    gpu.write(&ga, &sa).unwrap();

    let mut ds = Vec::new();
    ds.extend(khatri_rao::pair_b(&gpu, &bt, h, d_out, &b_kr).unwrap());
    ds.extend(khatri_rao::pair_a(&gpu, &at, h, d_in, &a_kr).unwrap());
    ds.extend(khatri_rao::pair_b_backward(&gpu, &bt, &d_b_kr, h, d_out, &gb).unwrap());
    ds.extend(khatri_rao::pair_a_backward(&gpu, &at, &d_a_kr, h, d_in, &ga).unwrap());
    submit(&gpu, &ds);

    let mut want_bk = vec![0.0; nbk];
    let mut want_ak = vec![0.0; nak];
    let mut want_gb = f64s(&sb);
    let mut want_ga = f64s(&sa);
    kr_ref::pair_b(&f64s(&b), h, d_out, &mut want_bk).unwrap();
    kr_ref::pair_a(&f64s(&a), h, d_in, &mut want_ak).unwrap();
    kr_ref::pair_b_backward(&f64s(&b), &f64s(&dbk), h, d_out, &mut want_gb).unwrap();
    kr_ref::pair_a_backward(&f64s(&a), &f64s(&dak), h, d_in, &mut want_ga).unwrap();
    let got = down(&gpu, &b_kr).await;
    assert_rel_close("b_kr", &got, &f32s(&want_bk), 1e-6);
    let got = down(&gpu, &a_kr).await;
    assert_rel_close("a_kr", &got, &f32s(&want_ak), 1e-6);
    let got = down(&gpu, &gb).await;
    assert_rel_close("grad_b", &got, &f32s(&want_gb), 1e-5);
    let got = down(&gpu, &ga).await;
    assert_rel_close("grad_a", &got, &f32s(&want_ga), 1e-5);
    let all = down(&gpu, &scratch).await;
    assert!(all[nbk..offs[1]].iter().all(|&v| v == 0.0));
    let g = down(&gpu, &grads).await;
    assert!(g[nb..pad(nb)].iter().all(|&v| v == 0.0));
});

/// Wrong product lengths, a rank that does not fit the factor, h = 0, and a written
/// tensor sharing a buffer with one the op reads are errors (naming what is wrong);
/// the right shapes still work.
web_test!(khatri_rao_shape_errors, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let (h, d) = (2usize, 7usize);
    let b = gpu.zeros(&[d, 2 * h]).unwrap();
    let b_kr = gpu.zeros(&[d, h * h]).unwrap();
    let a = gpu.zeros(&[2 * h, d]).unwrap();
    let a_kr = gpu.zeros(&[h * h, d]).unwrap();
    let grad = gpu.zeros(&[d, 2 * h]).unwrap();
    let short = gpu.zeros(&[d * h * h - 1]).unwrap();

    let e = khatri_rao::pair_b(&gpu, &b, h, d, &short)
        .unwrap_err()
        .to_string();
    assert!(e.contains("b_kr") && e.contains("27"), "{e}");
    assert!(khatri_rao::pair_b(&gpu, &b, h, d + 1, &b_kr).is_err());
    assert!(khatri_rao::pair_a(&gpu, &a, 3, d, &a_kr).is_err());
    assert!(khatri_rao::pair_a(&gpu, &a, 0, d, &a_kr).is_err());
    assert!(khatri_rao::pair_b(&gpu, &b, 0, d, &b_kr).is_err());
    assert!(khatri_rao::pair_b_backward(&gpu, &b, &short, h, d, &grad).is_err());
    assert!(khatri_rao::pair_a_backward(&gpu, &a, &a_kr, h, d, &short).is_err());
    assert!(khatri_rao::pair_a_backward(&gpu, &a, &a_kr, 0, d, &grad).is_err());
    let both = gpu.zeros(&[2 * d * 2 * h]).unwrap();
    let x = both.view(0, d * 2 * h).unwrap();
    let g = both.view(d * 2 * h, d * 2 * h).unwrap();
    let e = khatri_rao::pair_b_backward(&gpu, &x, &b_kr, h, d, &g)
        .unwrap_err()
        .to_string();
    assert!(e.contains("share"), "{e}");
    assert!(khatri_rao::pair_b(&gpu, &b, h, d, &b_kr).is_ok());
    assert!(khatri_rao::pair_a_backward(&gpu, &a, &a_kr, h, d, &grad).is_ok());
});

// ---------------------------------------------------------------- fused adapter kernels

/// A layer no tile divides: 96 × 80 with 37 tokens.
const D_OUT: usize = 96;
const D_IN: usize = 80;
const T: usize = 37;

fn spec(method: Method, blocks: usize, block_rank: usize, scale: f32) -> AdapterSpec {
    AdapterSpec {
        method,
        blocks,
        block_rank,
        scale,
    }
}

/// The specs the fused tests run: both updates over b ∈ {1, 2, 4} × r_b ∈ {1, 2, 8}, HiRA
/// at r = 32 (past the register cache of factor rows), LoRA, a wide block rank, and the
/// pair kinds with h = 1, 4 and 8 per pair.
fn specs() -> Vec<AdapterSpec> {
    let mut v = Vec::new();
    for &b in &[1, 2, 4] {
        for &rb in &[1, 2, 8] {
            v.push(spec(Method::Boha, b, rb, 0.8));
            v.push(spec(Method::Additive, b, rb, 0.6));
        }
    }
    v.push(spec(Method::Hira, 1, 32, 1.0));
    v.push(spec(Method::Lora, 1, 4, 0.5));
    v.push(spec(Method::Boha, 2, 12, 0.3));
    v.push(spec(Method::Abba, 1, 2, 0.7));
    v.push(spec(Method::Loha, 1, 8, 0.9));
    v.push(spec(Method::Abba, 1, 16, 0.4));
    v
}

/// [`specs`] and more pair ranks (h = 2 and 3), for the tests of [`AdaptedLinear`] (which
/// picks the pair kinds' kernels) and the merge.
fn layer_specs() -> Vec<AdapterSpec> {
    let mut v = specs();
    v.push(spec(Method::Abba, 1, 4, 0.7));
    v.push(spec(Method::Loha, 1, 6, 0.9));
    // h = 8: past the point where ABBA's rule picks the fused kernels on this shape.
    v.push(spec(Method::Abba, 1, 16, 0.5));
    v
}

/// Random layer data: W0, A, B (never zero: a fresh adapter's B = 0 would hide the
/// modulation), x and dy.
struct Data {
    w0: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    x: Vec<f32>,
    dy: Vec<f32>,
}

fn data(s: &AdapterSpec, seed: u64) -> Data {
    let mut rng = Rng::new(seed);
    let a_len: usize = s.a_shape(D_IN).iter().product();
    let b_len: usize = s.b_shape(D_OUT).iter().product();
    Data {
        w0: rng.vec_f32(D_OUT * D_IN, -1.0, 1.0),
        a: rng.vec_f32(a_len, -0.5, 0.5),
        b: rng.vec_f32(b_len, -0.5, 0.5),
        x: rng.vec_f32(T * D_IN, -1.0, 1.0),
        dy: rng.vec_f32(T * D_OUT, -1.0, 1.0),
    }
}

/// The fused forward y = x·W′ᵀ (W′ = W0 ⊙ (1 + s·BA) per block for the Hadamard kinds,
/// W0 + s·BA for the additive ones) and input gradient dX = dY·W′, overwriting (on NaN)
/// and accumulating, for every kind of [`specs`] on both families.
web_test!(fused_forward_and_dx_match_reference, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    for (n, s) in specs().iter().enumerate() {
        let d = data(s, 100 + n as u64);
        let (w0, a, b) = (f64s(&d.w0), f64s(&d.a), f64s(&d.b));
        let y_ref = f32s(&cpu::forward(s, &w0, &a, &b, &f64s(&d.x), T).unwrap());
        let (dx_ref, _, _) = cpu::backward(s, &w0, &a, &b, &f64s(&d.x), &f64s(&d.dy)).unwrap();
        let dx_ref = f32s(&dx_ref);
        let tw = up(&gpu, &[D_OUT, D_IN], &d.w0);
        let ta = up(&gpu, &s.a_shape(D_IN), &d.a);
        let tb = up(&gpu, &s.b_shape(D_OUT), &d.b);
        let tx = up(&gpu, &[T, D_IN], &d.x);
        let tdy = up(&gpu, &[T, D_OUT], &d.dy);
        for fam in FAMILIES {
            let what = format!("{s:?} {}", fam.name());
            // Overwrite: y starts as NaN, which beta = 0 must never read.
            let ty = up(&gpu, &[T, D_OUT], &vec![f32::NAN; T * D_OUT]);
            let ds = fused::forward_with(fam, &gpu, s, D_OUT, D_IN, &tw, &tx, &ta, &tb, &ty, 0.0)
                .unwrap();
            let got = run(&gpu, &ds, &ty).await;
            assert_rel_close(&format!("forward {what}"), &got, &y_ref, 2e-6);

            let tdx = up(&gpu, &[T, D_IN], &vec![f32::NAN; T * D_IN]);
            let ds =
                fused::backward_dx_with(fam, &gpu, s, D_OUT, D_IN, &tw, &tdy, &ta, &tb, &tdx, 0.0)
                    .unwrap();
            let got = run(&gpu, &ds, &tdx).await;
            assert_rel_close(&format!("dx {what}"), &got, &dx_ref, 2e-6);
            let old = Rng::new(n as u64).vec_f32(T * D_IN, -3.0, 3.0);
            let tdx = up(&gpu, &[T, D_IN], &old);
            let ds =
                fused::backward_dx_with(fam, &gpu, s, D_OUT, D_IN, &tw, &tdy, &ta, &tb, &tdx, 1.0)
                    .unwrap();
            let want: Vec<f32> = old.iter().zip(&dx_ref).map(|(o, r)| o + r).collect();
            let got = run(&gpu, &ds, &tdx).await;
            assert_rel_close(&format!("dx += {what}"), &got, &want, 2e-6);
        }
    }
});

/// The fused forward and dX on a 70 × 21 layer in 7 × 7 blocks of 10 × 3 (no register
/// tile of 4 columns and no shared tile of 64 fits a block), at T = 1 and T = 65.
web_test!(fused_handles_odd_token_counts_and_wide_blocks, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let (d_out, d_in) = (70, 21);
    for &(s, t) in &[
        (spec(Method::Boha, 7, 3, 0.9), 1usize),
        (spec(Method::Additive, 7, 2, 1.1), 65),
    ] {
        let mut rng = Rng::new(t as u64);
        let w0 = rng.vec_f32(d_out * d_in, -1.0, 1.0);
        let a = rng.vec_f32(s.a_shape(d_in).iter().product(), -0.5, 0.5);
        let b = rng.vec_f32(s.b_shape(d_out).iter().product(), -0.5, 0.5);
        let x = rng.vec_f32(t * d_in, -1.0, 1.0);
        let dy = rng.vec_f32(t * d_out, -1.0, 1.0);
        let (w64, a64, b64) = (f64s(&w0), f64s(&a), f64s(&b));
        let y_ref = f32s(&cpu::forward(&s, &w64, &a64, &b64, &f64s(&x), t).unwrap());
        let dx_ref = f32s(
            &cpu::backward(&s, &w64, &a64, &b64, &f64s(&x), &f64s(&dy))
                .unwrap()
                .0,
        );
        let (tw, ta, tb) = (
            up(&gpu, &[d_out, d_in], &w0),
            up(&gpu, &[a.len()], &a),
            up(&gpu, &[b.len()], &b),
        );
        let (tx, tdy) = (up(&gpu, &[t, d_in], &x), up(&gpu, &[t, d_out], &dy));
        for fam in FAMILIES {
            let ty = gpu.zeros(&[t, d_out]).unwrap();
            let ds = fused::forward_with(fam, &gpu, &s, d_out, d_in, &tw, &tx, &ta, &tb, &ty, 0.0)
                .unwrap();
            let got = run(&gpu, &ds, &ty).await;
            assert_rel_close(&format!("forward {s:?} T={t}"), &got, &y_ref, 2e-6);
            let tdx = gpu.zeros(&[t, d_in]).unwrap();
            let ds =
                fused::backward_dx_with(fam, &gpu, &s, d_out, d_in, &tw, &tdy, &ta, &tb, &tdx, 0.0)
                    .unwrap();
            let got = run(&gpu, &ds, &tdx).await;
            assert_rel_close(&format!("dx {s:?} T={t}"), &got, &dx_ref, 2e-6);
        }
    }
});

/// The register family's cached-factor vec4 kernels (`boha_reg4c_*`: r_b ≤ 4 or 8, p
/// forward or q backward a multiple of 16) at every r_b they take, the rank-chunk ones
/// (`boha_reg4k_*`: other multiples of 4), and their fallback to the plain vec4 kernels
/// (r_b = 5; q = 40 backward), with token counts that are not multiples of 16 and more
/// than one token range (T > 256); for BoHA, HiRA, the additive control and the pair
/// kinds.
web_test!(fused_cached_factor_kernels_and_fallback, {
    let Some(gpu) = family_gpu(GemmFamily::Register).await else {
        return;
    };
    for &(s, d_out, d_in, t) in &[
        (spec(Method::Boha, 2, 3, 0.9), 64, 96, 300usize),
        (spec(Method::Hira, 1, 4, 1.0), 48, 32, 17),
        (spec(Method::Additive, 4, 2, 1.1), 128, 64, 5),
        (spec(Method::Boha, 1, 1, 0.7), 32, 16, 1),
        (spec(Method::Boha, 2, 8, 0.6), 64, 96, 270),
        // boha_reg4k_* (ranks in chunks of 4).
        (spec(Method::Hira, 1, 32, 1.0), 64, 48, 19),
        (spec(Method::Boha, 2, 12, 0.5), 64, 96, 260),
        (spec(Method::Boha, 2, 5, 0.8), 64, 96, 33),
        (spec(Method::Boha, 2, 2, 0.8), 96, 80, 40),
        // The pair kinds: cached factors (h = 4), rank chunks (h = 8), and the plain
        // vec4 kernels (h = 2, 3).
        (spec(Method::Abba, 1, 8, 0.7), 64, 48, 270),
        (spec(Method::Loha, 1, 16, 0.8), 64, 96, 33),
        (spec(Method::Abba, 1, 4, 0.6), 48, 32, 17),
        (spec(Method::Loha, 1, 6, 0.9), 64, 96, 19),
    ] {
        let mut rng = Rng::new(t as u64 + d_out as u64);
        let w0 = rng.vec_f32(d_out * d_in, -1.0, 1.0);
        let a = rng.vec_f32(s.a_shape(d_in).iter().product(), -0.5, 0.5);
        let b = rng.vec_f32(s.b_shape(d_out).iter().product(), -0.5, 0.5);
        let x = rng.vec_f32(t * d_in, -1.0, 1.0);
        let dy = rng.vec_f32(t * d_out, -1.0, 1.0);
        let (w64, a64, b64) = (f64s(&w0), f64s(&a), f64s(&b));
        let y_ref = f32s(&cpu::forward(&s, &w64, &a64, &b64, &f64s(&x), t).unwrap());
        let dx_ref = f32s(
            &cpu::backward(&s, &w64, &a64, &b64, &f64s(&x), &f64s(&dy))
                .unwrap()
                .0,
        );
        let tw = up(&gpu, &[d_out, d_in], &w0);
        let ta = up(&gpu, &s.a_shape(d_in), &a);
        let tb = up(&gpu, &s.b_shape(d_out), &b);
        let (tx, tdy) = (up(&gpu, &[t, d_in], &x), up(&gpu, &[t, d_out], &dy));
        let ty = up(&gpu, &[t, d_out], &vec![f32::NAN; t * d_out]);
        let ds = fused::forward(&gpu, &s, d_out, d_in, &tw, &tx, &ta, &tb, &ty, 0.0).unwrap();
        let what = format!("{s:?} {d_out}x{d_in} T={t}");
        let got = run(&gpu, &ds, &ty).await;
        assert_rel_close(&format!("forward {what}"), &got, &y_ref, 2e-6);
        let old = rng.vec_f32(t * d_in, -3.0, 3.0);
        let tdx = up(&gpu, &[t, d_in], &old);
        let ds = fused::backward_dx(&gpu, &s, d_out, d_in, &tw, &tdy, &ta, &tb, &tdx, 1.0).unwrap();
        let want: Vec<f32> = old.iter().zip(&dx_ref).map(|(o, r)| o + r).collect();
        let got = run(&gpu, &ds, &tdx).await;
        assert_rel_close(&format!("dx += {what}"), &got, &want, 2e-6);
    }
});

/// [`AdaptedLinear`] (which picks each kind's kernels, the Khatri–Rao path included) for
/// every spec of [`layer_specs`] on both families: the forward, and the backward
/// accumulating dX, dA and dB onto earlier contents; then without dX, with the partial
/// slots from one scratch every spec shares (each leaves it cleared).
web_test!(adapted_linear_forward_and_backward_match_reference, {
    for fam in FAMILIES {
        let Some(gpu) = family_gpu(fam).await else {
            return;
        };
        let all = layer_specs();
        let shared = GradScratch::new(&gpu, all.iter().map(|s| (s, T, D_OUT, D_IN))).unwrap();
        for (n, s) in all.iter().enumerate() {
            let d = data(s, 200 + n as u64);
            let layer =
                AdaptedLinear::from_host(&gpu, *s, "t.proj", D_OUT, D_IN, &d.a, &d.b).unwrap();
            assert_eq!(layer.param_count(), d.a.len() + d.b.len());
            let what = format!("{s:?} {}", fam.name());
            let (w0, a, b, x) = (f64s(&d.w0), f64s(&d.a), f64s(&d.b), f64s(&d.x));
            let y_ref = f32s(&cpu::forward(s, &w0, &a, &b, &x, T).unwrap());
            let (dx_ref, da_ref, db_ref) = cpu::backward(s, &w0, &a, &b, &x, &f64s(&d.dy)).unwrap();
            let tw = up(&gpu, &[D_OUT, D_IN], &d.w0);
            let tx = up(&gpu, &[T, D_IN], &d.x);
            let tdy = up(&gpu, &[T, D_OUT], &d.dy);
            let ty = up(&gpu, &[T, D_OUT], &vec![f32::NAN; T * D_OUT]);
            let got = run(&gpu, &layer.forward(&gpu, &tw, &tx, &ty).unwrap(), &ty).await;
            assert_rel_close(&format!("layer forward {what}"), &got, &y_ref, 2e-6);

            let mut rng = Rng::new(300 + n as u64);
            let old_dx = rng.vec_f32(T * D_IN, -2.0, 2.0);
            let old_ga = rng.vec_f32(d.a.len(), -2.0, 2.0);
            let old_gb = rng.vec_f32(d.b.len(), -2.0, 2.0);
            let tdx = up(&gpu, &[T, D_IN], &old_dx);
            gpu.write(&layer.grad_a, &old_ga).unwrap();
            gpu.write(&layer.grad_b, &old_gb).unwrap();
            submit(
                &gpu,
                &layer
                    .backward(&gpu, &tw, &tx, &tdy, Some(&tdx), None)
                    .unwrap(),
            );
            let plus = |old: &[f32], r: &[f64]| -> Vec<f32> {
                old.iter().zip(r).map(|(o, r)| o + *r as f32).collect()
            };
            let got = down(&gpu, &tdx).await;
            assert_rel_close(
                &format!("layer dx {what}"),
                &got,
                &plus(&old_dx, &dx_ref),
                2e-6,
            );
            let got = down(&gpu, &layer.grad_a).await;
            assert_rel_close(
                &format!("layer dA {what}"),
                &got,
                &plus(&old_ga, &da_ref),
                1e-5,
            );
            let got = down(&gpu, &layer.grad_b).await;
            assert_rel_close(
                &format!("layer dB {what}"),
                &got,
                &plus(&old_gb, &db_ref),
                1e-5,
            );

            gpu.write(&layer.grad_a, &old_ga).unwrap();
            gpu.write(&layer.grad_b, &old_gb).unwrap();
            let ds = layer
                .backward(&gpu, &tw, &tx, &tdy, None, Some(&shared))
                .unwrap();
            let got = run(&gpu, &ds, &layer.grad_a).await;
            assert_rel_close(
                &format!("layer dA (no dx) {what}"),
                &got,
                &plus(&old_ga, &da_ref),
                1e-5,
            );
        }
    }
});

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// The block-grid merge W′ (into a NaN-filled buffer) against the reference for every
/// spec of [`layer_specs`]; the plain product x·W′ᵀ gives the adapted layer's output;
/// and the unmerge restores the kept W0 bit for bit.
web_test!(merge_matches_reference_and_unmerge_restores_w0_exactly, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    for (n, s) in layer_specs().iter().enumerate() {
        let d = data(s, 400 + n as u64);
        let layer = AdaptedLinear::from_host(&gpu, *s, "t.proj", D_OUT, D_IN, &d.a, &d.b).unwrap();
        let (w0, a, b) = (f64s(&d.w0), f64s(&d.a), f64s(&d.b));
        let want = f32s(&cpu::merged_weight(s, &w0, &a, &b).unwrap());
        let tw = up(&gpu, &[D_OUT, D_IN], &d.w0);
        let merged = up(&gpu, &[D_OUT, D_IN], &vec![f32::NAN; D_OUT * D_IN]);
        let got = run(&gpu, &layer.merge(&gpu, &tw, &merged).unwrap(), &merged).await;
        assert_rel_close(&format!("merge {s:?}"), &got, &want, 1e-6);
        let tx = up(&gpu, &[T, D_IN], &d.x);
        let (y_on, y_merged) = (
            gpu.zeros(&[T, D_OUT]).unwrap(),
            gpu.zeros(&[T, D_OUT]).unwrap(),
        );
        submit(&gpu, &layer.forward(&gpu, &tw, &tx, &y_on).unwrap());
        let plain = gemm::matmul_nt(&gpu, &tx, &merged, &y_merged, 0.0).unwrap();
        let got = run(&gpu, &plain, &y_merged).await;
        let y_on = down(&gpu, &y_on).await;
        assert_rel_close(&format!("merged output {s:?}"), &got, &y_on, 1e-5);
        let mut rec = Recorder::new();
        merge::unmerge(&mut rec, &tw, &merged).unwrap();
        gpu.run(&rec).unwrap();
        assert_eq!(
            bits(&down(&gpu, &merged).await),
            bits(&d.w0),
            "unmerge {s:?}"
        );
    }
});

/// A grid that does not divide the layer is refused naming the layer, its shape and the
/// grids that fit; fresh adapters of every kind are exact no-ops (B = 0; ABBA from W0's
/// SVD and LoHa with A2 = 0 start at ΔW = 0, so their merge is W0); wrong shapes of W0,
/// y or the host factors are errors.
web_test!(undivisible_shapes_and_bad_lengths_are_clear_errors, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let s = spec(Method::Boha, 4, 2, 1.0);
    let e = AdaptedLinear::new(
        &gpu,
        s,
        "layers.3.mlp.up_proj",
        &gpu.zeros(&[90, 60]).unwrap(),
        1,
    )
    .err()
    .unwrap()
    .to_string();
    assert!(
        e.contains("layers.3.mlp.up_proj") && e.contains("90×60") && e.contains("1, 2, 3, 5, 6"),
        "{e}"
    );
    let layer = AdaptedLinear::new(&gpu, s, "t", &gpu.zeros(&[D_OUT, D_IN]).unwrap(), 1).unwrap();
    assert!(down(&gpu, &layer.b).await.iter().all(|&v| v == 0.0));
    let mut rng = Rng::new(77);
    let w0 = rng.vec_f32(D_OUT * D_IN, -1.0, 1.0);
    let tw = up(&gpu, &[D_OUT, D_IN], &w0);
    for m in Method::ALL {
        let s = AdapterSpec::from_options(m, None, Some(8), None, None).unwrap();
        // ABBA's SVD reads W0 back, which the browser cannot block on.
        let fresh = AdaptedLinear::new_async(&gpu, s, "t", &tw, 3)
            .await
            .unwrap();
        let merged = gpu.zeros(&[D_OUT, D_IN]).unwrap();
        let got = run(&gpu, &fresh.merge(&gpu, &tw, &merged).unwrap(), &merged).await;
        assert_eq!(got, w0, "{m:?} starts at ΔW = 0");
    }
    let w_bad = gpu.zeros(&[D_OUT, D_IN + 1]).unwrap();
    let x = gpu.zeros(&[T, D_IN]).unwrap();
    let y = gpu.zeros(&[T, D_OUT]).unwrap();
    let e = layer
        .forward(&gpu, &w_bad, &x, &y)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("W0"), "{e}");
    let w = gpu.zeros(&[D_OUT, D_IN]).unwrap();
    let y_bad = gpu.zeros(&[T + 1, D_OUT]).unwrap();
    assert!(layer.forward(&gpu, &w, &x, &y_bad).is_err());
    assert!(AdaptedLinear::from_host(&gpu, s, "t", D_OUT, D_IN, &[1.0; 3], &[1.0; 3]).is_err());
});

// ---------------------------------------------------------------- adapter gradients

/// The dense f64 reference of the factor gradients, (dA, dB) in the [b, b, r_b, q] /
/// [b, b, p, r_b] layouts: Ĝ = dYᵀX formed in full, H = s·W0 ⊙ Ĝ (s·Ĝ for the additive
/// update), then per block dB = H·Aᵀ and dA = Bᵀ·H; for the pair kinds (the update
/// M = Π_g B_g A_g over rank groups) each group's H is H ⊙ the other groups' products.
#[allow(clippy::too_many_arguments)]
fn grads_reference(
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    t: usize,
    w0: &[f32],
    x: &[f32],
    dy: &[f32],
    a: &[f32],
    b: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let (nb, rb) = (spec.blocks, spec.block_rank);
    let (p, q) = (d_out / nb, d_in / nb);
    // Ĝ from dY and X transposed, so that each sum runs along contiguous tokens, in a
    // plain index loop: the browser build is unoptimized (the `web` profile), where an
    // iterator chain over strided tokens took 12.1 s of the 15.4 of the 768 × 640 × 2100
    // case on SwiftShader (4.5 s of 8.4 this way).
    let transpose = |v: &[f32], cols: usize| -> Vec<f64> {
        let mut out = vec![0f64; v.len()];
        for (i, &e) in v.iter().enumerate() {
            out[(i % cols) * t + i / cols] = e as f64;
        }
        out
    };
    let (dyt, xt) = (transpose(dy, d_out), transpose(x, d_in));
    let mut h = vec![0f64; d_out * d_in];
    for o in 0..d_out {
        let dy_o = &dyt[o * t..(o + 1) * t];
        for c in 0..d_in {
            let x_c = &xt[c * t..(c + 1) * t];
            let (mut g, mut s) = (0f64, 0);
            while s < t {
                g += dy_o[s] * x_c[s];
                s += 1;
            }
            let w = match spec.update() {
                Update::Hadamard => w0[o * d_in + c] as f64,
                Update::Additive => 1.0,
            };
            h[o * d_in + c] = spec.scale as f64 * w * g;
        }
    }
    let groups = spec.method.kind().groups();
    let gr = rb / groups;
    let mut da = vec![0f64; nb * nb * rb * q];
    let mut db = vec![0f64; nb * nb * p * rb];
    for i in 0..nb {
        for j in 0..nb {
            let blk = i * nb + j;
            for r in 0..p {
                for c in 0..q {
                    let hv = h[(i * p + r) * d_in + j * q + c];
                    let sums: Vec<f64> = (0..groups)
                        .map(|g| {
                            (g * gr..(g + 1) * gr)
                                .map(|k| {
                                    b[(blk * p + r) * rb + k] as f64
                                        * a[(blk * rb + k) * q + c] as f64
                                })
                                .sum()
                        })
                        .collect();
                    for k in 0..rb {
                        let other: f64 = (0..groups)
                            .filter(|&g| g != k / gr)
                            .map(|g| sums[g])
                            .product();
                        let hk = hv * other;
                        db[(blk * p + r) * rb + k] += hk * a[(blk * rb + k) * q + c] as f64;
                        da[(blk * rb + k) * q + c] += b[(blk * p + r) * rb + k] as f64 * hk;
                    }
                }
            }
        }
    }
    (da, db)
}

/// Runs adapter_grads twice in one recording on random data with random starting
/// gradients and checks grad = start + 2·reference (the accumulated part against
/// 2·reference, relative to its size).
async fn check_grads(
    gpu: &Gpu,
    method: Method,
    blocks: usize,
    rb: usize,
    d_out: usize,
    d_in: usize,
    t: usize,
) {
    let spec = AdapterSpec {
        method,
        blocks,
        block_rank: rb,
        scale: 0.75,
    };
    let what = format!(
        "{} {} b={blocks} r_b={rb} {d_out}x{d_in} T={t}",
        gpu.gemm_family().name(),
        method.name()
    );
    let mut rng = Rng::new((blocks * 1000 + rb * 10 + d_out + t) as u64);
    let (p, q) = spec.block_shape(d_out, d_in);
    let na = blocks * blocks * rb * q;
    let nbv = blocks * blocks * p * rb;
    let w0 = rng.vec_f32(d_out * d_in, -1.0, 1.0);
    let x = rng.vec_f32(t * d_in, -1.0, 1.0);
    let dy = rng.vec_f32(t * d_out, -1.0, 1.0);
    let a = rng.vec_f32(na, -0.5, 0.5);
    let b = rng.vec_f32(nbv, -0.5, 0.5);
    let ga0 = rng.vec_f32(na, -1.0, 1.0);
    let gb0 = rng.vec_f32(nbv, -1.0, 1.0);
    let tw0 = up(gpu, &[d_out, d_in], &w0);
    let tx = up(gpu, &[t, d_in], &x);
    let tdy = up(gpu, &[t, d_out], &dy);
    let ta = up(gpu, &spec.a_shape(d_in), &a);
    let tb = up(gpu, &spec.b_shape(d_out), &b);
    let tga = up(gpu, &spec.a_shape(d_in), &ga0);
    let tgb = up(gpu, &spec.b_shape(d_out), &gb0);
    let ds = adapter_grads(
        gpu, &spec, d_out, d_in, &tw0, &tx, &tdy, &ta, &tb, &tga, &tgb, None,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut rec = Recorder::new();
    rec.run_all(&ds);
    rec.run_all(&ds);
    gpu.run(&rec).unwrap();
    let (da, db) = grads_reference(&spec, d_out, d_in, t, &w0, &x, &dy, &a, &b);
    let minus = |got: Vec<f32>, start: &[f32]| -> Vec<f32> {
        got.iter().zip(start).map(|(g, s)| g - s).collect()
    };
    let got_a = minus(down(gpu, &tga).await, &ga0);
    let got_b = minus(down(gpu, &tgb).await, &gb0);
    let want_a: Vec<f32> = da.iter().map(|v| (2.0 * v) as f32).collect();
    let want_b: Vec<f32> = db.iter().map(|v| (2.0 * v) as f32).collect();
    assert!(want_a.iter().any(|v| v.abs() > 1e-3) && want_b.iter().any(|v| v.abs() > 1e-3));
    assert_rel_close(&format!("{what} dA"), &got_a, &want_a, 2e-5);
    assert_rel_close(&format!("{what} dB"), &got_b, &want_b, 2e-5);
}

/// The gradients of both updates over b ∈ {1, 2, 4} × r_b ∈ {1, 2, 8}, blocks no tile
/// divides, HiRA and LoRA at rank 32 and above, two token dispatches, regions split into
/// strips, and the pair kinds at h = 1, 3, 4 and 16 per pair.
async fn grid_sweep(family: GemmFamily) {
    let Some(gpu) = family_gpu(family).await else {
        return;
    };
    for method in [Method::Boha, Method::Additive] {
        for blocks in [1, 2, 4] {
            for rb in [1, 2, 8] {
                check_grads(&gpu, method, blocks, rb, 96, 80, 37).await;
            }
        }
    }
    // Blocks that no tile divides (43 × 35), and HiRA / LoRA at rank 32.
    check_grads(&gpu, Method::Boha, 2, 3, 86, 70, 37).await;
    check_grads(&gpu, Method::Hira, 1, 32, 90, 75, 37).await;
    check_grads(&gpu, Method::Lora, 1, 32, 75, 90, 5).await;
    // A rank above 32 (more contraction work per tile than the token loop at T = 7).
    check_grads(&gpu, Method::Lora, 1, 40, 42, 46, 7).await;
    // More tokens than one dispatch reduces over (2048): two dispatches add up.
    check_grads(&gpu, Method::Boha, 2, 2, 96, 80, 2100).await;
    // Enough blocks and columns that regions are split into several strips.
    check_grads(&gpu, Method::Boha, 1, 8, 300, 260, 9).await;
    check_grads(&gpu, Method::Abba, 1, 2, 96, 80, 37).await;
    check_grads(&gpu, Method::Loha, 1, 6, 86, 70, 37).await;
    check_grads(&gpu, Method::Abba, 1, 8, 300, 260, 9).await;
    check_grads(&gpu, Method::Loha, 1, 32, 90, 75, 37).await;
}

/// The factor gradients on the register family's kernels (see [`grid_sweep`]).
web_test!(grads_match_dense_reference_register_family, {
    grid_sweep(GemmFamily::Register).await;
});

/// The factor gradients on the shared family's kernels (see [`grid_sweep`]).
web_test!(grads_match_dense_reference_shared_family, {
    grid_sweep(GemmFamily::Shared).await;
});

/// The register family's vec4 gradient kernel (p, q multiples of 4) and its scalar
/// fallback (either not a multiple of 4), with partial 4-row / 4-column groups at region
/// edges, for every kind, at T = 1, 6 and 13.
web_test!(grads_vec4_path_and_fallback_register_family, {
    let Some(gpu) = family_gpu(GemmFamily::Register).await else {
        return;
    };
    for &(method, blocks, rb, d_out, d_in, vec4) in &[
        // vec4: blocks of 44 × 20, 60 × 52 (tiles end inside a 16 × 16 sub-tile).
        (Method::Boha, 2, 3, 88, 40, true),
        (Method::Hira, 1, 5, 60, 52, true),
        (Method::Additive, 4, 2, 176, 208, true),
        (Method::Abba, 1, 8, 60, 52, true),
        (Method::Loha, 1, 6, 88, 40, true),
        // Fallback: q = 42, p = 45, p = 22 / q = 21.
        (Method::Boha, 2, 2, 96, 84, false),
        (Method::Hira, 1, 3, 45, 64, false),
        (Method::Additive, 2, 1, 44, 42, false),
        (Method::Abba, 1, 4, 45, 64, false),
    ] {
        let sp = AdapterSpec::new(method, blocks, rb, 1.0);
        let pl = boha::adapters::grad::plan(&gpu, &sp, 13, d_out, d_in);
        assert_eq!(pl.vec4, vec4, "{d_out}x{d_in} b={blocks}: {pl:?}");
        for t in [1, 6, 13] {
            check_grads(&gpu, method, blocks, rb, d_out, d_in, t).await;
        }
    }
});

/// Long token counts on the vec4 kernel: the loop budget splits a large layer into many
/// small regions and the tokens into two dispatches (2048 + 52).
web_test!(grads_vec4_loop_budget_long_tokens, {
    let Some(gpu) = family_gpu(GemmFamily::Register).await else {
        return;
    };
    let sp = AdapterSpec::new(Method::Hira, 1, 4, 1.0);
    let pl = boha::adapters::grad::plan(&gpu, &sp, 2100, 768, 640);
    assert!(pl.vec4 && pl.tokens == 2048, "{pl:?}");
    // 2048 tokens per tile leave room for at most 19 tiles per region: 120 tiles need
    // at least 7 regions whatever the thread count.
    assert!(pl.strips_r * pl.strips_c >= 7, "{pl:?}");
    check_grads(&gpu, Method::Hira, 1, 4, 768, 640, 2100).await;
});

/// x (200 × 80 × 4 = 64 KB) bound in several token ranges under a 32 KiB limit, on both
/// families: every range's terms add up.
web_test!(grads_bind_tokens_in_ranges, {
    for family in FAMILIES {
        let Some(gpu) = common::gpu_with(&GpuOptions {
            gemm_family: Some(family),
            max_binding_override: Some(32 << 10),
            ..Default::default()
        })
        .await
        else {
            return;
        };
        check_grads(&gpu, Method::Boha, 1, 2, 96, 80, 200).await;
        check_grads(&gpu, Method::Additive, 2, 1, 96, 80, 200).await;
    }
});

/// A W0 of the wrong size and a grid that does not divide the layer are errors; the
/// scratch is a small multiple of the parameter count whatever d_out·d_in; a shared
/// scratch too small for a layer is refused instead of overrun.
web_test!(grads_refuse_bad_shapes_and_report_scratch, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let spec = AdapterSpec::new(Method::Boha, 4, 2, 1.0);
    let z = |n: usize| gpu.zeros(&[n]).unwrap();
    let (d_out, d_in) = (96, 80);
    let (na, nb) = (16 * 2 * 20, 16 * 24 * 2);
    let r = adapter_grads(
        &gpu,
        &spec,
        d_out,
        d_in,
        &z(10),
        &z(80),
        &z(96),
        &z(na),
        &z(nb),
        &z(na),
        &z(nb),
        None,
    );
    assert!(r.is_err());
    let r = adapter_grads(
        &gpu,
        &spec,
        90,
        80,
        &z(7200),
        &z(80),
        &z(90),
        &z(na),
        &z(nb),
        &z(na),
        &z(nb),
        None,
    );
    assert!(r.is_err());
    let bytes = scratch_bytes(&gpu, &spec, 512, 1536, 576);
    let params = spec.param_count(1536, 576) * 4;
    assert!(
        bytes >= params && bytes <= 16 * params,
        "{bytes} vs {params}"
    );
    let small = GradScratch::new(&gpu, [(&spec, 8, 16, 16)]).unwrap();
    let fits = GradScratch::new(&gpu, [(&spec, 8, 16, 16), (&spec, 8, d_out, d_in)]).unwrap();
    assert!(fits.bytes() > small.bytes());
    let grads = |s: &GradScratch| {
        adapter_grads(
            &gpu,
            &spec,
            d_out,
            d_in,
            &z(d_out * d_in),
            &z(8 * d_in),
            &z(8 * d_out),
            &z(na),
            &z(nb),
            &z(na),
            &z(nb),
            Some(s),
        )
    };
    let Err(err) = grads(&small) else {
        panic!("too small a scratch is refused")
    };
    assert!(err.to_string().contains("shared scratch"), "{err}");
    assert!(grads(&fits).is_ok());
});

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
