//! The discrete-GPU GEMM tier (`shaders/gemm_tier.wgsl`), [`GemmTile::Tier`].
//!
//! For one planned part of a product,
//!
//!   C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b],  b < batch,
//!
//! one workgroup of (bn/8) × (bm/8) invocations computes each bm × bn tile of C, 8 × 8
//! outputs per invocation, staging op(A) and op(B) 8 deep along k in double-buffered,
//! padded workgroup memory. The tiles are numbered in grouped order and the numbers
//! folded into the dispatch's x and y, so a product of any size fits the per-dimension
//! workgroup limit; z is the batch.

use super::{Gemm, Part};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GemmTile, Gpu, Kernel};
use crate::shaders::{with_weights, GEMM_TIER};

/// Appends the dispatch of part `p` on the `bm` × `bn` tier: `gemm_tier` (vec4 loads)
/// where both operands' stored rows, offsets and batch strides are multiples of 4,
/// else `gemm_tier_scalar`.
pub(super) fn dispatch(
    gpu: &Gpu,
    (bm, bn): (u32, u32),
    g: &Gemm,
    p: &Part,
    out: &mut Vec<Dispatch>,
) -> Result<()> {
    if !GemmTile::TIER_SHAPES.contains(&(bm, bn)) {
        // The shader's register staging holds at most two runs per operand and step,
        // which is what the listed shapes need; the module runs without bounds checks.
        return Err(Error::Invalid(format!(
            "gemm tier {bm}x{bn} is not one of {:?}",
            GemmTile::TIER_SHAPES
        )));
    }
    let (lda, ldb, _) = g.lds();
    let aligned = |ld: usize, off: usize, stride: usize| {
        ld.is_multiple_of(4) && off.is_multiple_of(4) && stride.is_multiple_of(4)
    };
    // k = 0 binds A and B as 4 bytes, less than one vec4.
    let vec4 =
        p.k > 0 && aligned(lda, p.offs.0, p.strides.0) && aligned(ldb, p.offs.1, p.strides.1);
    let entry = if vec4 {
        "gemm_tier"
    } else {
        "gemm_tier_scalar"
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let kernel = Kernel::new(with_weights(GEMM_TIER, p.b.dtype()), entry)
        .with("BM", bm as f64)
        .with("BN", bn as f64)
        .with("WG_X", (bn / 8) as f64)
        .with("WG_Y", (bm / 8) as f64)
        .with("TRANS_A", flag(g.trans_a))
        .with("TRANS_B", flag(g.trans_b));
    let tiles = p.m.div_ceil(bm as usize) * p.n.div_ceil(bn as usize);
    let [x, y] = fold(tiles, gpu.max_workgroups_per_dim() as usize)?;
    let params = super::uniform(g, p);
    out.push(gpu.prepare(
        &kernel,
        &params,
        &[&p.a, &p.b, &p.c],
        [x, y, p.batch as u32],
    )?);
    Ok(())
}

/// Workgroup counts (x, y) with x · y ≥ `tiles`, each at most `max`: x as large as
/// allowed, so that at most x − 1 workgroups find no tile.
fn fold(tiles: usize, max: usize) -> Result<[u32; 2]> {
    let x = tiles.clamp(1, max);
    let y = tiles.div_ceil(x);
    if y > max {
        return Err(Error::shape(
            "gemm",
            format!("{tiles} tiles exceed the {max} × {max} workgroup grid"),
        ));
    }
    Ok([x as u32, y as u32])
}

#[cfg(test)]
mod tests {
    use super::fold;

    #[test]
    fn tiles_fold_into_the_workgroup_limit() {
        assert_eq!(fold(1, 65535).unwrap(), [1, 1]);
        assert_eq!(fold(70_000, 65535).unwrap(), [65535, 2]);
        assert_eq!(fold(10, 4).unwrap(), [4, 3]);
        assert!(fold(17, 4).is_err());
    }
}
