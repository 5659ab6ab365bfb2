//! The fused adapted layer (`shaders/boha_forward.wgsl`): products with
//!
//! ```text
//! W' = W0 ⊙ (1 + s·M)  (BoHA, HiRA)      W' = W0 + s·M  (the control, ABBA, LoHa)
//! forward:   y = x·W'ᵀ + beta·y      x: [T, d_in],  y: [T, d_out]
//! backward: dx = dy·W' + beta·dx     dy: [T, d_out], dx: [T, d_in]
//! ```
//!
//! where each W0 element is modulated by m = Σ_k B_ij[o, k]·A_ij[k, i] (for the pair
//! kinds the product of two such sums over the halves of the ranks) as it is loaded: M,
//! ΔW and W' never exist in memory. The kind's snippet (`shaders/kinds/`) supplies the
//! rank groups and the modulation. beta = 0 overwrites (the old contents are never
//! read), beta = 1 accumulates.
//!
//! Two kernel families, chosen like the GEMMs by [`Gpu::gemm_family`]: register tiles
//! (CPU-type adapters, no barriers) and workgroup-shared tiles (GPUs, each W0 tile
//! modulated once per workgroup). The `_with` variants force a family (tests, benches).
//!
//! Every tensor is bound whole, so each must fit one storage binding.
//!
//! Measured at 512 tokens, 576 → 1536, against the plain GEMM (`ops::gemm`), in one run:
//! - H200 (shared family): forward 1.08× (BoHA b = 4, r_b = 8), 0.97× (r_b = 2), 1.63×
//!   (HiRA r = 32); dx 1.23×, 1.04×, 2.10×.
//! - llvmpipe, Mesa 22.3 (register family, loaded 2-core machine), `boha_reg4_*`:
//!   forward 4.2× (r_b = 8), 2.0× (r_b = 2), 1.7× (r_b = 1); dx 3.3×, 1.7×, 1.6×. Every
//!   load is per lane on this Mesa, and each W0 4×4 block costs r_b extra vec4 A loads
//!   and 4·r_b B loads.
//! - `boha_reg4c_*` (r_b ≤ 4 or 8, the 16 columns of a workgroup in one block) keep one
//!   factor in registers per block and load the other once per 4-step for all 16
//!   columns: 32 + r_b loads per 4-step instead of 32 + 20·r_b. Against `boha_reg4_*` in
//!   one run (noisy machine): forward 1.6× faster at r_b = 2 and ~2× at r_b = 8, dx
//!   1.1–1.2× at r_b = 2 and ~2× at r_b = 8.
//! - `boha_reg4k_*` (other multiples of 4, e.g. HiRA r = 32) accumulate the modulation
//!   over chunks of 4 ranks from vec4 loads of both factors: 32 + 5·r_b loads per
//!   4-step, and no inner loop per W0 4×4 block (`boha_reg4_*` runs 4·r_b loop
//!   iterations per 4-step, which at r_b = 32 and a 2048-wide reduction reaches
//!   llvmpipe's 65535-iteration loop budget).

use super::AdapterSpec;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GemmFamily, Gpu, Kernel, Params, Tensor};
use crate::shaders::{with_kind, BOHA_FORWARD};

/// Tokens per invocation (TM), columns per workgroup and invocations per workgroup of
/// the register kernels.
const REG_TM: usize = 4;
const REG_TN: usize = 4;
const REG_WG: usize = 64;
/// Invocations per workgroup of the vec4 register kernels (16 tokens × 16 columns each).
const REG4_WG: usize = 16;
/// Whether the cached-factor vec4 kernels (`boha_reg4c_*`) take this r_b: one 4×4
/// matrix per column group holds a factor's ranks (two for r_b = 8).
pub fn reg4c_rank(rb: usize) -> bool {
    rb <= 4 || rb == 8
}
/// Tile of the shared kernels (BM tokens × BN columns).
const SH_BM: usize = 64;
const SH_BN: usize = 64;

#[derive(Clone, Copy, PartialEq)]
enum Dir {
    Forward,
    Backward,
}

/// y = x·W'ᵀ + beta·y (see the module docs), with the device's kernel family.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    w0: &Tensor,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
    beta: f32,
) -> Result<Vec<Dispatch>> {
    forward_with(
        gpu.gemm_family(),
        gpu,
        spec,
        d_out,
        d_in,
        w0,
        x,
        a,
        b,
        y,
        beta,
    )
}

/// [`forward`] with a forced kernel family.
#[allow(clippy::too_many_arguments)]
pub fn forward_with(
    family: GemmFamily,
    gpu: &Gpu,
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    w0: &Tensor,
    x: &Tensor,
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
    beta: f32,
) -> Result<Vec<Dispatch>> {
    fused(
        Dir::Forward,
        family,
        gpu,
        spec,
        d_out,
        d_in,
        w0,
        x,
        a,
        b,
        y,
        beta,
    )
}

/// dx = dy·W' + beta·dx (see the module docs), with the device's kernel family.
#[allow(clippy::too_many_arguments)]
pub fn backward_dx(
    gpu: &Gpu,
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    w0: &Tensor,
    dy: &Tensor,
    a: &Tensor,
    b: &Tensor,
    dx: &Tensor,
    beta: f32,
) -> Result<Vec<Dispatch>> {
    backward_dx_with(
        gpu.gemm_family(),
        gpu,
        spec,
        d_out,
        d_in,
        w0,
        dy,
        a,
        b,
        dx,
        beta,
    )
}

/// [`backward_dx`] with a forced kernel family.
#[allow(clippy::too_many_arguments)]
pub fn backward_dx_with(
    family: GemmFamily,
    gpu: &Gpu,
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    w0: &Tensor,
    dy: &Tensor,
    a: &Tensor,
    b: &Tensor,
    dx: &Tensor,
    beta: f32,
) -> Result<Vec<Dispatch>> {
    fused(
        Dir::Backward,
        family,
        gpu,
        spec,
        d_out,
        d_in,
        w0,
        dy,
        a,
        b,
        dx,
        beta,
    )
}

/// Checks the lengths of W0, A and B against the spec and layer shape.
pub(crate) fn check_params(
    op: &str,
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    w0: &Tensor,
    a: &Tensor,
    b: &Tensor,
) -> Result<()> {
    spec.check_shape(op, d_out, d_in)?;
    let a_len: usize = spec.a_shape(d_in).iter().product();
    let b_len: usize = spec.b_shape(d_out).iter().product();
    for (name, t, want) in [("W0", w0, d_out * d_in), ("A", a, a_len), ("B", b, b_len)] {
        if t.len() != want {
            return Err(Error::shape(
                op,
                format!(
                    "{name} has {} elements, a {d_out}×{d_in} layer with {spec:?} needs {want}",
                    t.len()
                ),
            ));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn fused(
    dir: Dir,
    family: GemmFamily,
    gpu: &Gpu,
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    w0: &Tensor,
    inp: &Tensor,
    a: &Tensor,
    b: &Tensor,
    out: &Tensor,
    beta: f32,
) -> Result<Vec<Dispatch>> {
    let op = match dir {
        Dir::Forward => "boha forward",
        Dir::Backward => "boha backward dx",
    };
    check_params(op, spec, d_out, d_in, w0, a, b)?;
    // (reduction width, output columns)
    let (k, n) = match dir {
        Dir::Forward => (d_in, d_out),
        Dir::Backward => (d_out, d_in),
    };
    if k == 0 || !inp.len().is_multiple_of(k) {
        return Err(Error::shape(
            op,
            format!("input has {} elements, not rows of {k}", inp.len()),
        ));
    }
    let t = inp.len() / k;
    if out.len() != t * n {
        return Err(Error::shape(
            op,
            format!(
                "output has {} elements, {t} tokens × {n} needs {}",
                out.len(),
                t * n
            ),
        ));
    }
    if t == 0 || n == 0 {
        return Ok(Vec::new());
    }
    let (p, q) = spec.block_shape(d_out, d_in);
    let nb = spec.blocks;
    let block_cols = match dir {
        Dir::Forward => p,
        Dir::Backward => q,
    };
    let tiles = block_cols.div_ceil(REG_TN);
    let kind = spec.method.kind();
    let groups = kind.groups();
    let group_rank = spec.block_rank / groups;
    let params = Params::new()
        .u(t)
        .u(d_out)
        .u(d_in)
        .u(nb)
        .u(p)
        .u(q)
        .u(tiles)
        .u(spec.block_rank)
        .f(spec.scale)
        .f(beta)
        .u(0)
        .u(0);
    // The vec4 register kernels need every 4-row and 4-column group inside one block.
    let vec4 = family == GemmFamily::Register && p % 4 == 0 && q % 4 == 0;
    let fwd = dir == Dir::Forward;
    // The cached-factor variant also needs r_b ≤ 4 or 8 (two rank groups: 4 each) and the
    // workgroup's 16 columns inside one block (p forward, q backward a multiple of 16).
    let cached_rank = if groups == 1 {
        reg4c_rank(spec.block_rank)
    } else {
        groups == 2 && spec.block_rank == 8
    };
    let cached = vec4 && cached_rank && block_cols % 16 == 0;
    // Groups of a multiple of 4 ranks: the rank-chunk variant, under the same column
    // condition, while its (k / 4)·(r_b / 4 + groups) loop iterations per invocation stay
    // inside llvmpipe's loop budget (see `adapters::grad`).
    let chunked = vec4
        && !cached
        && group_rank.is_multiple_of(4)
        && block_cols % 16 == 0
        && (k / 4) * (spec.block_rank / 4 + groups) + nb
            <= gpu.profile().loop_budget.unwrap_or(usize::MAX);
    let (entry, groups) = match family {
        GemmFamily::Register if vec4 => {
            // x, y: the 16-column tiles (folded); z: the token ranges.
            let mut g = gpu.grid(n.div_ceil(16));
            g[2] = t.div_ceil(16 * REG4_WG) as u32;
            let e = match (fwd, cached, chunked) {
                (true, true, _) => "boha_reg4c_forward",
                (false, true, _) => "boha_reg4c_backward",
                (true, false, true) => "boha_reg4k_forward",
                (false, false, true) => "boha_reg4k_backward",
                (true, false, false) => "boha_reg4_forward",
                (false, false, false) => "boha_reg4_backward",
            };
            (e, g)
        }
        GemmFamily::Register => {
            let mut g = gpu.grid(tiles * nb);
            g[2] = t.div_ceil(REG_TM * REG_WG) as u32;
            let e = if fwd {
                "boha_reg_forward"
            } else {
                "boha_reg_backward"
            };
            (e, g)
        }
        GemmFamily::Shared => {
            let g = [n.div_ceil(SH_BN) as u32, t.div_ceil(SH_BM) as u32, 1];
            let e = if fwd {
                "boha_shared_forward"
            } else {
                "boha_shared_backward"
            };
            (e, g)
        }
    };
    // r_b is a uniform, not an override constant: one pipeline per entry point and kind
    // snippet, since llvmpipe takes seconds to compile each.
    let kernel = Kernel::new(with_kind(BOHA_FORWARD, kind.snippet(), w0.dtype()), entry);
    let kernel = if vec4 {
        kernel.with("WG4", REG4_WG as f64)
    } else {
        kernel
    };
    // Binding order: the vec4 kernels use B, out, then inp, W0 and A as vec4 arrays; the
    // cached and chunked ones out, then inp, W0, A and B as vec4 arrays.
    let tensors = if cached || chunked {
        [out, inp, w0, a, b]
    } else if vec4 {
        [b, out, inp, w0, a]
    } else {
        [inp, w0, a, b, out]
    };
    Ok(vec![gpu.prepare(&kernel, &params, &tensors, groups)?])
}
