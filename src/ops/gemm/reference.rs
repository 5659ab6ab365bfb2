//! CPU reference GEMM in f64, for the tests and the benchmark's spot checks.

use super::Gemm;

/// C\[b\] = alpha · op(A\[b\]) · op(B\[b\]) + beta · C\[b\] computed in f64 and rounded to
/// f32, with the same layout rules as [`super::gemm`]: row-major, tight rows, batch entries
/// `stride_*` elements apart. Returns the whole of `c` with the products written in.
/// With beta = 0, C is not read (NaN in C does not leak through).
pub fn gemm(g: &Gemm, a: &[f32], b: &[f32], c: &[f32]) -> Vec<f32> {
    let mut out = c.to_vec();
    let (lda, ldb) = (
        if g.trans_a { g.m } else { g.k },
        if g.trans_b { g.k } else { g.n },
    );
    for z in 0..g.batch {
        let (ab, bb, cb) = (z * g.stride_a, z * g.stride_b, z * g.stride_c);
        for i in 0..g.m {
            for j in 0..g.n {
                let mut s = 0f64;
                for kk in 0..g.k {
                    let x = if g.trans_a {
                        a[ab + kk * lda + i]
                    } else {
                        a[ab + i * lda + kk]
                    };
                    let y = if g.trans_b {
                        b[bb + j * ldb + kk]
                    } else {
                        b[bb + kk * ldb + j]
                    };
                    s += x as f64 * y as f64;
                }
                let o = cb + i * g.n + j;
                let prev = if g.beta == 0.0 {
                    0.0
                } else {
                    g.beta as f64 * c[o] as f64
                };
                out[o] = (g.alpha as f64 * s + prev) as f32;
            }
        }
    }
    out
}

/// Y\[M,N\] = X\[M,K\]·W\[N,K\]ᵀ (+ beta·Y), the reference for [`super::matmul_nt`].
pub fn matmul_nt(
    x: &[f32],
    w: &[f32],
    y: &[f32],
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
) -> Vec<f32> {
    let g = Gemm {
        trans_b: true,
        beta,
        ..Gemm::new(m, n, k)
    };
    gemm(&g, x, w, y)
}

/// dX\[M,K\] = dY\[M,N\]·W\[N,K\] (+ beta·dX), the reference for [`super::matmul_nn`].
pub fn matmul_nn(
    dy: &[f32],
    w: &[f32],
    dx: &[f32],
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
) -> Vec<f32> {
    let g = Gemm {
        beta,
        ..Gemm::new(m, k, n)
    };
    gemm(&g, dy, w, dx)
}

/// dW\[N,K\] = dY\[M,N\]ᵀ·X\[M,K\] (+ beta·dW), the reference for [`super::matmul_tn`].
pub fn matmul_tn(
    dy: &[f32],
    x: &[f32],
    dw: &[f32],
    m: usize,
    n: usize,
    k: usize,
    beta: f32,
) -> Vec<f32> {
    let g = Gemm {
        trans_a: true,
        beta,
        ..Gemm::new(n, k, m)
    };
    gemm(&g, dy, x, dw)
}
