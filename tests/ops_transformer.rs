//! The transformer ops against their f64 CPU references at odd shapes, and the CPU
//! backwards against finite differences.

mod common;

use boha::gpu::{Dispatch, GemmFamily, Gpu, GpuOptions, Recorder, Tensor};
use boha::model::{Activation, RopeScaling};
use boha::ops::{activation, attention, cross_entropy, embedding, rmsnorm, rope};
use boha::rng::Rng;
use common::assert_close;

fn run(gpu: &Gpu, ds: &[Dispatch]) {
    let mut r = Recorder::new();
    r.run_all(ds);
    gpu.run(&r).unwrap();
}

fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

fn down(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    gpu.download(t).unwrap()
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

fn shared_gpu() -> Option<Gpu> {
    common::gpu_with(&GpuOptions {
        gemm_family: Some(GemmFamily::Shared),
        ..Default::default()
    })
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

fn rmsnorm_gpu_case(gpu: &Gpu, n: usize, c: usize) {
    let mut rng = Rng::new((n * c) as u64);
    let x = rng.vec_f32(n * c, -2.0, 2.0);
    let w = rng.vec_f32(c, -1.5, 1.5);
    let dy = rng.vec_f32(n * c, -1.0, 1.0);
    let prev = rng.vec_f32(n * c, -1.0, 1.0);
    let tx = gpu.upload(&[n, c], &x).unwrap();
    let tw = gpu.upload(&[c], &w).unwrap();
    let tdy = gpu.upload(&[n, c], &dy).unwrap();
    let ty = gpu.zeros(&[n, c]).unwrap();
    let tdx = gpu.upload(&[n, c], &prev).unwrap();
    for unit_offset in [false, true] {
        let norm = rmsnorm::RmsNorm {
            eps: 1e-6,
            unit_offset,
        };
        run(gpu, &rmsnorm::forward(gpu, &norm, &tx, &tw, &ty).unwrap());
        let want = rmsnorm::reference::forward(&norm, &f64s(&x), &f64s(&w));
        assert_close("rmsnorm y", &down(gpu, &ty), &f32s(&want), 2e-6);
        // Accumulating: dx ← prev + backward.
        gpu.write(&tdx, &prev).unwrap();
        run(
            gpu,
            &rmsnorm::backward(gpu, &norm, &tx, &tw, &tdy, &tdx, true).unwrap(),
        );
        let g = rmsnorm::reference::backward(&norm, &f64s(&x), &f64s(&w), &f64s(&dy));
        let want: Vec<f32> = g
            .iter()
            .zip(&prev)
            .map(|(g, p)| (g + *p as f64) as f32)
            .collect();
        assert_close("rmsnorm dx (+=)", &down(gpu, &tdx), &want, 1e-5);
        run(
            gpu,
            &rmsnorm::backward(gpu, &norm, &tx, &tw, &tdy, &tdx, false).unwrap(),
        );
        assert_close("rmsnorm dx", &down(gpu, &tdx), &f32s(&g), 1e-5);
    }
}

#[test]
fn rmsnorm_gpu_matches_cpu() {
    let Some(gpu) = common::gpu() else { return };
    rmsnorm_gpu_case(&gpu, 37, 80);
    rmsnorm_gpu_case(&gpu, 5, 203);
    // The workgroup-per-row variant GPUs use.
    let Some(gpu) = shared_gpu() else { return };
    rmsnorm_gpu_case(&gpu, 37, 80);
    rmsnorm_gpu_case(&gpu, 3, 33);
}

#[test]
fn rmsnorm_binds_rows_in_ranges() {
    let Some(gpu) = common::gpu_with(&GpuOptions {
        max_binding_override: Some(4096),
        ..Default::default()
    }) else {
        return;
    };
    rmsnorm_gpu_case(&gpu, 41, 64);
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

#[test]
fn rope_gpu_matches_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(4);
    let (b, t, hs) = (2, 37, 16);
    for (heads, starts) in [(6usize, None), (2, Some([5u32, 100_003]))] {
        let n = b * t * heads * hs;
        let x = rng.vec_f32(n, -1.0, 1.0);
        let scaling = RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 64,
        };
        let f = rope::inv_freq(hs, 10000.0, Some(&scaling));
        let tf = gpu.upload(&[hs / 2], &f).unwrap();
        let tx = gpu.upload(&[b * t, heads * hs], &x).unwrap();
        let ts = starts.map(|s| gpu.upload_u32(&[b], &s).unwrap());
        let s = starts.unwrap_or([0, 0]);
        run(
            &gpu,
            &rope::forward(&gpu, &tx, &tf, ts.as_ref(), t, hs).unwrap(),
        );
        let want = rope::reference::rotate(&f64s(&x), &f, &s, t, hs, 1.0);
        assert_close("rope", &down(&gpu, &tx), &f32s(&want), 2e-6);
        run(
            &gpu,
            &rope::backward(&gpu, &tx, &tf, ts.as_ref(), t, hs).unwrap(),
        );
        assert_close("rope backward undoes forward", &down(&gpu, &tx), &x, 2e-6);
    }
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

#[test]
fn activations_gpu_match_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(6);
    let (n, f) = (37, 45);
    let gate = rng.vec_f32(n * f, -6.0, 6.0);
    let up = rng.vec_f32(n * f, -2.0, 2.0);
    let dh = rng.vec_f32(n * f, -1.0, 1.0);
    let [tg, tu, tdh] = [&gate, &up, &dh].map(|v| gpu.upload(&[n, f], v).unwrap());
    let [th, tdg, tdu] = [0; 3].map(|_| gpu.zeros(&[n, f]).unwrap());
    for act in [Activation::Silu, Activation::GeluTanh] {
        run(
            &gpu,
            &activation::glu_forward(&gpu, act, &tg, &tu, &th).unwrap(),
        );
        let want = activation::reference::glu_forward(act, &f64s(&gate), &f64s(&up));
        assert_close("glu h", &down(&gpu, &th), &f32s(&want), 2e-6);
        run(
            &gpu,
            &activation::glu_backward(&gpu, act, &tg, &tu, &tdh, &tdg, &tdu).unwrap(),
        );
        let (dg, du) =
            activation::reference::glu_backward(act, &f64s(&gate), &f64s(&up), &f64s(&dh));
        assert_close("glu d_gate", &down(&gpu, &tdg), &f32s(&dg), 2e-6);
        assert_close("glu d_up", &down(&gpu, &tdu), &f32s(&du), 2e-6);
    }
    let x = rng.vec_f32(n * f, -200.0, 200.0);
    let tx = gpu.upload(&[n, f], &x).unwrap();
    run(
        &gpu,
        &activation::softcap_forward(&gpu, 30.0, &tx, &th).unwrap(),
    );
    let want: Vec<f32> = x
        .iter()
        .map(|&v| activation::reference::softcap(30.0, v as f64) as f32)
        .collect();
    assert_close("softcap", &down(&gpu, &th), &want, 2e-6);
    run(
        &gpu,
        &activation::softcap_backward(&gpu, 30.0, &tx, &tdh, &tdg).unwrap(),
    );
    let want: Vec<f32> = x
        .iter()
        .zip(&dh)
        .map(|(&v, &d)| (d as f64 * activation::reference::softcap_grad(30.0, v as f64)) as f32)
        .collect();
    assert_close("softcap dx", &down(&gpu, &tdg), &want, 2e-6);
}

// ---------------------------------------------------------------- embedding

#[test]
fn embedding_gathers_rows_across_binding_ranges() {
    let Some(gpu) = common::gpu_with(&GpuOptions {
        max_binding_override: Some(4096),
        ..Default::default()
    }) else {
        return;
    };
    let mut rng = Rng::new(7);
    let (v, c, n) = (203, 24, 37);
    let table = rng.vec_f32(v * c, -1.0, 1.0);
    let mut ids: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    ids[3] = (v - 1) as u32;
    ids[5] = 0;
    ids[7] = v as u32 + 9; // out of range: a zero row
    let tt = gpu.upload(&[v, c], &table).unwrap();
    let ti = gpu.upload_u32(&[n], &ids).unwrap();
    let ty = gpu.upload(&[n, c], &vec![7.0; n * c]).unwrap();
    let scale = (c as f32).sqrt();
    let ds = embedding::forward(&gpu, &tt, &ti, &ty, scale).unwrap();
    assert!(ds.len() > 1, "the table is bound in several ranges");
    run(&gpu, &ds);
    let want = embedding::reference::forward(&table, c, &ids, scale);
    assert_close("embedding", &down(&gpu, &ty), &want, 1e-7);
}

#[test]
fn row_scatter_is_the_gathers_adjoint() {
    let Some(gpu) = common::gpu() else {
        return;
    };
    let mut rng = Rng::new(9);
    let (r, c) = (29, 12);
    // Distinct rows in a scrambled order, then two padding ids.
    let mut ids: Vec<u32> = vec![17, 3, 28, 0, 9, 4];
    ids.extend([u32::MAX, r as u32]);
    let k = ids.len();
    let x = rng.vec_f32(k * c, -1.0, 1.0);
    let tx = gpu.upload(&[k, c], &x).unwrap();
    let ti = gpu.upload_u32(&[k], &ids).unwrap();
    let ty = gpu.zeros(&[r, c]).unwrap();
    run(&gpu, &embedding::scatter(&gpu, &tx, &ti, &ty).unwrap());
    let y = down(&gpu, &ty);
    assert_close(
        "scatter",
        &y,
        &embedding::reference::scatter(&x, c, &ids, r),
        0.0,
    );
    // Gathering the same ids back gives x, with zero rows for the padding.
    let tg = gpu.zeros(&[k, c]).unwrap();
    run(&gpu, &embedding::forward(&gpu, &ty, &ti, &tg, 1.0).unwrap());
    let mut want = x.clone();
    want[(k - 2) * c..].iter_mut().for_each(|v| *v = 0.0);
    assert_close("gather", &down(&gpu, &tg), &want, 0.0);
    // ⟨gather(y), x⟩ = ⟨y, scatter(x)⟩ for distinct ids.
    let g = embedding::reference::forward(&y, c, &ids, 1.0);
    let lhs: f64 = g.iter().zip(&x).map(|(a, b)| (a * b) as f64).sum();
    let rhs: f64 = y.iter().map(|v| (v * v) as f64).sum();
    assert!((lhs - rhs).abs() < 1e-4 * rhs.max(1.0), "{lhs} vs {rhs}");
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

fn attention_gpu_case(gpu: &Gpu, a: &attention::Attention, seed: u64) {
    let mut rng = Rng::new(seed);
    let nq = a.batch * a.seq * a.heads * a.head_size;
    let nk = a.batch * a.seq * a.kv_heads * a.head_size;
    let q = rng.vec_f32(nq, -2.0, 2.0);
    let k = rng.vec_f32(nk, -2.0, 2.0);
    let v = rng.vec_f32(nk, -1.0, 1.0);
    let d_o = rng.vec_f32(nq, -1.0, 1.0);
    let (rows, qw, kw) = (
        a.batch * a.seq,
        a.heads * a.head_size,
        a.kv_heads * a.head_size,
    );
    let tq = gpu.upload(&[rows, qw], &q).unwrap();
    let tk = gpu.upload(&[rows, kw], &k).unwrap();
    let tv = gpu.upload(&[rows, kw], &v).unwrap();
    let tdo = gpu.upload(&[rows, qw], &d_o).unwrap();
    let to = gpu.zeros(&[rows, qw]).unwrap();
    let tl = gpu.zeros(&[rows, a.heads]).unwrap();
    let [tdq, tdk, tdv] = [qw, kw, kw].map(|w| gpu.zeros(&[rows, w]).unwrap());
    let mut ds = attention::forward(gpu, a, &tq, &tk, &tv, &to, &tl).unwrap();
    ds.extend(
        attention::backward(gpu, a, &tq, &tk, &tv, &to, &tl, &tdo, &tdq, &tdk, &tdv).unwrap(),
    );
    run(gpu, &ds);
    let (q, k, v, d_o) = (f64s(&q), f64s(&k), f64s(&v), f64s(&d_o));
    let (o, lse) = attention::reference::forward(a, &q, &k, &v);
    let (dq, dk, dv) = attention::reference::backward(a, &q, &k, &v, &d_o);
    let what = format!("{a:?}");
    assert_close(&format!("o {what}"), &down(gpu, &to), &f32s(&o), 1e-5);
    assert_close(&format!("lse {what}"), &down(gpu, &tl), &f32s(&lse), 1e-5);
    assert_close(&format!("dq {what}"), &down(gpu, &tdq), &f32s(&dq), 1e-4);
    assert_close(&format!("dk {what}"), &down(gpu, &tdk), &f32s(&dk), 1e-4);
    assert_close(&format!("dv {what}"), &down(gpu, &tdv), &f32s(&dv), 1e-4);
}

#[test]
fn attention_gpu_matches_cpu() {
    let Some(gpu) = common::gpu() else { return };
    attention_gpu_case(&gpu, &attn(2, 37, 6, 2, 16), 9);
    attention_gpu_case(&gpu, &attn(1, 37, 3, 1, 8), 10);
    attention_gpu_case(&gpu, &attn(1, 19, 4, 1, 64), 11);
    attention_gpu_case(&gpu, &attn(2, 13, 2, 2, 256), 12);
    let gemma = attention::Attention {
        window: Some(7),
        softcap: Some(5.0),
        scale: 0.3,
        ..attn(2, 37, 6, 2, 16)
    };
    attention_gpu_case(&gpu, &gemma, 13);
    let mistral = attention::Attention {
        window: Some(2),
        ..attn(1, 9, 4, 4, 8)
    };
    attention_gpu_case(&gpu, &mistral, 14);
}

#[test]
fn attention_with_kv_cache_matches_full_attention() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(15);
    let (b, t, tmax, tq) = (2, 37, 45, 7);
    let full = attention::Attention {
        window: Some(9),
        softcap: Some(8.0),
        ..attn(b, t, 6, 2, 16)
    };
    let (qw, kw) = (full.heads * full.head_size, full.kv_heads * full.head_size);
    let q = rng.vec_f32(b * t * qw, -2.0, 2.0);
    let k = rng.vec_f32(b * t * kw, -2.0, 2.0);
    let v = rng.vec_f32(b * t * kw, -1.0, 1.0);
    let (o, _) = attention::reference::forward(&full, &f64s(&q), &f64s(&k), &f64s(&v));
    // Fill the caches with all T positions (later ones stay invisible to earlier queries).
    let kc = gpu.zeros(&[b, tmax, kw]).unwrap();
    let vc = gpu.zeros(&[b, tmax, kw]).unwrap();
    let zero = gpu.upload_u32(&[b], &[0, 0]).unwrap();
    let tk = gpu.upload(&[b * t, kw], &k).unwrap();
    let tv = gpu.upload(&[b * t, kw], &v).unwrap();
    let mut ds = attention::cache_write(&gpu, &full, &tk, &kc, &zero).unwrap();
    ds.extend(attention::cache_write(&gpu, &full, &tv, &vc, &zero).unwrap());
    run(&gpu, &ds);
    // Then query tq new positions per sequence from different starts.
    let starts = [30u32, 22];
    let mut qn = Vec::new();
    let mut want = Vec::new();
    for (bi, &s) in starts.iter().enumerate() {
        let rows = (bi * t + s as usize)..(bi * t + s as usize + tq);
        qn.extend_from_slice(&q[rows.start * qw..rows.end * qw]);
        want.extend(f32s(&o[rows.start * qw..rows.end * qw]));
    }
    let dec = attention::Attention { seq: tq, ..full };
    let tqn = gpu.upload(&[b * tq, qw], &qn).unwrap();
    let ts = gpu.upload_u32(&[b], &starts).unwrap();
    let to = gpu.zeros(&[b * tq, qw]).unwrap();
    run(
        &gpu,
        &attention::forward_cached(&gpu, &dec, &tqn, &kc, &vc, &ts, &to).unwrap(),
    );
    assert_close("cached attention", &down(&gpu, &to), &want, 1e-5);
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

fn cross_entropy_case(gpu: &Gpu, chunk: usize, softcap: Option<f32>) {
    let mut rng = Rng::new(17 + chunk as u64);
    let (n, c, v) = (37, 80, 203);
    let h = rng.vec_f32(n * c, -1.0, 1.0);
    let w = rng.vec_f32(v * c, -0.5, 0.5);
    let mut targets: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    targets[0] = u32::MAX;
    targets[5] = (-100i32) as u32;
    targets[9] = (v - 1) as u32; // in the ragged last chunk
    targets[10] = 0;
    let th = gpu.upload(&[n, c], &h).unwrap();
    let tw = gpu.upload(&[v, c], &w).unwrap();
    let tt = gpu.upload_u32(&[n], &targets).unwrap();
    let tloss = gpu.zeros(&[1]).unwrap();
    let tlse = gpu.zeros(&[n]).unwrap();
    let tdh = gpu.upload(&[n, c], &vec![9.0; n * c]).unwrap();
    let ce = cross_entropy::CrossEntropy { chunk, softcap };
    let mut ds = cross_entropy::forward(gpu, &ce, &th, &tw, &tt, &tloss, &tlse).unwrap();
    ds.extend(cross_entropy::backward(gpu, &ce, &th, &tw, &tt, &tlse, &tdh, 0.5).unwrap());
    run(gpu, &ds);
    let cap = softcap.map(|s| s as f64);
    let (loss, dh) =
        cross_entropy::reference::loss_and_grad(&f64s(&h), &f64s(&w), c, &targets, cap);
    let what = format!("chunk {chunk}, softcap {softcap:?}");
    assert_close(
        &format!("loss {what}"),
        &down(gpu, &tloss),
        &[loss as f32],
        2e-6,
    );
    let dh: Vec<f32> = dh.iter().map(|g| (0.5 * g) as f32).collect();
    assert_close(&format!("dh {what}"), &down(gpu, &tdh), &dh, 1e-5);
    let got = down(gpu, &tdh);
    for r in [0, 5] {
        assert!(
            got[r * c..(r + 1) * c].iter().all(|&g| g == 0.0),
            "ignored row {r} has a gradient"
        );
    }
}

#[test]
fn cross_entropy_gpu_matches_cpu_over_chunks() {
    let Some(gpu) = common::gpu() else { return };
    cross_entropy_case(&gpu, 64, None);
    cross_entropy_case(&gpu, 64, Some(4.0));
    cross_entropy_case(&gpu, 4096, None);
    let Some(gpu) = shared_gpu() else { return };
    cross_entropy_case(&gpu, 64, Some(4.0));
}

#[test]
fn logits_match_cpu() {
    let Some(gpu) = common::gpu() else { return };
    let mut rng = Rng::new(18);
    let (b, c, v) = (3, 80, 203);
    let h = rng.vec_f32(b * c, -1.0, 1.0);
    let w = rng.vec_f32(v * c, -1.0, 1.0);
    let th = gpu.upload(&[b, c], &h).unwrap();
    let tw = gpu.upload(&[v, c], &w).unwrap();
    let to = gpu.zeros(&[b, v]).unwrap();
    for softcap in [None, Some(3.0f32)] {
        run(
            &gpu,
            &cross_entropy::logits(&gpu, &th, &tw, &to, softcap).unwrap(),
        );
        let want =
            cross_entropy::reference::logits(&f64s(&h), &f64s(&w), c, softcap.map(|s| s as f64));
        assert_close("logits", &down(&gpu, &to), &f32s(&want), 1e-5);
    }
}
