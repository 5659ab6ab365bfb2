//! The fused adapter gradients against a dense f64 CPU computation (Ĝ = dYᵀX formed in
//! full, then H, dA and dB per block; for the pair kinds each rank group's H times the
//! other group's product), for both kernel families, every kind snippet, several grids
//! and ranks, shapes that no tile divides, accumulation, and x / dy bound in ranges.

mod common;

use boha::adapters::grad::{adapter_grads, scratch_bytes, GradScratch};
use boha::adapters::{AdapterSpec, Method, Update};
use boha::gpu::{GemmFamily, Gpu, GpuOptions, Recorder};
use boha::rng::Rng;
use common::assert_close;

/// Dense reference: (dA, dB) in the [b, b, r_b, q] / [b, b, p, r_b] layouts.
#[allow(clippy::too_many_arguments)]
fn reference(
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
    let mut h = vec![0f64; d_out * d_in];
    for o in 0..d_out {
        for c in 0..d_in {
            let g: f64 = (0..t)
                .map(|s| dy[s * d_out + o] as f64 * x[s * d_in + c] as f64)
                .sum();
            let w = match spec.update() {
                Update::Hadamard => w0[o * d_in + c] as f64,
                Update::Additive => 1.0,
            };
            h[o * d_in + c] = spec.scale as f64 * w * g;
        }
    }
    // M = Π_g (B_g A_g) over rank groups of gr ranks: group g's H is H times the other
    // groups' products.
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

/// Runs adapter_grads twice on random data with random starting gradients and checks
/// grad = start + 2·reference.
fn check(gpu: &Gpu, method: Method, blocks: usize, rb: usize, d_out: usize, d_in: usize, t: usize) {
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
    let up = |shape: &[usize], v: &[f32]| gpu.upload(shape, v).unwrap();
    let tw0 = up(&[d_out, d_in], &w0);
    let tx = up(&[t, d_in], &x);
    let tdy = up(&[t, d_out], &dy);
    let ta = up(&spec.a_shape(d_in), &a);
    let tb = up(&spec.b_shape(d_out), &b);
    let tga = up(&spec.a_shape(d_in), &ga0);
    let tgb = up(&spec.b_shape(d_out), &gb0);
    let ds = adapter_grads(
        gpu, &spec, d_out, d_in, &tw0, &tx, &tdy, &ta, &tb, &tga, &tgb, None,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut rec = Recorder::new();
    rec.run_all(&ds);
    rec.run_all(&ds);
    gpu.run(&rec).unwrap();
    let (da, db) = reference(&spec, d_out, d_in, t, &w0, &x, &dy, &a, &b);
    // Compare the accumulated part (got − start) with 2·reference, relative to its size.
    let got_a: Vec<f32> = gpu
        .download(&tga)
        .unwrap()
        .iter()
        .zip(&ga0)
        .map(|(g, s)| g - s)
        .collect();
    let got_b: Vec<f32> = gpu
        .download(&tgb)
        .unwrap()
        .iter()
        .zip(&gb0)
        .map(|(g, s)| g - s)
        .collect();
    let want_a: Vec<f32> = da.iter().map(|v| (2.0 * v) as f32).collect();
    let want_b: Vec<f32> = db.iter().map(|v| (2.0 * v) as f32).collect();
    assert!(want_a.iter().any(|v| v.abs() > 1e-3) && want_b.iter().any(|v| v.abs() > 1e-3));
    assert_close(&format!("{what} dA"), &got_a, &want_a, 2e-5);
    assert_close(&format!("{what} dB"), &got_b, &want_b, 2e-5);
}

fn family_gpu(family: GemmFamily) -> Option<Gpu> {
    common::gpu_with(&GpuOptions {
        gemm_family: Some(family),
        ..Default::default()
    })
}

fn grid_sweep(family: GemmFamily) {
    let Some(gpu) = family_gpu(family) else {
        return;
    };
    for method in [Method::Boha, Method::Additive] {
        for blocks in [1, 2, 4] {
            for rb in [1, 2, 8] {
                check(&gpu, method, blocks, rb, 96, 80, 37);
            }
        }
    }
    // Blocks that no tile divides (43 × 35), and HiRA / LoRA at rank 32.
    check(&gpu, Method::Boha, 2, 3, 86, 70, 37);
    check(&gpu, Method::Hira, 1, 32, 90, 75, 37);
    check(&gpu, Method::Lora, 1, 32, 75, 90, 5);
    // A rank above 32 (more contraction work per tile than the token loop at T = 7).
    check(&gpu, Method::Lora, 1, 40, 42, 46, 7);
    // More tokens than one dispatch reduces over (2048): two dispatches add up.
    check(&gpu, Method::Boha, 2, 2, 96, 80, 2100);
    // Enough blocks and columns that regions are split into several strips.
    check(&gpu, Method::Boha, 1, 8, 300, 260, 9);
    // The pair kinds (two rank groups): h = 1, 3, 4, 16 per pair.
    check(&gpu, Method::Abba, 1, 2, 96, 80, 37);
    check(&gpu, Method::Loha, 1, 6, 86, 70, 37);
    check(&gpu, Method::Abba, 1, 8, 300, 260, 9);
    check(&gpu, Method::Loha, 1, 32, 90, 75, 37);
}

/// The register family's vec4 kernel (p, q multiples of 4) and its scalar fallback
/// (either not a multiple of 4), with partial 4-row / 4-column groups at region edges.
#[test]
fn grads_vec4_path_and_fallback_register_family() {
    let Some(gpu) = family_gpu(GemmFamily::Register) else {
        return;
    };
    let spec = |method, blocks, block_rank| AdapterSpec {
        method,
        blocks,
        block_rank,
        scale: 1.0,
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
        let sp = spec(method, blocks, rb);
        let pl = boha::adapters::grad::plan(&gpu, &sp, 13, d_out, d_in);
        assert_eq!(pl.vec4, vec4, "{d_out}x{d_in} b={blocks}: {pl:?}");
        for t in [1, 6, 13] {
            check(&gpu, method, blocks, rb, d_out, d_in, t);
        }
    }
}

/// Long token counts on the vec4 kernel: the loop budget splits a large layer into many
/// small regions and the tokens into two dispatches (2048 + 52).
#[test]
fn grads_vec4_loop_budget_long_tokens() {
    let Some(gpu) = family_gpu(GemmFamily::Register) else {
        return;
    };
    let sp = AdapterSpec {
        method: Method::Hira,
        blocks: 1,
        block_rank: 4,
        scale: 1.0,
    };
    let pl = boha::adapters::grad::plan(&gpu, &sp, 2100, 768, 640);
    assert!(pl.vec4 && pl.tokens == 2048, "{pl:?}");
    // 2048 tokens per tile leave room for at most 19 tiles per region: 120 tiles need
    // at least 7 regions whatever the thread count.
    assert!(pl.strips_r * pl.strips_c >= 7, "{pl:?}");
    check(&gpu, Method::Hira, 1, 4, 768, 640, 2100);
}

#[test]
fn grads_match_dense_reference_register_family() {
    grid_sweep(GemmFamily::Register);
}

#[test]
fn grads_match_dense_reference_shared_family() {
    grid_sweep(GemmFamily::Shared);
}

#[test]
fn grads_bind_tokens_in_ranges() {
    for family in [GemmFamily::Register, GemmFamily::Shared] {
        // x is 200 × 80 × 4 = 64 KB: bound in several token ranges under a 32 KiB limit.
        let Some(gpu) = common::gpu_with(&GpuOptions {
            gemm_family: Some(family),
            max_binding_override: Some(32 << 10),
            ..Default::default()
        }) else {
            return;
        };
        check(&gpu, Method::Boha, 1, 2, 96, 80, 200);
        check(&gpu, Method::Additive, 2, 1, 96, 80, 200);
    }
}

#[test]
fn grads_refuse_bad_shapes_and_report_scratch() {
    let Some(gpu) = common::gpu() else { return };
    let spec = AdapterSpec {
        method: Method::Boha,
        blocks: 4,
        block_rank: 2,
        scale: 1.0,
    };
    let z = |n: usize| gpu.zeros(&[n]).unwrap();
    let (d_out, d_in) = (96, 80);
    let (na, nb) = (16 * 2 * 20, 16 * 24 * 2);
    // W0 of the wrong size is an error, not a panic.
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
    // A grid that does not divide the layer is refused.
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
    // Scratch is a small multiple of the parameter count, independent of d_out·d_in.
    let bytes = scratch_bytes(&gpu, &spec, 512, 1536, 576);
    let params = spec.param_count(1536, 576) * 4;
    assert!(
        bytes >= params && bytes <= 16 * params,
        "{bytes} vs {params}"
    );
    // A shared scratch holds the largest of the layers it was made for; a larger layer
    // is refused with an error, not run over the end of it.
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
}
