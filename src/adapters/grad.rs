//! Fused adapter gradients (`shaders/boha_grad.wgsl`) for BoHA, HiRA, LoRA and the
//! additive control, without any d_out × d_in buffer.
//!
//! ```text
//! Ĝ = dYᵀ X                                   (d_out × d_in, never stored)
//! H_ij = s·(W0_ij ⊙ Ĝ_ij)   (Update::Hadamard)    H_ij = s·Ĝ_ij   (Update::Additive)
//! dB_ij += H_ij A_ijᵀ   (p × r_b)               dA_ij += B_ijᵀ H_ij   (r_b × q)
//! ```
//!
//! Every block is cut into `strips_r × strips_c` regions. The main kernel forms the Ĝ tiles
//! of a region (reduced over all tokens), multiplies them by their W0 tile and contracts
//! them with A and B while they are in registers or workgroup memory, writing one partial
//! of dB per column strip and one of dA per row strip. A second, small kernel adds the
//! partials into the gradients. Scratch is `strips_r·|A| + strips_c·|B|` floats: at most
//! [`MAX_STRIPS_REGISTER`] or [`MAX_STRIPS_SHARED`] times the adapter's parameters.
//!
//! Two variants, as for the GEMMs: [`GemmFamily::Register`] (one invocation per region,
//! no barriers: CPU-type adapters) and [`GemmFamily::Shared`] (one 256-invocation
//! workgroup per region, 64 × 64 tiles staged in workgroup memory: GPUs).

use crate::adapters::{AdapterSpec, Update};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GemmFamily, Gpu, Kernel, Params, Tensor};
use crate::shaders::BOHA_GRAD;

/// Largest number of strips per block side for the register family (scratch factor).
pub const MAX_STRIPS_REGISTER: usize = 8;
/// Largest number of strips per block side for the shared family (scratch factor).
pub const MAX_STRIPS_SHARED: usize = 16;

const WG_REG: usize = 8;
/// Ranks whose dB the register kernel keeps in registers (the shader's array size).
const RB_REGISTERS: usize = 32;

/// How the blocks are cut into regions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub family: GemmFamily,
    /// Row strips per block: contiguous runs of `strip_rows` rows.
    pub strips_r: usize,
    /// Column strips per block: contiguous runs of `strip_cols` columns (shared family),
    /// or every `strips_c`-th 4-column chunk (register family, `strip_cols` = 4).
    pub strips_c: usize,
    pub strip_rows: usize,
    pub strip_cols: usize,
}

impl Plan {
    /// Regions in all: b²·strips_r·strips_c.
    pub fn regions(&self, blocks: usize) -> usize {
        blocks * blocks * self.strips_r * self.strips_c
    }
}

/// Chooses the strips: enough regions to fill the device (`target`), splitting the longer
/// side of a region first, never more than `cap` strips a side (the scratch factor) nor
/// more than one strip per tile.
fn plan_for(family: GemmFamily, blocks: usize, p: usize, q: usize) -> Plan {
    // Register tiles are 4 × 4, shared tiles 64 × 64.
    let (tile_r, tile_c, target, cap) = match family {
        GemmFamily::Register => (4, 4, 128, MAX_STRIPS_REGISTER),
        GemmFamily::Shared => (64, 64, 264, MAX_STRIPS_SHARED),
    };
    let units_r = p.div_ceil(tile_r).max(1);
    let units_c = q.div_ceil(tile_c).max(1);
    let (cap_r, cap_c) = (cap.min(units_r), cap.min(units_c));
    // Register family: the column strips interleave 4-column chunks and come first, so
    // that neighbouring invocations share rows (see the shader).
    let (mut sr, mut sc) = match family {
        GemmFamily::Register => (
            1usize,
            std::env::var("XSC")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(cap_c),
        ),
        GemmFamily::Shared => (1usize, 1usize),
    };
    while blocks * blocks * sr * sc < target {
        let can_r = sr < cap_r;
        let can_c = sc < cap_c;
        if can_r && (!can_c || units_r.div_ceil(sr) >= units_c.div_ceil(sc)) {
            sr += 1;
        } else if can_c {
            sc += 1;
        } else {
            break;
        }
    }
    let strip_rows = units_r.div_ceil(sr) * tile_r;
    let (strips_c, strip_cols) = match family {
        GemmFamily::Register => (sc, tile_c),
        GemmFamily::Shared => {
            let cols = units_c.div_ceil(sc) * tile_c;
            (q.div_ceil(cols).max(1), cols)
        }
    };
    Plan {
        family,
        strips_r: p.div_ceil(strip_rows).max(1),
        strips_c,
        strip_rows,
        strip_cols,
    }
}

/// The plan [`adapter_grads`] uses on `gpu` for this layer.
pub fn plan(gpu: &Gpu, spec: &AdapterSpec, d_out: usize, d_in: usize) -> Plan {
    let (p, q) = spec.block_shape(d_out, d_in);
    plan_for(gpu.gemm_family(), spec.blocks, p, q)
}

/// Bytes of scratch (the partial slots) that [`adapter_grads`] allocates for this layer.
/// `tokens` does not change it: the token reduction happens inside the kernel.
pub fn scratch_bytes(
    gpu: &Gpu,
    spec: &AdapterSpec,
    tokens: usize,
    d_out: usize,
    d_in: usize,
) -> usize {
    let _ = tokens;
    let pl = plan(gpu, spec, d_out, d_in);
    let (sa, sb) = slot_lens(spec, d_out, d_in);
    4 * (pl.strips_r * sa + pl.strips_c * sb)
}

/// Elements of one dA slot (rows padded to a multiple of 8) and of one dB slot.
fn slot_lens(spec: &AdapterSpec, d_out: usize, d_in: usize) -> (usize, usize) {
    let (p, q) = spec.block_shape(d_out, d_in);
    let bb = spec.blocks * spec.blocks;
    (
        bb * spec.block_rank * q.div_ceil(4) * 4,
        bb * p * spec.block_rank,
    )
}

fn param_lens(spec: &AdapterSpec, d_out: usize, d_in: usize) -> (usize, usize) {
    let (p, q) = spec.block_shape(d_out, d_in);
    let bb = spec.blocks * spec.blocks;
    (bb * spec.block_rank * q, bb * p * spec.block_rank)
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// Token ranges in which x and dy can both be bound: each range fits the binding limit
/// for both, and starts at an aligned byte offset in both.
fn token_ranges(
    gpu: &Gpu,
    tokens: usize,
    d_out: usize,
    d_in: usize,
) -> Result<Vec<(usize, usize)>> {
    let max = gpu.max_binding_bytes() as usize;
    let align = gpu.binding_offset_align().max(1) as usize;
    let row_max = 4 * d_out.max(d_in).max(1);
    if tokens * row_max <= max {
        return Ok(vec![(0, tokens)]);
    }
    let step_of = |row: usize| align / gcd(align, 4 * row.max(1));
    let (sx, sg) = (step_of(d_in), step_of(d_out));
    let step = sx / gcd(sx, sg) * sg;
    let per = (max / row_max) / step * step;
    if per == 0 {
        return Err(Error::shape(
            "adapter_grads",
            format!("{step} token rows of {row_max} bytes exceed the {max}-byte binding limit"),
        ));
    }
    Ok((0..tokens)
        .step_by(per)
        .map(|t| (t, per.min(tokens - t)))
        .collect())
}

fn check(name: &str, t: &Tensor, want: usize) -> Result<()> {
    if t.len() != want {
        return Err(Error::shape(
            "adapter_grads",
            format!(
                "{name} has {} elements ({:?}), expected {want}",
                t.len(),
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// Accumulates (+=) dA and dB for one adapted layer, without any d_out × d_in buffer:
/// with Ĝ = dyᵀ x, H_ij = s·(W0_ij ⊙ Ĝ_ij) (Hadamard) or s·Ĝ_ij (Additive),
/// grad_b_ij += H_ij A_ijᵀ and grad_a_ij += B_ijᵀ H_ij.
///
/// Shapes: w0 [d_out, d_in], x [T, d_in], dy [T, d_out], a and grad_a [b, b, r_b, q],
/// b and grad_b [b, b, p, r_b]. The scratch for the partials is allocated here and kept
/// alive by the returned dispatches (see [`scratch_bytes`]); record the dispatches in
/// order. Callers zero the gradients once per step.
#[allow(clippy::too_many_arguments)]
pub fn adapter_grads(
    gpu: &Gpu,
    spec: &AdapterSpec,
    d_out: usize,
    d_in: usize,
    w0: &Tensor,
    x: &Tensor,
    dy: &Tensor,
    a: &Tensor,
    b: &Tensor,
    grad_a: &Tensor,
    grad_b: &Tensor,
) -> Result<Vec<Dispatch>> {
    spec.check_shape("adapter_grads", d_out, d_in)?;
    if spec.block_rank == 0 || d_out == 0 || d_in == 0 {
        return Err(Error::shape(
            "adapter_grads",
            format!("empty layer {d_out}×{d_in} or rank {}", spec.block_rank),
        ));
    }
    let (p, q) = spec.block_shape(d_out, d_in);
    let (na, nb) = param_lens(spec, d_out, d_in);
    check("w0", w0, d_out * d_in)?;
    check("a", a, na)?;
    check("b", b, nb)?;
    check("grad_a", grad_a, na)?;
    check("grad_b", grad_b, nb)?;
    if !x.len().is_multiple_of(d_in) {
        return Err(Error::shape(
            "adapter_grads",
            format!(
                "x {:?} is not a whole number of {d_in}-wide rows",
                x.shape()
            ),
        ));
    }
    let tokens = x.len() / d_in;
    check("dy", dy, tokens * d_out)?;
    if w0.bytes() > gpu.max_binding_bytes() {
        return Err(Error::shape(
            "adapter_grads",
            format!(
                "W0 {d_out}×{d_in} is {} bytes, over the {}-byte storage binding limit",
                w0.bytes(),
                gpu.max_binding_bytes()
            ),
        ));
    }
    let pl = plan(gpu, spec, d_out, d_in);
    let (sa, sb) = slot_lens(spec, d_out, d_in);
    let part_a = gpu.zeros(&[pl.strips_r * sa])?;
    let part_b = gpu.zeros(&[pl.strips_c * sb])?;
    let regions = pl.regions(spec.blocks);
    let params = |t: usize| {
        Params::new()
            .u(t)
            .u(d_out)
            .u(d_in)
            .u(spec.blocks)
            .u(p)
            .u(q)
            .u(spec.block_rank)
            .u(usize::from(spec.update() == Update::Hadamard))
            .f(spec.scale)
            .u(pl.strips_r)
            .u(pl.strips_c)
            .u(pl.strip_rows)
            .u(pl.strip_cols)
            .u(0)
            .u(regions)
            .u(na)
            .u(nb)
    };
    let (kernel, groups) = match pl.family {
        GemmFamily::Register => (
            Kernel::new(BOHA_GRAD, "grad_register_backward")
                .with("WG_REG", WG_REG as f64)
                .with("RB", spec.block_rank.min(RB_REGISTERS) as f64),
            gpu.grid(regions.div_ceil(WG_REG)),
        ),
        GemmFamily::Shared => (
            Kernel::new(BOHA_GRAD, "grad_shared_backward"),
            gpu.grid(regions),
        ),
    };
    let mut out = Vec::new();
    for (t0, n) in token_ranges(gpu, tokens, d_out, d_in)? {
        let xv = x.view(t0 * d_in, n * d_in)?;
        let gv = dy.view(t0 * d_out, n * d_out)?;
        out.push(gpu.prepare(
            &kernel,
            &params(n),
            &[w0, &xv, &gv, a, b, &part_a, &part_b],
            groups,
        )?);
    }
    let reduce = Kernel::new(BOHA_GRAD, "grad_reduce_backward");
    out.push(gpu.prepare(
        &reduce,
        &params(0),
        &[&part_a, &part_b, grad_a, grad_b],
        gpu.grid((na + nb).div_ceil(64)),
    )?);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_cover_blocks_within_the_scratch_cap() {
        for family in [GemmFamily::Register, GemmFamily::Shared] {
            for &(b, p, q) in &[
                (1, 2048, 2048),
                (4, 384, 144),
                (4, 144, 384),
                (2, 48, 40),
                (1, 3, 5),
            ] {
                let pl = plan_for(family, b, p, q);
                assert!(pl.strips_r * pl.strip_rows >= p && (pl.strips_r - 1) * pl.strip_rows < p);
                if family == GemmFamily::Shared {
                    assert!(
                        pl.strips_c * pl.strip_cols >= q && (pl.strips_c - 1) * pl.strip_cols < q
                    );
                } else {
                    assert!(pl.strips_c >= 1 && (pl.strips_c - 1) * 4 < q, "{pl:?}");
                }
                let cap = match family {
                    GemmFamily::Register => MAX_STRIPS_REGISTER,
                    GemmFamily::Shared => MAX_STRIPS_SHARED,
                };
                assert!(pl.strips_r <= cap && pl.strips_c <= cap, "{pl:?}");
            }
        }
    }
}
