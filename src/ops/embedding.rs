//! Embedding gather (`shaders/embedding.wgsl`): y[t] = scale · E[id[t]], with E [V, C],
//! ids [N] (u32 bits, uploaded with [`Gpu::upload_u32`]) and y [N, C]. `scale` is 1, or
//! √C for Gemma ([`crate::model::ModelConfig::embedding_scale`]).
//!
//! There is no backward: the lookup is the first op of the model and the table is frozen,
//! so no gradient flows through it. A table over the binding limit (Llama-3: 1 GiB) is
//! bound in row ranges, one dispatch each. Ids ≥ V give zero rows.

use super::chunks::row_ranges;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, Params, Tensor};
use crate::shaders::EMBEDDING;

/// y = scale · E[ids].
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
    let kernel = Kernel::new(EMBEDDING, op);
    let ranges = row_ranges(gpu, vocab, cols, op)?;
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

/// CPU reference.
pub mod reference {
    /// y = scale · E[ids] with E [V, C]; ids ≥ V give zero rows.
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
}
