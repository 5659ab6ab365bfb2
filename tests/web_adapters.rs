//! The fused adapter kernels against their CPU references, written once for the
//! browser and the native build (see tests/web/common.rs):
//!
//! - every kind (BoHA, the additive control, HiRA, LoRA, ABBA, LoHa): forward and dX on
//!   both families, the register family's cached-factor and rank-chunk kernels and their
//!   fallback, the adapted layer, the block-grid merge and its exact unmerge;
//! - the fused adapter gradients against a dense f64 computation, for every kind, grid
//!   and family, the vec4 kernel and its fallback, long token counts and tokens bound in
//!   ranges.
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

use boha::adapters::grad::{adapter_grads, scratch_bytes, GradScratch};
use boha::adapters::layer::AdaptedLinear;
use boha::adapters::reference as cpu;
use boha::adapters::{fused, merge, AdapterSpec, Method, Update};
use boha::gpu::{GemmFamily, Gpu, GpuOptions, Recorder};
use boha::ops::gemm::{self};
use boha::rng::Rng;
use common::{assert_rel_close, f32s, f64s};
use kernels::*;

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

// ---------------------------------------------------------------- fused adapter kernels

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
