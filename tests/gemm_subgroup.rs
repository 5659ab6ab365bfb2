//! The CPU adapters' subgroup GEMM (`GemmTile::Subgroup`, `shaders/gemm_subgroup.wgsl`)
//! against the f64 CPU reference: NT and NN products at shapes no tile divides (rows and
//! columns past the edges are loaded clamped and must never be stored), alpha/beta
//! (beta = 0 on a NaN C), batches with a shared operand, operands bound in ranges, and the
//! parts it cannot take (A transposed, k not a multiple of 4, NN with n not a multiple of
//! 4) falling back to the register tile with the same results.

mod common;

use boha::gpu::{GemmTile, Gpu, GpuOptions, Recorder};
use boha::ops::gemm::{self, reference, Gemm, Path};
use boha::rng::Rng;
use common::assert_close;

const TOL: f32 = 2e-5;

/// Runs `g` on the subgroup tile and compares with the reference; returns the entry
/// points that ran.
fn check(gpu: &Gpu, g: &Gemm, seed: u64) -> Vec<&'static str> {
    let mut rng = Rng::new(seed);
    let len = |stride: usize, size: usize| (g.batch - 1) * stride + size;
    let a = rng.vec_f32(len(g.stride_a, g.m * g.k), -1.0, 1.0);
    let b = rng.vec_f32(len(g.stride_b, g.k * g.n), -1.0, 1.0);
    let c = if g.beta == 0.0 {
        vec![f32::NAN; len(g.stride_c, g.m * g.n)]
    } else {
        rng.vec_f32(len(g.stride_c, g.m * g.n), -1.0, 1.0)
    };
    let up = |v: &[f32]| gpu.upload(&[v.len()], v).unwrap();
    let (ta, tb, tc) = (up(&a), up(&b), up(&c));
    let ds = gemm::gemm_tile(gpu, GemmTile::Subgroup, Path::Tiled, g, &ta, &tb, &tc).unwrap();
    let mut r = Recorder::new();
    r.run_all(&ds);
    gpu.run(&r).unwrap();
    let got = gpu.download(&tc).unwrap();
    assert_close(
        &format!("{g:?}"),
        &got,
        &reference::gemm(g, &a, &b, &c),
        TOL,
    );
    ds.iter().map(|d| d.label()).collect()
}

/// Whether the subgroup kernel takes `g` (see `ops::gemm::subgroup`).
fn takes(gpu: &Gpu, g: &Gemm) -> bool {
    let four = |v: usize| v.is_multiple_of(4);
    gpu.tile_fits(GemmTile::Subgroup)
        && !g.trans_a
        && four(g.k)
        && four(g.stride_a)
        && four(g.stride_b)
        && (g.trans_b || four(g.n))
}

fn expect_kernel(gpu: &Gpu, g: &Gemm, names: &[&str]) {
    if takes(gpu, g) {
        assert!(
            names.iter().all(|n| *n == "gemm_subgroup"),
            "{g:?}: {names:?}"
        );
    } else {
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("gemm_vec4") || n.starts_with("gemm_scalar")),
            "{g:?}: {names:?}"
        );
    }
}

#[test]
fn products_at_odd_shapes_match_the_reference() {
    let Some(gpu) = common::gpu() else {
        return;
    };
    // An adapter with exactly 8-lane subgroups (lavapipe on AVX2) must really run the
    // kernel; elsewhere the register tile's fallback is what is checked.
    let i = gpu.info();
    if i.subgroups && i.subgroup_min_size == 8 && i.subgroup_max_size == 8 {
        assert!(gpu.tile_fits(GemmTile::Subgroup), "{i:?}");
    }
    let mut seed = 1;
    for &(m, n, k) in &[
        (67, 129, 44),
        (67, 132, 44),
        (1, 1, 4),
        (5, 68, 8),
        (16, 64, 16),
        (130, 36, 12),
        (33, 200, 48),
        (67, 129, 45),
    ] {
        for (ta, tb) in [(false, true), (false, false), (true, false), (true, true)] {
            for (alpha, beta) in [(1.0, 0.0), (0.5, 2.0)] {
                let g = Gemm {
                    trans_a: ta,
                    trans_b: tb,
                    alpha,
                    beta,
                    ..Gemm::new(m, n, k)
                };
                seed += 1;
                let names = check(&gpu, &g, seed);
                expect_kernel(&gpu, &g, &names);
            }
        }
    }
}

#[test]
fn batches_and_ranged_operands() {
    let Some(gpu) = common::gpu() else {
        return;
    };
    for tb in [true, false] {
        // Shared B (stride 0, the same weight for every entry) and padded strides.
        let g = Gemm {
            trans_b: tb,
            batch: 3,
            stride_a: 20 * 12 + 4,
            stride_b: 0,
            stride_c: 20 * 24 + 8,
            beta: 1.0,
            ..Gemm::new(20, 24, 12)
        };
        let names = check(&gpu, &g, 90);
        expect_kernel(&gpu, &g, &names);
    }
    let Some(small) = common::gpu_with(&GpuOptions {
        max_binding_override: Some(8192),
        ..Default::default()
    }) else {
        return;
    };
    for tb in [true, false] {
        let g = Gemm {
            trans_b: tb,
            alpha: 0.5,
            beta: 2.0,
            ..Gemm::new(130, 68, 128)
        };
        let names = check(&small, &g, 91);
        assert!(names.len() > 1, "{g:?}: one dispatch");
        expect_kernel(&small, &g, &names);
    }
}
