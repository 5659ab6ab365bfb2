//! Row- and column-wise Khatri–Rao products of paired rank-h factors
//! (`shaders/khatri_rao.wgsl`), for the adapters whose update is a Hadamard product of
//! two low-rank matrices (ABBA, LoHa).
//!
//! Such an adapter packs its h-rank factor pairs in two tensors
//!
//! ```text
//! B [d_out, 2h] = [B1 | B2]      (row o: B1[o, 0..h], then B2[o, 0..h])
//! A [2h, d_in]  = [A1 ; A2]      (rows 0..h: A1, rows h..2h: A2)
//! ```
//!
//! and its update is ΔW = s·(B1·A1) ⊙ (B2·A2) = s·B_kr·A_kr, with the rank-h² factors
//!
//! ```text
//! B_kr [d_out, h²]   B_kr[o, i·h + j] = B1[o, i]·B2[o, j]     (row-wise Khatri–Rao)
//! A_kr [h², d_in]    A_kr[i·h + j, n] = A1[i, n]·A2[j, n]     (column-wise Khatri–Rao)
//! ```
//!
//! Both are one strided operation on a feature index f (o for B, n for A) and a pair
//! column c in 0..2h: out(f, i·h + j) = x(f, i)·x(f, h + j). Its backward, from
//! d_out_kr in out's layout, adds into the factor's gradient:
//!
//! ```text
//! dx(f, i)     += Σ_j dkr(f, i·h + j)·x(f, h + j)      i < h
//! dx(f, h + j) += Σ_i dkr(f, i·h + j)·x(f, i)
//! ```
//!
//! One invocation per output element (forward) or gradient element (backward, h terms
//! each). The h²-wide product may exceed one storage binding: it is bound in ranges, one
//! dispatch each (the factors, 2/h of its size, are bound whole). Every tensor may be a
//! view of a larger buffer (only element counts are checked), but the tensor written
//! must not share a buffer with one that the same op reads.

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, Params, Tensor};
use crate::ops::chunks::row_ranges;
use crate::shaders::KHATRI_RAO;

/// Workgroup size of the kernels.
const WG: usize = 64;

/// Largest h: every backward invocation loops over h terms, and lavapipe ends an
/// invocation's loops after ~65k iterations in all.
pub const MAX_PAIRS: usize = 4096;

/// Where x(f, c) and kr(f, p) live in their flat tensors, for d features.
#[derive(Clone, Copy, Debug)]
struct Layout {
    d: usize,
    xs_f: usize,
    xs_c: usize,
    ks_f: usize,
    ks_p: usize,
}

impl Layout {
    /// B [d_out, 2h] → B_kr [d_out, h²].
    fn rows(h: usize, d_out: usize) -> Layout {
        Layout {
            d: d_out,
            xs_f: 2 * h,
            xs_c: 1,
            ks_f: h * h,
            ks_p: 1,
        }
    }

    /// A [2h, d_in] → A_kr [h², d_in].
    fn cols(d_in: usize) -> Layout {
        Layout {
            d: d_in,
            xs_f: 1,
            xs_c: d_in,
            ks_f: 1,
            ks_p: d_in,
        }
    }
}

/// Element counts (2h·d, h²·d) of the factor and its pair product; errors for h = 0,
/// h > [`MAX_PAIRS`] and tensors whose indices overflow the kernels' u32.
fn sizes(op: &str, h: usize, d: usize) -> Result<(usize, usize)> {
    if h == 0 {
        return Err(Error::shape(op, "h must be at least 1"));
    }
    if h > MAX_PAIRS {
        return Err(Error::shape(
            op,
            format!("h = {h} exceeds the largest supported {MAX_PAIRS}"),
        ));
    }
    // h ≤ MAX_PAIRS: 2h and h² fit, only their products with d can overflow.
    let fits = |n: Option<usize>| n.filter(|&n| n <= u32::MAX as usize);
    match (fits(d.checked_mul(2 * h)), fits(d.checked_mul(h * h))) {
        (Some(x), Some(kr)) => Ok((x, kr)),
        _ => Err(Error::shape(
            op,
            format!("h = {h}, d = {d}: h² · d elements exceed the kernels' 32-bit indices"),
        )),
    }
}

fn check_len(op: &str, name: &str, t: &Tensor, want: usize, shape: &str) -> Result<()> {
    if t.len() != want {
        return Err(Error::shape(
            op,
            format!(
                "{name} has {} elements (shape {:?}), expected {want} ({shape})",
                t.len(),
                t.shape()
            ),
        ));
    }
    Ok(())
}

fn check_apart(op: &str, written: (&str, &Tensor), read: (&str, &Tensor)) -> Result<()> {
    if written.1.same_storage(read.1) {
        return Err(Error::shape(
            op,
            format!(
                "{} and {} share one buffer; a dispatch cannot bind a buffer it writes twice",
                written.0, read.0
            ),
        ));
    }
    Ok(())
}

fn params(n: usize, e0: usize, kr_n: usize, h: usize, l: Layout) -> Params {
    Params::new()
        .u(n)
        .u(e0)
        .u(kr_n)
        .u(h)
        .u(l.d)
        .u(l.xs_f)
        .u(l.xs_c)
        .u(l.ks_f)
        .u(l.ks_p)
}

/// Shared forward: kr(f, i·h + j) = x(f, i)·x(f, h + j).
#[allow(clippy::too_many_arguments)]
fn forward(
    gpu: &Gpu,
    op: &'static str,
    names: [&str; 2],
    shapes: [String; 2],
    x: &Tensor,
    kr: &Tensor,
    h: usize,
    l: Layout,
) -> Result<Vec<Dispatch>> {
    let (x_len, kr_len) = sizes(op, h, l.d)?;
    check_len(op, names[0], x, x_len, &shapes[0])?;
    check_len(op, names[1], kr, kr_len, &shapes[1])?;
    check_apart(op, (names[1], kr), (names[0], x))?;
    if kr_len == 0 {
        return Ok(Vec::new());
    }
    let kernel = Kernel::new(KHATRI_RAO, "khatri_rao_forward");
    let mut out = Vec::new();
    for (e0, n) in row_ranges(gpu, kr_len, 1, op)? {
        let part = kr.view(e0, n)?;
        let p = params(n, e0, n, h, l);
        out.push(gpu.prepare(&kernel, &p, &[x, &part], gpu.grid(n.div_ceil(WG)))?);
    }
    Ok(out)
}

/// Shared backward: dx(f, i) += Σ_j dkr(f, i·h + j)·x(f, h + j),
/// dx(f, h + j) += Σ_i dkr(f, i·h + j)·x(f, i).
#[allow(clippy::too_many_arguments)]
fn backward(
    gpu: &Gpu,
    op: &'static str,
    names: [&str; 3],
    shapes: [String; 2],
    x: &Tensor,
    dkr: &Tensor,
    grad: &Tensor,
    h: usize,
    l: Layout,
) -> Result<Vec<Dispatch>> {
    let (x_len, kr_len) = sizes(op, h, l.d)?;
    check_len(op, names[0], x, x_len, &shapes[0])?;
    check_len(op, names[1], dkr, kr_len, &shapes[1])?;
    check_len(op, names[2], grad, x_len, &shapes[0])?;
    check_apart(op, (names[2], grad), (names[0], x))?;
    check_apart(op, (names[2], grad), (names[1], dkr))?;
    if kr_len == 0 {
        return Ok(Vec::new());
    }
    let kernel = Kernel::new(KHATRI_RAO, "khatri_rao_backward");
    let mut out = Vec::new();
    for (e0, n) in row_ranges(gpu, kr_len, 1, op)? {
        let part = dkr.view(e0, n)?;
        let p = params(x_len, e0, n, h, l);
        out.push(gpu.prepare(&kernel, &p, &[x, &part, grad], gpu.grid(x_len.div_ceil(WG)))?);
    }
    Ok(out)
}

fn b_shapes(h: usize, d_out: usize) -> [String; 2] {
    [
        format!("[d_out, 2h] = [{d_out}, {}]", 2 * h),
        format!("[d_out, h²] = [{d_out}, {}]", h * h),
    ]
}

fn a_shapes(h: usize, d_in: usize) -> [String; 2] {
    [
        format!("[2h, d_in] = [{}, {d_in}]", 2 * h),
        format!("[h², d_in] = [{}, {d_in}]", h * h),
    ]
}

/// Row-wise Khatri–Rao product of B [d_out, 2h] = [B1 | B2]:
/// `b_kr[o, i·h + j] = B1[o, i]·B2[o, j]`, written over `b_kr` [d_out, h²].
pub fn pair_b(
    gpu: &Gpu,
    b: &Tensor,
    h: usize,
    d_out: usize,
    b_kr: &Tensor,
) -> Result<Vec<Dispatch>> {
    forward(
        gpu,
        "khatri_rao_pair_b",
        ["b", "b_kr"],
        b_shapes(h, d_out),
        b,
        b_kr,
        h,
        Layout::rows(h, d_out),
    )
}

/// Column-wise Khatri–Rao product of A [2h, d_in] = [A1 ; A2]:
/// `a_kr[i·h + j, n] = A1[i, n]·A2[j, n]`, written over `a_kr` [h², d_in].
pub fn pair_a(
    gpu: &Gpu,
    a: &Tensor,
    h: usize,
    d_in: usize,
    a_kr: &Tensor,
) -> Result<Vec<Dispatch>> {
    forward(
        gpu,
        "khatri_rao_pair_a",
        ["a", "a_kr"],
        a_shapes(h, d_in),
        a,
        a_kr,
        h,
        Layout::cols(d_in),
    )
}

/// Backward of [`pair_b`], added into `grad_b` [d_out, 2h]:
/// `dB1[o, i] += Σ_j d_b_kr[o, i·h + j]·B2[o, j]`,
/// `dB2[o, j] += Σ_i d_b_kr[o, i·h + j]·B1[o, i]`.
pub fn pair_b_backward(
    gpu: &Gpu,
    b: &Tensor,
    d_b_kr: &Tensor,
    h: usize,
    d_out: usize,
    grad_b: &Tensor,
) -> Result<Vec<Dispatch>> {
    backward(
        gpu,
        "khatri_rao_pair_b_backward",
        ["b", "d_b_kr", "grad_b"],
        b_shapes(h, d_out),
        b,
        d_b_kr,
        grad_b,
        h,
        Layout::rows(h, d_out),
    )
}

/// Backward of [`pair_a`], added into `grad_a` [2h, d_in]:
/// `dA1[i, n] += Σ_j d_a_kr[i·h + j, n]·A2[j, n]`,
/// `dA2[j, n] += Σ_i d_a_kr[i·h + j, n]·A1[i, n]`.
pub fn pair_a_backward(
    gpu: &Gpu,
    a: &Tensor,
    d_a_kr: &Tensor,
    h: usize,
    d_in: usize,
    grad_a: &Tensor,
) -> Result<Vec<Dispatch>> {
    backward(
        gpu,
        "khatri_rao_pair_a_backward",
        ["a", "d_a_kr", "grad_a"],
        a_shapes(h, d_in),
        a,
        d_a_kr,
        grad_a,
        h,
        Layout::cols(d_in),
    )
}

/// f64 CPU references of the four ops, written directly from the definitions (not from
/// the kernels' strides), with the same arguments on slices and the same checks.
pub mod reference {
    use crate::error::{Error, Result};

    /// (2h·d, h²·d), saturating (a slice never has usize::MAX elements).
    fn sizes(h: usize, d: usize) -> (usize, usize) {
        (
            d.saturating_mul(h.saturating_mul(2)),
            d.saturating_mul(h.saturating_mul(h)),
        )
    }

    fn check(op: &str, h: usize, lens: &[(&str, usize, usize)]) -> Result<()> {
        if h == 0 {
            return Err(Error::shape(op, "h must be at least 1"));
        }
        for &(name, got, want) in lens {
            if got != want {
                return Err(Error::shape(
                    op,
                    format!("{name} has {got} elements, expected {want}"),
                ));
            }
        }
        Ok(())
    }

    /// `b_kr[o, i·h + j] = b[o, i]·b[o, h + j]` (b [d_out, 2h], b_kr [d_out, h²]).
    pub fn pair_b(b: &[f64], h: usize, d_out: usize, b_kr: &mut [f64]) -> Result<()> {
        let (nx, nk) = sizes(h, d_out);
        let lens = [("b", b.len(), nx), ("b_kr", b_kr.len(), nk)];
        check("pair_b", h, &lens)?;
        for o in 0..d_out {
            for i in 0..h {
                for j in 0..h {
                    b_kr[o * h * h + i * h + j] = b[o * 2 * h + i] * b[o * 2 * h + h + j];
                }
            }
        }
        Ok(())
    }

    /// `a_kr[i·h + j, n] = a[i, n]·a[h + j, n]` (a [2h, d_in], a_kr [h², d_in]).
    pub fn pair_a(a: &[f64], h: usize, d_in: usize, a_kr: &mut [f64]) -> Result<()> {
        let (nx, nk) = sizes(h, d_in);
        let lens = [("a", a.len(), nx), ("a_kr", a_kr.len(), nk)];
        check("pair_a", h, &lens)?;
        for i in 0..h {
            for j in 0..h {
                for n in 0..d_in {
                    a_kr[(i * h + j) * d_in + n] = a[i * d_in + n] * a[(h + j) * d_in + n];
                }
            }
        }
        Ok(())
    }

    /// `grad_b[o, i] += Σ_j d_b_kr[o, i·h + j]·b[o, h + j]`,
    /// `grad_b[o, h + j] += Σ_i d_b_kr[o, i·h + j]·b[o, i]`.
    pub fn pair_b_backward(
        b: &[f64],
        d_b_kr: &[f64],
        h: usize,
        d_out: usize,
        grad_b: &mut [f64],
    ) -> Result<()> {
        let (nx, nk) = sizes(h, d_out);
        let lens = [
            ("b", b.len(), nx),
            ("d_b_kr", d_b_kr.len(), nk),
            ("grad_b", grad_b.len(), nx),
        ];
        check("pair_b_backward", h, &lens)?;
        for o in 0..d_out {
            for i in 0..h {
                for j in 0..h {
                    let g = d_b_kr[o * h * h + i * h + j];
                    grad_b[o * 2 * h + i] += g * b[o * 2 * h + h + j];
                    grad_b[o * 2 * h + h + j] += g * b[o * 2 * h + i];
                }
            }
        }
        Ok(())
    }

    /// `grad_a[i, n] += Σ_j d_a_kr[i·h + j, n]·a[h + j, n]`,
    /// `grad_a[h + j, n] += Σ_i d_a_kr[i·h + j, n]·a[i, n]`.
    pub fn pair_a_backward(
        a: &[f64],
        d_a_kr: &[f64],
        h: usize,
        d_in: usize,
        grad_a: &mut [f64],
    ) -> Result<()> {
        let (nx, nk) = sizes(h, d_in);
        let lens = [
            ("a", a.len(), nx),
            ("d_a_kr", d_a_kr.len(), nk),
            ("grad_a", grad_a.len(), nx),
        ];
        check("pair_a_backward", h, &lens)?;
        for i in 0..h {
            for j in 0..h {
                for n in 0..d_in {
                    let g = d_a_kr[(i * h + j) * d_in + n];
                    grad_a[i * d_in + n] += g * a[(h + j) * d_in + n];
                    grad_a[(h + j) * d_in + n] += g * a[i * d_in + n];
                }
            }
        }
        Ok(())
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::rng::Rng;

        fn randn(rng: &mut Rng, n: usize) -> Vec<f64> {
            (0..n).map(|_| rng.range(-1.0, 1.0)).collect()
        }

        /// C [m, n] = X [m, k] · Y [k, n].
        fn matmul(x: &[f64], y: &[f64], m: usize, k: usize, n: usize) -> Vec<f64> {
            let mut c = vec![0.0; m * n];
            for r in 0..m {
                for t in 0..k {
                    for col in 0..n {
                        c[r * n + col] += x[r * k + t] * y[t * n + col];
                    }
                }
            }
            c
        }

        #[test]
        fn hadamard_of_pairs_is_product_of_khatri_rao_factors() {
            let mut rng = Rng::new(7);
            for &(h, d_out, d_in) in &[(1, 3, 4), (3, 7, 5), (4, 6, 9)] {
                let b = randn(&mut rng, d_out * 2 * h);
                let a = randn(&mut rng, 2 * h * d_in);
                // B1, B2 [d_out, h] and A1, A2 [h, d_in], unpacked by hand.
                let b1: Vec<f64> = (0..d_out * h).map(|k| b[k / h * 2 * h + k % h]).collect();
                let b2: Vec<f64> = (0..d_out * h)
                    .map(|k| b[k / h * 2 * h + h + k % h])
                    .collect();
                let (a1, a2) = a.split_at(h * d_in);
                let m1 = matmul(&b1, a1, d_out, h, d_in);
                let m2 = matmul(&b2, a2, d_out, h, d_in);
                let want: Vec<f64> = m1.iter().zip(&m2).map(|(x, y)| x * y).collect();

                let mut b_kr = vec![0.0; d_out * h * h];
                let mut a_kr = vec![0.0; h * h * d_in];
                pair_b(&b, h, d_out, &mut b_kr).unwrap();
                pair_a(&a, h, d_in, &mut a_kr).unwrap();
                let got = matmul(&b_kr, &a_kr, d_out, h * h, d_in);
                let err = got
                    .iter()
                    .zip(&want)
                    .fold(0f64, |m, (g, w)| m.max((g - w).abs()));
                assert!(err < 1e-12, "h {h}, {d_out}×{d_in}: error {err}");
            }
        }

        /// The backwards are the gradients of L(x) = Σ dkr ⊙ kr(x), by central
        /// differences (exact up to rounding: kr is quadratic in x), added to a non-zero
        /// start.
        #[test]
        fn backwards_match_finite_differences() {
            type Fwd = fn(&[f64], usize, usize, &mut [f64]) -> Result<()>;
            type Bwd = fn(&[f64], &[f64], usize, usize, &mut [f64]) -> Result<()>;
            let ops: [(&str, Fwd, Bwd); 2] = [
                ("pair_b", pair_b, pair_b_backward),
                ("pair_a", pair_a, pair_a_backward),
            ];
            let mut rng = Rng::new(11);
            for (name, fwd, bwd) in ops {
                for &(h, d) in &[(1, 3), (2, 5), (3, 4)] {
                    let x = randn(&mut rng, 2 * h * d);
                    let dkr = randn(&mut rng, h * h * d);
                    let start = randn(&mut rng, 2 * h * d);
                    let mut grad = start.clone();
                    bwd(&x, &dkr, h, d, &mut grad).unwrap();
                    let loss = |x: &[f64]| {
                        let mut kr = vec![0.0; h * h * d];
                        fwd(x, h, d, &mut kr).unwrap();
                        kr.iter().zip(&dkr).map(|(a, b)| a * b).sum::<f64>()
                    };
                    let eps = 1e-4;
                    let mut xp = x.clone();
                    for k in 0..x.len() {
                        xp[k] = x[k] + eps;
                        let lp = loss(&xp);
                        xp[k] = x[k] - eps;
                        let lm = loss(&xp);
                        xp[k] = x[k];
                        let num = start[k] + (lp - lm) / (2.0 * eps);
                        assert!(
                            (num - grad[k]).abs() < 1e-9,
                            "{name} h {h} d {d} at {k}: {num} vs {}",
                            grad[k]
                        );
                    }
                }
            }
        }

        #[test]
        fn wrong_lengths_and_zero_h_are_errors() {
            let mut out = vec![0.0; 4];
            assert!(pair_b(&[0.0; 4], 0, 2, &mut out).is_err());
            assert!(pair_b(&[0.0; 3], 1, 2, &mut out).is_err());
            assert!(pair_a_backward(&[0.0; 4], &[0.0; 2], 1, 2, &mut out[..3]).is_err());
            assert!(pair_a_backward(&[0.0; 4], &[0.0; 2], 1, 2, &mut out).is_ok());
        }
    }
}
