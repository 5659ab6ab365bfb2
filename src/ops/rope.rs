//! Rotary position embedding (`shaders/rope.wgsl`), rotate-half convention of HF Llama,
//! applied in place to q [B·T, NH·HS] or k [B·T, NKV·HS]:
//!
//!   a = pos · inv_freq\[i\],   pos = start\[b\] + t,   i < HS/2
//!   x\[i\]        ← x\[i\] · cos a − x\[i + HS/2\] · sin a
//!   x\[i + HS/2\] ← x\[i + HS/2\] · cos a + x\[i\] · sin a
//!
//! The map is a rotation, so the backward (on dq, dk, in place) is the rotation by −a.
//! `start` gives each sequence's first position (the KV-cache fill before these tokens);
//! without it every sequence starts at 0. The inverse frequencies come from
//! [`inv_freq`] on the host and are uploaded once as a tensor [HS/2].

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, Params, Tensor};
use crate::model::config::RopeScaling;
use crate::shaders::ROPE;

/// The inverse frequencies θ_i = theta^(−2i/HS), i < HS/2, rescaled as HF transformers
/// does (`_compute_default_rope_parameters`, `_compute_linear_scaling_rope_parameters`,
/// `_compute_llama3_parameters`):
///
/// - Linear { factor }: θ_i / factor (the same as dividing positions by factor).
/// - Llama3: with wavelength λ_i = 2π/θ_i, L = original_max_position_embeddings,
///   λ_i < L/high_freq_factor keeps θ_i; λ_i > L/low_freq_factor gives θ_i/factor; between,
///   (1 − s)·θ_i/factor + s·θ_i with s = (L/λ_i − low_freq_factor)/(high_freq_factor −
///   low_freq_factor).
///
/// Computed in f64 and rounded once to f32.
pub fn inv_freq(head_size: usize, theta: f64, scaling: Option<&RopeScaling>) -> Vec<f32> {
    inv_freq_f64(head_size, theta, scaling)
        .into_iter()
        .map(|f| f as f32)
        .collect()
}

/// [`inv_freq`] in f64 (the CPU references and `ModelConfig::rope_inv_freq` use it).
pub fn inv_freq_f64(head_size: usize, theta: f64, scaling: Option<&RopeScaling>) -> Vec<f64> {
    let plain = (0..head_size / 2).map(|i| 1.0 / theta.powf((2 * i) as f64 / head_size as f64));
    match scaling {
        None => plain.collect(),
        Some(RopeScaling::Linear { factor }) => plain.map(|f| f / *factor as f64).collect(),
        Some(RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings,
        }) => {
            let (factor, lo, hi) = (
                *factor as f64,
                *low_freq_factor as f64,
                *high_freq_factor as f64,
            );
            let old = *original_max_position_embeddings as f64;
            plain
                .map(|f| {
                    let wavelen = 2.0 * std::f64::consts::PI / f;
                    if wavelen < old / hi {
                        f
                    } else if wavelen > old / lo {
                        f / factor
                    } else {
                        let s = (old / wavelen - lo) / (hi - lo);
                        (1.0 - s) * f / factor + s * f
                    }
                })
                .collect()
        }
    }
}

fn rotate(
    gpu: &Gpu,
    entry: &'static str,
    x: &Tensor,
    inv_freq: &Tensor,
    starts: Option<&Tensor>,
    seq: usize,
    head_size: usize,
) -> Result<Vec<Dispatch>> {
    let width = *x.shape().last().unwrap_or(&0);
    if head_size == 0
        || !head_size.is_multiple_of(2)
        || !width.is_multiple_of(head_size)
        || inv_freq.len() != head_size / 2
    {
        return Err(Error::shape(
            entry,
            format!(
                "x {:?}, head size {head_size}, inv_freq {:?}",
                x.shape(),
                inv_freq.shape()
            ),
        ));
    }
    let rows = x.len().checked_div(width).unwrap_or(0);
    if seq == 0 || !rows.is_multiple_of(seq) {
        return Err(Error::shape(
            entry,
            format!("{rows} rows are not whole sequences of {seq}"),
        ));
    }
    if let Some(s) = starts {
        if s.len() != rows / seq {
            return Err(Error::shape(
                entry,
                format!("{} starts for {} sequences", s.len(), rows / seq),
            ));
        }
    }
    // Without starts the binding is unused: it takes inv_freq (read-only, like starts)
    // rather than a placeholder buffer of its own.
    let starts_t = starts.unwrap_or(inv_freq);
    let heads = width / head_size;
    let params = Params::new()
        .u(rows)
        .u(heads)
        .u(head_size / 2)
        .u(seq)
        .u(starts.is_some() as usize);
    let n = rows * heads * head_size / 2;
    let kernel = Kernel::new(ROPE, entry);
    Ok(vec![gpu.prepare(
        &kernel,
        &params,
        &[inv_freq, starts_t, x],
        gpu.grid(n.div_ceil(64)),
    )?])
}

/// Rotates `x` [B·T, heads·HS] in place. `inv_freq` [HS/2] from [`inv_freq`]; `starts`
/// \[B\] (u32 bits, see [`Gpu::upload_u32`]) or `None` for positions 0..T; `seq` = T.
pub fn forward(
    gpu: &Gpu,
    x: &Tensor,
    inv_freq: &Tensor,
    starts: Option<&Tensor>,
    seq: usize,
    head_size: usize,
) -> Result<Vec<Dispatch>> {
    rotate(gpu, "rope_forward", x, inv_freq, starts, seq, head_size)
}

/// Rotates the gradient `dx` [B·T, heads·HS] in place by the opposite angles.
pub fn backward(
    gpu: &Gpu,
    dx: &Tensor,
    inv_freq: &Tensor,
    starts: Option<&Tensor>,
    seq: usize,
    head_size: usize,
) -> Result<Vec<Dispatch>> {
    rotate(gpu, "rope_backward", dx, inv_freq, starts, seq, head_size)
}

/// f64 CPU reference (angles from the f32 product, as on the GPU and in HF).
pub mod reference {
    /// Rotates x [B·T, heads·HS] by `sign` × the angles (1 forward, −1 backward);
    /// `starts` \[B\] (zeros for plain positions).
    pub fn rotate(
        x: &[f64],
        inv_freq: &[f32],
        starts: &[u32],
        seq: usize,
        head_size: usize,
        sign: f64,
    ) -> Vec<f64> {
        let half = head_size / 2;
        let mut y = x.to_vec();
        let rows = starts.len() * seq;
        let width = x.len().checked_div(rows).unwrap_or(0);
        for r in 0..rows {
            let pos = starts[r / seq] as usize + r % seq;
            for h in 0..width / head_size {
                let base = r * width + h * head_size;
                for i in 0..half {
                    let a = (pos as f32 * inv_freq[i]) as f64;
                    let (s, c) = (sign * a.sin(), a.cos());
                    let (x1, x2) = (x[base + i], x[base + i + half]);
                    y[base + i] = x1 * c - x2 * s;
                    y[base + i + half] = x2 * c + x1 * s;
                }
            }
        }
        y
    }
}
