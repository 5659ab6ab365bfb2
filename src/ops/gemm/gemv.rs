//! Skinny GEMM for a few rows of x (`shaders/gemv.wgsl`): the decode step's projections
//! and logits.
//!
//! For the NT product with m ≤ [`MAX_M`] rows,
//!
//!   Y[b][i, j] = alpha · Σ_k X[b][i, k] · W[b][j, k] + beta · Y[b][i, j],
//!   i < m, j < n, b < batch,
//!
//! (X [m, k], W [n, k], Y [m, n] row-major, beta = 0 never reads Y) the tiled kernels
//! would compute a 16- to 64-row tile of which m rows are kept. The GEMV kernels read
//! each float of W once per 4 rows of X, with one vec4 load per 4 floats, so they run
//! at close to the device's read bandwidth. [`super::gemm`] chooses them by itself; the
//! planning (binding ranges over m, n and k, batch ranges) is the GEMM's, and each of
//! its parts becomes one dispatch here (more where k is cut for llvmpipe's loop budget).

use super::{Gemm, Part};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GemmFamily, Gpu, Kernel};
use crate::shaders::{with_weights, GEMV};

/// Largest m the GEMV kernels take (each block of 4 rows of X reads W once more).
pub const MAX_M: usize = 8;
/// Rows of X one invocation reads.
const M_BLOCK: usize = 4;
/// Rows of W one invocation (gemv_rows) or workgroup (gemv_split) covers.
const ROWS_N: usize = 8;
const SPLIT_ROWS_N: usize = 32;
/// Lanes of gemv_split that share one row's k.
const SPLIT_LANES_K: usize = 8;
/// Workgroup size of gemv_rows.
const ROWS_WG: usize = 8;
/// Most k-loop trips one invocation may run on a device whose profile has a loop budget
/// (llvmpipe ends loops silently at ~65 535).
const MAX_TRIPS: usize = 32768;

/// The GEMV kernel variants (`shaders/gemv.wgsl`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemvKernel {
    /// One invocation per 8 rows of W, walking them along k.
    Rows,
    /// 8 lanes split each row's k; partial sums added in workgroup memory.
    Split,
}

impl GemvKernel {
    /// The kernel for a GEMM family: gemv_rows for CPU adapters (llvmpipe), gemv_split,
    /// whose lanes read contiguous memory, for GPUs.
    pub fn for_family(family: GemmFamily) -> GemvKernel {
        match family {
            GemmFamily::Register => GemvKernel::Rows,
            GemmFamily::Shared => GemvKernel::Split,
        }
    }

    fn entry(self) -> &'static str {
        match self {
            GemvKernel::Rows => "gemv_rows",
            GemvKernel::Split => "gemv_split",
        }
    }

    /// Largest k one dispatch may take on `gpu`: under the loop budget where its
    /// profile has one (llvmpipe), else all of it.
    fn max_k(self, gpu: &Gpu) -> usize {
        if gpu.profile().loop_budget.is_none() {
            return usize::MAX;
        }
        match self {
            GemvKernel::Rows => 4 * MAX_TRIPS,
            GemvKernel::Split => 4 * SPLIT_LANES_K * MAX_TRIPS,
        }
    }
}

/// True when `g` may run as a GEMV: NT, m ≤ [`MAX_M`], and vec4 loads possible along k
/// (k, the stored row lengths of X and W, their batch strides multiples of 4).
pub fn applies(g: &Gemm) -> bool {
    !g.trans_a
        && g.trans_b
        && g.m >= 1
        && g.m <= MAX_M
        && g.k > 0
        && g.k.is_multiple_of(4)
        && g.stride_a.is_multiple_of(4)
        && g.stride_b.is_multiple_of(4)
}

/// True when one planned part can run as a GEMV (its offsets keep vec4 alignment).
pub(super) fn part_applies(g: &Gemm, p: &Part) -> bool {
    let (lda, ldb, _) = g.lds();
    applies(g)
        && p.k > 0
        && p.k.is_multiple_of(4)
        && lda.is_multiple_of(4)
        && ldb.is_multiple_of(4)
        && p.offs.0.is_multiple_of(4)
        && p.offs.1.is_multiple_of(4)
        && p.strides.0.is_multiple_of(4)
        && p.strides.1.is_multiple_of(4)
}

/// Appends the dispatches of part `p` of `g` with `kernel`: one per k range that fits
/// the loop budget (ranges after the first accumulate, beta = 1).
pub(super) fn dispatch(
    gpu: &Gpu,
    kernel: GemvKernel,
    g: &Gemm,
    p: &Part,
    out: &mut Vec<Dispatch>,
) -> Result<()> {
    let step = kernel.max_k(gpu);
    let mut k0 = 0;
    while k0 < p.k {
        let kl = step.min(p.k - k0);
        let part = Part {
            k: kl,
            offs: (p.offs.0 + k0, p.offs.1 + k0, p.offs.2),
            beta: if k0 == 0 { p.beta } else { 1.0 },
            ..p.clone()
        };
        out.push(prepare(gpu, kernel, g, &part)?);
        k0 += kl;
    }
    Ok(())
}

fn prepare(gpu: &Gpu, kernel: GemvKernel, g: &Gemm, p: &Part) -> Result<Dispatch> {
    let params = super::uniform(g, p);
    let mr = p.m.min(M_BLOCK);
    let mut k = Kernel::new(with_weights(GEMV, p.b.dtype()), kernel.entry()).with("MR", mr as f64);
    let x = match kernel {
        GemvKernel::Rows => {
            k = k.with("WG", ROWS_WG as f64);
            p.n.div_ceil(ROWS_N * ROWS_WG)
        }
        GemvKernel::Split => p.n.div_ceil(SPLIT_ROWS_N),
    };
    let grid = [x, p.m.div_ceil(M_BLOCK), p.batch];
    let max = gpu.max_workgroups_per_dim() as usize;
    if grid.iter().any(|&v| v > max) {
        return Err(Error::shape(
            "gemv",
            format!("workgroup grid {grid:?} exceeds the device limit {max}"),
        ));
    }
    let grid = [grid[0] as u32, grid[1] as u32, grid[2] as u32];
    gpu.prepare(&k, &params, &[&p.a, &p.b, &p.c], grid)
}
