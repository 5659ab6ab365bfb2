//! [`AdaptedLinear`]: a frozen linear layer W0 (d_out × d_in) with one adapter, the type
//! the model code uses.
//!
//! ```text
//! forward:  y = x·W'ᵀ                 W' = W0 ⊙ (1 + s·M)  or  W0 + s·M
//! backward: grad_a += dA, grad_b += dB, dx += dy·W'
//! ```
//!
//! BoHA, HiRA and the additive control run the fused kernels ([`super::fused`] for y and
//! dx, [`super::grad`] for dA and dB): no d_out × d_in buffer is ever made. LoRA runs as
//! LoRA is usually run, with plain GEMMs through the rank-r bottleneck U = x·Aᵀ:
//!
//! ```text
//! y = x·W0ᵀ + s·U·Bᵀ
//! grad_b += s·dyᵀ·U     dU = s·dy·B     grad_a += dUᵀ·x     dx += dy·W0 + dU·A
//! ```
//!
//! U and dU [T, r] live in one room (U is dead once dU is formed), and the backward
//! recomputes U instead of keeping the forward's (one [T, r] product, r/d_out of the
//! forward's cost). In a trainer every matrix takes that room from the model's one
//! [`GradScratch`], as BoHA's gradient kernels take their partial slots from it, so
//! neither method holds a per-matrix buffer beyond its factors, gradients and moments.

use super::grad::GradScratch;
use super::{fused, grad, init, merge, AdapterSpec, Method};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::ops::gemm::{gemm, matmul_nn, matmul_nt, matmul_tn, Gemm};

/// A frozen d_out × d_in linear layer's adapter: its factors and their gradients.
/// W0 itself is owned by the model and passed to each call.
pub struct AdaptedLinear {
    pub spec: AdapterSpec,
    pub d_out: usize,
    pub d_in: usize,
    /// A [b, b, r_b, q]
    pub a: Tensor,
    /// B [b, b, p, r_b]
    pub b: Tensor,
    /// dL/dA, same shape as A (accumulated by [`AdaptedLinear::backward`])
    pub grad_a: Tensor,
    /// dL/dB, same shape as B
    pub grad_b: Tensor,
    /// The scratch shared with the other matrices of a model (see
    /// [`AdaptedLinear::share_scratch`]).
    room: Option<GradScratch>,
}

impl AdaptedLinear {
    /// A fresh adapter on layer `layer` (named in shape errors): B = 0, A Kaiming-uniform
    /// from `seed` (see [`init::init_params`]), gradients zero.
    pub fn new(
        gpu: &Gpu,
        spec: AdapterSpec,
        layer: &str,
        d_out: usize,
        d_in: usize,
        seed: u64,
    ) -> Result<Self> {
        spec.check_shape(layer, d_out, d_in)?;
        let (a, b) = init::init_params(&spec, d_out, d_in, seed);
        Self::from_host(gpu, spec, layer, d_out, d_in, &a, &b)
    }

    /// An adapter with given factors (A [b, b, r_b, q], B [b, b, p, r_b]), gradients zero.
    pub fn from_host(
        gpu: &Gpu,
        spec: AdapterSpec,
        layer: &str,
        d_out: usize,
        d_in: usize,
        a: &[f32],
        b: &[f32],
    ) -> Result<Self> {
        spec.check_shape(layer, d_out, d_in)?;
        if (spec.method == Method::Lora || spec.method == Method::Hira) && spec.blocks != 1 {
            return Err(Error::Invalid(format!(
                "{layer}: {} has no block grid, got b = {}",
                spec.method.name(),
                spec.blocks
            )));
        }
        let a_shape = spec.a_shape(d_in);
        let b_shape = spec.b_shape(d_out);
        for (name, v, shape) in [("A", a, &a_shape), ("B", b, &b_shape)] {
            let n: usize = shape.iter().product();
            if v.len() != n {
                return Err(Error::shape(
                    layer,
                    format!("{name} has {} values, {shape:?} needs {n}", v.len()),
                ));
            }
        }
        Ok(AdaptedLinear {
            spec,
            d_out,
            d_in,
            a: gpu.upload(&a_shape, a)?,
            b: gpu.upload(&b_shape, b)?,
            grad_a: gpu.zeros(&a_shape)?,
            grad_b: gpu.zeros(&b_shape)?,
            room: None,
        })
    }

    /// Takes intermediates from `scratch` from now on: LoRA's U in the forward, and in
    /// the backward whatever its `scratch` argument does not give. Every matrix sharing
    /// one scratch must have its dispatches run in one queue, each call's list whole and
    /// in order (see [`GradScratch`]). Where the room is smaller than a call needs (more
    /// tokens than it was sized for), LoRA allocates its own.
    pub fn share_scratch(&mut self, scratch: &GradScratch) {
        self.room = Some(scratch.clone());
    }

    /// Trainable parameters: (b·r_b)(d_out + d_in).
    pub fn param_count(&self) -> usize {
        self.spec.param_count(self.d_out, self.d_in)
    }

    /// y[T, d_out] = x[T, d_in]·W'ᵀ (overwrites y)
    pub fn forward(&self, gpu: &Gpu, w0: &Tensor, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
        if self.spec.method == Method::Lora {
            return self.lora_forward(gpu, w0, x, y);
        }
        fused::forward(
            gpu, &self.spec, self.d_out, self.d_in, w0, x, &self.a, &self.b, y, 0.0,
        )
    }

    /// Accumulates grad_a, grad_b (+=) and, if given, dx (+=) from dy[T, d_out] and the
    /// layer input x[T, d_in]. The gradient kernels' partial slots and LoRA's [T, r]
    /// intermediate come from `scratch` when given, else from the shared scratch (see
    /// [`AdaptedLinear::share_scratch`]), else from a fresh allocation.
    pub fn backward(
        &self,
        gpu: &Gpu,
        w0: &Tensor,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<&Tensor>,
        scratch: Option<&GradScratch>,
    ) -> Result<Vec<Dispatch>> {
        let scratch = scratch.or(self.room.as_ref());
        if self.spec.method == Method::Lora {
            return self.lora_backward(gpu, w0, x, dy, dx, scratch);
        }
        let (s, d_out, d_in) = (&self.spec, self.d_out, self.d_in);
        let mut out = grad::adapter_grads(
            gpu,
            s,
            d_out,
            d_in,
            w0,
            x,
            dy,
            &self.a,
            &self.b,
            &self.grad_a,
            &self.grad_b,
            scratch,
        )?;
        if let Some(dx) = dx {
            out.extend(fused::backward_dx(
                gpu, s, d_out, d_in, w0, dy, &self.a, &self.b, dx, 1.0,
            )?);
        }
        Ok(out)
    }

    /// merged = W0 ⊙ (1 + s·M) or W0 + s·M, for adapter-free inference (see [`merge`]).
    pub fn merge(&self, gpu: &Gpu, w0: &Tensor, merged: &Tensor) -> Result<Vec<Dispatch>> {
        merge::merge(
            gpu, &self.spec, self.d_out, self.d_in, w0, &self.a, &self.b, merged,
        )
    }

    /// x and dy as [T, d_in] / [T, d_out] matrices, and the factors as A [r, d_in],
    /// B [d_out, r] (b = 1), for the GEMMs.
    fn lora_views(
        &self,
        x: &Tensor,
        dy: Option<&Tensor>,
    ) -> Result<(Tensor, Option<Tensor>, Tensor, Tensor, usize)> {
        let (d_out, d_in, r) = (self.d_out, self.d_in, self.spec.block_rank);
        if d_in == 0 || !x.len().is_multiple_of(d_in) {
            return Err(Error::shape(
                "lora",
                format!("x has {} elements, not rows of {d_in}", x.len()),
            ));
        }
        let t = x.len() / d_in;
        let dy = match dy {
            Some(g) => Some(g.reshape(&[t, d_out])?),
            None => None,
        };
        Ok((
            x.reshape(&[t, d_in])?,
            dy,
            self.a.reshape(&[r, d_in])?,
            self.b.reshape(&[d_out, r])?,
            t,
        ))
    }

    /// LoRA's [t, r] room for U and dU: a view of `scratch` when it is large enough, else
    /// a tensor of its own (kept alive by the dispatches that bind it).
    fn lora_room(&self, gpu: &Gpu, t: usize, scratch: Option<&GradScratch>) -> Result<Tensor> {
        let r = self.spec.block_rank;
        if let Some(u) = scratch.map(|s| s.lora_room(t, r)).transpose()?.flatten() {
            return Ok(u);
        }
        gpu.zeros(&[t, r])
    }

    fn lora_forward(
        &self,
        gpu: &Gpu,
        w0: &Tensor,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let (x, _, a, b, t) = self.lora_views(x, None)?;
        let y = y.reshape(&[t, self.d_out])?;
        let w0 = w0.reshape(&[self.d_out, self.d_in])?;
        // U = x·Aᵀ
        let u = self.lora_room(gpu, t, self.room.as_ref())?;
        let mut out = matmul_nt(gpu, &x, &a, &u, 0.0)?;
        out.extend(matmul_nt(gpu, &x, &w0, &y, 0.0)?);
        // y += s·U·Bᵀ
        let g = Gemm {
            trans_b: true,
            alpha: self.spec.scale,
            beta: 1.0,
            ..Gemm::new(t, self.d_out, self.spec.block_rank)
        };
        out.extend(gemm(gpu, &g, &u, &b, &y)?);
        Ok(out)
    }

    fn lora_backward(
        &self,
        gpu: &Gpu,
        w0: &Tensor,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<&Tensor>,
        scratch: Option<&GradScratch>,
    ) -> Result<Vec<Dispatch>> {
        let (d_out, d_in, r, s) = (self.d_out, self.d_in, self.spec.block_rank, self.spec.scale);
        let (x, dy, a, b, t) = self.lora_views(x, Some(dy))?;
        let dy = dy.expect("given above");
        // U = x·Aᵀ, recomputed: the forward's went back to the shared room.
        let u = self.lora_room(gpu, t, scratch)?;
        let mut out = matmul_nt(gpu, &x, &a, &u, 0.0)?;
        // grad_b += s·dyᵀ·U
        let g = Gemm {
            trans_a: true,
            alpha: s,
            beta: 1.0,
            ..Gemm::new(d_out, r, t)
        };
        out.extend(gemm(gpu, &g, &dy, &u, &self.grad_b.reshape(&[d_out, r])?)?);
        // dU = s·dy·B, over U (β = 0 never reads it; U has no reader left).
        let du = u;
        let g = Gemm {
            alpha: s,
            ..Gemm::new(t, r, d_out)
        };
        out.extend(gemm(gpu, &g, &dy, &b, &du)?);
        // grad_a += dUᵀ·x
        out.extend(matmul_tn(
            gpu,
            &du,
            &x,
            &self.grad_a.reshape(&[r, d_in])?,
            1.0,
        )?);
        if let Some(dx) = dx {
            // dx += dy·W0 + dU·A
            let dx = dx.reshape(&[t, d_in])?;
            out.extend(matmul_nn(gpu, &dy, &w0.reshape(&[d_out, d_in])?, &dx, 1.0)?);
            out.extend(matmul_nn(gpu, &du, &a, &dx, 1.0)?);
        }
        Ok(out)
    }
}
