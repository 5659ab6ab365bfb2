//! General matrix multiply (`shaders/gemm_register.wgsl`, `shaders/gemm_shared.wgsl`,
//! `shaders/gemm_tier.wgsl`).
//!
//! C\[b\] = alpha · op(A\[b\]) · op(B\[b\]) + beta · C\[b\] for b < batch, row-major, where
//! op(A) is m×k (A stored [m, k], or [k, m] when `trans_a`) and op(B) is k×n (B stored
//! [k, n], or [n, k] when `trans_b`). With beta = 0, C is written without being read.
//! A and C are f32; B (the frozen weight of a linear layer) may be stored as f16 or bf16
//! and is widened to f32 where a tile loads it (the weights snippets of
//! [`crate::shaders`]); every product accumulates in f32.
//!
//! Training needs three products of a linear layer Y = X·Wᵀ:
//! - forward  [`matmul_nt`]: Y\[M,N\]  = X\[M,K\]·W\[N,K\]ᵀ
//! - backward [`matmul_nn`]: dX\[M,K\] = dY\[M,N\]·W\[N,K\]
//! - backward [`matmul_tn`]: dW\[N,K\] = dY\[M,N\]ᵀ·X\[M,K\]
//!
//! Three tiles ([`GemmTile`]): register tiles for CPU-type adapters, 64 × 64
//! workgroup-shared tiles for GPUs ([`GemmFamily`]'s own two), and the discrete-GPU
//! tier (`tier`); [`gemm`] runs the tile the device's tuning or profile names for the
//! shape. Operands larger than the storage-binding limit are bound in ranges (see
//! [`plan`]); each range is one dispatch, and ranges along k accumulate.
//!
//! Products with a few rows (m ≤ [`gemv::MAX_M`], NT: the decode step's projections and
//! logits) run on the GEMV kernels ([`gemv`]) instead, chosen automatically ([`Path`]).

pub mod gemv;
pub mod plan;
pub mod reference;
mod subgroup;
mod tier;

use crate::error::{Error, Result};
use crate::gpu::tuning::GemmKey;
use crate::gpu::{Dispatch, GemmFamily, GemmTile, Gpu, Kernel, Params, Tensor};
use crate::shaders::{base_name, with_weights, GEMM_REGISTER, GEMM_SHARED};
pub use gemv::GemvKernel;

/// Rows and columns of C one register-family invocation computes (vec4, scalar entry).
const REG_TILE: (usize, usize) = (16, 8);
/// Register-family workgroup (x along n, y along m).
const REG_WG: (usize, usize) = (8, 8);
/// Rows and columns of C one shared-family workgroup computes.
const SHARED_TILE: usize = 64;

/// One GEMM: sizes, transposes, scalars and batch layout (all in elements).
#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub alpha: f32,
    pub beta: f32,
    /// Number of independent products; entry b of each operand starts `b · stride_*`
    /// elements after its first (a stride of 0 shares one matrix across the batch).
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
}

impl Gemm {
    /// C = op(A)·op(B) for one m×k by k×n product, no transposes, tight strides.
    pub fn new(m: usize, n: usize, k: usize) -> Gemm {
        Gemm {
            m,
            n,
            k,
            trans_a: false,
            trans_b: false,
            alpha: 1.0,
            beta: 0.0,
            batch: 1,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
        }
    }

    /// Row lengths of A, B and C as stored.
    fn lds(&self) -> (usize, usize, usize) {
        (
            if self.trans_a { self.m } else { self.k },
            if self.trans_b { self.k } else { self.n },
            self.n,
        )
    }
}

/// C\[b\] = alpha · op(A\[b\]) · op(B\[b\]) + beta · C\[b\], on the tile the device runs
/// for this shape ([`Gpu::gemm_tile_for`]: the tuned winner, else the profile's).
pub fn gemm(gpu: &Gpu, g: &Gemm, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<Vec<Dispatch>> {
    let key = GemmKey::new(g.m, g.n, g.k, g.trans_a, g.trans_b, g.batch);
    gemm_tile(gpu, gpu.gemm_tile_for(&key), Path::Auto, g, a, b, c)
}

/// [`gemm`] on an explicit kernel family's own tile (tests run both on one device).
pub fn gemm_with(
    gpu: &Gpu,
    family: GemmFamily,
    g: &Gemm,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Result<Vec<Dispatch>> {
    gemm_path(gpu, family, Path::Auto, g, a, b, c)
}

/// Which kernels a product runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Path {
    /// The family's GEMV kernel where [`gemv::applies`] (m ≤ 8, NT), else the tiles.
    Auto,
    /// Always the family's tiled kernels.
    Tiled,
    /// This GEMV kernel where it applies, else the tiles.
    Gemv(GemvKernel),
}

/// C\[b\] = alpha · op(A\[b\]) · op(B\[b\]) + beta · C\[b\] as [`gemm_with`], on the
/// kernels `path` picks (tests and benchmarks compare them). With [`Path::Auto`] (what
/// [`gemm`], [`matmul_nt`] and the rest use) an NT product of m ≤ [`gemv::MAX_M`] rows,
/// Y[i, j] = alpha · Σ_k X[i, k] · W[j, k] + beta · Y[i, j], runs on the GEMV kernels.
pub fn gemm_path(
    gpu: &Gpu,
    family: GemmFamily,
    path: Path,
    g: &Gemm,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Result<Vec<Dispatch>> {
    let how = How::new(GemmTile::of_family(family), family, path, g);
    run(gpu, how, g, a, b, c)
}

/// C\[b\] = alpha · op(A\[b\]) · op(B\[b\]) + beta · C\[b\] on an explicit tile (what
/// `boha tune` times and the tests compare), GEMV-shaped products on the kernels `path`
/// picks with the device's family. A tile the device cannot hold ([`Gpu::tile_fits`]) runs
/// on the family's own tile instead.
pub fn gemm_tile(
    gpu: &Gpu,
    tile: GemmTile,
    path: Path,
    g: &Gemm,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Result<Vec<Dispatch>> {
    let family = gpu.gemm_family();
    let tile = if gpu.tile_fits(tile) {
        tile
    } else {
        GemmTile::of_family(family)
    };
    run(gpu, How::new(tile, family, path, g), g, a, b, c)
}

/// Plans and prepares a product on the kernels `how` names.
fn run(gpu: &Gpu, how: How, g: &Gemm, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<Vec<Dispatch>> {
    check(g, a, b, c)?;
    if g.m == 0 || g.n == 0 || g.batch == 0 {
        return Ok(Vec::new());
    }
    if g.batch == 1 {
        plan_single(gpu, how, g, a, b, c)
    } else {
        plan_batched(gpu, how, g, a, b, c)
    }
}

/// The kernels chosen for one product: the tile, and the GEMV kernel (the family's, or
/// the one `path` asked for) where the product is GEMV-shaped.
#[derive(Clone, Copy)]
struct How {
    tile: GemmTile,
    gemv: Option<GemvKernel>,
}

impl How {
    /// `tile`, with `family`'s GEMV kernel where `path` is [`Path::Auto`] and `g` is
    /// GEMV-shaped.
    fn new(tile: GemmTile, family: GemmFamily, path: Path, g: &Gemm) -> How {
        let gemv = match path {
            Path::Auto if gemv::applies(g) => Some(GemvKernel::for_family(family)),
            Path::Gemv(kernel) if gemv::applies(g) => Some(kernel),
            _ => None,
        };
        How { tile, gemv }
    }
}

fn check(g: &Gemm, a: &Tensor, b: &Tensor, c: &Tensor) -> Result<()> {
    let need = |stride: usize, size: usize| {
        if g.batch == 0 || size == 0 {
            0
        } else {
            (g.batch - 1) * stride + size
        }
    };
    for (name, t, n) in [
        ("A", a, need(g.stride_a, g.m * g.k)),
        ("B", b, need(g.stride_b, g.k * g.n)),
        ("C", c, need(g.stride_c, g.m * g.n)),
    ] {
        if t.len() < n {
            return Err(Error::shape(
                "gemm",
                format!(
                    "{name} has {} elements, the product needs {n} ({g:?})",
                    t.len()
                ),
            ));
        }
    }
    if !g.alpha.is_finite() || !g.beta.is_finite() {
        return Err(Error::Invalid(format!(
            "gemm alpha {} / beta {} must be finite",
            g.alpha, g.beta
        )));
    }
    Ok(())
}

/// One dispatch's sizes and bound views.
#[derive(Clone)]
struct Part {
    m: usize,
    n: usize,
    k: usize,
    a: Tensor,
    b: Tensor,
    c: Tensor,
    offs: (usize, usize, usize),
    strides: (usize, usize, usize),
    batch: usize,
    beta: f32,
}

/// Batch of one: cut m, n and k where a bound operand needs it.
fn plan_single(
    gpu: &Gpu,
    how: How,
    g: &Gemm,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Result<Vec<Dispatch>> {
    let (max, align) = (gpu.max_binding_bytes(), gpu.binding_offset_align());
    let (m, n, k) = (g.m, g.n, g.k);
    // Each operand's stored rows and row length: A is [m, k] ([k, m] transposed), B
    // [k, n] ([n, k]), C [m, n].
    let (a_rows, a_ld) = if g.trans_a { (k, m) } else { (m, k) };
    let (b_rows, b_ld) = if g.trans_b { (n, k) } else { (k, n) };
    // An operand whose rows all fit the binding limit is bound whole, its ranges' starts
    // becoming element offsets inside it; only the others are bound as the rows of their
    // ranges, so only their rows decide where ranges may start. (Were every operand's
    // rows to start at aligned offsets, WebGPU's 256-byte alignment would refuse a decode
    // GEMV whose few rows of Y must be cut: X's 32-byte rows would start every 8 rows,
    // past its m ≤ 8, though X fits whole.)
    let fits = |t: &Tensor, rows: usize, ld: usize| t.dtype().bytes_for(rows * ld) as u64 <= max;
    let whole = [fits(a, a_rows, a_ld), fits(b, b_rows, b_ld), fits(c, m, n)];
    // Row lengths in bytes: A and C are f32, B may be a low-precision weight.
    let bbytes = |elems: usize| b.dtype().bytes_for(elems);
    let mut m_rows = vec![];
    let mut n_rows = vec![];
    let mut k_rows = vec![];
    if !whole[2] {
        m_rows.push(n * 4)
    }
    match (g.trans_a, whole[0]) {
        (_, true) => {}
        (true, false) => k_rows.push(m * 4),
        (false, false) => m_rows.push(k * 4),
    }
    match (g.trans_b, whole[1]) {
        (_, true) => {}
        (true, false) => n_rows.push(bbytes(k)),
        (false, false) => k_rows.push(bbytes(n)),
    }
    let ms = plan::split(m, &m_rows, max, align, "gemm")?;
    let ns = plan::split(n, &n_rows, max, align, "gemm")?;
    let ks = plan::split(k, &k_rows, max, align, "gemm")?;
    // The view of `t` (`rows` rows of `ld`) for the range of rows `r0..r0 + len` starting
    // `inner` along them, and the range's element offset inside that view.
    let bind = |t: &Tensor, whole: bool, (rows, ld): (usize, usize), (r0, len), inner| {
        Ok::<_, Error>(if whole {
            (t.view(0, rows * ld)?, r0 * ld + inner)
        } else {
            (t.view(r0 * ld, len * ld)?, inner)
        })
    };
    let mut out = Vec::new();
    for &(m0, ml) in &ms {
        for &(n0, nl) in &ns {
            for (ki, &(k0, kl)) in ks.iter().enumerate() {
                let (av, a_off) = if g.trans_a {
                    bind(a, whole[0], (a_rows, a_ld), (k0, kl), m0)?
                } else {
                    bind(a, whole[0], (a_rows, a_ld), (m0, ml), k0)?
                };
                let (bv, b_off) = if g.trans_b {
                    bind(b, whole[1], (b_rows, b_ld), (n0, nl), k0)?
                } else {
                    bind(b, whole[1], (b_rows, b_ld), (k0, kl), n0)?
                };
                let (cv, c_off) = bind(c, whole[2], (m, n), (m0, ml), n0)?;
                let part = Part {
                    m: ml,
                    n: nl,
                    k: kl,
                    a: av,
                    b: bv,
                    c: cv,
                    offs: (a_off, b_off, c_off),
                    strides: (0, 0, 0),
                    batch: 1,
                    beta: if ki == 0 { g.beta } else { 1.0 },
                };
                dispatch(gpu, how, g, &part, &mut out)?;
            }
        }
    }
    Ok(out)
}

/// Several products: cut the batch so each range's views fit.
fn plan_batched(
    gpu: &Gpu,
    how: How,
    g: &Gemm,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Result<Vec<Dispatch>> {
    let sizes = [
        (g.stride_a, g.m * g.k),
        (g.stride_b, g.k * g.n),
        (g.stride_c, g.m * g.n),
    ];
    let bbytes = |elems: usize| b.dtype().bytes_for(elems);
    let in_bytes = [
        (sizes[0].0 * 4, sizes[0].1 * 4),
        (bbytes(sizes[1].0), bbytes(sizes[1].1)),
        (sizes[2].0 * 4, sizes[2].1 * 4),
    ];
    let ranges = plan::split_batch(
        g.batch,
        &in_bytes,
        gpu.max_binding_bytes(),
        gpu.binding_offset_align(),
        gpu.max_workgroups_per_dim() as usize,
        "gemm",
    )?;
    let view = |t: &Tensor, (stride, size): (usize, usize), b0: usize, nb: usize| {
        t.view(
            b0 * stride,
            if size == 0 {
                0
            } else {
                (nb - 1) * stride + size
            },
        )
    };
    let mut out = Vec::new();
    for &(b0, nb) in &ranges {
        let part = Part {
            m: g.m,
            n: g.n,
            k: g.k,
            a: view(a, sizes[0], b0, nb)?,
            b: view(b, sizes[1], b0, nb)?,
            c: view(c, sizes[2], b0, nb)?,
            offs: (0, 0, 0),
            strides: (g.stride_a, g.stride_b, g.stride_c),
            batch: nb,
            beta: g.beta,
        };
        dispatch(gpu, how, g, &part, &mut out)?;
    }
    Ok(out)
}

/// True when the register kernel may read an operand's `ld`-long stored rows as vec4s:
/// the row length, the offset, the batch stride and the extent read along the rows are
/// multiples of 4. (A partial last step along k is masked when k runs across rows.)
fn vec4_ok(ld: usize, off: usize, stride: usize, along_rows: usize) -> bool {
    ld.is_multiple_of(4)
        && off.is_multiple_of(4)
        && stride.is_multiple_of(4)
        && along_rows.is_multiple_of(4)
}

/// Appends `p`'s dispatches: the chosen GEMV kernel's where the part allows vec4 loads
/// along k ([`gemv::dispatch`]); else one on the tile ([`tier::dispatch`] for the tier),
/// except on the register tile when k % 4 != 0 and neither operand is stored along k
/// (dW = dYᵀ·X at an odd token count): then the vec4 kernel takes whole steps of 4 and
/// the scalar kernel accumulates the last k % 4.
fn dispatch(gpu: &Gpu, how: How, g: &Gemm, p: &Part, out: &mut Vec<Dispatch>) -> Result<()> {
    if let Some(kernel) = how.gemv {
        if gemv::part_applies(g, p) {
            return gemv::dispatch(gpu, kernel, g, p, out);
        }
    }
    match how.tile {
        GemmTile::Register => {}
        GemmTile::Shared64 => {
            out.push(prepare(
                gpu,
                g,
                p,
                Kernel::new(with_weights(GEMM_SHARED, p.b.dtype()), "gemm_tiled"),
                SHARED_TILE,
            )?);
            return Ok(());
        }
        GemmTile::Tier { bm, bn } => return tier::dispatch(gpu, (bm, bn), g, p, out),
        GemmTile::Subgroup if subgroup::applies(g, p) => return subgroup::dispatch(gpu, g, p, out),
        GemmTile::Subgroup => {}
    }
    let (lda, ldb, _) = g.lds();
    let k_along_rows = !g.trans_a || g.trans_b;
    let k4 = if k_along_rows { p.k } else { p.k / 4 * 4 };
    // An empty operand is bound as 4 bytes, less than one vec4.
    let vec4 = k4 > 0
        && vec4_ok(lda, p.offs.0, p.strides.0, if g.trans_a { p.m } else { k4 })
        && vec4_ok(ldb, p.offs.1, p.strides.1, if g.trans_b { k4 } else { p.n });
    let scalar = |q: &Part| {
        prepare(
            gpu,
            g,
            q,
            Kernel::new(with_weights(GEMM_REGISTER, q.b.dtype()), "gemm_scalar"),
            REG_TILE.1,
        )
    };
    if !vec4 {
        out.push(scalar(p)?);
        return Ok(());
    }
    let main = Part { k: k4, ..p.clone() };
    out.push(prepare(
        gpu,
        g,
        &main,
        Kernel::new(with_weights(GEMM_REGISTER, p.b.dtype()), "gemm_vec4"),
        REG_TILE.0,
    )?);
    if k4 < p.k {
        let tail = Part {
            k: p.k - k4,
            offs: (p.offs.0 + k4 * lda, p.offs.1 + k4 * ldb, p.offs.2),
            beta: 1.0,
            ..p.clone()
        };
        out.push(scalar(&tail)?);
    }
    Ok(())
}

/// The uniform every GEMM and GEMV entry point reads: sizes, leading dimensions, the
/// part's offsets and batch strides, α and the part's β.
fn uniform(g: &Gemm, p: &Part) -> Params {
    let (lda, ldb, ldc) = g.lds();
    Params::new()
        .u(p.m)
        .u(p.n)
        .u(p.k)
        .u(lda)
        .u(ldb)
        .u(ldc)
        .u(p.offs.0)
        .u(p.offs.1)
        .u(p.offs.2)
        .u(p.strides.0)
        .u(p.strides.1)
        .u(p.strides.2)
        .f(g.alpha)
        .f(p.beta)
        .u(p.batch)
        .u(0)
}

/// One dispatch of `kernel` (trans flags and, for the register family, workgroup size
/// added here) over `p`, each invocation or workgroup covering `tile` × `tile` of C.
fn prepare(gpu: &Gpu, g: &Gemm, p: &Part, kernel: Kernel, tile: usize) -> Result<Dispatch> {
    let params = uniform(g, p);
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let mut kernel = kernel
        .with("TRANS_A", flag(g.trans_a))
        .with("TRANS_B", flag(g.trans_b));
    let (wx, wy) = if base_name(&kernel.shader) == GEMM_REGISTER.name {
        kernel = kernel
            .with("WG_X", REG_WG.0 as f64)
            .with("WG_Y", REG_WG.1 as f64);
        REG_WG
    } else {
        (1, 1)
    };
    let grid = [p.n.div_ceil(tile * wx), p.m.div_ceil(tile * wy), p.batch];
    let max = gpu.max_workgroups_per_dim() as usize;
    if grid.iter().any(|&v| v > max) {
        return Err(Error::shape(
            "gemm",
            format!("workgroup grid {grid:?} exceeds the device limit {max}"),
        ));
    }
    let grid = [grid[0] as u32, grid[1] as u32, grid[2] as u32];
    gpu.prepare(&kernel, &params, &[&p.a, &p.b, &p.c], grid)
}

/// (rows, columns) of a tensor seen as a matrix whose rows are its last dimension.
fn matrix(t: &Tensor) -> (usize, usize) {
    match t.shape().split_last() {
        None => (1, 1),
        Some((&cols, rest)) => (rest.iter().product(), cols),
    }
}

fn expect(op: &str, what: &str, t: &Tensor, rows: usize, cols: usize) -> Result<()> {
    if matrix(t) != (rows, cols) {
        return Err(Error::shape(
            op,
            format!(
                "{what} has shape {:?}, expected [{rows}, {cols}]",
                t.shape()
            ),
        ));
    }
    Ok(())
}

/// Y\[M,N\] = X\[M,K\]·W\[N,K\]ᵀ + beta·Y (beta = 0 overwrites Y, 1 accumulates). M ≤ 8
/// rows (a decode step) run on the GEMV kernels when K is a multiple of 4.
pub fn matmul_nt(
    gpu: &Gpu,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
    beta: f32,
) -> Result<Vec<Dispatch>> {
    let (m, k) = matrix(x);
    let (n, _) = matrix(w);
    expect("matmul_nt", "W", w, n, k)?;
    expect("matmul_nt", "Y", y, m, n)?;
    let g = Gemm {
        trans_b: true,
        beta,
        ..Gemm::new(m, n, k)
    };
    gemm(gpu, &g, x, w, y)
}

/// dX\[M,K\] = dY\[M,N\]·W\[N,K\] + beta·dX.
pub fn matmul_nn(
    gpu: &Gpu,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    beta: f32,
) -> Result<Vec<Dispatch>> {
    let (m, n) = matrix(dy);
    let (_, k) = matrix(w);
    expect("matmul_nn", "W", w, n, k)?;
    expect("matmul_nn", "dX", dx, m, k)?;
    let g = Gemm {
        beta,
        ..Gemm::new(m, k, n)
    };
    gemm(gpu, &g, dy, w, dx)
}

/// dW\[N,K\] = dY\[M,N\]ᵀ·X\[M,K\] + beta·dW.
pub fn matmul_tn(
    gpu: &Gpu,
    dy: &Tensor,
    x: &Tensor,
    dw: &Tensor,
    beta: f32,
) -> Result<Vec<Dispatch>> {
    let (m, n) = matrix(dy);
    let (_, k) = matrix(x);
    expect("matmul_tn", "X", x, m, k)?;
    expect("matmul_tn", "dW", dw, n, k)?;
    let g = Gemm {
        trans_a: true,
        beta,
        ..Gemm::new(n, k, m)
    };
    gemm(gpu, &g, dy, x, dw)
}
