//! Fused adapter gradients (`shaders/boha_grad.wgsl`, completed by the kind's snippet)
//! for every kind the fused kernels run, without any d_out × d_in buffer.
//!
//! ```text
//! Ĝ = dYᵀ X                                   (d_out × d_in, never stored)
//! H_ij = Ĝ_ij ⊙ ∂W'/∂m                        (s·W0_ij for BoHA and HiRA, s for additive kinds)
//! dB_ij += H_ij A_ijᵀ   (p × r_b)               dA_ij += B_ijᵀ H_ij   (r_b × q)
//! ```
//!
//! For the pair kinds (two rank groups, M = (B1A1) ⊙ (B2A2)) each group's H is also
//! multiplied by the other group's product, formed on the fly for the tile's elements:
//! dB1 = (H ⊙ B2A2)·A1ᵀ, dA1 = B1ᵀ·(H ⊙ B2A2), and the same with 1 and 2 swapped.
//!
//! Every block is cut into `strips_r × strips_c` regions, one workgroup each. The main
//! kernel forms the 64 × 64 Ĝ tiles of its region (reduced over all tokens), multiplies
//! them by their W0 tile and contracts them with A and B while they are in registers and
//! workgroup memory, adding into one partial of dB per column strip and one of dA per row
//! strip (per strip and sub-tile column / row for the vec4 kernel). A second, small
//! kernel adds the partials into the gradients (and clears them). Scratch is
//! `slots·(strips_r·|A| + strips_c·|B|)` floats (slots = [`Plan::slots`]: 4 for the
//! vec4 kernel, else 1): a small multiple of the adapter's parameters (4× for BoHA b = 4
//! on a 2-thread CPU, at most 16× for the other kernels and 64× for the vec4 one for
//! layers up to 1024 × 1024 per block at 512 tokens), more only where the lavapipe loop
//! budget (see the shader) needs smaller regions. Never O(d_out·d_in). A model's
//! trainer shares one such scratch between all its adapted matrices, and LoRA's [T, r]
//! intermediate with them ([`GradScratch`]).
//!
//! Three kernels, as for the GEMMs: [`GemmFamily::Register`] with p and q multiples of 4
//! (`grad_reg4_backward`: 16 invocations, each a 16 × 16 sub-tile with vec4 loads of x
//! and dy, 32 FMAs per load, and H and the contractions in registers: no barriers, no
//! workgroup memory), [`GemmFamily::Register`] for any other shape (64 invocations, each
//! reducing an 8 × 8 tile from scalar loads; CPU-type adapters) and
//! [`GemmFamily::Shared`] (256 invocations with 4 × 4 tiles, tokens staged through
//! workgroup memory: GPUs).
//!
//! On lavapipe (2-core machine, T = 256, b = 4, r_b = 2) the vec4 kernel runs the
//! 576 → 1536 and 1536 → 576 gradients in 0.5–0.95× the time of one plain `matmul_tn` of
//! Ĝ alone, about 3× faster than the scalar register kernel (~1.35 GFLOP/s).

use crate::adapters::AdapterSpec;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, GemmFamily, Gpu, Kernel, Params, Tensor};
use crate::shaders::{with_kind, BOHA_GRAD};

/// Largest number of strips per block side chosen for parallelism (the scratch factor).
pub const MAX_STRIPS: usize = 16;
/// Tile side of the kernels.
const TILE: usize = 64;
/// Most tokens one dispatch reduces over; longer batches run as several dispatches that
/// add into the same partials.
const MAX_TOKENS: usize = 2048;
/// Loop iterations one invocation may run in all on llvmpipe, which silently ends loops
/// after 65535 (see the shader); kept well below. The CPU profile's
/// [`crate::gpu::Profile::loop_budget`]; GPUs have none.
#[cfg(test)]
const LOOP_BUDGET: usize = 40_000;

/// How the blocks are cut into regions (one workgroup each).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    pub family: GemmFamily,
    /// The register family's vec4 kernel (`grad_reg4_backward`: p and q multiples of 4),
    /// with [`REG4_SLOTS`] partial slots per strip.
    pub vec4: bool,
    /// Row strips per block: contiguous runs of `strip_rows` rows.
    pub strips_r: usize,
    /// Column strips per block: contiguous runs of `strip_cols` columns.
    pub strips_c: usize,
    pub strip_rows: usize,
    pub strip_cols: usize,
    /// Tokens per dispatch.
    pub tokens: usize,
}

impl Plan {
    /// Regions (workgroups) in all: b²·strips_r·strips_c.
    pub fn regions(&self, blocks: usize) -> usize {
        blocks * blocks * self.strips_r * self.strips_c
    }

    /// Partial slots per strip: one per row (dA) or column (dB) of sub-tiles of the
    /// vec4 kernel, else one.
    pub fn slots(&self) -> usize {
        if self.vec4 {
            REG4_SLOTS
        } else {
            1
        }
    }
}

/// Sub-tiles per tile side of `grad_reg4_backward` (16 × 16 each, one per invocation),
/// and so its partial slots per strip.
pub const REG4_SLOTS: usize = 4;

/// Loop iterations of one invocation per tile: the token loop (the shared family's also
/// runs its staging loop per 16 tokens), the two contractions and the small fixed loops;
/// with two rank groups, forming the other group's product (at most 16 × r_b).
fn iterations_per_tile(
    family: GemmFamily,
    vec4: bool,
    tokens: usize,
    rb: usize,
    groups: usize,
) -> usize {
    let pairs = if groups > 1 { 16 * rb } else { 0 };
    if vec4 {
        // Each invocation: its sub-tile's token loop and one contraction loop over r_b.
        return tokens + rb + 8 + pairs;
    }
    let (token_loop, threads) = match family {
        GemmFamily::Register => (tokens, 64),
        GemmFamily::Shared => (tokens.div_ceil(16) * 22, 256),
    };
    token_loop + 2 * (TILE + 1) * (TILE * rb).div_ceil(threads) + 32 + pairs
}

/// Chooses the strips: about `busy` regions (enough to fill the device), splitting the
/// longer side of a region first and at most [`MAX_STRIPS`] strips a side; then, whatever
/// that gives, small enough regions for the loop `budget`.
#[allow(clippy::too_many_arguments)]
fn plan_for(
    family: GemmFamily,
    busy: usize,
    budget: usize,
    vec4: bool,
    blocks: usize,
    p: usize,
    q: usize,
    tokens: usize,
    rb: usize,
    groups: usize,
) -> Plan {
    // On a CPU adapter a workgroup runs on one thread, and measured on lavapipe more
    // regions than threads only cost; discrete GPUs want a few workgroups per compute unit.
    let target = busy;
    let t = tokens.clamp(1, MAX_TOKENS);
    let units_r = p.div_ceil(TILE).max(1);
    let units_c = q.div_ceil(TILE).max(1);
    let (mut sr, mut sc) = (1usize, 1usize);
    let split = |sr: &mut usize, sc: &mut usize, cap: usize| -> bool {
        let (can_r, can_c) = (*sr < cap.min(units_r), *sc < cap.min(units_c));
        if can_r && (!can_c || units_r.div_ceil(*sr) >= units_c.div_ceil(*sc)) {
            *sr += 1;
        } else if can_c {
            *sc += 1;
        } else {
            return false;
        }
        true
    };
    while blocks * blocks * sr * sc < target && split(&mut sr, &mut sc, MAX_STRIPS) {}
    let vec4 = vec4 && family == GemmFamily::Register && p.is_multiple_of(4) && q.is_multiple_of(4);
    let per_tile = iterations_per_tile(family, vec4, t, rb, groups);
    while units_r.div_ceil(sr) * units_c.div_ceil(sc) * per_tile > budget
        && split(&mut sr, &mut sc, usize::MAX)
    {}
    let strip_rows = units_r.div_ceil(sr) * TILE;
    let strip_cols = units_c.div_ceil(sc) * TILE;
    Plan {
        family,
        vec4,
        strips_r: p.div_ceil(strip_rows).max(1),
        strips_c: q.div_ceil(strip_cols).max(1),
        strip_rows,
        strip_cols,
        tokens: t,
    }
}

/// The plan [`adapter_grads`] uses on `gpu` for this layer and token count.
pub fn plan(gpu: &Gpu, spec: &AdapterSpec, tokens: usize, d_out: usize, d_in: usize) -> Plan {
    let (p, q) = spec.block_shape(d_out, d_in);
    let profile = gpu.profile();
    plan_for(
        profile.family,
        profile.busy_workgroups,
        profile.loop_budget.unwrap_or(usize::MAX),
        true,
        spec.blocks,
        p,
        q,
        tokens,
        spec.block_rank,
        spec.method.kind().groups(),
    )
}

/// Bytes of scratch (the partial slots) that [`adapter_grads`] allocates for this layer.
pub fn scratch_bytes(
    gpu: &Gpu,
    spec: &AdapterSpec,
    tokens: usize,
    d_out: usize,
    d_in: usize,
) -> usize {
    let (a, b) = scratch_lens(gpu, spec, tokens, d_out, d_in);
    4 * (a + b)
}

/// Dispatches [`adapter_grads`] prepares for this layer: one per token range, and the
/// reduce.
pub fn dispatch_count(
    gpu: &Gpu,
    spec: &AdapterSpec,
    tokens: usize,
    d_out: usize,
    d_in: usize,
) -> usize {
    let pl = plan(gpu, spec, tokens, d_out, d_in);
    token_ranges(gpu, tokens, d_out, d_in, pl.tokens).map_or(1, |r| r.len()) + 1
}

/// Elements of the (dA, dB) partial slots [`adapter_grads`] uses for this layer.
pub(crate) fn scratch_lens(
    gpu: &Gpu,
    spec: &AdapterSpec,
    tokens: usize,
    d_out: usize,
    d_in: usize,
) -> (usize, usize) {
    let pl = plan(gpu, spec, tokens, d_out, d_in);
    let (na, nb) = param_lens(spec, d_out, d_in);
    (pl.slots() * pl.strips_r * na, pl.slots() * pl.strips_c * nb)
}

/// The scratch that the adapted matrices of one model share, three rooms each sized for
/// the largest matrix: the gradient kernels' partial slots of dA and dB (BoHA, HiRA,
/// additive; the pair kinds keep their Khatri–Rao factors and their gradients there)
/// and the bottleneck's [T, R] intermediate (LoRA, ABBA, LoHa).
///
/// Sharing is safe because a queue runs dispatches in order and each matrix uses a room
/// only between its own consecutive dispatches: the reduce kernel that ends every
/// [`adapter_grads`] leaves the partial slots it used cleared, so the next matrix finds
/// them zero; LoRA writes U = x·Aᵀ (and later dU = s·dy·B over it) before reading it,
/// and its backward recomputes U rather than keeping the forward's. A model's trainer
/// keeps one instead of one per matrix, which would cost `slots·strips` times the
/// adapter's parameters (LoRA: 3·T·r floats) for every adapted matrix.
#[derive(Clone)]
pub struct GradScratch {
    part_a: Tensor,
    part_b: Tensor,
    /// The bottleneck's U / dU [T, R]: one room, since U is dead once dU is formed.
    bottleneck: Tensor,
}

impl GradScratch {
    /// Room for every `(spec, tokens, d_out, d_in)` in `layers`.
    pub fn new<'a>(
        gpu: &Gpu,
        layers: impl IntoIterator<Item = (&'a AdapterSpec, usize, usize, usize)>,
    ) -> Result<Self> {
        let (na, nb, nu) = rooms(gpu, layers);
        Ok(GradScratch {
            part_a: gpu.zeros(&[na])?,
            part_b: gpu.zeros(&[nb])?,
            bottleneck: gpu.zeros(&[nu])?,
        })
    }

    /// The three rooms from planned buffers (a graph's adapter scratch values), sized by
    /// `rooms`: the dA partials, the dB partials and the bottleneck, each its own buffer.
    pub fn from_parts(part_a: Tensor, part_b: Tensor, bottleneck: Tensor) -> Self {
        GradScratch {
            part_a,
            part_b,
            bottleneck,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> u64 {
        self.part_a.bytes() + self.part_b.bytes() + self.bottleneck.bytes()
    }

    /// The first `len_a` and `len_b` elements, or an error if the room is too small.
    fn views(&self, len_a: usize, len_b: usize) -> Result<(Tensor, Tensor)> {
        if len_a > self.part_a.len() || len_b > self.part_b.len() {
            return Err(Error::shape(
                "adapter_grads",
                format!(
                    "shared scratch holds {} + {} partials, this layer needs {len_a} + {len_b}",
                    self.part_a.len(),
                    self.part_b.len()
                ),
            ));
        }
        Ok((self.part_a.view(0, len_a)?, self.part_b.view(0, len_b)?))
    }

    /// The first `len` elements of the bottleneck room, or None if it is smaller.
    pub(crate) fn bottleneck(&self, len: usize) -> Result<Option<Tensor>> {
        if len > self.bottleneck.len() {
            return Ok(None);
        }
        Ok(Some(self.bottleneck.view(0, len)?))
    }

    /// The first `len_a` and `len_b` elements of the two partial rooms (separate
    /// buffers), or None if either is smaller.
    pub(crate) fn partial_rooms(
        &self,
        len_a: usize,
        len_b: usize,
    ) -> Result<Option<(Tensor, Tensor)>> {
        if len_a > self.part_a.len() || len_b > self.part_b.len() {
            return Ok(None);
        }
        Ok(Some(self.views(len_a, len_b)?))
    }
}

/// Elements of the (dA partials, dB partials, bottleneck) rooms that `layers`
/// share: the largest of each, at least 1.
pub(crate) fn rooms<'a>(
    gpu: &Gpu,
    layers: impl IntoIterator<Item = (&'a AdapterSpec, usize, usize, usize)>,
) -> (usize, usize, usize) {
    let (mut na, mut nb, mut nu) = (1, 1, 1);
    for (spec, tokens, d_out, d_in) in layers {
        let (a, b, u) = room_lens(gpu, spec, tokens, d_out, d_in);
        na = na.max(a);
        nb = nb.max(b);
        nu = nu.max(u);
    }
    (na, nb, nu)
}

/// Elements of the (dA partials, dB partials, bottleneck) rooms one matrix needs.
fn room_lens(
    gpu: &Gpu,
    spec: &AdapterSpec,
    tokens: usize,
    d_out: usize,
    d_in: usize,
) -> (usize, usize, usize) {
    spec.method
        .kind()
        .kernels()
        .room_lens(gpu, spec, tokens, d_out, d_in)
}

/// Bytes of the [`GradScratch`] a trainer allocates for matrices `layers` (the same
/// sizes as [`GradScratch::new`], without a device allocation; for memory estimates).
pub fn shared_scratch_bytes<'a>(
    gpu: &Gpu,
    layers: impl IntoIterator<Item = (&'a AdapterSpec, usize, usize, usize)>,
) -> u64 {
    let (na, nb, nu) = rooms(gpu, layers);
    4 * (na + nb + nu) as u64
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

/// Token ranges of at most `max_tokens` in which x and dy can both be bound: each range
/// fits the binding limit for both and starts at an aligned byte offset in both.
fn token_ranges(
    gpu: &Gpu,
    tokens: usize,
    d_out: usize,
    d_in: usize,
    max_tokens: usize,
) -> Result<Vec<(usize, usize)>> {
    let max = gpu.max_binding_bytes() as usize;
    let align = gpu.binding_offset_align().max(1) as usize;
    let row_max = 4 * d_out.max(d_in).max(1);
    if tokens <= max_tokens && tokens * row_max <= max {
        return Ok(vec![(0, tokens)]);
    }
    let step_of = |row: usize| align / gcd(align, 4 * row.max(1));
    let (sx, sg) = (step_of(d_in), step_of(d_out));
    let step = sx / gcd(sx, sg) * sg;
    let per = ((max / row_max).min(max_tokens) / step * step).max(step);
    if per * row_max > max {
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
/// order, as often as needed (the last one leaves the scratch cleared). Callers zero the
/// gradients once per step. With `scratch`, the partial slots are taken from it instead
/// (see [`GradScratch`]): the dispatches of all matrices sharing one must run in one
/// queue, each matrix's in order and whole before the next one's.
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
    scratch: Option<&GradScratch>,
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
    let pl = plan(gpu, spec, tokens, d_out, d_in);
    let (len_a, len_b) = (pl.slots() * pl.strips_r * na, pl.slots() * pl.strips_c * nb);
    let (part_a, part_b) = match scratch {
        Some(s) => s.views(len_a, len_b)?,
        None => (gpu.zeros(&[len_a])?, gpu.zeros(&[len_b])?),
    };
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
            .u(0)
            .f(spec.scale)
            .u(pl.strips_r)
            .u(pl.strips_c)
            .u(pl.strip_rows)
            .u(pl.strip_cols)
            .u(pl.slots())
            .u(regions)
            .u(na)
            .u(nb)
    };
    let shader = with_kind(BOHA_GRAD, spec.method.kind().snippet(), w0.dtype());
    let kernel = match pl.family {
        GemmFamily::Register if pl.vec4 => Kernel::new(shader, "grad_reg4_backward"),
        GemmFamily::Register => Kernel::new(shader, "grad_register_backward"),
        GemmFamily::Shared => Kernel::new(shader, "grad_shared_backward"),
    };
    let mut out = Vec::new();
    for (t0, n) in token_ranges(gpu, tokens, d_out, d_in, pl.tokens)? {
        let xv = x.view(t0 * d_in, n * d_in)?;
        let gv = dy.view(t0 * d_out, n * d_out)?;
        // Binding order: grad_reg4_backward binds B and part_b as scalars, then W0, x,
        // dy, A and part_a as vec4 arrays.
        let tensors = if pl.vec4 {
            [b, &part_b, w0, &xv, &gv, a, &part_a]
        } else {
            [w0, &xv, &gv, a, b, &part_a, &part_b]
        };
        out.push(gpu.prepare(&kernel, &params(n), &tensors, gpu.grid(regions))?);
    }
    let reduce = Kernel::new(shader, "grad_reduce_backward");
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
    fn plans_cover_blocks_and_keep_the_loop_budget() {
        for (family, vec4) in [
            (GemmFamily::Register, false),
            (GemmFamily::Register, true),
            (GemmFamily::Shared, false),
        ] {
            for &(b, p, q, t, rb, groups) in &[
                (1, 2048, 2048, 512, 32, 1),
                (4, 384, 144, 512, 8, 1),
                (4, 144, 384, 512, 8, 1),
                (2, 48, 40, 37, 2, 1),
                (1, 3, 5, 1, 1, 1),
                (1, 8192, 8192, 4096, 64, 1),
                (1, 2048, 2048, 512, 32, 2),
                (1, 8192, 8192, 4096, 64, 2),
            ] {
                let busy = if family == GemmFamily::Register {
                    4
                } else {
                    264
                };
                let pl = plan_for(family, busy, LOOP_BUDGET, vec4, b, p, q, t, rb, groups);
                assert_eq!(pl.vec4, vec4 && p % 4 == 0 && q % 4 == 0);
                assert!(pl.strips_r * pl.strip_rows >= p && (pl.strips_r - 1) * pl.strip_rows < p);
                assert!(pl.strips_c * pl.strip_cols >= q && (pl.strips_c - 1) * pl.strip_cols < q);
                let tiles = (pl.strip_rows / TILE) * (pl.strip_cols / TILE);
                assert!(
                    tiles * iterations_per_tile(family, pl.vec4, pl.tokens, rb, groups)
                        <= LOOP_BUDGET,
                    "{pl:?}"
                );
                if p <= 1024 * 1024 / q.max(1) && t <= 512 {
                    assert!(
                        pl.strips_r <= MAX_STRIPS && pl.strips_c <= MAX_STRIPS,
                        "{pl:?}"
                    );
                }
            }
        }
    }
}
