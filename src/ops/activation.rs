//! MLP gate activations and soft-capping (`shaders/activation.wgsl`), elementwise:
//!
//! - SwiGLU (Llama, Mistral, Qwen2): h = silu(gate) ⊙ up, silu(x) = x·σ(x);
//!   d_gate = dh ⊙ up ⊙ σ(g)(1 + g(1 − σ(g))), d_up = dh ⊙ silu(g).
//! - GeGLU (Gemma-2): h = gelu_tanh(gate) ⊙ up with PyTorch's tanh approximation
//!   gelu_tanh(x) = ½x(1 + tanh(u)), u = √(2/π)(x + 0.044715x³);
//!   d_gate = dh ⊙ up ⊙ [½(1 + tanh u) + ½x(1 − tanh²u)·√(2/π)(1 + 0.134145x²)],
//!   d_up = dh ⊙ gelu_tanh(g).
//! - Soft-capping (Gemma-2 final logits): y = cap·tanh(x/cap), dx = dy ⊙ (1 − tanh²(x/cap)).
//!
//! gate, up, h are [N, F] (any shape; only element counts must agree). Tensors larger than
//! the binding limit are bound in ranges. The residual add is [`super::elementwise::add`].

use super::chunks::row_ranges;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, Params, Tensor};
use crate::model::config::Activation;
use crate::shaders::ACTIVATION;

fn flat(gpu: &Gpu, entry: &'static str, cap: f32, ts: &[&Tensor]) -> Result<Vec<Dispatch>> {
    let n = ts[0].len();
    if ts.iter().any(|t| t.len() != n) {
        let shapes: Vec<&[usize]> = ts.iter().map(|t| t.shape()).collect();
        return Err(Error::shape(
            entry,
            format!("element counts differ: {shapes:?}"),
        ));
    }
    let kernel = Kernel::new(ACTIVATION, entry);
    let mut out = Vec::new();
    for (start, len) in row_ranges(gpu, n, 1, entry)? {
        let views: Vec<Tensor> = ts
            .iter()
            .map(|t| t.view(start, len))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = views.iter().collect();
        let params = Params::new().u(len).f(cap);
        out.push(gpu.prepare(&kernel, &params, &refs, gpu.grid(len.div_ceil(64)))?);
    }
    Ok(out)
}

/// h = act(gate) ⊙ up with `act` SiLU (SwiGLU) or GELU-tanh (GeGLU).
pub fn glu_forward(
    gpu: &Gpu,
    act: Activation,
    gate: &Tensor,
    up: &Tensor,
    h: &Tensor,
) -> Result<Vec<Dispatch>> {
    let entry = match act {
        Activation::Silu => "swiglu_forward",
        Activation::GeluTanh => "geglu_forward",
    };
    flat(gpu, entry, 0.0, &[gate, up, h])
}

/// d_gate = dh ⊙ up ⊙ act'(gate), d_up = dh ⊙ act(gate) (both overwritten).
pub fn glu_backward(
    gpu: &Gpu,
    act: Activation,
    gate: &Tensor,
    up: &Tensor,
    dh: &Tensor,
    d_gate: &Tensor,
    d_up: &Tensor,
) -> Result<Vec<Dispatch>> {
    let entry = match act {
        Activation::Silu => "swiglu_backward",
        Activation::GeluTanh => "geglu_backward",
    };
    flat(gpu, entry, 0.0, &[gate, up, dh, d_gate, d_up])
}

fn check_cap(op: &str, cap: f32) -> Result<()> {
    if cap.is_finite() && cap > 0.0 {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{op}: soft-cap {cap} must be positive"
        )))
    }
}

/// y = cap · tanh(x / cap).
pub fn softcap_forward(gpu: &Gpu, cap: f32, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    check_cap("softcap_forward", cap)?;
    flat(gpu, "softcap_forward", cap, &[x, y])
}

/// y ← cap · tanh(y / cap), in place.
pub fn softcap_inplace(gpu: &Gpu, cap: f32, y: &Tensor) -> Result<Vec<Dispatch>> {
    check_cap("softcap_inplace_forward", cap)?;
    flat(gpu, "softcap_inplace_forward", cap, &[y])
}

/// dx = dy ⊙ (1 − tanh²(x / cap)).
pub fn softcap_backward(
    gpu: &Gpu,
    cap: f32,
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
) -> Result<Vec<Dispatch>> {
    check_cap("softcap_backward", cap)?;
    flat(gpu, "softcap_backward", cap, &[x, dy, dx])
}

/// f64 CPU references.
pub mod reference {
    use crate::model::config::Activation;

    const K: f64 = 0.797_884_560_802_865_4;
    const C: f64 = 0.044715;

    /// act(x): SiLU or GELU-tanh.
    pub fn act(a: Activation, x: f64) -> f64 {
        match a {
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::GeluTanh => 0.5 * x * (1.0 + (K * (x + C * x * x * x)).tanh()),
        }
    }

    /// act'(x), analytic.
    pub fn act_grad(a: Activation, x: f64) -> f64 {
        match a {
            Activation::Silu => {
                let s = 1.0 / (1.0 + (-x).exp());
                s * (1.0 + x * (1.0 - s))
            }
            Activation::GeluTanh => {
                let t = (K * (x + C * x * x * x)).tanh();
                0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * K * (1.0 + 3.0 * C * x * x)
            }
        }
    }

    /// h = act(gate) ⊙ up.
    pub fn glu_forward(a: Activation, gate: &[f64], up: &[f64]) -> Vec<f64> {
        gate.iter().zip(up).map(|(&g, &u)| act(a, g) * u).collect()
    }

    /// (d_gate, d_up).
    pub fn glu_backward(
        a: Activation,
        gate: &[f64],
        up: &[f64],
        dh: &[f64],
    ) -> (Vec<f64>, Vec<f64>) {
        let dg = gate
            .iter()
            .zip(up)
            .zip(dh)
            .map(|((&g, &u), &d)| d * u * act_grad(a, g))
            .collect();
        let du = gate.iter().zip(dh).map(|(&g, &d)| d * act(a, g)).collect();
        (dg, du)
    }

    /// cap · tanh(x / cap).
    pub fn softcap(cap: f64, x: f64) -> f64 {
        cap * (x / cap).tanh()
    }

    /// d softcap / dx.
    pub fn softcap_grad(cap: f64, x: f64) -> f64 {
        let t = (x / cap).tanh();
        1.0 - t * t
    }
}
