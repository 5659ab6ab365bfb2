//! Cross-entropy of the LM head over the vocabulary in chunks (`shaders/cross_entropy.wgsl`),
//! so that the [N, V] logits never exist in full. Given hidden states h [N, C], the LM
//! head (or tied embedding) W \[V, C\] and targets \[N\] (u32 bits):
//!
//!   Z = h·Wᵀ,  z = cap·tanh(Z / cap) with a final-logit soft-cap (Gemma-2), else z = Z
//!   loss_r = logsumexp_v z[r, v] − z[r, target_r]
//!   loss   = Σ_{kept r} loss_r / count,   a row is kept when target_r < V
//!
//! Targets ≥ V are ignored (u32::MAX, or HF's −100 as u32). The forward computes each chunk
//! Z_c = h·W_cᵀ [N, c] with a GEMM into one [N, chunk] scratch and folds it into running
//! (max, Σexp, target logit) per row; a last kernel writes the saved per-row logsumexp and
//! the mean loss, the only value meant to be read back. The backward recomputes each
//! chunk, turns it in place into
//!
//!   dZ = scale · (softmax(z) − onehot(target)) / count · dz/dZ   (zero on ignored rows)
//!
//! and accumulates dh += dZ·W_c with the GEMM (beta = 1 after the first chunk). Memory is
//! O(N·chunk): the [N, chunk] scratch ([`scratch_len`] elements), the [N, 3] running
//! statistics of the forward and a 1-element count in the backward. None of it holds
//! anything between dispatch lists, so a caller may plan it ([`forward_with`],
//! [`backward_with`] take [`Rooms`]; the graph executor declares them as the loss's
//! temporaries); without rooms, each pass allocates its own.
//!
//! [`logits`] is the inference op: h [B, C] → logits [B, V] (the GEMM binds a W over the
//! binding limit in ranges), soft-capped in place when asked.

use super::activation;
use super::gemm::{matmul_nn, matmul_nt};
use super::rmsnorm::threads_per_row;
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Kernel, Params, Tensor};
use crate::shaders::CROSS_ENTROPY;

/// Options of the chunked loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CrossEntropy {
    /// Vocabulary columns per chunk (e.g. 4096 or 8192); rounded down so chunk views of W
    /// stay aligned, and so the [N, chunk] scratch fits one binding.
    pub chunk: usize,
    /// Final-logit soft-cap (Gemma-2).
    pub softcap: Option<f32>,
}

struct Shapes {
    n: usize,
    c: usize,
    v: usize,
    chunk: usize,
}

fn shapes(
    gpu: &Gpu,
    op: &str,
    ce: &CrossEntropy,
    h: &Tensor,
    w: &Tensor,
    targets: &Tensor,
) -> Result<Shapes> {
    let c = *h.shape().last().unwrap_or(&0);
    let (v, wc) = match w.shape() {
        &[v, wc] => (v, wc),
        s => return Err(Error::shape(op, format!("W must be [V, C], got {s:?}"))),
    };
    if c == 0 || wc != c || v == 0 {
        return Err(Error::shape(
            op,
            format!("h {:?} against W {:?}", h.shape(), w.shape()),
        ));
    }
    let n = h.len() / c;
    if targets.len() != n || n == 0 {
        return Err(Error::shape(
            op,
            format!("{} targets for {n} rows", targets.len()),
        ));
    }
    if ce.softcap.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
        return Err(Error::Invalid(format!("{op}: soft-cap must be positive")));
    }
    let chunk = chunk_cols(gpu, ce, n, c, v);
    if chunk == 0 {
        return Err(Error::shape(
            op,
            format!("no aligned chunk of columns for {n} rows fits a binding"),
        ));
    }
    Ok(Shapes { n, c, v, chunk })
}

/// Elements of the logits scratch for `rows` hidden states against a [V, C] head: rows ×
/// the chunk the ops use on this device.
pub fn scratch_len(gpu: &Gpu, ce: &CrossEntropy, rows: usize, c: usize, v: usize) -> usize {
    let chunk = chunk_cols(gpu, ce, rows, c, v);
    rows * chunk
}

/// The chunk width: `ce.chunk` capped so [rows, chunk] fits one binding and rounded down
/// so chunk starts keep W's row views aligned (and vec4-friendly for the GEMM); 0 if no
/// chunk fits.
fn chunk_cols(gpu: &Gpu, ce: &CrossEntropy, rows: usize, c: usize, v: usize) -> usize {
    let align = gpu.binding_offset_align();
    // W may be stored in any dtype: a step whose rows start aligned in every dtype's
    // bytes serves them all (block dtypes only where a row is whole blocks).
    let step = DType::ALL
        .iter()
        .filter(|d| c.is_multiple_of(d.block()))
        .map(|d| {
            let row_bytes = d.bytes_for(c).max(1) as u64;
            (align / gcd(align, row_bytes)).max(1)
        })
        .fold(1u64, |s, x| s / gcd(s, x) * x) as usize;
    let step = step * 4 / gcd(step as u64, 4) as usize;
    let fit = (gpu.max_binding_bytes() / (rows.max(1) as u64 * 4)) as usize;
    let chunk = ce.chunk.min(fit).min(v.next_multiple_of(step));
    chunk / step * step
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The [N, chunk] logits room: the caller's, checked, or a new buffer.
fn logits_room(gpu: &Gpu, op: &str, s: &Shapes, given: Option<&Tensor>) -> Result<Tensor> {
    let len = s.n * s.chunk;
    match given {
        Some(t) if t.len() >= len => t.view(0, len),
        Some(t) => Err(Error::shape(
            op,
            format!("scratch has {} elements, {len} needed", t.len()),
        )),
        None => gpu.zeros(&[len]),
    }
}

fn params(s: &Shapes, cols: usize, v0: usize, ce: &CrossEntropy, scale: f32) -> Params {
    Params::new()
        .u(s.n)
        .u(cols)
        .u(v0)
        .u(s.v)
        .u((v0 == 0) as usize)
        .f(ce.softcap.unwrap_or(0.0))
        .f(scale)
}

/// Mean loss into `loss` \[1\] and the per-row logsumexp into `lse` \[N\] (saved for the
/// backward). Shapes: h \[N, C\], W \[V, C\], targets \[N\].
pub fn forward(
    gpu: &Gpu,
    ce: &CrossEntropy,
    h: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    loss: &Tensor,
    lse: &Tensor,
) -> Result<Vec<Dispatch>> {
    forward_with(gpu, ce, h, w, targets, loss, lse, None)
}

/// Scratch a caller plans for the loss: the logits chunk (at least [`scratch_len`]
/// elements) and the per-row statistics (\[N, 3\] in the forward, \[1\] in the backward).
#[derive(Clone, Copy)]
pub struct Rooms<'a> {
    pub logits: &'a Tensor,
    pub rows: &'a Tensor,
}

/// [`forward`] with its scratch in `rooms` instead of buffers of its own.
#[allow(clippy::too_many_arguments)]
pub fn forward_with(
    gpu: &Gpu,
    ce: &CrossEntropy,
    h: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    loss: &Tensor,
    lse: &Tensor,
    rooms: Option<Rooms>,
) -> Result<Vec<Dispatch>> {
    let op = "cross_entropy_forward";
    let s = shapes(gpu, op, ce, h, w, targets)?;
    if loss.len() != 1 || lse.len() != s.n {
        return Err(Error::shape(
            op,
            format!(
                "loss {:?}, lse {:?} for {} rows",
                loss.shape(),
                lse.shape(),
                s.n
            ),
        ));
    }
    let h2 = h.reshape(&[s.n, s.c])?;
    let scratch = logits_room(gpu, op, &s, rooms.map(|r| r.logits))?;
    let stats = match rooms {
        Some(r) if r.rows.len() >= s.n * 3 => r.rows.view(0, s.n * 3)?,
        Some(r) => {
            return Err(Error::shape(
                op,
                format!("statistics room {:?}", r.rows.shape()),
            ))
        }
        None => gpu.zeros(&[s.n, 3])?,
    };
    let tpr = threads_per_row(gpu);
    let k_chunk = Kernel::new(CROSS_ENTROPY, "ce_chunk_forward").with("TPR", tpr as f64);
    let mut out = Vec::new();
    for v0 in (0..s.v).step_by(s.chunk) {
        let cols = s.chunk.min(s.v - v0);
        let z = scratch.view(0, s.n * cols)?.reshape(&[s.n, cols])?;
        out.extend(matmul_nt(gpu, &h2, &w.rows(v0, cols)?, &z, 0.0)?);
        let groups = gpu.grid(s.n.div_ceil(64 / tpr));
        out.push(gpu.prepare(
            &k_chunk,
            &params(&s, cols, v0, ce, 1.0),
            &[&z, targets, &stats],
            groups,
        )?);
    }
    let k_finish = Kernel::new(CROSS_ENTROPY, "ce_finish_forward");
    out.push(gpu.prepare(
        &k_finish,
        &params(&s, 0, 0, ce, 1.0),
        &[targets, &stats, lse, loss],
        [1, 1, 1],
    )?);
    Ok(out)
}

/// dh [N, C] (overwritten) = scale · ∂loss/∂h, from the forward's `lse`. `scale` is the
/// gradient arriving at the loss (1 for a plain mean; 1/steps for gradient accumulation).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    ce: &CrossEntropy,
    h: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    lse: &Tensor,
    dh: &Tensor,
    scale: f32,
) -> Result<Vec<Dispatch>> {
    backward_with(gpu, ce, h, w, targets, lse, dh, scale, None)
}

/// [`backward`] with its scratch in `rooms` instead of buffers of its own.
#[allow(clippy::too_many_arguments)]
pub fn backward_with(
    gpu: &Gpu,
    ce: &CrossEntropy,
    h: &Tensor,
    w: &Tensor,
    targets: &Tensor,
    lse: &Tensor,
    dh: &Tensor,
    scale: f32,
    rooms: Option<Rooms>,
) -> Result<Vec<Dispatch>> {
    let op = "cross_entropy_backward";
    let s = shapes(gpu, op, ce, h, w, targets)?;
    if lse.len() != s.n || dh.len() != h.len() {
        return Err(Error::shape(
            op,
            format!(
                "lse {:?}, dh {:?} for h {:?}",
                lse.shape(),
                dh.shape(),
                h.shape()
            ),
        ));
    }
    let h2 = h.reshape(&[s.n, s.c])?;
    let dh2 = dh.reshape(&[s.n, s.c])?;
    let scratch = logits_room(gpu, op, &s, rooms.map(|r| r.logits))?;
    let count = match rooms {
        Some(r) => r.rows.view(0, 1)?,
        None => gpu.zeros(&[1])?,
    };
    let k_count = Kernel::new(CROSS_ENTROPY, "ce_count_backward");
    let k_grad = Kernel::new(CROSS_ENTROPY, "ce_chunk_backward");
    let mut out = vec![gpu.prepare(
        &k_count,
        &params(&s, 0, 0, ce, scale),
        &[targets, &count],
        [1, 1, 1],
    )?];
    for v0 in (0..s.v).step_by(s.chunk) {
        let cols = s.chunk.min(s.v - v0);
        let z = scratch.view(0, s.n * cols)?.reshape(&[s.n, cols])?;
        let wc = w.rows(v0, cols)?;
        out.extend(matmul_nt(gpu, &h2, &wc, &z, 0.0)?);
        let groups = gpu.grid((s.n * cols).div_ceil(64));
        out.push(gpu.prepare(
            &k_grad,
            &params(&s, cols, v0, ce, scale),
            &[&z, targets, lse, &count],
            groups,
        )?);
        out.extend(matmul_nn(
            gpu,
            &z,
            &wc,
            &dh2,
            if v0 == 0 { 0.0 } else { 1.0 },
        )?);
    }
    Ok(out)
}

/// Logits for generation: out [B, V] = h [B, C] · Wᵀ, then cap·tanh(·/cap) in place with a
/// soft-cap.
pub fn logits(
    gpu: &Gpu,
    h: &Tensor,
    w: &Tensor,
    out: &Tensor,
    softcap: Option<f32>,
) -> Result<Vec<Dispatch>> {
    let mut ds = matmul_nt(gpu, h, w, out, 0.0)?;
    if let Some(cap) = softcap {
        ds.extend(activation::softcap_inplace(gpu, cap, out)?);
    }
    Ok(ds)
}

/// f64 CPU reference (materialises the logits; tests only).
pub mod reference {
    /// Logits z [N, V] (soft-capped) from h [N, C], W [V, C].
    pub fn logits(h: &[f64], w: &[f64], c: usize, softcap: Option<f64>) -> Vec<f64> {
        let mut z = Vec::new();
        for hr in h.chunks(c) {
            for wr in w.chunks(c) {
                let v: f64 = hr.iter().zip(wr).map(|(a, b)| a * b).sum();
                z.push(softcap.map_or(v, |cap| cap * (v / cap).tanh()));
            }
        }
        z
    }

    /// (mean loss over kept rows, dh) for targets ≥ V ignored.
    pub fn loss_and_grad(
        h: &[f64],
        w: &[f64],
        c: usize,
        targets: &[u32],
        softcap: Option<f64>,
    ) -> (f64, Vec<f64>) {
        let v = w.len() / c;
        let z = logits(h, w, c, softcap);
        let kept = targets.iter().filter(|&&t| (t as usize) < v).count();
        let mut loss = 0.0;
        let mut dh = vec![0.0; h.len()];
        for (r, &t) in targets.iter().enumerate() {
            if t as usize >= v {
                continue;
            }
            let zr = &z[r * v..(r + 1) * v];
            let m = zr.iter().cloned().fold(f64::MIN, f64::max);
            let lse = m + zr.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
            loss += lse - zr[t as usize];
            for j in 0..v {
                let mut g = (zr[j] - lse).exp() - if j == t as usize { 1.0 } else { 0.0 };
                if let Some(cap) = softcap {
                    g *= 1.0 - (zr[j] / cap).powi(2);
                }
                g /= kept as f64;
                for k in 0..c {
                    dh[r * c + k] += g * w[j * c + k];
                }
            }
        }
        (if kept > 0 { loss / kept as f64 } else { 0.0 }, dh)
    }
}
