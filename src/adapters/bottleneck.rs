//! The bottleneck path of the additive kinds that run on plain GEMMs (LoRA, and ABBA and
//! LoHa through their Khatri–Rao factors): with M = Bₑ·Aₑ of rank R
//! (Aₑ [R, d_in], Bₑ [d_out, R]),
//!
//! ```text
//! forward:   U = x·Aₑᵀ      y = x·W0ᵀ + s·U·Bₑᵀ
//! backward:  U = x·Aₑᵀ (recomputed)      dBₑ (+)= s·dyᵀ·U      dU = s·dy·Bₑ (over U)
//!            dAₑ (+)= dUᵀ·x      dx += dy·W0 + dU·Aₑ
//! ```
//!
//! U and dU [T, R] share one room (U is dead once dU is formed), and the backward
//! recomputes U rather than keeping the forward's (one [T, R] product, R/d_out of the
//! forward's cost). In a trainer the room is the model's one [`GradScratch`], so no
//! matrix holds a buffer of its own beyond its factors, gradients and moments.
//!
//! [`Plain`] is LoRA's [`Kernels`]: the parameters are the factors (R = r).

use super::grad::GradScratch;
use super::kind::{Kernels, Pass};
use super::layer::AdaptedLinear;
use super::{merge, AdapterSpec};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::graph::uniforms::GEMM;
use crate::ops::gemm::{gemm, matmul_nn, matmul_nt, matmul_tn, Gemm};

/// M's factors as the GEMMs see them: Aₑ [R, d_in], Bₑ [d_out, R].
pub(crate) struct Factors<'a> {
    pub a: &'a Tensor,
    pub b: &'a Tensor,
    pub rank: usize,
}

/// The number of rows T of x [T, d_in].
pub(crate) fn tokens(x: &Tensor, d_in: usize) -> Result<usize> {
    if d_in == 0 || !x.len().is_multiple_of(d_in) {
        return Err(Error::shape(
            "adapter",
            format!("x has {} elements, not rows of {d_in}", x.len()),
        ));
    }
    Ok(x.len() / d_in)
}

/// `len` elements of the shared scratch's bottleneck room when it is large enough, else
/// a tensor of their own (kept alive by the dispatches that bind it).
pub(crate) fn room(gpu: &Gpu, len: usize, scratch: Option<&GradScratch>) -> Result<Tensor> {
    if let Some(t) = scratch.map(|s| s.bottleneck(len)).transpose()?.flatten() {
        return Ok(t);
    }
    gpu.zeros(&[len.max(1)])
}

/// y [T, d_out] = x·W0ᵀ + s·(x·Aₑᵀ)·Bₑᵀ, with U in `u` (at least T·R elements).
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    gpu: &Gpu,
    (d_out, d_in, s): (usize, usize, f32),
    w0: &Tensor,
    x: &Tensor,
    y: &Tensor,
    f: &Factors<'_>,
    u: &Tensor,
) -> Result<Vec<Dispatch>> {
    let t = tokens(x, d_in)?;
    let r = f.rank;
    let x = x.reshape(&[t, d_in])?;
    let y = y.reshape(&[t, d_out])?;
    let u = u.view(0, t * r)?.reshape(&[t, r])?;
    let a = f.a.reshape(&[r, d_in])?;
    let b = f.b.reshape(&[d_out, r])?;
    let mut out = matmul_nt(gpu, &x, &a, &u, 0.0)?;
    out.extend(matmul_nt(gpu, &x, &w0.reshape(&[d_out, d_in])?, &y, 0.0)?);
    let g = Gemm {
        trans_b: true,
        alpha: s,
        beta: 1.0,
        ..Gemm::new(t, d_out, r)
    };
    out.extend(gemm(gpu, &g, &u, &b, &y)?);
    Ok(out)
}

/// The backward above: dAₑ, dBₑ into `grad_a` [R, d_in], `grad_b` [d_out, R] (+= with
/// `beta` = 1, overwritten with 0) and, if given, dx += dy·W0 + dU·Aₑ. U and dU live in
/// `u` (at least T·R elements).
#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    gpu: &Gpu,
    (d_out, d_in, s): (usize, usize, f32),
    w0: &Tensor,
    x: &Tensor,
    dy: &Tensor,
    dx: Option<&Tensor>,
    f: &Factors<'_>,
    (grad_a, grad_b, beta): (&Tensor, &Tensor, f32),
    u: &Tensor,
) -> Result<Vec<Dispatch>> {
    let t = tokens(x, d_in)?;
    let r = f.rank;
    let x = x.reshape(&[t, d_in])?;
    let dy = dy.reshape(&[t, d_out])?;
    let u = u.view(0, t * r)?.reshape(&[t, r])?;
    let a = f.a.reshape(&[r, d_in])?;
    let b = f.b.reshape(&[d_out, r])?;
    let mut out = matmul_nt(gpu, &x, &a, &u, 0.0)?;
    // dBₑ (+)= s·dyᵀ·U
    let g = Gemm {
        trans_a: true,
        alpha: s,
        beta,
        ..Gemm::new(d_out, r, t)
    };
    out.extend(gemm(gpu, &g, &dy, &u, &grad_b.reshape(&[d_out, r])?)?);
    // dU = s·dy·Bₑ, over U (β = 0 never reads it; U has no reader left).
    let du = u;
    let g = Gemm {
        alpha: s,
        ..Gemm::new(t, r, d_out)
    };
    out.extend(gemm(gpu, &g, &dy, &b, &du)?);
    // dAₑ (+)= dUᵀ·x
    out.extend(matmul_tn(gpu, &du, &x, &grad_a.reshape(&[r, d_in])?, beta)?);
    if let Some(dx) = dx {
        let dx = dx.reshape(&[t, d_in])?;
        out.extend(matmul_nn(gpu, &dy, &w0.reshape(&[d_out, d_in])?, &dx, 1.0)?);
        out.extend(matmul_nn(gpu, &du, &a, &dx, 1.0)?);
    }
    Ok(out)
}

/// GEMMs recorded by [`forward`] and by [`backward`] (with and without dx).
pub(crate) const FORWARD_GEMMS: u64 = 3;
pub(crate) fn backward_gemms(dx: bool) -> u64 {
    4 + 2 * u64::from(dx)
}

/// LoRA's kernels: the bottleneck with Aₑ = A, Bₑ = B; the merge is the additive merge
/// kernel at b = 1.
pub struct Plain;

fn plain_factors(lin: &AdaptedLinear) -> Factors<'_> {
    Factors {
        a: &lin.a,
        b: &lin.b,
        rank: lin.spec.block_rank,
    }
}

impl Kernels for Plain {
    fn room_lens(
        &self,
        _gpu: &Gpu,
        spec: &AdapterSpec,
        tokens: usize,
        _d_out: usize,
        _d_in: usize,
    ) -> (usize, usize, usize) {
        (0, 0, tokens * spec.rank())
    }

    fn forward(
        &self,
        gpu: &Gpu,
        lin: &AdaptedLinear,
        w0: &Tensor,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let t = tokens(x, lin.d_in)?;
        let u = room(gpu, t * lin.spec.block_rank, lin.room())?;
        let dims = (lin.d_out, lin.d_in, lin.spec.scale);
        forward(gpu, dims, w0, x, y, &plain_factors(lin), &u)
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
        let t = tokens(x, lin.d_in)?;
        let u = room(gpu, t * lin.spec.block_rank, scratch)?;
        let dims = (lin.d_out, lin.d_in, lin.spec.scale);
        let grads = (&lin.grad_a, &lin.grad_b, 1.0);
        backward(gpu, dims, w0, x, dy, dx, &plain_factors(lin), grads, &u)
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
        _gpu: &Gpu,
        _spec: &AdapterSpec,
        _tokens: usize,
        _d_out: usize,
        _d_in: usize,
        pass: Pass,
    ) -> u64 {
        match pass {
            Pass::Forward => FORWARD_GEMMS * GEMM,
            Pass::Backward { dx } => backward_gemms(dx) * GEMM,
        }
    }
}
