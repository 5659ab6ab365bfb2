//! The CPU adapters' subgroup GEMM (`shaders/gemm_subgroup.wgsl`), [`GemmTile::Subgroup`].
//!
//!   C[b] = alpha · A[b] · op(B[b]) + beta · C[b],  A stored [m, k], op(B) = B or Bᵀ.
//!
//! A subgroup of 8 lanes computes 16 rows × 32 columns: the lanes load A's rows between
//! them and broadcast each to all, so llvmpipe's per-lane loads drop from 12 to 6 per 256
//! FMAs. On Mesa 22.3 the broadcasts cost more than the loads they save except on skinny
//! products (LoRA's rank-32 ones), so `boha tune` decides per shape.
//!
//! It takes the parts whose loads can all be vec4 ([`applies`]): A not transposed; k,
//! lda, the offsets and batch strides multiples of 4; for NN also n and ldb. The register
//! tile runs the rest.

use super::{Gemm, Part};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel};
use crate::shaders::{with_weights, GEMM_SUBGROUP};

/// Subgroups stacked along m in one workgroup (64 rows × 32 columns per workgroup).
const WG_Y: usize = 4;
/// Rows and columns of C per workgroup.
const ROWS: usize = 16 * WG_Y;
const COLS: usize = 32;

/// Whether the subgroup kernel can run part `p` (see the module docs).
pub(super) fn applies(g: &Gemm, p: &Part) -> bool {
    let (lda, ldb, _) = g.lds();
    let four = |v: usize| v.is_multiple_of(4);
    !g.trans_a
        && p.k > 0
        && four(p.k)
        && four(lda)
        && four(p.offs.0)
        && four(p.strides.0)
        && four(ldb)
        && four(p.offs.1)
        && four(p.strides.1)
        && (g.trans_b || four(p.n))
}

/// Appends the dispatch of part `p` (which [`applies`]).
pub(super) fn dispatch(gpu: &Gpu, g: &Gemm, p: &Part, out: &mut Vec<Dispatch>) -> Result<()> {
    let kernel = Kernel::new(with_weights(GEMM_SUBGROUP, p.b.dtype()), "gemm_subgroup")
        .with("TRANS_B", if g.trans_b { 1.0 } else { 0.0 })
        .with("WG_Y", WG_Y as f64);
    let grid = [p.n.div_ceil(COLS), p.m.div_ceil(ROWS), p.batch];
    let max = gpu.max_workgroups_per_dim() as usize;
    if grid.iter().any(|&v| v > max) {
        return Err(Error::shape(
            "gemm",
            format!("workgroup grid {grid:?} exceeds the device limit {max}"),
        ));
    }
    let params = super::uniform(g, p);
    out.push(gpu.prepare(
        &kernel,
        &params,
        &[&p.a, &p.b, &p.c],
        [grid[0] as u32, grid[1] as u32, grid[2] as u32],
    )?);
    Ok(())
}
