//! What the Hadamard-pair kinds (ABBA, LoHa) share: ΔW = s·(B1A1) ⊙ (B2A2), with
//! B = [B1 | B2] [d_out, 2h] and A = [A1; A2] [2h, d_in] (h = r/2 per pair), and the two
//! ways the GPU runs it, chosen per matrix by [`runs_fused`]:
//!
//! - **Fused** (`super::fused_kernels::Fused` with the pair snippet,
//!   `shaders/kinds/pair.wgsl`): each W0 tile is modulated additively by
//!   (B1A1) ⊙ (B2A2), both rank-h sums formed on the fly as the tile is loaded, as BoHA's
//!   W0 ⊙ (1 + s·M) is; the gradients form Ĝ = dYᵀX tile by tile and multiply each
//!   group's share by the other group's product. It costs a product of Ĝ's size and
//!   r_b multiply-adds per W0 element per modulation.
//! - **Khatri–Rao** ([`KhatriRao`]), through the identity
//!
//! ```text
//! (B1A1) ⊙ (B2A2) = Bₖ·Aₖ     Bₖ[o, i·h + j] = B1[o, i]·B2[o, j]     [d_out, h²]
//!                             Aₖ[i·h + j, n] = A1[i, n]·A2[j, n]     [h², d_in]
//! ```
//!
//!   (the ABBA paper's efficient form): the factors Aₖ, Bₖ are formed on the GPU
//!   ([`super::khatri_rao`]) and the product runs as LoRA of rank h² on plain GEMMs
//!   (`super::bottleneck`); the gradients of Aₖ, Bₖ fold back into A and B by the chain
//!   rule. Per matrix the step needs h²·(d_out + d_in) floats for Aₖ‖Bₖ and as many for
//!   their gradients, in the model's shared scratch (the partial rooms, which it leaves
//!   zeroed as the fused kernels expect), and T·h² for U.
//!   It costs O(h²·(d_out + d_in)) per token and never touches Ĝ.
//!
//! Neither path has a d_out × d_in buffer.
use super::bottleneck::{self, Factors};
use super::fused_kernels::Fused;
use super::grad::GradScratch;
use super::kind::{Kernels, Pass};
use super::layer::AdaptedLinear;
use super::{khatri_rao, merge, AdapterSpec};
use crate::error::Result;
use crate::gpu::tuning::PairKey;
use crate::gpu::{Dispatch, GemmFamily, Gpu, Tensor};
use crate::graph::uniforms::{ELEM, GEMM, SMALL};
use crate::ops::elementwise::fill;

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

/// Tokens that share one modulation of a W0 element in the fused kernels: an
/// invocation's 16 tokens in the register family, a workgroup's 64-token tile in the
/// shared one.
fn tokens_per_modulation(gpu: &Gpu) -> usize {
    match gpu.gemm_family() {
        GemmFamily::Register => 16,
        GemmFamily::Shared => 64,
    }
}

/// Whether a d_out × d_in matrix runs on the fused kernels rather than the Khatri–Rao
/// bottleneck: the one with fewer multiply-adds per token beyond the two base products,
///
/// ```text
/// fused:       d_out·d_in·(1 + 2·r_b / n)   Ĝ for the gradients, and W0 modulated once per
///                                           n tokens forward and for dx
/// Khatri–Rao:  5·h²·(d_out + d_in)          x·Aₖᵀ, its product with Bₖ, three backward
/// ```
///
/// Measured on lavapipe (`bench layer`, h = 16, both paths in one run) the fused step took
/// 1.9–2.0× (576 → 1536, 1536 → 576) and 3.6× (2048 → 2048) the Khatri–Rao one, where these counts
/// predict 1.6× and 4.0×. On GPUs (n = 64) the rule picks the fused kernels at h = 16 for
/// SmolLM2's shapes. Where `boha tune` has timed both paths for this matrix on this
/// adapter, its winner decides instead of the counts.
pub fn runs_fused(gpu: &Gpu, spec: &AdapterSpec, d_out: usize, d_in: usize) -> bool {
    let key = PairKey::new(d_out, d_in, half(spec));
    gpu.tuned_pair_fused(&key)
        .unwrap_or_else(|| runs_fused_by_rule(gpu, spec, d_out, d_in))
}

/// [`runs_fused`]'s multiply-add rule alone, whatever `boha tune` measured.
pub fn runs_fused_by_rule(gpu: &Gpu, spec: &AdapterSpec, d_out: usize, d_in: usize) -> bool {
    fused_is_cheaper(tokens_per_modulation(gpu), spec, d_out, d_in)
}

/// [`runs_fused`]'s rule with n tokens per modulation.
fn fused_is_cheaper(n: usize, spec: &AdapterSpec, d_out: usize, d_in: usize) -> bool {
    let h = half(spec) as f64;
    let n = n as f64;
    let fused = (d_out * d_in) as f64 * (1.0 + 2.0 * spec.block_rank as f64 / n);
    let khatri_rao = 5.0 * h * h * (d_out + d_in) as f64;
    fused < khatri_rao
}

/// The pair kinds' kernels: per matrix, the fused kernels or the Khatri–Rao bottleneck
/// ([`runs_fused`]); M's factors on the host are the Khatri–Rao ones either way.
pub struct Pair;

impl Pair {
    fn path(gpu: &Gpu, spec: &AdapterSpec, d_out: usize, d_in: usize) -> &'static dyn Kernels {
        if runs_fused(gpu, spec, d_out, d_in) {
            &Fused
        } else {
            &KhatriRao
        }
    }
}

impl Kernels for Pair {
    fn m_factors(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f64],
        b: &[f64],
    ) -> Result<(usize, Vec<f64>, Vec<f64>)> {
        KhatriRao.m_factors(spec, d_out, d_in, a, b)
    }

    fn m_factor_grads(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f64],
        b: &[f64],
        d_fa: Vec<f64>,
        d_fb: Vec<f64>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        KhatriRao.m_factor_grads(spec, d_out, d_in, a, b, d_fa, d_fb)
    }

    fn room_lens(
        &self,
        gpu: &Gpu,
        spec: &AdapterSpec,
        tokens: usize,
        d_out: usize,
        d_in: usize,
    ) -> (usize, usize, usize) {
        Pair::path(gpu, spec, d_out, d_in).room_lens(gpu, spec, tokens, d_out, d_in)
    }

    fn forward(
        &self,
        gpu: &Gpu,
        lin: &AdaptedLinear,
        w0: &Tensor,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>> {
        Pair::path(gpu, &lin.spec, lin.d_out, lin.d_in).forward(gpu, lin, w0, x, y)
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
        Pair::path(gpu, &lin.spec, lin.d_out, lin.d_in).backward(gpu, lin, w0, x, dy, dx, scratch)
    }

    /// The merge template with the pair snippet, element by element (no factors to form).
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
        Pair::path(gpu, spec, d_out, d_in).uniform_bytes(gpu, spec, tokens, d_out, d_in, pass)
    }
}

/// The Khatri–Rao bottleneck (see the module docs).
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
        // Leave the room zeroed: the fused kernels' partial slots share it.
        out.extend(fill(gpu, 0.0, &room)?);
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
        // Leave both rooms zeroed: the fused kernels' partial slots share them.
        out.extend(fill(gpu, 0.0, &room)?);
        out.extend(fill(gpu, 0.0, &groom)?);
        Ok(out)
    }

    /// merged = W0 + s·(B1A1) ⊙ (B2A2), element by element (the merge template with the
    /// pair snippet: no factors to form).
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
        // Forming Aₖ and Bₖ, and in the backward folding their gradients back; zeroing
        // the rooms after.
        match pass {
            Pass::Forward => 2 * SMALL + bottleneck::FORWARD_GEMMS * GEMM + ELEM,
            Pass::Backward { dx } => 4 * SMALL + bottleneck::backward_gemms(dx) * GEMM + 2 * ELEM,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Method;

    fn abba(h: usize) -> AdapterSpec {
        AdapterSpec {
            method: Method::Abba,
            blocks: 1,
            block_rank: 2 * h,
            scale: 1.0,
        }
    }

    #[test]
    fn the_cheaper_path_is_picked() {
        // SmolLM2's 576 → 1536 at h = 16: Khatri–Rao on a CPU adapter (measured there
        // 2.1× faster), fused with a GPU's 64-token tiles.
        assert!(!fused_is_cheaper(16, &abba(16), 1536, 576));
        assert!(fused_is_cheaper(64, &abba(16), 1536, 576));
        // Small ranks stay on the bottleneck, large ones move to the fused kernels.
        assert!(!fused_is_cheaper(64, &abba(4), 2048, 2048));
        assert!(fused_is_cheaper(16, &abba(32), 576, 576));
    }
}
