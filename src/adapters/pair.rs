//! What the Hadamard-pair kinds (ABBA, LoHa) share: ΔW = s·(B1A1) ⊙ (B2A2), with
//! B = [B1 | B2] [d_out, 2h] and A = [A1; A2] [2h, d_in] (h = r/2 per pair), run through
//! the Khatri–Rao identity
//!
//! ```text
//! (B1A1) ⊙ (B2A2) = Bₖ·Aₖ     Bₖ[o, i·h + j] = B1[o, i]·B2[o, j]     [d_out, h²]
//!                             Aₖ[i·h + j, n] = A1[i, n]·A2[j, n]     [h², d_in]
//! ```
//!
//! (the ABBA paper's efficient form): the factors Aₖ, Bₖ are formed on the GPU
//! ([`super::khatri_rao`]) and the product runs as LoRA of rank h² on plain GEMMs
//! ([`super::bottleneck`]); the gradients of Aₖ, Bₖ fold back into A and B by the chain
//! rule. No d_out × d_in buffer exists; per matrix the step needs h²·(d_out + d_in)
//! floats for Aₖ‖Bₖ and as many for their gradients, in the model's shared scratch (the
//! partial rooms, which the fused kinds use and these kinds do not), and T·h² for U.

use super::bottleneck::{self, Factors};
use super::grad::GradScratch;
use super::kind::{Kernels, Pass};
use super::layer::AdaptedLinear;
use super::{khatri_rao, merge, AdapterSpec, Method};
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::graph::uniforms::{GEMM, SMALL};

/// The rank of each pair, h = r_b / 2.
pub(crate) fn half(spec: &AdapterSpec) -> usize {
    spec.block_rank / 2
}

/// Where Bₖ starts in a room holding Aₖ‖Bₖ: after Aₖ, at the device's binding-offset
/// alignment.
fn b_offset(gpu: &Gpu, spec: &AdapterSpec, d_in: usize) -> usize {
    let h = half(spec);
    let align = (gpu.binding_offset_align() as usize / 4).max(1);
    (h * h * d_in).div_ceil(align) * align
}

/// Elements of Aₖ and Bₖ together.
fn factor_len(gpu: &Gpu, spec: &AdapterSpec, d_out: usize, d_in: usize) -> usize {
    let h = half(spec);
    b_offset(gpu, spec, d_in) + d_out * h * h
}

/// Aₖ‖Bₖ and dAₖ‖dBₖ (two buffers: a dispatch may not read and write one) from the
/// shared scratch when it has room, else of their own.
fn factor_rooms(gpu: &Gpu, len: usize, scratch: Option<&GradScratch>) -> Result<(Tensor, Tensor)> {
    if let Some(r) = scratch
        .map(|s| s.partial_rooms(len, len))
        .transpose()?
        .flatten()
    {
        return Ok(r);
    }
    Ok((gpu.zeros(&[len.max(1)])?, gpu.zeros(&[len.max(1)])?))
}

/// Aₖ [h², d_in] and Bₖ [d_out, h²] as views of one room.
fn split(
    gpu: &Gpu,
    spec: &AdapterSpec,
    room: &Tensor,
    d_out: usize,
    d_in: usize,
) -> Result<(Tensor, Tensor)> {
    let h = half(spec);
    let r = h * h;
    Ok((
        room.view(0, r * d_in)?.reshape(&[r, d_in])?,
        room.view(b_offset(gpu, spec, d_in), d_out * r)?
            .reshape(&[d_out, r])?,
    ))
}

/// Dispatches forming Aₖ, Bₖ from A, B into `room`; returns them with the views.
fn form(
    gpu: &Gpu,
    spec: &AdapterSpec,
    (d_out, d_in): (usize, usize),
    a: &Tensor,
    b: &Tensor,
    room: &Tensor,
) -> Result<(Vec<Dispatch>, Tensor, Tensor)> {
    let h = half(spec);
    let (ak, bk) = split(gpu, spec, room, d_out, d_in)?;
    let mut out = khatri_rao::pair_a(gpu, a, h, d_in, &ak)?;
    out.extend(khatri_rao::pair_b(gpu, b, h, d_out, &bk)?);
    Ok((out, ak, bk))
}

/// The pair kinds' kernels (see the module docs).
pub struct KhatriRao;

impl Kernels for KhatriRao {
    /// M's factors on the host: (h², Aₖ, Bₖ).
    fn m_factors(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f64],
        b: &[f64],
    ) -> Result<(usize, Vec<f64>, Vec<f64>)> {
        let h = half(spec);
        let mut ak = vec![0.0; h * h * d_in];
        let mut bk = vec![0.0; d_out * h * h];
        khatri_rao::reference::pair_a(a, h, d_in, &mut ak)?;
        khatri_rao::reference::pair_b(b, h, d_out, &mut bk)?;
        Ok((h * h, ak, bk))
    }

    /// (dA, dB) from (dAₖ, dBₖ).
    fn m_factor_grads(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f64],
        b: &[f64],
        d_ak: Vec<f64>,
        d_bk: Vec<f64>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let h = half(spec);
        let mut da = vec![0.0; a.len()];
        let mut db = vec![0.0; b.len()];
        khatri_rao::reference::pair_a_backward(a, &d_ak, h, d_in, &mut da)?;
        khatri_rao::reference::pair_b_backward(b, &d_bk, h, d_out, &mut db)?;
        Ok((da, db))
    }

    fn room_lens(
        &self,
        gpu: &Gpu,
        spec: &AdapterSpec,
        tokens: usize,
        d_out: usize,
        d_in: usize,
    ) -> (usize, usize, usize) {
        let h = half(spec);
        let f = factor_len(gpu, spec, d_out, d_in);
        (f, f, tokens * h * h)
    }

    fn forward(
        &self,
        gpu: &Gpu,
        lin: &AdaptedLinear,
        w0: &Tensor,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        let (spec, d_out, d_in) = (&lin.spec, lin.d_out, lin.d_in);
        let h = half(spec);
        let t = bottleneck::tokens(x, d_in)?;
        let (room, _) = factor_rooms(gpu, factor_len(gpu, spec, d_out, d_in), lin.room())?;
        let u = bottleneck::room(gpu, t * h * h, lin.room())?;
        let (mut out, ak, bk) = form(gpu, spec, (d_out, d_in), &lin.a, &lin.b, &room)?;
        let f = Factors {
            a: &ak,
            b: &bk,
            rank: h * h,
        };
        out.extend(bottleneck::forward(
            gpu,
            (d_out, d_in, spec.scale),
            w0,
            x,
            y,
            &f,
            &u,
        )?);
        Ok(out)
    }

    #[allow(clippy::too_many_arguments)]
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
        let (spec, d_out, d_in) = (&lin.spec, lin.d_out, lin.d_in);
        let h = half(spec);
        let t = bottleneck::tokens(x, d_in)?;
        let (room, groom) = factor_rooms(gpu, factor_len(gpu, spec, d_out, d_in), scratch)?;
        let u = bottleneck::room(gpu, t * h * h, scratch)?;
        let (mut out, ak, bk) = form(gpu, spec, (d_out, d_in), &lin.a, &lin.b, &room)?;
        let (dak, dbk) = split(gpu, spec, &groom, d_out, d_in)?;
        let f = Factors {
            a: &ak,
            b: &bk,
            rank: h * h,
        };
        out.extend(bottleneck::backward(
            gpu,
            (d_out, d_in, spec.scale),
            w0,
            x,
            dy,
            dx,
            &f,
            (&dak, &dbk, 0.0),
            &u,
        )?);
        out.extend(khatri_rao::pair_a_backward(
            gpu,
            &lin.a,
            &dak,
            h,
            d_in,
            &lin.grad_a,
        )?);
        out.extend(khatri_rao::pair_b_backward(
            gpu,
            &lin.b,
            &dbk,
            h,
            d_out,
            &lin.grad_b,
        )?);
        Ok(out)
    }

    /// merged = W0 + s·Bₖ·Aₖ: the merge kernel of the additive kinds on the rank-h²
    /// factors, formed into buffers of their own (a merge is not a step).
    #[allow(clippy::too_many_arguments)]
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
        let h = half(spec);
        let room = gpu.zeros(&[factor_len(gpu, spec, d_out, d_in).max(1)])?;
        let (mut out, ak, bk) = form(gpu, spec, (d_out, d_in), a, b, &room)?;
        let kr = AdapterSpec {
            method: Method::Lora,
            blocks: 1,
            block_rank: h * h,
            scale: spec.scale,
        };
        out.extend(merge::merge(gpu, &kr, d_out, d_in, w0, &ak, &bk, merged)?);
        Ok(out)
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
        // Forming Aₖ and Bₖ, and in the backward folding their gradients back.
        match pass {
            Pass::Forward => 2 * SMALL + bottleneck::FORWARD_GEMMS * GEMM,
            Pass::Backward { dx } => 4 * SMALL + bottleneck::backward_gemms(dx) * GEMM,
        }
    }
}
