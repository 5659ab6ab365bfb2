//! Kernels against their CPU references, written once for the browser and the native
//! build (see tests/web/common.rs): the GEMM families at shapes no tile divides, with
//! transposes, alpha/beta and a strided batch; RMSNorm forward and backward; BoHA's
//! fused forward, input gradient and factor gradients (and the additive update's and
//! LoRA's). Small on purpose: SwiftShader runs WebGPU on the CPU.

#[path = "web/common.rs"]
mod common;

use boha::adapters::grad::adapter_grads;
use boha::adapters::reference as cpu;
use boha::adapters::{fused, AdapterSpec, Method};
use boha::gpu::{GemmFamily, Gpu, GpuOptions, Tensor};
use boha::ops::gemm::{self, reference, Gemm, Path};
use boha::ops::rmsnorm;
use boha::rng::Rng;
use common::{assert_close, f32s, f64s, run};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

const FAMILIES: [GemmFamily; 2] = [GemmFamily::Register, GemmFamily::Shared];

fn up(gpu: &Gpu, v: &[f32]) -> Tensor {
    gpu.upload(&[v.len()], v).unwrap()
}

web_test!(gemm_families_match_reference_at_odd_shapes, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let mut seed = 1;
    for family in FAMILIES {
        for (m, n, k) in [(1, 1, 1), (5, 7, 3), (13, 9, 17), (33, 65, 31), (8, 12, 16)] {
            for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
                for (alpha, beta, batch) in [(1.0, 0.0, 1), (0.5, 1.0, 3)] {
                    let g = Gemm {
                        trans_a,
                        trans_b,
                        alpha,
                        beta,
                        batch,
                        ..Gemm::new(m, n, k)
                    };
                    seed += 1;
                    let mut rng = Rng::new(seed);
                    let a = rng.vec_f32(batch * m * k, -1.0, 1.0);
                    let b = rng.vec_f32(batch * k * n, -1.0, 1.0);
                    // beta = 0 must never read C: NaN there would show.
                    let c = if beta == 0.0 {
                        vec![f32::NAN; batch * m * n]
                    } else {
                        rng.vec_f32(batch * m * n, -1.0, 1.0)
                    };
                    let (ta, tb, tc) = (up(&gpu, &a), up(&gpu, &b), up(&gpu, &c));
                    let ds = gemm::gemm_path(&gpu, family, Path::Auto, &g, &ta, &tb, &tc).unwrap();
                    let got = run(&gpu, &ds, &tc).await;
                    assert_close(
                        &format!("{family:?} {g:?}"),
                        &got,
                        &reference::gemm(&g, &a, &b, &c),
                        2e-5,
                    );
                }
            }
        }
    }
});

web_test!(rmsnorm_forward_and_backward_match_reference, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    for (n, c) in [(1, 3), (7, 13), (5, 96)] {
        let mut rng = Rng::new((n * c) as u64);
        let x = rng.vec_f32(n * c, -2.0, 2.0);
        let w = rng.vec_f32(c, -1.5, 1.5);
        let dy = rng.vec_f32(n * c, -1.0, 1.0);
        let tx = gpu.upload(&[n, c], &x).unwrap();
        let tw = gpu.upload(&[c], &w).unwrap();
        let tdy = gpu.upload(&[n, c], &dy).unwrap();
        let ty = gpu.zeros(&[n, c]).unwrap();
        let tdx = gpu.zeros(&[n, c]).unwrap();
        for unit_offset in [false, true] {
            let norm = rmsnorm::RmsNorm {
                eps: 1e-6,
                unit_offset,
            };
            let got = run(
                &gpu,
                &rmsnorm::forward(&gpu, &norm, &tx, &tw, &ty).unwrap(),
                &ty,
            )
            .await;
            let want = rmsnorm::reference::forward(&norm, &f64s(&x), &f64s(&w));
            assert_close(&format!("rmsnorm y {n}x{c}"), &got, &f32s(&want), 2e-6);
            let ds = rmsnorm::backward(&gpu, &norm, &tx, &tw, &tdy, &tdx, false).unwrap();
            let got = run(&gpu, &ds, &tdx).await;
            let want = rmsnorm::reference::backward(&norm, &f64s(&x), &f64s(&w), &f64s(&dy));
            assert_close(&format!("rmsnorm dx {n}x{c}"), &got, &f32s(&want), 1e-5);
        }
    }
});

/// A layer no tile divides: 48 × 40 with 11 tokens.
const D_OUT: usize = 48;
const D_IN: usize = 40;
const T: usize = 11;

fn specs() -> Vec<AdapterSpec> {
    let s = |method, blocks, block_rank, scale| AdapterSpec {
        method,
        blocks,
        block_rank,
        scale,
    };
    vec![
        s(Method::Boha, 2, 2, 0.8),
        s(Method::Boha, 4, 1, 0.5),
        s(Method::Boha, 1, 8, 0.3),
        s(Method::Additive, 2, 2, 0.6),
        s(Method::Lora, 1, 4, 0.5),
    ]
}

web_test!(fused_boha_forward_and_gradients_match_reference, {
    for family in FAMILIES {
        let opts = GpuOptions {
            gemm_family: Some(family),
            ..Default::default()
        };
        let Some(gpu) = common::gpu_with(&opts).await else {
            return;
        };
        for (i, s) in specs().iter().enumerate() {
            let what = format!("{s:?} {}", family.name());
            let mut rng = Rng::new(100 + i as u64);
            let a_shape = s.a_shape(D_IN);
            let b_shape = s.b_shape(D_OUT);
            let w0 = rng.vec_f32(D_OUT * D_IN, -1.0, 1.0);
            // Non-zero B: a fresh adapter's B = 0 would hide the modulation.
            let a = rng.vec_f32(a_shape.iter().product(), -0.5, 0.5);
            let b = rng.vec_f32(b_shape.iter().product(), -0.5, 0.5);
            let x = rng.vec_f32(T * D_IN, -1.0, 1.0);
            let dy = rng.vec_f32(T * D_OUT, -1.0, 1.0);
            let (cw, ca, cb, cx) = (f64s(&w0), f64s(&a), f64s(&b), f64s(&x));
            let y_ref = f32s(&cpu::forward(s, &cw, &ca, &cb, &cx, T).unwrap());
            let (dx_ref, da_ref, db_ref) =
                cpu::backward(s, &cw, &ca, &cb, &cx, &f64s(&dy)).unwrap();
            let tw = gpu.upload(&[D_OUT, D_IN], &w0).unwrap();
            let ta = gpu.upload(&a_shape, &a).unwrap();
            let tb = gpu.upload(&b_shape, &b).unwrap();
            let tx = gpu.upload(&[T, D_IN], &x).unwrap();
            let tdy = gpu.upload(&[T, D_OUT], &dy).unwrap();

            let ty = gpu.upload(&[T, D_OUT], &vec![f32::NAN; T * D_OUT]).unwrap();
            let ds =
                fused::forward_with(family, &gpu, s, D_OUT, D_IN, &tw, &tx, &ta, &tb, &ty, 0.0)
                    .unwrap();
            assert_close(
                &format!("forward {what}"),
                &run(&gpu, &ds, &ty).await,
                &y_ref,
                2e-6,
            );

            let tdx = gpu.upload(&[T, D_IN], &vec![f32::NAN; T * D_IN]).unwrap();
            let ds = fused::backward_dx_with(
                family, &gpu, s, D_OUT, D_IN, &tw, &tdy, &ta, &tb, &tdx, 0.0,
            )
            .unwrap();
            assert_close(
                &format!("dx {what}"),
                &run(&gpu, &ds, &tdx).await,
                &f32s(&dx_ref),
                2e-6,
            );

            // The factor gradients accumulate: start from zero.
            let tga = gpu.zeros(&a_shape).unwrap();
            let tgb = gpu.zeros(&b_shape).unwrap();
            let ds = adapter_grads(
                &gpu, s, D_OUT, D_IN, &tw, &tx, &tdy, &ta, &tb, &tga, &tgb, None,
            )
            .unwrap();
            let got_a = run(&gpu, &ds, &tga).await;
            let got_b = gpu.download_async(&tgb).await.unwrap();
            assert!(
                da_ref.iter().any(|v| v.abs() > 1e-3),
                "{what}: dA is not trivially zero"
            );
            assert_close(&format!("dA {what}"), &got_a, &f32s(&da_ref), 2e-5);
            assert_close(&format!("dB {what}"), &got_b, &f32s(&db_ref), 2e-5);
        }
    }
});
