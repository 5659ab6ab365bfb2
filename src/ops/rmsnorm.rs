//! RMSNorm (`shaders/rmsnorm.wgsl`), over the rows of x [N, C]:
//!
//!   y = x · r ⊙ w',   r = 1 / sqrt(mean_c(x²) + eps),   w' = w (Llama) or 1 + w (Gemma)
//!
//! Backward gives the input gradient only (the norm weight is frozen):
//!
//!   dx = r · (g − x̂ · mean_c(g ⊙ x̂)),   g = dy ⊙ w',   x̂ = x · r
//!
//! r is recomputed from x in the backward, so nothing is saved. Rows are bound in ranges
//! when x exceeds the binding limit.

use super::chunks::row_ranges;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GemmFamily, Gpu, Kernel, Params, Tensor};
use crate::shaders::RMSNORM;

/// The norm's constants.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsNorm {
    pub eps: f32,
    /// Multiply by `1 + w` instead of `w` (Gemma).
    pub unit_offset: bool,
}

/// Invocations per row: one on CPU-type adapters (no barriers), a workgroup on GPUs.
pub(crate) fn threads_per_row(gpu: &Gpu) -> usize {
    match gpu.gemm_family() {
        GemmFamily::Register => 1,
        GemmFamily::Shared => 64,
    }
}

fn dims(op: &str, x: &Tensor, w: &Tensor, others: &[&Tensor]) -> Result<(usize, usize)> {
    let c = *x.shape().last().unwrap_or(&0);
    if c == 0 || w.len() != c {
        return Err(Error::shape(
            op,
            format!("x {:?} with weight {:?}", x.shape(), w.shape()),
        ));
    }
    if let Some(t) = others.iter().find(|t| t.len() != x.len()) {
        return Err(Error::shape(
            op,
            format!("x {:?} but {:?}", x.shape(), t.shape()),
        ));
    }
    Ok((x.len() / c, c))
}

#[allow(clippy::too_many_arguments)] // one private helper behind the public forward/backward
fn dispatches(
    gpu: &Gpu,
    entry: &'static str,
    n: &RmsNorm,
    accumulate: bool,
    rows: usize,
    cols: usize,
    w: &Tensor,
    tensors: &[&Tensor],
) -> Result<Vec<Dispatch>> {
    let tpr = threads_per_row(gpu);
    let kernel = Kernel::new(RMSNORM, entry).with("TPR", tpr as f64);
    let mut out = Vec::new();
    for (start, len) in row_ranges(gpu, rows, cols, entry)? {
        let views: Vec<Tensor> = tensors
            .iter()
            .map(|t| t.view(start * cols, len * cols))
            .collect::<Result<_>>()?;
        let mut binds: Vec<&Tensor> = vec![&views[0], w];
        binds.extend(views[1..].iter());
        let params = Params::new()
            .u(len)
            .u(cols)
            .f(n.eps)
            .f(if n.unit_offset { 1.0 } else { 0.0 })
            .u(accumulate as usize);
        let groups = gpu.grid(len.div_ceil(64 / tpr));
        out.push(gpu.prepare(&kernel, &params, &binds, groups)?);
    }
    Ok(out)
}

/// y = x · r ⊙ w'. Shapes: x, y \[N, C\]; w \[C\].
pub fn forward(
    gpu: &Gpu,
    n: &RmsNorm,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    let (rows, cols) = dims("rmsnorm_forward", x, w, &[y])?;
    dispatches(gpu, "rmsnorm_forward", n, false, rows, cols, w, &[x, y])
}

/// dx = r · (g − x̂ · mean(g ⊙ x̂)), written into `dx` (`accumulate`: added to it, e.g. the
/// residual stream's gradient). Shapes: x, dy, dx \[N, C\]; w \[C\].
pub fn backward(
    gpu: &Gpu,
    n: &RmsNorm,
    x: &Tensor,
    w: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    accumulate: bool,
) -> Result<Vec<Dispatch>> {
    let (rows, cols) = dims("rmsnorm_backward", x, w, &[dy, dx])?;
    dispatches(
        gpu,
        "rmsnorm_backward",
        n,
        accumulate,
        rows,
        cols,
        w,
        &[x, dy, dx],
    )
}

/// f64 CPU reference.
pub mod reference {
    use super::RmsNorm;

    fn r(row: &[f64], eps: f64) -> f64 {
        1.0 / (row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64 + eps).sqrt()
    }

    /// y for x [rows, cols].
    pub fn forward(n: &RmsNorm, x: &[f64], w: &[f64]) -> Vec<f64> {
        let off = if n.unit_offset { 1.0 } else { 0.0 };
        let mut y = Vec::with_capacity(x.len());
        for row in x.chunks(w.len()) {
            let r = r(row, n.eps as f64);
            y.extend(row.iter().zip(w).map(|(v, wc)| v * r * (wc + off)));
        }
        y
    }

    /// dx for x, dy [rows, cols].
    pub fn backward(n: &RmsNorm, x: &[f64], w: &[f64], dy: &[f64]) -> Vec<f64> {
        let off = if n.unit_offset { 1.0 } else { 0.0 };
        let c = w.len();
        let mut dx = Vec::with_capacity(x.len());
        for (row, drow) in x.chunks(c).zip(dy.chunks(c)) {
            let r = r(row, n.eps as f64);
            let g: Vec<f64> = drow.iter().zip(w).map(|(d, wc)| d * (wc + off)).collect();
            let m = g.iter().zip(row).map(|(g, v)| g * v * r).sum::<f64>() / c as f64;
            dx.extend(g.iter().zip(row).map(|(g, v)| r * (g - v * r * m)));
        }
        dx
    }
}
