//! The discrete-GPU GEMM tier (`GemmTile::Tier`, `shaders/gemm_tier.wgsl`) against the
//! f64 CPU reference, on each of its three workgroup tiles: shapes no tile divides (and
//! more tile rows than one group of the grouped workgroup order), every transpose
//! combination with alpha/beta (beta = 0 on a NaN C, which must not be read) and k = 0,
//! the vec4 and the scalar loads, batches with a shared and padded operands, operands
//! bound in ranges under a forced small binding limit, and a tuning table that sends one
//! shape of `gemm::gemm` to the tier.

mod common;

use boha::gpu::tuning::{GemmKey, Tuning};
use boha::gpu::{GemmTile, Gpu, GpuOptions, Recorder, Tensor};
use boha::ops::gemm::{self, reference, Gemm, Path};
use boha::rng::Rng;
use common::assert_close;

/// f32 sums of up to ~130 products of values in [-1, 1) against f64.
const TOL: f32 = 2e-5;

fn tiers() -> impl Iterator<Item = GemmTile> {
    GemmTile::TIER_SHAPES
        .iter()
        .map(|&(bm, bn)| GemmTile::Tier { bm, bn })
}

const TRANSPOSES: [(bool, bool); 4] = [(false, false), (false, true), (true, false), (true, true)];

/// Random operands for `g` (C = NaN when beta = 0), uploaded.
fn operands(gpu: &Gpu, g: &Gemm, seed: u64) -> ([Vec<f32>; 3], [Tensor; 3]) {
    let mut rng = Rng::new(seed);
    let len = |stride: usize, size: usize| (g.batch - 1) * stride + size;
    let a = rng.vec_f32(len(g.stride_a, g.m * g.k), -1.0, 1.0);
    let b = rng.vec_f32(len(g.stride_b, g.k * g.n), -1.0, 1.0);
    let c = if g.beta == 0.0 {
        vec![f32::NAN; len(g.stride_c, g.m * g.n)]
    } else {
        rng.vec_f32(len(g.stride_c, g.m * g.n), -1.0, 1.0)
    };
    let up = |v: &[f32]| gpu.upload(&[v.len().max(1)], &padded(v)).unwrap();
    let t = [up(&a), up(&b), up(&c)];
    ([a, b, c], t)
}

/// An empty operand (k = 0) is uploaded as one float.
fn padded(v: &[f32]) -> Vec<f32> {
    if v.is_empty() {
        vec![0.0]
    } else {
        v.to_vec()
    }
}

/// Runs `g` on `tile` (tiled path) and compares with the reference; returns the
/// dispatches' entry points, which must all be the tier's.
fn check(gpu: &Gpu, tile: GemmTile, g: &Gemm, seed: u64) -> Vec<&'static str> {
    let ([a, b, c], [ta, tb, tc]) = operands(gpu, g, seed);
    let ds = gemm::gemm_tile(gpu, tile, Path::Tiled, g, &ta, &tb, &tc).unwrap();
    let mut r = Recorder::new();
    r.run_all(&ds);
    gpu.run(&r).unwrap();
    let got = gpu.download(&tc).unwrap();
    let want = reference::gemm(g, &a, &b, &c);
    assert_close(&format!("{tile:?} {g:?}"), &got[..want.len()], &want, TOL);
    let names: Vec<_> = ds.iter().map(|d| d.label()).collect();
    assert!(
        names.iter().all(|n| n.starts_with("gemm_tier")),
        "{tile:?} {g:?}: {names:?}"
    );
    names
}

/// Whether `g`'s operands allow the tier's vec4 loads (stored row lengths and strides
/// multiples of 4, k > 0).
fn vec4_layout(g: &Gemm) -> bool {
    let lda = if g.trans_a { g.m } else { g.k };
    let ldb = if g.trans_b { g.k } else { g.n };
    g.k > 0
        && [lda, ldb, g.stride_a, g.stride_b]
            .iter()
            .all(|v| v.is_multiple_of(4))
}

/// Every tier tile fits the test device, so the tests below run the tier itself.
fn tier_gpu(opts: &GpuOptions) -> Option<Gpu> {
    let gpu = common::gpu_with(opts)?;
    for tile in tiers() {
        assert!(gpu.tile_fits(tile), "{tile:?} does not fit {gpu:?}");
    }
    Some(gpu)
}

#[test]
fn odd_shapes_transposes_alpha_beta_on_every_tier() {
    let Some(gpu) = tier_gpu(&GpuOptions::default()) else {
        return;
    };
    // (m, n, k): no tile divides; a vec4 layout over several tiles; TN at an odd k with
    // vec4 loads along m and n; a few rows; k = 1; k = 0 (C = beta · C).
    let shapes = [
        (67, 129, 45),
        (132, 136, 44),
        (36, 140, 45),
        (3, 5, 1),
        (1, 9, 7),
        (5, 3, 0),
    ];
    for (t, tile) in tiers().enumerate() {
        for (s, &(m, n, k)) in shapes.iter().enumerate() {
            for (ta, tb) in TRANSPOSES {
                for (alpha, beta) in [(1.0f32, 0.0f32), (0.7, -1.3), (-2.0, 0.0)] {
                    let g = Gemm {
                        trans_a: ta,
                        trans_b: tb,
                        alpha,
                        beta,
                        ..Gemm::new(m, n, k)
                    };
                    let names = check(&gpu, tile, &g, (100 * t + 10 * s) as u64);
                    let want = if vec4_layout(&g) {
                        "gemm_tier"
                    } else {
                        "gemm_tier_scalar"
                    };
                    assert_eq!(names, [want], "{tile:?} {g:?}");
                }
            }
        }
    }
}

/// More tile rows than one group of 8 (a partial last group) and several tile columns:
/// every workgroup of the grouped order finds its own tile.
#[test]
fn grouped_workgroup_order_covers_every_tile() {
    let Some(gpu) = tier_gpu(&GpuOptions::default()) else {
        return;
    };
    for (t, tile) in tiers().enumerate() {
        for (ta, tb) in [(false, true), (true, false)] {
            let g = Gemm {
                trans_a: ta,
                trans_b: tb,
                beta: 0.5,
                ..Gemm::new(1100, 130, 5)
            };
            check(&gpu, tile, &g, 200 + t as u64);
        }
    }
}

#[test]
fn batched_products_with_shared_and_padded_operands() {
    let Some(gpu) = tier_gpu(&GpuOptions::default()) else {
        return;
    };
    for (t, tile) in tiers().enumerate() {
        // A scalar and a vec4 layout.
        for &(m, n, k) in &[(7, 9, 13), (8, 12, 16)] {
            let tight = Gemm {
                batch: 3,
                trans_b: true,
                alpha: 1.5,
                beta: 0.5,
                ..Gemm::new(m, n, k)
            };
            let shared_b = Gemm {
                stride_b: 0,
                beta: 0.0,
                trans_b: false,
                ..tight.clone()
            };
            let padded = Gemm {
                trans_a: true,
                stride_a: m * k + 4,
                stride_c: m * n + 8,
                ..tight.clone()
            };
            for (i, g) in [tight, shared_b, padded].iter().enumerate() {
                let names = check(&gpu, tile, g, 300 + 10 * t as u64 + i as u64);
                let want = if vec4_layout(g) {
                    "gemm_tier"
                } else {
                    "gemm_tier_scalar"
                };
                assert_eq!(names, [want], "{tile:?} {g:?}");
            }
        }
    }
}

/// Under an 8 KiB binding limit the operands are bound in ranges (m, n and k cut, views
/// at offsets), each range one tier dispatch; ranges along k accumulate.
#[test]
fn large_operands_are_bound_in_ranges() {
    let opts = GpuOptions {
        max_binding_override: Some(8192),
        ..Default::default()
    };
    let Some(gpu) = tier_gpu(&opts) else {
        return;
    };
    for (t, tile) in tiers().enumerate() {
        for (s, &(m, n, k)) in [(130, 67, 129), (64, 40, 96)].iter().enumerate() {
            for (ta, tb) in TRANSPOSES {
                let g = Gemm {
                    trans_a: ta,
                    trans_b: tb,
                    alpha: 0.5,
                    beta: 2.0,
                    ..Gemm::new(m, n, k)
                };
                let names = check(&gpu, tile, &g, 400 + 10 * t as u64 + s as u64);
                assert!(names.len() > 1, "{tile:?} {g:?}: one dispatch");
            }
        }
        let g = Gemm {
            batch: 9,
            beta: 1.0,
            ..Gemm::new(12, 20, 16)
        };
        assert!(check(&gpu, tile, &g, 450 + t as u64).len() > 1);
    }
}

/// A tuning table naming the tier for one shape sends `gemm::gemm` of that shape to the
/// tier and leaves other shapes on the profile's tile.
#[test]
fn tuned_shapes_run_on_the_tier_through_gemm() {
    let Some(mut gpu) = tier_gpu(&GpuOptions::default()) else {
        return;
    };
    let profile_tile = gpu.profile().gemm_tile;
    let tuned = Gemm {
        trans_b: true,
        beta: 0.25,
        ..Gemm::new(40, 70, 36)
    };
    let other = Gemm::new(40, 70, 33);
    let tile = GemmTile::Tier { bm: 64, bn: 128 };
    let mut table = Tuning::default();
    let key = |g: &Gemm| GemmKey::new(g.m, g.n, g.k, g.trans_a, g.trans_b, g.batch);
    table.set_gemm(key(&tuned), tile);
    gpu.set_tuning(table);
    assert_eq!(gpu.gemm_tile_for(&key(&tuned)), tile);
    assert_eq!(gpu.gemm_tile_for(&key(&other)), profile_tile);
    for (i, g) in [&tuned, &other].into_iter().enumerate() {
        let ([a, b, c], [ta, tb, tc]) = operands(&gpu, g, 500 + i as u64);
        let ds = gemm::gemm(&gpu, g, &ta, &tb, &tc).unwrap();
        let mut r = Recorder::new();
        r.run_all(&ds);
        gpu.run(&r).unwrap();
        let want = reference::gemm(g, &a, &b, &c);
        assert_close(&format!("{g:?}"), &gpu.download(&tc).unwrap(), &want, TOL);
        let on_tier = ds.iter().all(|d| d.label().starts_with("gemm_tier"));
        let tier_wanted = i == 0 || matches!(profile_tile, GemmTile::Tier { .. });
        assert_eq!(on_tier, tier_wanted, "{g:?}");
    }
}

/// A tier shape outside the three is refused rather than run.
#[test]
fn unknown_tier_shapes_are_errors() {
    let Some(gpu) = tier_gpu(&GpuOptions::default()) else {
        return;
    };
    let g = Gemm::new(4, 4, 4);
    let (_, [a, b, c]) = operands(&gpu, &g, 600);
    let tile = GemmTile::Tier { bm: 32, bn: 32 };
    assert!(gemm::gemm_tile(&gpu, tile, Path::Tiled, &g, &a, &b, &c).is_err());
}
