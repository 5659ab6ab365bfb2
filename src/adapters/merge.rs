//! Merging an adapter into its layer for adapter-free inference (`shaders/merge.wgsl`):
//!
//! ```text
//! W = W0 ⊙ (1 + s·M)   (Hadamard: BoHA, HiRA)      W = W0 + s·M   (Additive: control, LoRA)
//! ```
//!
//! (LoRA is the additive update with b = 1 and s = alpha / r.) The merged weight goes to a
//! separate tensor, so the merged model runs at exactly the base model's cost and W0 is
//! kept.
//!
//! Unmerging copies the kept W0 back, bit for bit. It does not divide by (1 + s·M): that
//! division is inexact in floating point and fails outright where 1 + s·M ≈ 0 (the
//! element's W0 is then lost in the product), so the original must be kept or reloaded.

use super::fused::check_params;
use super::AdapterSpec;
use crate::error::Result;
use crate::gpu::{Dispatch, Gpu, Kernel, Params, Recorder, Tensor};
use crate::ops::gemm::plan::split;
use crate::shaders::{with_kind, MERGE};

/// merged = W0 ⊙ (1 + s·M) or W0 + s·M (d_out × d_in), range by range of rows when W0 is
/// over the storage-binding limit. `merged` must not alias `w0`.
#[allow(clippy::too_many_arguments)]
pub fn merge(
    gpu: &Gpu,
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    w0: &Tensor,
    a: &Tensor,
    b: &Tensor,
    merged: &Tensor,
) -> Result<Vec<Dispatch>> {
    check_params("merge", spec, d_out, d_in, w0, a, b)?;
    check_params("merge", spec, d_out, d_in, merged, a, b)?;
    let (p, q) = spec.block_shape(d_out, d_in);
    let kernel = Kernel::new(
        with_kind(MERGE, spec.method.kind().snippet(), w0.dtype()),
        "merge_forward",
    );
    let mut out = Vec::new();
    // Ranges whose views fit and start aligned in both W0's dtype and the f32 result.
    let row_bytes = [w0.dtype().bytes_for(d_in), merged.dtype().bytes_for(d_in)];
    let (max, align) = (gpu.max_binding_bytes(), gpu.binding_offset_align());
    for (row0, rows) in split(d_out, &row_bytes, max, align, "merge")? {
        let wv = w0.view(row0 * d_in, rows * d_in)?;
        let mv = merged.view(row0 * d_in, rows * d_in)?;
        let params = Params::new()
            .u(rows)
            .u(row0)
            .u(d_in)
            .u(spec.blocks)
            .u(p)
            .u(q)
            .f(spec.scale)
            .u(spec.block_rank)
            .u(0)
            .u(0)
            .u(0)
            .u(0);
        let groups = gpu.grid((rows * d_in).div_ceil(64));
        out.push(gpu.prepare(&kernel, &params, &[&wv, a, b, &mv], groups)?);
    }
    Ok(out)
}

/// Records the restoring of `w` from the kept original W0: a buffer copy, so the result
/// is W0 bit for bit (see the module docs for why not division).
pub fn unmerge(rec: &mut Recorder, original_w0: &Tensor, w: &Tensor) -> Result<()> {
    rec.copy(original_w0, w)
}
