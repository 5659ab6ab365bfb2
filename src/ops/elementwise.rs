//! Elementwise ops and row reductions (`shaders/elementwise.wgsl`).
//!
//! - add: y = a + b;  mul: y = a ⊙ b;  scale: y = α·a;  fill: y = α;  copy: y = a;
//!   axpy: y ← y + α·a
//! - row_sum: y\[r\] = Σ_j a\[r, j\];  row_max: y\[r\] = max_j a\[r, j\]
//!
//! Each returns its dispatch list (one dispatch per bound range, see [`super::chunks`]).

use super::chunks::row_ranges;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, Params, Tensor};
use crate::shaders::ELEMENTWISE;

const WG: usize = 64;

fn same_len(op: &str, ts: &[&Tensor]) -> Result<usize> {
    let n = ts[0].len();
    if ts.iter().any(|t| t.len() != n) {
        let lens: Vec<usize> = ts.iter().map(|t| t.len()).collect();
        return Err(Error::shape(op, format!("element counts differ: {lens:?}")));
    }
    Ok(n)
}

/// Shared body of the flat elementwise ops: `inputs` are read, `y` written.
fn flat(
    gpu: &Gpu,
    entry: &'static str,
    alpha: f32,
    inputs: &[&Tensor],
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    let mut all: Vec<&Tensor> = inputs.to_vec();
    all.push(y);
    let n = same_len(entry, &all)?;
    let kernel = Kernel::new(ELEMENTWISE, entry);
    let mut out = Vec::new();
    for (start, len) in row_ranges(gpu, n, 1, entry)? {
        let views: Vec<Tensor> = all
            .iter()
            .map(|t| t.view(start, len))
            .collect::<Result<_>>()?;
        let refs: Vec<&Tensor> = views.iter().collect();
        let params = Params::new().u(len).u(1).f(alpha);
        out.push(gpu.prepare(&kernel, &params, &refs, gpu.grid(len.div_ceil(WG)))?);
    }
    Ok(out)
}

/// y = a + b
pub fn add(gpu: &Gpu, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    flat(gpu, "add_forward", 0.0, &[a, b], y)
}

/// y = a ⊙ b
pub fn mul(gpu: &Gpu, a: &Tensor, b: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    flat(gpu, "mul_forward", 0.0, &[a, b], y)
}

/// y = α·a
pub fn scale(gpu: &Gpu, alpha: f32, a: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    flat(gpu, "scale_forward", alpha, &[a], y)
}

/// y = α
pub fn fill(gpu: &Gpu, alpha: f32, y: &Tensor) -> Result<Vec<Dispatch>> {
    flat(gpu, "fill_forward", alpha, &[], y)
}

/// y = a
pub fn copy(gpu: &Gpu, a: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    flat(gpu, "copy_forward", 0.0, &[a], y)
}

/// y ← y + α·a
pub fn axpy(gpu: &Gpu, alpha: f32, a: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    flat(gpu, "axpy_forward", alpha, &[a], y)
}

fn rows_op(gpu: &Gpu, entry: &'static str, a: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    let cols = *a.shape().last().unwrap_or(&1);
    let rows = a.len().checked_div(cols).unwrap_or(0);
    if y.len() != rows {
        return Err(Error::shape(
            entry,
            format!(
                "input {:?} has {rows} rows, output has {}",
                a.shape(),
                y.len()
            ),
        ));
    }
    let kernel = Kernel::new(ELEMENTWISE, entry);
    let mut out = Vec::new();
    for (start, n) in row_ranges(gpu, rows, cols, entry)? {
        let av = a.view(start * cols, n * cols)?;
        // The output rows are 1 element each; their views stay aligned only for whole
        // steps, so the output must fit one binding (rows × 4 bytes always does here).
        let yv = y.view(start, n)?;
        let params = Params::new().u(n).u(cols).f(0.0);
        out.push(gpu.prepare(&kernel, &params, &[&av, &yv], gpu.grid(n.div_ceil(WG)))?);
    }
    Ok(out)
}

/// y\[r\] = Σ_j a\[r, j\] over the last dimension of `a`.
pub fn row_sum(gpu: &Gpu, a: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    rows_op(gpu, "row_sum_forward", a, y)
}

/// y\[r\] = max_j a\[r, j\] over the last dimension of `a`.
pub fn row_max(gpu: &Gpu, a: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    rows_op(gpu, "row_max_forward", a, y)
}

/// CPU references for the tests.
pub mod reference {
    /// Σ over each row of a `[rows, cols]` matrix, in f64.
    pub fn row_sum(a: &[f32], cols: usize) -> Vec<f32> {
        a.chunks(cols)
            .map(|r| r.iter().map(|&v| v as f64).sum::<f64>() as f32)
            .collect()
    }
    /// Max over each row of a `[rows, cols]` matrix.
    pub fn row_max(a: &[f32], cols: usize) -> Vec<f32> {
        a.chunks(cols)
            .map(|r| r.iter().cloned().fold(f32::MIN, f32::max))
            .collect()
    }
}
