//! GEMM against the f64 CPU reference: the three training products, every transpose
//! combination with alpha/beta, batched products, both kernel families on the same
//! device, shapes no tile divides (and shapes that take the vec4 path), and a forced
//! small storage-binding limit so that operands are bound in several ranges. The GEMV
//! kernels (few rows, NT) are checked the same way, each variant explicitly and through
//! the automatic choice of the public entry points.

mod common;

use boha::gpu::{Dispatch, GemmFamily, Gpu, GpuOptions, Recorder, Tensor};
use boha::ops::gemm::{self, reference, Gemm, GemvKernel, Path};
use boha::rng::Rng;
use common::assert_close;

const FAMILIES: [GemmFamily; 2] = [GemmFamily::Register, GemmFamily::Shared];
/// f32 sums of up to ~130 products of values in [-1, 1) against f64.
const TOL: f32 = 2e-5;

fn run(gpu: &Gpu, ds: &[Dispatch], out: &Tensor) -> Vec<f32> {
    let mut r = Recorder::new();
    r.run_all(ds);
    gpu.run(&r).unwrap();
    gpu.download(out).unwrap()
}

/// Runs `g` with `family` on random A, B and C (C = NaN when beta = 0, which must not be
/// read) and compares with the reference. Returns the number of dispatches.
fn check(gpu: &Gpu, family: GemmFamily, g: &Gemm, seed: u64) -> usize {
    check_path(gpu, family, Path::Auto, g, seed, TOL).len()
}

/// [`check`] on the kernels `path` picks, within `tol`; returns the dispatches' entry
/// points.
fn check_path(
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
        gpu.upload(&[a.len()], &a).unwrap(),
        gpu.upload(&[b.len()], &b).unwrap(),
        gpu.upload(&[c.len()], &c).unwrap(),
    );
    let ds = gemm::gemm_path(gpu, family, path, g, &ta, &tb, &tc).unwrap();
    let got = run(gpu, &ds, &tc);
    assert_close(
        &format!("{family:?} {path:?} {g:?}"),
        &got,
        &reference::gemm(g, &a, &b, &c),
        tol,
    );
    ds.iter().map(|d| d.label()).collect()
}

/// The three products through their public entry points, with beta = 0 (on NaN) and 1.
fn check_products(gpu: &Gpu, m: usize, n: usize, k: usize, seed: u64) -> usize {
    let mut rng = Rng::new(seed);
    let x = rng.vec_f32(m * k, -1.0, 1.0);
    let w = rng.vec_f32(n * k, -1.0, 1.0);
    let dy = rng.vec_f32(m * n, -1.0, 1.0);
    let (tx, tw, tdy) = (
        gpu.upload(&[m, k], &x).unwrap(),
        gpu.upload(&[n, k], &w).unwrap(),
        gpu.upload(&[m, n], &dy).unwrap(),
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
        let y = gpu.upload(&[m, n], &y0).unwrap();
        let ds = gemm::matmul_nt(gpu, &tx, &tw, &y, beta).unwrap();
        dispatches += ds.len();
        let want = reference::matmul_nt(&x, &w, &y0, m, n, k, beta);
        assert_close(&format!("nt {what}"), &run(gpu, &ds, &y), &want, TOL);

        let dx0 = init(m * k, seed + 2);
        let dx = gpu.upload(&[m, k], &dx0).unwrap();
        let ds = gemm::matmul_nn(gpu, &tdy, &tw, &dx, beta).unwrap();
        dispatches += ds.len();
        let want = reference::matmul_nn(&dy, &w, &dx0, m, n, k, beta);
        assert_close(&format!("nn {what}"), &run(gpu, &ds, &dx), &want, TOL);

        let dw0 = init(n * k, seed + 3);
        let dw = gpu.upload(&[n, k], &dw0).unwrap();
        let ds = gemm::matmul_tn(gpu, &tdy, &tx, &dw, beta).unwrap();
        dispatches += ds.len();
        let want = reference::matmul_tn(&dy, &x, &dw0, m, n, k, beta);
        assert_close(&format!("tn {what}"), &run(gpu, &ds, &dw), &want, TOL);
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

#[test]
fn products_match_reference_with_both_families() {
    for family in FAMILIES {
        let opts = GpuOptions {
            gemm_family: Some(family),
            ..Default::default()
        };
        let Some(gpu) = common::gpu_with(&opts) else {
            return;
        };
        for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
            check_products(&gpu, m, n, k, 10 + i as u64);
        }
    }
}

#[test]
fn transposes_alpha_beta_and_k_zero() {
    let Some(gpu) = common::gpu() else { return };
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
                    check(&gpu, family, &g, 100 + i as u64);
                }
            }
        }
    }
}

#[test]
fn batched_products_with_shared_and_padded_operands() {
    let Some(gpu) = common::gpu() else { return };
    for family in FAMILIES {
        for &(m, n, k) in &[(7, 9, 13), (8, 12, 16)] {
            // Tight strides; a B shared by every entry (stride 0); padded strides.
            let tight = Gemm {
                batch: 3,
                trans_b: true,
                alpha: 1.5,
                beta: 0.5,
                ..Gemm::new(m, n, k)
            };
            check(&gpu, family, &tight, 200);
            let shared_b = Gemm {
                stride_b: 0,
                beta: 0.0,
                trans_b: false,
                ..tight.clone()
            };
            check(&gpu, family, &shared_b, 201);
            let padded = Gemm {
                trans_a: true,
                stride_a: m * k + 4,
                stride_c: m * n + 8,
                ..tight.clone()
            };
            check(&gpu, family, &padded, 202);
        }
    }
}

#[test]
fn large_operands_are_bound_in_ranges() {
    for family in FAMILIES {
        let opts = GpuOptions {
            max_binding_override: Some(8192),
            gemm_family: Some(family),
            ..Default::default()
        };
        let Some(gpu) = common::gpu_with(&opts) else {
            return;
        };
        for &(m, n, k) in &[(130, 67, 129), (64, 40, 96)] {
            // 6 products (3 × 2 betas); more dispatches means operands were cut.
            let n_dispatch = check_products(&gpu, m, n, k, 300);
            assert!(
                n_dispatch > 6 * 2,
                "{family:?} {m}x{n}x{k}: {n_dispatch} dispatches"
            );
        }
        let g = Gemm {
            batch: 9,
            alpha: 0.5,
            beta: 2.0,
            ..Gemm::new(12, 20, 16)
        };
        assert!(check(&gpu, family, &g, 301) > 1);
    }
}

#[test]
fn bad_shapes_are_errors() {
    let Some(gpu) = common::gpu() else { return };
    let x = gpu.zeros(&[4, 5]).unwrap();
    let w = gpu.zeros(&[3, 6]).unwrap();
    let y = gpu.zeros(&[4, 3]).unwrap();
    assert!(gemm::matmul_nt(&gpu, &x, &w, &y, 0.0).is_err());
    let small = gpu.zeros(&[10]).unwrap();
    assert!(gemm::gemm(&gpu, &Gemm::new(4, 3, 5), &x, &small, &y).is_err());
}

const GEMV_KERNELS: [GemvKernel; 2] = [GemvKernel::Rows, GemvKernel::Split];

/// Y = alpha·X·Wᵀ + beta·Y for m = 1..8 on both GEMV kernels: n and m that no block
/// divides, beta = 0 (Y = NaN, never read) and beta ≠ 0, and every dispatch a GEMV.
#[test]
fn gemv_matches_reference_for_small_m() {
    let Some(gpu) = common::gpu() else { return };
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
                    );
                    assert!(
                        names.iter().all(|n| n.starts_with("gemv")),
                        "{kernel:?} {g:?}: {names:?}"
                    );
                }
            }
        }
    }
}

/// The public entry points choose a GEMV for small m (NT only) and the tiles otherwise;
/// shapes GEMV cannot load as vec4 (k % 4 != 0) stay on the tiles and stay correct.
#[test]
fn small_m_products_choose_gemv_automatically() {
    for family in FAMILIES {
        let opts = GpuOptions {
            gemm_family: Some(family),
            ..Default::default()
        };
        let Some(gpu) = common::gpu_with(&opts) else {
            return;
        };
        for (i, &(m, n, k)) in [(1, 37, 64), (4, 45, 36), (8, 20, 16), (3, 9, 7)]
            .iter()
            .enumerate()
        {
            check_products(&gpu, m, n, k, 500 + i as u64);
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
}

/// Batched GEMV: tight strides, a W shared by every entry, padded strides.
#[test]
fn gemv_batched_products() {
    let Some(gpu) = common::gpu() else { return };
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
            );
            assert!(names.iter().all(|n| n.starts_with("gemv")), "{names:?}");
        }
    }
}

/// A W over the (forced, 8 KiB) binding limit is bound in row ranges, as is a Y whose m
/// rows do not fit; with beta ≠ 0 and on both kernels.
#[test]
fn gemv_binds_large_operands_in_ranges() {
    let opts = GpuOptions {
        max_binding_override: Some(8192),
        ..Default::default()
    };
    let Some(gpu) = common::gpu_with(&opts) else {
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
            );
            assert!(names.len() > 1, "{kernel:?} {g:?}: one dispatch");
            assert!(names.iter().all(|n| n.starts_with("gemv")), "{names:?}");
        }
    }
}

/// A k long enough that one invocation's loop would pass llvmpipe's loop budget is cut
/// into dispatches that accumulate.
#[test]
fn gemv_cuts_long_k_for_the_loop_budget() {
    let Some(gpu) = common::gpu() else { return };
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
    );
    // Only a profile with a loop budget (llvmpipe's) cuts k.
    if gpu.profile().loop_budget.is_some() {
        assert_eq!(names, ["gemv_rows", "gemv_rows"]);
    } else {
        assert_eq!(names, ["gemv_rows"]);
    }
}
