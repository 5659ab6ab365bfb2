//! The transformer ops' f64 CPU references: the backwards against finite differences
//! (and RoPE's against its adjoint), and RoPE's frequency scalings against Hugging Face's.
//! The GPU kernels are checked against these references in tests/web_transformer_ops.rs,
//! natively and in the browser.

use boha::model::{Activation, RopeScaling};
use boha::ops::{activation, attention, cross_entropy, rmsnorm, rope};
use boha::rng::Rng;

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Central differences of L(x) = Σ dy ⊙ f(x) at every coordinate, against `grad`.
fn fd_check(what: &str, x: &[f64], dy: &[f64], grad: &[f64], f: impl Fn(&[f64]) -> Vec<f64>) {
    let h = 1e-5;
    let mut xp = x.to_vec();
    let mut num = vec![0.0; x.len()];
    for i in 0..x.len() {
        xp[i] = x[i] + h;
        let lp: f64 = f(&xp).iter().zip(dy).map(|(a, b)| a * b).sum();
        xp[i] = x[i] - h;
        let lm: f64 = f(&xp).iter().zip(dy).map(|(a, b)| a * b).sum();
        xp[i] = x[i];
        num[i] = (lp - lm) / (2.0 * h);
    }
    let scale = grad.iter().fold(1e-12f64, |m, g| m.max(g.abs()));
    let err = num
        .iter()
        .zip(grad)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(
        err / scale < 1e-6,
        "{what}: finite differences differ by {err} (scale {scale})"
    );
}

// ---------------------------------------------------------------- RMSNorm

#[test]
fn rmsnorm_backward_matches_finite_differences() {
    let mut rng = Rng::new(1);
    let (n, c) = (3, 7);
    let x = f64s(&rng.vec_f32(n * c, -2.0, 2.0));
    let w = f64s(&rng.vec_f32(c, -1.5, 1.5));
    let dy = f64s(&rng.vec_f32(n * c, -1.0, 1.0));
    for unit_offset in [false, true] {
        let norm = rmsnorm::RmsNorm {
            eps: 1e-5,
            unit_offset,
        };
        let dx = rmsnorm::reference::backward(&norm, &x, &w, &dy);
        fd_check("rmsnorm", &x, &dy, &dx, |x| {
            rmsnorm::reference::forward(&norm, x, &w)
        });
    }
}

// ---------------------------------------------------------------- RoPE

#[test]
fn rope_inv_freq_follows_hf_scalings() {
    let plain = rope::inv_freq(128, 500000.0, None);
    assert_eq!(plain.len(), 64);
    assert!((plain[0] - 1.0).abs() < 1e-7);
    assert!((plain[1] as f64 - 500000f64.powf(-2.0 / 128.0)).abs() < 1e-7);
    let lin = rope::inv_freq(128, 500000.0, Some(&RopeScaling::Linear { factor: 4.0 }));
    for (l, p) in lin.iter().zip(&plain) {
        assert!((l * 4.0 - p).abs() <= 1e-6 * p);
    }
    let l3 = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position_embeddings: 8192,
    };
    let s = rope::inv_freq(128, 500000.0, Some(&l3));
    let tau = std::f64::consts::TAU;
    let mut regions = [0; 3];
    for (i, (&f, &p)) in s.iter().zip(&plain).enumerate() {
        let wavelen = tau / p as f64;
        if wavelen < 2048.0 {
            assert_eq!(f, p, "high frequency {i} kept");
            regions[0] += 1;
        } else if wavelen > 8192.0 {
            assert!((f * 8.0 - p).abs() <= 1e-6 * p, "low frequency {i} divided");
            regions[2] += 1;
        } else {
            // Smoothly between p/8 and p, with weight from the wavelength.
            let sm = (8192.0 / wavelen - 1.0) / 3.0;
            let want = (1.0 - sm) * p as f64 / 8.0 + sm * p as f64;
            assert!(f > p / 8.0 && f < p && (f as f64 - want).abs() < 1e-6 * want);
            regions[1] += 1;
        }
    }
    assert!(
        regions.iter().all(|&r| r > 0),
        "all three Llama-3 regions exercised: {regions:?}"
    );
}

#[test]
fn rope_backward_is_the_adjoint() {
    let mut rng = Rng::new(3);
    let (b, t, heads, hs) = (2, 5, 3, 8);
    let n = b * t * heads * hs;
    let x = f64s(&rng.vec_f32(n, -1.0, 1.0));
    let y = f64s(&rng.vec_f32(n, -1.0, 1.0));
    let f = rope::inv_freq(hs, 10000.0, None);
    let starts = [3u32, 11];
    let rx = rope::reference::rotate(&x, &f, &starts, t, hs, 1.0);
    let ry = rope::reference::rotate(&y, &f, &starts, t, hs, -1.0);
    // The map is linear: ⟨R x, y⟩ = ⟨x, Rᵀ y⟩ is the exact gradient check.
    let lhs: f64 = rx.iter().zip(&y).map(|(a, b)| a * b).sum();
    let rhs: f64 = x.iter().zip(&ry).map(|(a, b)| a * b).sum();
    assert!(
        (lhs - rhs).abs() < 1e-10 * lhs.abs().max(1.0),
        "{lhs} vs {rhs}"
    );
    fd_check("rope", &x, &y, &ry, |x| {
        rope::reference::rotate(x, &f, &starts, t, hs, 1.0)
    });
}

// ---------------------------------------------------------------- activations

#[test]
fn activation_backwards_match_finite_differences() {
    let mut rng = Rng::new(5);
    let n = 11;
    let gate = f64s(&rng.vec_f32(n, -4.0, 4.0));
    let up = f64s(&rng.vec_f32(n, -2.0, 2.0));
    let dh = f64s(&rng.vec_f32(n, -1.0, 1.0));
    for act in [Activation::Silu, Activation::GeluTanh] {
        let (dg, du) = activation::reference::glu_backward(act, &gate, &up, &dh);
        fd_check("glu d_gate", &gate, &dh, &dg, |g| {
            activation::reference::glu_forward(act, g, &up)
        });
        fd_check("glu d_up", &up, &dh, &du, |u| {
            activation::reference::glu_forward(act, &gate, u)
        });
    }
    let x = f64s(&rng.vec_f32(n, -60.0, 60.0));
    let dx: Vec<f64> = x
        .iter()
        .zip(&dh)
        .map(|(x, d)| d * activation::reference::softcap_grad(30.0, *x))
        .collect();
    fd_check("softcap", &x, &dh, &dx, |x| {
        x.iter()
            .map(|&v| activation::reference::softcap(30.0, v))
            .collect()
    });
}

// ---------------------------------------------------------------- attention

fn attn(
    batch: usize,
    seq: usize,
    heads: usize,
    kv_heads: usize,
    hs: usize,
) -> attention::Attention {
    attention::Attention {
        batch,
        seq,
        heads,
        kv_heads,
        head_size: hs,
        scale: 1.0 / (hs as f32).sqrt(),
        window: None,
        softcap: None,
    }
}

#[test]
fn attention_backward_matches_finite_differences() {
    let mut rng = Rng::new(8);
    for (window, softcap) in [(None, None), (Some(3), Some(2.0))] {
        let a = attention::Attention {
            window,
            softcap,
            scale: 0.9,
            ..attn(2, 6, 4, 2, 4)
        };
        let nq = a.batch * a.seq * a.heads * a.head_size;
        let nk = a.batch * a.seq * a.kv_heads * a.head_size;
        let q = f64s(&rng.vec_f32(nq, -1.5, 1.5));
        let k = f64s(&rng.vec_f32(nk, -1.5, 1.5));
        let v = f64s(&rng.vec_f32(nk, -1.5, 1.5));
        let d_o = f64s(&rng.vec_f32(nq, -1.0, 1.0));
        let (dq, dk, dv) = attention::reference::backward(&a, &q, &k, &v, &d_o);
        let o = |q: &[f64], k: &[f64], v: &[f64]| attention::reference::forward(&a, q, k, v).0;
        fd_check("attention dq", &q, &d_o, &dq, |x| o(x, &k, &v));
        fd_check("attention dk", &k, &d_o, &dk, |x| o(&q, x, &v));
        fd_check("attention dv", &v, &d_o, &dv, |x| o(&q, &k, x));
    }
}

// ---------------------------------------------------------------- cross-entropy

#[test]
fn cross_entropy_backward_matches_finite_differences() {
    let mut rng = Rng::new(16);
    let (n, c, v) = (4, 5, 9);
    let h = f64s(&rng.vec_f32(n * c, -1.0, 1.0));
    let w = f64s(&rng.vec_f32(v * c, -1.0, 1.0));
    let targets = [3u32, u32::MAX, 0, 8];
    for softcap in [None, Some(1.5)] {
        let (_, dh) = cross_entropy::reference::loss_and_grad(&h, &w, c, &targets, softcap);
        let loss = |h: &[f64]| {
            vec![cross_entropy::reference::loss_and_grad(h, &w, c, &targets, softcap).0]
        };
        fd_check("cross-entropy dh", &h, &[1.0], &dh, loss);
    }
}
