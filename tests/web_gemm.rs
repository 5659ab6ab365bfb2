//! The GEMM kernel family and the Khatri–Rao products against their CPU references,
//! written once for the browser and the native build (see tests/web/common.rs):
//!
//! - the GEMM's training products, transposes with alpha/beta and k = 0, strided and
//!   padded batches, operands bound in ranges, and the decode GEMV (each kernel, its
//!   automatic choice, batches, ranges and the loop budget's cut of a long k);
//! - the Khatri–Rao pair products (ABBA's and LoHa's factors), forward and accumulating
//!   backward, bound in ranges and as views of shared buffers.
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

use boha::adapters::khatri_rao::{self, reference as kr_ref};
use boha::gpu::{GemmFamily, Gpu, GpuOptions};
use boha::ops::gemm::{self, reference, Gemm, GemvKernel, Path};
use boha::rng::Rng;
use common::{assert_rel_close, f32s, f64s};
use kernels::*;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

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
