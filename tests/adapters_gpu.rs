//! Adapter kernels on the GPU against the dense f64 CPU reference
//! (`boha::adapters::reference`), at a layer shape no tile divides (96 × 80, 37 tokens),
//! with random non-zero A and B, for both kernel families and both updates.

mod common;

use boha::adapters::grad::GradScratch;
use boha::adapters::layer::AdaptedLinear;
use boha::adapters::reference as cpu;
use boha::adapters::{fused, merge, AdapterSpec, Method};
use boha::gpu::{Dispatch, GemmFamily, Gpu, GpuOptions, Recorder, Tensor};
use boha::rng::Rng;
use common::assert_close;

const D_OUT: usize = 96;
const D_IN: usize = 80;
const T: usize = 37;
const FAMILIES: [GemmFamily; 2] = [GemmFamily::Register, GemmFamily::Shared];

fn spec(method: Method, blocks: usize, block_rank: usize, scale: f32) -> AdapterSpec {
    AdapterSpec {
        method,
        blocks,
        block_rank,
        scale,
    }
}

/// The specs every test runs: both updates over b ∈ {1, 2, 4} × r_b ∈ {1, 2, 8}, HiRA at
/// r = 32 (past the register cache of factor rows), LoRA, and a wide block rank.
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
    // The pair kinds on the fused kernels: h = 1, 4 and 8 per pair.
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

/// Random layer data: W0, A, B (never zero), x and dy.
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

fn run(gpu: &Gpu, ds: &[Dispatch]) {
    let mut r = Recorder::new();
    r.run_all(ds);
    gpu.run(&r).unwrap();
}

fn up(gpu: &Gpu, shape: &[usize], v: &[f32]) -> Tensor {
    gpu.upload(shape, v).unwrap()
}

#[test]
fn fused_forward_and_dx_match_reference() {
    let Some(gpu) = common::gpu() else { return };
    for (n, s) in specs().iter().enumerate() {
        let d = data(s, 100 + n as u64);
        let (w0, a, b) = (cpu::f64s(&d.w0), cpu::f64s(&d.a), cpu::f64s(&d.b));
        let y_ref = cpu::f32s(&cpu::forward(s, &w0, &a, &b, &cpu::f64s(&d.x), T).unwrap());
        let (dx_ref, _, _) =
            cpu::backward(s, &w0, &a, &b, &cpu::f64s(&d.x), &cpu::f64s(&d.dy)).unwrap();
        let dx_ref = cpu::f32s(&dx_ref);
        let tw = up(&gpu, &[D_OUT, D_IN], &d.w0);
        let ta = up(&gpu, &s.a_shape(D_IN), &d.a);
        let tb = up(&gpu, &s.b_shape(D_OUT), &d.b);
        let tx = up(&gpu, &[T, D_IN], &d.x);
        let tdy = up(&gpu, &[T, D_OUT], &d.dy);
        for fam in FAMILIES {
            let what = format!("{s:?} {}", fam.name());
            // Overwrite: y starts as NaN, which beta = 0 must never read.
            let ty = up(&gpu, &[T, D_OUT], &vec![f32::NAN; T * D_OUT]);
            run(
                &gpu,
                &fused::forward_with(fam, &gpu, s, D_OUT, D_IN, &tw, &tx, &ta, &tb, &ty, 0.0)
                    .unwrap(),
            );
            assert_close(
                &format!("forward {what}"),
                &gpu.download(&ty).unwrap(),
                &y_ref,
                2e-6,
            );

            let tdx = up(&gpu, &[T, D_IN], &vec![f32::NAN; T * D_IN]);
            run(
                &gpu,
                &fused::backward_dx_with(fam, &gpu, s, D_OUT, D_IN, &tw, &tdy, &ta, &tb, &tdx, 0.0)
                    .unwrap(),
            );
            assert_close(
                &format!("dx {what}"),
                &gpu.download(&tdx).unwrap(),
                &dx_ref,
                2e-6,
            );
            // Accumulate onto earlier contents.
            let old = Rng::new(n as u64).vec_f32(T * D_IN, -3.0, 3.0);
            let tdx = up(&gpu, &[T, D_IN], &old);
            run(
                &gpu,
                &fused::backward_dx_with(fam, &gpu, s, D_OUT, D_IN, &tw, &tdy, &ta, &tb, &tdx, 1.0)
                    .unwrap(),
            );
            let want: Vec<f32> = old.iter().zip(&dx_ref).map(|(o, r)| o + r).collect();
            assert_close(
                &format!("dx += {what}"),
                &gpu.download(&tdx).unwrap(),
                &want,
                2e-6,
            );
        }
    }
}

#[test]
fn fused_handles_odd_token_counts_and_wide_blocks() {
    let Some(gpu) = common::gpu() else { return };
    // d_out = 70 = 7 × 10 and d_in = 21 = 7 × 3: blocks of 10 × 3 rows and columns, so no
    // register tile of 4 columns and no shared tile of 64 fits a block.
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
        let (w64, a64, b64) = (cpu::f64s(&w0), cpu::f64s(&a), cpu::f64s(&b));
        let y_ref = cpu::f32s(&cpu::forward(&s, &w64, &a64, &b64, &cpu::f64s(&x), t).unwrap());
        let dx_ref = cpu::f32s(
            &cpu::backward(&s, &w64, &a64, &b64, &cpu::f64s(&x), &cpu::f64s(&dy))
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
            run(
                &gpu,
                &fused::forward_with(fam, &gpu, &s, d_out, d_in, &tw, &tx, &ta, &tb, &ty, 0.0)
                    .unwrap(),
            );
            assert_close(
                &format!("forward {s:?} T={t}"),
                &gpu.download(&ty).unwrap(),
                &y_ref,
                2e-6,
            );
            let tdx = gpu.zeros(&[t, d_in]).unwrap();
            run(
                &gpu,
                &fused::backward_dx_with(
                    fam, &gpu, &s, d_out, d_in, &tw, &tdy, &ta, &tb, &tdx, 0.0,
                )
                .unwrap(),
            );
            assert_close(
                &format!("dx {s:?} T={t}"),
                &gpu.download(&tdx).unwrap(),
                &dx_ref,
                2e-6,
            );
        }
    }
}

/// The register family's cached-factor vec4 kernels (`boha_reg4c_*`: r_b ≤ 4 or 8, p
/// forward or q backward a multiple of 16) at every r_b they take, the rank-chunk ones
/// (`boha_reg4k_*`: other multiples of 4), and their
/// fallback to the plain vec4 kernels (r_b = 5; q = 40 backward), with token counts that
/// are not multiples of 16 and more than one token range (T > 256).
#[test]
fn fused_cached_factor_kernels_and_fallback() {
    let Some(gpu) = common::gpu_with(&GpuOptions {
        gemm_family: Some(GemmFamily::Register),
        ..Default::default()
    }) else {
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
        let (w64, a64, b64) = (cpu::f64s(&w0), cpu::f64s(&a), cpu::f64s(&b));
        let y_ref = cpu::f32s(&cpu::forward(&s, &w64, &a64, &b64, &cpu::f64s(&x), t).unwrap());
        let dx_ref = cpu::f32s(
            &cpu::backward(&s, &w64, &a64, &b64, &cpu::f64s(&x), &cpu::f64s(&dy))
                .unwrap()
                .0,
        );
        let tw = up(&gpu, &[d_out, d_in], &w0);
        let ta = up(&gpu, &s.a_shape(d_in), &a);
        let tb = up(&gpu, &s.b_shape(d_out), &b);
        let (tx, tdy) = (up(&gpu, &[t, d_in], &x), up(&gpu, &[t, d_out], &dy));
        let ty = up(&gpu, &[t, d_out], &vec![f32::NAN; t * d_out]);
        run(
            &gpu,
            &fused::forward(&gpu, &s, d_out, d_in, &tw, &tx, &ta, &tb, &ty, 0.0).unwrap(),
        );
        let what = format!("{s:?} {d_out}x{d_in} T={t}");
        assert_close(
            &format!("forward {what}"),
            &gpu.download(&ty).unwrap(),
            &y_ref,
            2e-6,
        );
        let old = rng.vec_f32(t * d_in, -3.0, 3.0);
        let tdx = up(&gpu, &[t, d_in], &old);
        run(
            &gpu,
            &fused::backward_dx(&gpu, &s, d_out, d_in, &tw, &tdy, &ta, &tb, &tdx, 1.0).unwrap(),
        );
        let want: Vec<f32> = old.iter().zip(&dx_ref).map(|(o, r)| o + r).collect();
        assert_close(
            &format!("dx += {what}"),
            &gpu.download(&tdx).unwrap(),
            &want,
            2e-6,
        );
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn adapted_linear_forward_and_backward_match_reference() {
    for fam in FAMILIES {
        let opts = GpuOptions {
            gemm_family: Some(fam),
            ..Default::default()
        };
        let Some(gpu) = common::gpu_with(&opts) else {
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
            let (w0, a, b, x) = (
                cpu::f64s(&d.w0),
                cpu::f64s(&d.a),
                cpu::f64s(&d.b),
                cpu::f64s(&d.x),
            );
            let y_ref = cpu::f32s(&cpu::forward(s, &w0, &a, &b, &x, T).unwrap());
            let (dx_ref, da_ref, db_ref) =
                cpu::backward(s, &w0, &a, &b, &x, &cpu::f64s(&d.dy)).unwrap();
            let tw = up(&gpu, &[D_OUT, D_IN], &d.w0);
            let tx = up(&gpu, &[T, D_IN], &d.x);
            let tdy = up(&gpu, &[T, D_OUT], &d.dy);
            let ty = up(&gpu, &[T, D_OUT], &vec![f32::NAN; T * D_OUT]);
            run(&gpu, &layer.forward(&gpu, &tw, &tx, &ty).unwrap());
            assert_close(
                &format!("layer forward {what}"),
                &gpu.download(&ty).unwrap(),
                &y_ref,
                2e-6,
            );

            // Everything accumulates onto earlier contents.
            let mut rng = Rng::new(300 + n as u64);
            let old_dx = rng.vec_f32(T * D_IN, -2.0, 2.0);
            let old_ga = rng.vec_f32(d.a.len(), -2.0, 2.0);
            let old_gb = rng.vec_f32(d.b.len(), -2.0, 2.0);
            let tdx = up(&gpu, &[T, D_IN], &old_dx);
            gpu.write(&layer.grad_a, &old_ga).unwrap();
            gpu.write(&layer.grad_b, &old_gb).unwrap();
            run(
                &gpu,
                &layer
                    .backward(&gpu, &tw, &tx, &tdy, Some(&tdx), None)
                    .unwrap(),
            );
            let plus = |old: &[f32], r: &[f64]| -> Vec<f32> {
                old.iter().zip(r).map(|(o, r)| o + *r as f32).collect()
            };
            assert_close(
                &format!("layer dx {what}"),
                &gpu.download(&tdx).unwrap(),
                &plus(&old_dx, &dx_ref),
                2e-6,
            );
            assert_close(
                &format!("layer dA {what}"),
                &gpu.download(&layer.grad_a).unwrap(),
                &plus(&old_ga, &da_ref),
                1e-5,
            );
            assert_close(
                &format!("layer dB {what}"),
                &gpu.download(&layer.grad_b).unwrap(),
                &plus(&old_gb, &db_ref),
                1e-5,
            );

            // Without dx, only the adapter gradients move; the partial slots come from
            // the scratch every spec of this loop shares, which each one leaves cleared.
            gpu.write(&layer.grad_a, &old_ga).unwrap();
            gpu.write(&layer.grad_b, &old_gb).unwrap();
            let ds = layer
                .backward(&gpu, &tw, &tx, &tdy, None, Some(&shared))
                .unwrap();
            run(&gpu, &ds);
            assert_close(
                &format!("layer dA (no dx) {what}"),
                &gpu.download(&layer.grad_a).unwrap(),
                &plus(&old_ga, &da_ref),
                1e-5,
            );
        }
    }
}

#[test]
fn merge_matches_reference_and_unmerge_restores_w0_exactly() {
    let Some(gpu) = common::gpu() else { return };
    for (n, s) in layer_specs().iter().enumerate() {
        let d = data(s, 400 + n as u64);
        let layer = AdaptedLinear::from_host(&gpu, *s, "t.proj", D_OUT, D_IN, &d.a, &d.b).unwrap();
        let (w0, a, b) = (cpu::f64s(&d.w0), cpu::f64s(&d.a), cpu::f64s(&d.b));
        let want = cpu::f32s(&cpu::merged_weight(s, &w0, &a, &b).unwrap());
        let tw = up(&gpu, &[D_OUT, D_IN], &d.w0);
        let merged = up(&gpu, &[D_OUT, D_IN], &vec![f32::NAN; D_OUT * D_IN]);
        run(&gpu, &layer.merge(&gpu, &tw, &merged).unwrap());
        let got = gpu.download(&merged).unwrap();
        assert_close(&format!("merge {s:?}"), &got, &want, 1e-6);
        // The merged layer (plain product with the merged weight) gives the adapter's output.
        let tx = up(&gpu, &[T, D_IN], &d.x);
        let (y_on, y_merged) = (
            gpu.zeros(&[T, D_OUT]).unwrap(),
            gpu.zeros(&[T, D_OUT]).unwrap(),
        );
        run(&gpu, &layer.forward(&gpu, &tw, &tx, &y_on).unwrap());
        run(&gpu, &plain_product(&gpu, &tx, &merged, &y_merged));
        let y_on = gpu.download(&y_on).unwrap();
        assert_close(
            &format!("merged output {s:?}"),
            &gpu.download(&y_merged).unwrap(),
            &y_on,
            1e-5,
        );
        // Unmerge: the kept original comes back bit for bit.
        let mut rec = Recorder::new();
        merge::unmerge(&mut rec, &tw, &merged).unwrap();
        gpu.run(&rec).unwrap();
        assert_eq!(
            bits(&gpu.download(&merged).unwrap()),
            bits(&d.w0),
            "unmerge {s:?}"
        );
    }
}

#[test]
fn undivisible_shapes_and_bad_lengths_are_clear_errors() {
    let Some(gpu) = common::gpu() else { return };
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
    // Fresh adapters are exact no-ops (B = 0).
    assert!(gpu.download(&layer.b).unwrap().iter().all(|&v| v == 0.0));
    // Every kind starts at ΔW = 0 (ABBA from W0's SVD, LoHa with A2 = 0): its merge is W0.
    let mut rng = Rng::new(77);
    let w0 = rng.vec_f32(D_OUT * D_IN, -1.0, 1.0);
    let tw = up(&gpu, &[D_OUT, D_IN], &w0);
    for m in Method::ALL {
        let s = AdapterSpec::from_options(m, None, Some(8), None, None).unwrap();
        let fresh = AdaptedLinear::new(&gpu, s, "t", &tw, 3).unwrap();
        let merged = gpu.zeros(&[D_OUT, D_IN]).unwrap();
        run(&gpu, &fresh.merge(&gpu, &tw, &merged).unwrap());
        assert_eq!(gpu.download(&merged).unwrap(), w0, "{m:?} starts at ΔW = 0");
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
}

/// y = x·wᵀ with no adapter: the plain GEMM a merged model runs.
fn plain_product(gpu: &Gpu, x: &Tensor, w: &Tensor, y: &Tensor) -> Vec<Dispatch> {
    boha::ops::gemm::matmul_nt(gpu, x, w, y, 0.0).unwrap()
}
