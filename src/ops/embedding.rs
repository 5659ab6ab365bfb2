//! Embedding gather (`shaders/embedding.wgsl`): y\[t\] = scale · E\[id\[t\]\], with
//! E \[V, C\], ids \[N\] (u32 bits, uploaded with [`Gpu::upload_u32`]) and y \[N, C\].
//! `scale` is 1, or √C for Gemma ([`crate::model::ModelConfig::embedding_scale`]).
//!
//! There is no backward: the lookup is the first op of the model and the table is frozen,
//! so no gradient flows through it. A table over the binding limit (Llama-3: 1 GiB) is
//! bound in row ranges, one dispatch each. Ids ≥ V give zero rows.
//!
//! The same gather picks rows of any [R, C] tensor (the trainer gathers the hidden
//! states of the positions that carry a loss), and [`scatter`] is its adjoint, putting
//! the gradients of those rows back.

use super::chunks::row_ranges_of;
use crate::error::{Error, Result};
use crate::gpu::{DType, Dispatch, Gpu, Kernel, Params, Tensor};
use crate::shaders::{with_weights, EMBEDDING};

/// y = scale · E\[ids\].
pub fn forward(
    gpu: &Gpu,
    table: &Tensor,
    ids: &Tensor,
    y: &Tensor,
    scale: f32,
) -> Result<Vec<Dispatch>> {
    let op = "embedding_forward";
    let (vocab, cols) = match table.shape() {
        &[v, c] => (v, c),
        s => return Err(Error::shape(op, format!("table must be [V, C], got {s:?}"))),
    };
    let n = ids.len();
    if y.len() != n * cols {
        return Err(Error::shape(
            op,
            format!("{n} ids of width {cols} into y {:?}", y.shape()),
        ));
    }
    let kernel = Kernel::new(with_weights(EMBEDDING, table.dtype()), op);
    let ranges = row_ranges_of(gpu, vocab, cols, table.dtype(), op)?;
    let mut out = Vec::new();
    for (k, &(lo, rows)) in ranges.iter().enumerate() {
        let part = table.rows(lo, rows)?;
        let params = Params::new()
            .u(n)
            .u(cols)
            .u(lo)
            .u(rows)
            .u(vocab)
            .u((k + 1 == ranges.len()) as usize)
            .f(scale);
        out.push(gpu.prepare(
            &kernel,
            &params,
            &[ids, &part, y],
            gpu.grid((n * cols).div_ceil(64)),
        )?);
    }
    Ok(out)
}

/// y\[ids\[t\]\] = x\[t\] for every t with ids\[t\] < R, where x is \[K, C\], ids \[K\]
/// (u32 bits) and y [R, C]: the adjoint of the gather `x = y[ids]` when the ids are
/// distinct. Ids ≥ R are padding and skipped. Rows of y that no id names keep their
/// contents, so the caller zeroes y first (the scatter writes, it does not add: distinct
/// ids never collide).
pub fn scatter(gpu: &Gpu, x: &Tensor, ids: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
    let op = "rows_scatter";
    let (k, cols) = match x.shape() {
        &[k, c] => (k, c),
        s => return Err(Error::shape(op, format!("x must be [K, C], got {s:?}"))),
    };
    if ids.len() != k || cols == 0 || !y.len().is_multiple_of(cols) {
        return Err(Error::shape(
            op,
            format!("{} ids, x {:?}, y {:?}", ids.len(), x.shape(), y.shape()),
        ));
    }
    let rows = y.len() / cols;
    if (y.len() * 4) as u64 > gpu.max_binding_bytes() {
        return Err(Error::shape(
            op,
            format!("y {:?} exceeds one storage binding", y.shape()),
        ));
    }
    let params = Params::new().u(k).u(cols).u(0).u(rows).u(rows).u(1).f(1.0);
    Ok(vec![gpu.prepare(
        &Kernel::new(with_weights(EMBEDDING, DType::F32), op),
        &params,
        &[ids, x, y],
        gpu.grid((k * cols).div_ceil(64)),
    )?])
}

/// CPU reference.
pub mod reference {
    /// y = scale · E\[ids\] with E \[V, C\]; ids ≥ V give zero rows.
    pub fn forward(table: &[f32], cols: usize, ids: &[u32], scale: f32) -> Vec<f32> {
        let vocab = table.len() / cols;
        let mut y = Vec::with_capacity(ids.len() * cols);
        for &id in ids {
            let id = id as usize;
            if id < vocab {
                y.extend(table[id * cols..(id + 1) * cols].iter().map(|v| scale * v));
            } else {
                y.extend(std::iter::repeat_n(0.0, cols));
            }
        }
        y
    }

    /// y\[ids\[t\]\] = x\[t\] for ids\[t\] < rows (y starts at zero).
    pub fn scatter(x: &[f32], cols: usize, ids: &[u32], rows: usize) -> Vec<f32> {
        let mut y = vec![0.0; rows * cols];
        for (t, &id) in ids.iter().enumerate() {
            let id = id as usize;
            if id < rows {
                y[id * cols..(id + 1) * cols].copy_from_slice(&x[t * cols..(t + 1) * cols]);
            }
        }
        y
    }
}
