//! AdamW's argument checks. The optimizer's GPU steps and the gradient norm against the
//! CPU run in the browser too: tests/web_transformer_ops.rs.

mod common;

use boha::ops::adamw::{self, AdamW, StepScalars};

const OPT: AdamW = AdamW {
    lr: 3e-2,
    beta1: 0.85,
    beta2: 0.99,
    eps: 1e-6,
    weight_decay: 0.1,
};

/// Mismatched parameter and gradient shapes, β₁ = 1 (the bias correction 1/(1 − β₁ᵗ)
/// divides by zero), step 0 and a sum-of-squares output of the wrong size are errors, not
/// dispatches.
#[test]
fn bad_inputs_are_errors() {
    let Some(gpu) = common::gpu() else { return };
    let p = gpu.zeros(&[10]).unwrap();
    let g = gpu.zeros(&[11]).unwrap();
    let st = adamw::AdamState::new(&gpu, &p).unwrap();
    let sc = StepScalars::new(&gpu).unwrap();
    assert!(adamw::adamw_step(&gpu, &OPT, &p, &g, &st, &sc).is_err());
    let bad = AdamW { beta1: 1.0, ..OPT };
    assert!(adamw::adamw_step(&gpu, &bad, &p, &p, &st, &sc).is_err());
    assert!(OPT.step_scalars(0, 1e-3, 1.0).is_err());
    assert!(adamw::sum_squares(&gpu, &[&p], &g).is_err());
}
