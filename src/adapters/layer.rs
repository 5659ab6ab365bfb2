//! [`AdaptedLinear`]: a frozen linear layer W0 (d_out × d_in) with one adapter, the type
//! the model code uses.
//!
//! ```text
//! forward:  y = x·W'ᵀ
//! backward: grad_a += dA, grad_b += dB, dx += dy·W'
//! ```
//!
//! What runs is the kind's ([`super::kind::AdapterKind`]): the fused kernels for BoHA,
//! HiRA and the additive control (no d_out × d_in buffer is ever made), plain GEMMs
//! through a rank-R bottleneck for LoRA, ABBA and LoHa (`super::bottleneck`). In a
//! trainer every matrix takes its intermediates from the model's one [`GradScratch`]
//! ([`AdaptedLinear::share_scratch`]), so no matrix holds a buffer of its own beyond its
//! factors, gradients and moments.

use super::grad::GradScratch;
use super::AdapterSpec;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};

/// A frozen d_out × d_in linear layer's adapter: its factors and their gradients.
/// W0 itself is owned by the model and passed to each call. A clone shares the tensors.
#[derive(Clone)]
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
    /// A fresh adapter on layer `layer` (named in shape errors) over the frozen `w0`
    /// [d_out, d_in], initialised by its kind from `seed` (ΔW = 0), gradients zero.
    pub fn new(gpu: &Gpu, spec: AdapterSpec, layer: &str, w0: &Tensor, seed: u64) -> Result<Self> {
        let (d_out, d_in) = Self::w0_shape(spec, layer, w0)?;
        let host_w0 = || gpu.download(w0);
        let (a, b) = spec
            .method
            .kind()
            .init(&spec, d_out, d_in, seed, &host_w0)?;
        Self::from_host(gpu, spec, layer, d_out, d_in, &a, &b)
    }

    /// [`AdaptedLinear::new`] for callers that cannot block (the browser, where
    /// [`Gpu::download`] refuses): a kind that initialises from W0 (ABBA, from its SVD)
    /// has it read back without blocking first.
    pub async fn new_async(
        gpu: &Gpu,
        spec: AdapterSpec,
        layer: &str,
        w0: &Tensor,
        seed: u64,
    ) -> Result<Self> {
        let (d_out, d_in) = Self::w0_shape(spec, layer, w0)?;
        let kind = spec.method.kind();
        let host = if kind.init_reads_w0() {
            Some(gpu.download_async(w0).await?)
        } else {
            None
        };
        let host_w0 = || {
            host.clone().ok_or_else(|| {
                Error::Invalid(format!(
                    "{layer}: {} reads W0 at init but does not say so (init_reads_w0)",
                    kind.name()
                ))
            })
        };
        let (a, b) = kind.init(&spec, d_out, d_in, seed, &host_w0)?;
        Self::from_host(gpu, spec, layer, d_out, d_in, &a, &b)
    }

    /// W0's [d_out, d_in], which `spec`'s grid must divide.
    fn w0_shape(spec: AdapterSpec, layer: &str, w0: &Tensor) -> Result<(usize, usize)> {
        let (d_out, d_in) = match w0.shape() {
            [o, i] => (*o, *i),
            s => {
                return Err(Error::shape(
                    layer,
                    format!("W0 must be [d_out, d_in], got {s:?}"),
                ))
            }
        };
        spec.check_shape(layer, d_out, d_in)?;
        Ok((d_out, d_in))
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
        if !spec.method.kind().has_grid() && spec.blocks != 1 {
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

    /// The scratch shared with the model's other matrices, if any.
    pub(crate) fn room(&self) -> Option<&GradScratch> {
        self.room.as_ref()
    }

    /// y[T, d_out] = x[T, d_in]·W'ᵀ (overwrites y)
    pub fn forward(&self, gpu: &Gpu, w0: &Tensor, x: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
        self.spec
            .method
            .kind()
            .kernels()
            .forward(gpu, self, w0, x, y)
    }

    /// Accumulates grad_a, grad_b (+=) and, if given, dx (+=) from dy[T, d_out] and the
    /// layer input x[T, d_in]. Intermediates (the gradient kernels' partial slots, the
    /// bottleneck's [T, R]) come from `scratch` when given, else from the shared scratch
    /// (see [`AdaptedLinear::share_scratch`]), else from a fresh allocation.
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
        self.spec
            .method
            .kind()
            .kernels()
            .backward(gpu, self, w0, x, dy, dx, scratch)
    }

    /// merged = W' (see the kind's merge), for adapter-free inference.
    pub fn merge(&self, gpu: &Gpu, w0: &Tensor, merged: &Tensor) -> Result<Vec<Dispatch>> {
        self.spec.method.kind().kernels().merge(
            gpu, &self.spec, self.d_out, self.d_in, w0, &self.a, &self.b, merged,
        )
    }
}
