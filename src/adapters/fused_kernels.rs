//! The fused kernels' [`Kernels`] (BoHA, HiRA, the additive control): each W0 element is
//! modulated by m = Σ_k B_ij[o, k]·A_ij[k, i] as the kernels load it ([`super::fused`]
//! for y and dx, [`super::grad`] for dA and dB, [`super::merge`] for the merge), so no
//! d_out × d_in buffer ever exists. The update (Hadamard or additive) comes from the
//! spec's kind.

use super::grad::{self, GradScratch};
use super::kind::{Kernels, Pass};
use super::layer::AdaptedLinear;
use super::{fused, merge, AdapterSpec};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::graph::uniforms::{FUSED, GRAD};

pub struct Fused;

impl Kernels for Fused {
    fn room_lens(
        &self,
        gpu: &Gpu,
        spec: &AdapterSpec,
        tokens: usize,
        d_out: usize,
        d_in: usize,
    ) -> (usize, usize, usize) {
        let (a, b) = grad::scratch_lens(gpu, spec, tokens, d_out, d_in);
        (a, b, 0)
    }

    fn forward(
        &self,
        gpu: &Gpu,
        lin: &AdaptedLinear,
        w0: &Tensor,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        fused::forward(
            gpu, &lin.spec, lin.d_out, lin.d_in, w0, x, &lin.a, &lin.b, y, 0.0,
        )
    }

    fn backward(
        &self,
        gpu: &Gpu,
        lin: &AdaptedLinear,
        w0: &Tensor,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<&Tensor>,
        scratch: Option<&GradScratch>,
    ) -> Result<Vec<Dispatch>> {
        let (s, d_out, d_in) = (&lin.spec, lin.d_out, lin.d_in);
        let mut out = grad::adapter_grads(
            gpu,
            s,
            d_out,
            d_in,
            w0,
            x,
            dy,
            &lin.a,
            &lin.b,
            &lin.grad_a,
            &lin.grad_b,
            scratch,
        )?;
        if let Some(dx) = dx {
            out.extend(fused::backward_dx(
                gpu, s, d_out, d_in, w0, dy, &lin.a, &lin.b, dx, 1.0,
            )?);
        }
        Ok(out)
    }

    fn merge(
        &self,
        gpu: &Gpu,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        w0: &Tensor,
        a: &Tensor,
        b: &Tensor,
        merged: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        merge::merge(gpu, spec, d_out, d_in, w0, a, b, merged)
    }

    fn uniform_bytes(
        &self,
        gpu: &Gpu,
        spec: &AdapterSpec,
        tokens: usize,
        d_out: usize,
        d_in: usize,
        pass: Pass,
    ) -> u64 {
        match pass {
            Pass::Forward => FUSED,
            Pass::Backward { dx } => {
                grad::dispatch_count(gpu, spec, tokens, d_out, d_in) as u64 * GRAD
                    + u64::from(dx) * FUSED
            }
        }
    }
}
