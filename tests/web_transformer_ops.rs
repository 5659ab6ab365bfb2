//! The transformer ops and the optimizer against their CPU references, written once for
//! the browser and the native build (see tests/web/common.rs): RMSNorm (accumulating, on
//! the workgroup-per-row family too), attention forward and backward (grouped-query,
//! sliding window, logit softcap, head sizes up to 256) and its KV-cache path, RoPE, the
//! embedding gather and row scatter, the GLU activations and softcap, chunked
//! cross-entropy and the logits, AdamW with clipping, and the elementwise ops and row
//! reductions. Odd shapes that no workgroup divides, some with a forced small
//! storage-binding limit so that tensors are bound in ranges. Errors are relative to each
//! reference's largest magnitude (`assert_rel_close`): cross-entropy's gradients and
//! Adam's second moments are far below 1. Small on purpose: SwiftShader runs WebGPU on
//! the CPU.

// Each test's doc comment sits on its `web_test!` call, where rustdoc never renders it
// (nor any test crate); it is there for the reader.
#![allow(unused_doc_comments)]

#[path = "web/common.rs"]
mod common;

use common::{down, run, submit};

use boha::gpu::{GemmFamily, Gpu, GpuOptions, Recorder, Tensor};
use boha::model::{Activation, RopeScaling};
use boha::ops::adamw::{self, AdamW, Optimizer, SCALARS};
use boha::ops::elementwise as ew;
use boha::ops::{activation, attention, cross_entropy, embedding, rmsnorm, rope};
use boha::rng::Rng;
use common::{assert_rel_close, f32s, f64s};

#[cfg(target_arch = "wasm32")]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// The workgroup-per-row kernels GPUs use (lavapipe and SwiftShader default to the
/// register family).
fn shared_family() -> GpuOptions {
    GpuOptions {
        gemm_family: Some(GemmFamily::Shared),
        ..Default::default()
    }
}

/// A storage-binding limit of `bytes`, so that larger tensors are bound in ranges.
fn binding_limit(bytes: u64) -> GpuOptions {
    GpuOptions {
        max_binding_override: Some(bytes),
        ..Default::default()
    }
}

// ---------------------------------------------------------------- RMSNorm

/// RMSNorm y = x / √(mean(x²) + ε) ⊙ w (or ⊙ (1 + w), Gemma's unit offset) and its input
/// gradient, both overwriting dx and accumulating into it (dx ← prev + dx, as when the
/// residual stream's gradient is already there).
async fn rmsnorm_case(gpu: &Gpu, n: usize, c: usize) {
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
        let ds = rmsnorm::forward(gpu, &norm, &tx, &tw, &ty).unwrap();
        let want = rmsnorm::reference::forward(&norm, &f64s(&x), &f64s(&w));
        assert_rel_close("rmsnorm y", &run(gpu, &ds, &ty).await, &f32s(&want), 2e-6);
        gpu.write(&tdx, &prev).unwrap();
        let ds = rmsnorm::backward(gpu, &norm, &tx, &tw, &tdy, &tdx, true).unwrap();
        let g = rmsnorm::reference::backward(&norm, &f64s(&x), &f64s(&w), &f64s(&dy));
        let want: Vec<f32> = g
            .iter()
            .zip(&prev)
            .map(|(g, p)| (g + *p as f64) as f32)
            .collect();
        assert_rel_close("rmsnorm dx (+=)", &run(gpu, &ds, &tdx).await, &want, 1e-5);
        let ds = rmsnorm::backward(gpu, &norm, &tx, &tw, &tdy, &tdx, false).unwrap();
        assert_rel_close("rmsnorm dx", &run(gpu, &ds, &tdx).await, &f32s(&g), 1e-5);
    }
}

/// RMSNorm on rows no workgroup divides (80 and 203 wide), on the default kernels and
/// the workgroup-per-row variant GPUs use.
web_test!(rmsnorm_gpu_matches_cpu, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    rmsnorm_case(&gpu, 37, 80).await;
    rmsnorm_case(&gpu, 5, 203).await;
    let Some(gpu) = common::gpu_with(&shared_family()).await else {
        return;
    };
    rmsnorm_case(&gpu, 37, 80).await;
    rmsnorm_case(&gpu, 3, 33).await;
});

/// RMSNorm with a 4 KiB binding limit: the 41 × 64 activations are bound in row ranges.
web_test!(rmsnorm_binds_rows_in_ranges, {
    let Some(gpu) = common::gpu_with(&binding_limit(4096)).await else {
        return;
    };
    rmsnorm_case(&gpu, 41, 64).await;
});

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

/// Forward (o, and the per-row log-sum-exp the backward reuses) and backward (dq, dk, dv)
/// of `a` in one submit, against the f64 reference.
async fn attention_case(gpu: &Gpu, a: &attention::Attention, seed: u64) {
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
    submit(gpu, &ds);
    let (q, k, v, d_o) = (f64s(&q), f64s(&k), f64s(&v), f64s(&d_o));
    let (o, lse) = attention::reference::forward(a, &q, &k, &v);
    let (dq, dk, dv) = attention::reference::backward(a, &q, &k, &v, &d_o);
    let what = format!("{a:?}");
    assert_rel_close(&format!("o {what}"), &down(gpu, &to).await, &f32s(&o), 1e-5);
    assert_rel_close(
        &format!("lse {what}"),
        &down(gpu, &tl).await,
        &f32s(&lse),
        1e-5,
    );
    assert_rel_close(
        &format!("dq {what}"),
        &down(gpu, &tdq).await,
        &f32s(&dq),
        1e-4,
    );
    assert_rel_close(
        &format!("dk {what}"),
        &down(gpu, &tdk).await,
        &f32s(&dk),
        1e-4,
    );
    assert_rel_close(
        &format!("dv {what}"),
        &down(gpu, &tdv).await,
        &f32s(&dv),
        1e-4,
    );
}

/// Causal attention forward and backward against the f64 reference: grouped-query
/// (6 heads over 2 kv heads, 3 over 1), head sizes 8 to 256, sequences no tile divides,
/// and Gemma's (sliding window 7, logit softcap 5: s ↦ 5·tanh(s/5)) and Mistral's
/// (window 2) variants.
web_test!(attention_gpu_matches_cpu, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    attention_case(&gpu, &attn(2, 37, 6, 2, 16), 9).await;
    attention_case(&gpu, &attn(1, 37, 3, 1, 8), 10).await;
    attention_case(&gpu, &attn(1, 19, 4, 1, 64), 11).await;
    attention_case(&gpu, &attn(2, 13, 2, 2, 256), 12).await;
    let gemma = attention::Attention {
        window: Some(7),
        softcap: Some(5.0),
        scale: 0.3,
        ..attn(2, 37, 6, 2, 16)
    };
    attention_case(&gpu, &gemma, 13).await;
    let mistral = attention::Attention {
        window: Some(2),
        ..attn(1, 9, 4, 4, 8)
    };
    attention_case(&gpu, &mistral, 14).await;
});

/// Decoding through the KV cache: 7 new queries per sequence, from different start
/// positions, attending to cached keys and values give the same rows as full causal
/// attention over the whole sequence (with a window and a softcap).
web_test!(attention_with_kv_cache_matches_full_attention, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
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
    submit(&gpu, &ds);
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
    let ds = attention::forward_cached(&gpu, &dec, &tqn, &kc, &vc, &ts, &to).unwrap();
    assert_rel_close("cached attention", &run(&gpu, &ds, &to).await, &want, 1e-5);
});

// ---------------------------------------------------------------- RoPE

/// RoPE in place with Llama-3 frequency scaling, from position 0 and from per-sequence
/// start positions (5 and 100 003): the forward, x rotated pairwise by pos · θᵢ, against
/// the f64 rotation, and the backward (the rotation by −pos · θᵢ) giving the input back.
web_test!(rope_gpu_matches_cpu, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
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
        let ds = rope::forward(&gpu, &tx, &tf, ts.as_ref(), t, hs).unwrap();
        let want = rope::reference::rotate(&f64s(&x), &f, &s, t, hs, 1.0);
        assert_rel_close("rope", &run(&gpu, &ds, &tx).await, &f32s(&want), 2e-6);
        let ds = rope::backward(&gpu, &tx, &tf, ts.as_ref(), t, hs).unwrap();
        assert_rel_close(
            "rope backward undoes forward",
            &run(&gpu, &ds, &tx).await,
            &x,
            2e-6,
        );
    }
});

// ---------------------------------------------------------------- activations

/// The gated activations h = act(gate) ⊙ up (SiLU and tanh-GELU) with their gradients
/// d_gate = dh ⊙ up ⊙ act′(gate), d_up = dh ⊙ act(gate); and the logit softcap
/// y = c·tanh(x/c) with dx = dy·(1 − tanh²(x/c)), at inputs far into saturation.
web_test!(activations_gpu_match_cpu, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let mut rng = Rng::new(6);
    let (n, f) = (37, 45);
    let gate = rng.vec_f32(n * f, -6.0, 6.0);
    let up = rng.vec_f32(n * f, -2.0, 2.0);
    let dh = rng.vec_f32(n * f, -1.0, 1.0);
    let [tg, tu, tdh] = [&gate, &up, &dh].map(|v| gpu.upload(&[n, f], v).unwrap());
    let [th, tdg, tdu] = [0; 3].map(|_| gpu.zeros(&[n, f]).unwrap());
    for act in [Activation::Silu, Activation::GeluTanh] {
        let ds = activation::glu_forward(&gpu, act, &tg, &tu, &th).unwrap();
        let want = activation::reference::glu_forward(act, &f64s(&gate), &f64s(&up));
        assert_rel_close("glu h", &run(&gpu, &ds, &th).await, &f32s(&want), 2e-6);
        submit(
            &gpu,
            &activation::glu_backward(&gpu, act, &tg, &tu, &tdh, &tdg, &tdu).unwrap(),
        );
        let (dg, du) =
            activation::reference::glu_backward(act, &f64s(&gate), &f64s(&up), &f64s(&dh));
        assert_rel_close("glu d_gate", &down(&gpu, &tdg).await, &f32s(&dg), 2e-6);
        assert_rel_close("glu d_up", &down(&gpu, &tdu).await, &f32s(&du), 2e-6);
    }
    let x = rng.vec_f32(n * f, -200.0, 200.0);
    let tx = gpu.upload(&[n, f], &x).unwrap();
    let ds = activation::softcap_forward(&gpu, 30.0, &tx, &th).unwrap();
    let want: Vec<f32> = x
        .iter()
        .map(|&v| activation::reference::softcap(30.0, v as f64) as f32)
        .collect();
    assert_rel_close("softcap", &run(&gpu, &ds, &th).await, &want, 2e-6);
    let ds = activation::softcap_backward(&gpu, 30.0, &tx, &tdh, &tdg).unwrap();
    let want: Vec<f32> = x
        .iter()
        .zip(&dh)
        .map(|(&v, &d)| (d as f64 * activation::reference::softcap_grad(30.0, v as f64)) as f32)
        .collect();
    assert_rel_close("softcap dx", &run(&gpu, &ds, &tdg).await, &want, 2e-6);
});

// ---------------------------------------------------------------- embedding

/// The embedding gather y[i] = scale · table[ids[i]] with a 4 KiB binding limit, so the
/// 203-row table is bound in several ranges: first and last rows, and an out-of-range id
/// that must give a zero row (not whatever y held).
web_test!(embedding_gathers_rows_across_binding_ranges, {
    let Some(gpu) = common::gpu_with(&binding_limit(4096)).await else {
        return;
    };
    let mut rng = Rng::new(7);
    let (v, c, n) = (203, 24, 37);
    let table = rng.vec_f32(v * c, -1.0, 1.0);
    let mut ids: Vec<u32> = (0..n).map(|_| rng.below(v) as u32).collect();
    ids[3] = (v - 1) as u32;
    ids[5] = 0;
    ids[7] = v as u32 + 9;
    let tt = gpu.upload(&[v, c], &table).unwrap();
    let ti = gpu.upload_u32(&[n], &ids).unwrap();
    let ty = gpu.upload(&[n, c], &vec![7.0; n * c]).unwrap();
    let scale = (c as f32).sqrt();
    let ds = embedding::forward(&gpu, &tt, &ti, &ty, scale).unwrap();
    assert!(ds.len() > 1, "the table is bound in several ranges");
    let want = embedding::reference::forward(&table, c, &ids, scale);
    assert_rel_close("embedding", &run(&gpu, &ds, &ty).await, &want, 1e-7);
});

/// The row scatter y[ids[i]] = x[i] (distinct ids in a scrambled order, two padding ids
/// that write nothing) exactly, gathering the rows back, and the adjoint identity
/// ⟨gather(y), x⟩ = ⟨y, scatter(x)⟩ that makes one the other's gradient.
web_test!(row_scatter_is_the_gathers_adjoint, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let mut rng = Rng::new(9);
    let (r, c) = (29, 12);
    let mut ids: Vec<u32> = vec![17, 3, 28, 0, 9, 4];
    ids.extend([u32::MAX, r as u32]);
    let k = ids.len();
    let x = rng.vec_f32(k * c, -1.0, 1.0);
    let tx = gpu.upload(&[k, c], &x).unwrap();
    let ti = gpu.upload_u32(&[k], &ids).unwrap();
    let ty = gpu.zeros(&[r, c]).unwrap();
    let y = run(&gpu, &embedding::scatter(&gpu, &tx, &ti, &ty).unwrap(), &ty).await;
    assert_rel_close(
        "scatter",
        &y,
        &embedding::reference::scatter(&x, c, &ids, r),
        0.0,
    );
    let tg = gpu.zeros(&[k, c]).unwrap();
    let ds = embedding::forward(&gpu, &ty, &ti, &tg, 1.0).unwrap();
    let mut want = x.clone();
    want[(k - 2) * c..].iter_mut().for_each(|v| *v = 0.0);
    assert_rel_close("gather", &run(&gpu, &ds, &tg).await, &want, 0.0);
    // With distinct ids, scatter(x) = y, so the right side is ⟨y, y⟩.
    let g = embedding::reference::forward(&y, c, &ids, 1.0);
    let lhs: f64 = g.iter().zip(&x).map(|(a, b)| (a * b) as f64).sum();
    let rhs: f64 = y.iter().map(|v| (v * v) as f64).sum();
    assert!((lhs - rhs).abs() < 1e-4 * rhs.max(1.0), "{lhs} vs {rhs}");
});

// ---------------------------------------------------------------- cross-entropy

/// Mean cross-entropy over a 203-word vocabulary in `chunk`-column chunks (the last one
/// ragged) and its gradient dh = scale · (softmax(h Wᵀ) − onehot) W, accumulated into a
/// buffer that held 9s to check it is overwritten; ignored targets (u32::MAX, −100) add
/// no loss and get a zero gradient row.
async fn cross_entropy_case(gpu: &Gpu, chunk: usize, softcap: Option<f32>) {
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
    submit(gpu, &ds);
    let cap = softcap.map(|s| s as f64);
    let (loss, dh) =
        cross_entropy::reference::loss_and_grad(&f64s(&h), &f64s(&w), c, &targets, cap);
    let what = format!("chunk {chunk}, softcap {softcap:?}");
    assert_rel_close(
        &format!("loss {what}"),
        &down(gpu, &tloss).await,
        &[loss as f32],
        2e-6,
    );
    let dh: Vec<f32> = dh.iter().map(|g| (0.5 * g) as f32).collect();
    let got = down(gpu, &tdh).await;
    assert_rel_close(&format!("dh {what}"), &got, &dh, 1e-5);
    for r in [0, 5] {
        assert!(
            got[r * c..(r + 1) * c].iter().all(|&g| g == 0.0),
            "ignored row {r} has a gradient"
        );
    }
}

/// Cross-entropy and its gradient against the f64 reference with chunks smaller and
/// larger than the vocabulary, with and without a logit softcap, and on the
/// workgroup-per-row (shared) kernels.
web_test!(cross_entropy_gpu_matches_cpu_over_chunks, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    cross_entropy_case(&gpu, 64, None).await;
    cross_entropy_case(&gpu, 64, Some(4.0)).await;
    cross_entropy_case(&gpu, 4096, None).await;
    let Some(gpu) = common::gpu_with(&shared_family()).await else {
        return;
    };
    cross_entropy_case(&gpu, 64, Some(4.0)).await;
});

/// The logits h Wᵀ for generation, plain and softcapped (c·tanh(z/c)), against the f64
/// reference.
web_test!(logits_match_cpu, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let mut rng = Rng::new(18);
    let (b, c, v) = (3, 80, 203);
    let h = rng.vec_f32(b * c, -1.0, 1.0);
    let w = rng.vec_f32(v * c, -1.0, 1.0);
    let th = gpu.upload(&[b, c], &h).unwrap();
    let tw = gpu.upload(&[v, c], &w).unwrap();
    let to = gpu.zeros(&[b, v]).unwrap();
    for softcap in [None, Some(3.0f32)] {
        let ds = cross_entropy::logits(&gpu, &th, &tw, &to, softcap).unwrap();
        let want =
            cross_entropy::reference::logits(&f64s(&h), &f64s(&w), c, softcap.map(|s| s as f64));
        assert_rel_close("logits", &run(&gpu, &ds, &to).await, &f32s(&want), 1e-5);
    }
});

// ---------------------------------------------------------------- AdamW

const OPT: AdamW = AdamW {
    lr: 3e-2,
    beta1: 0.85,
    beta2: 0.99,
    eps: 1e-6,
    weight_decay: 0.1,
};

/// Host copy of one parameter with its moments.
struct Host {
    theta: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

/// Five optimizer steps over tensors of `sizes` against the CPU step: parameters and both
/// moments after every step, with a decaying lr, grad_scale 0.37 and, with `max_norm`,
/// the global gradient norm and clipping by it (0: the norm only).
async fn check_steps(gpu: &Gpu, sizes: &[usize], max_norm: Option<f32>, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut hosts: Vec<Host> = sizes
        .iter()
        .map(|&n| Host {
            theta: rng.vec_f32(n, -1.0, 1.0),
            m: vec![0.0; n],
            v: vec![0.0; n],
        })
        .collect();
    let params: Vec<Tensor> = hosts
        .iter()
        .map(|h| gpu.upload(&[h.theta.len()], &h.theta).unwrap())
        .collect();
    let grads: Vec<Tensor> = sizes.iter().map(|&n| gpu.zeros(&[n]).unwrap()).collect();
    let pairs: Vec<(&Tensor, &Tensor)> = params.iter().zip(&grads).collect();
    let opt = Optimizer::new(gpu, OPT, &pairs, max_norm).unwrap();
    for step in 1..=5u32 {
        // Gradients change every step, with magnitudes far from 1 so that the scaling
        // and clipping paths matter.
        let gs: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec_f32(n, -3.0, 2.0)).collect();
        for (t, g) in grads.iter().zip(&gs) {
            gpu.write(t, g).unwrap();
        }
        let lr = OPT.lr / step as f32;
        let g0 = 0.37;
        opt.set_step(gpu, step, lr, g0).unwrap();
        submit(gpu, opt.dispatches());

        let refs: Vec<&[f32]> = gs.iter().map(|g| g.as_slice()).collect();
        let norm = g0 as f64 * adamw::reference::sum_squares(&refs).sqrt();
        let scale = g0 as f64 * max_norm.map_or(1.0, |c| adamw::reference::clip_factor(norm, c));
        if let Some(c) = max_norm {
            // StepScalars::grad_norm's element, read without blocking.
            let got = down(gpu, &opt.scalars.tensor).await[4];
            assert_rel_close("grad norm", &[got], &[norm as f32], 1e-5);
            if c > 0.0 {
                assert!(
                    norm > c as f64,
                    "test gradients should be clipped ({norm} ≤ {c})"
                );
            }
        }
        for (h, g) in hosts.iter_mut().zip(&gs) {
            adamw::reference::adamw_step(
                &OPT,
                step,
                lr,
                scale as f32,
                &mut h.theta,
                g,
                &mut h.m,
                &mut h.v,
            );
        }
        for (i, h) in hosts.iter().enumerate() {
            let what = format!("step {step} tensor {i} ({} elements)", sizes[i]);
            let st = &opt.states[i];
            assert_rel_close(
                &format!("{what} θ"),
                &down(gpu, &params[i]).await,
                &h.theta,
                2e-5,
            );
            assert_rel_close(&format!("{what} m"), &down(gpu, &st.m).await, &h.m, 2e-5);
            assert_rel_close(&format!("{what} v"), &down(gpu, &st.v).await, &h.v, 2e-5);
        }
    }
}

/// AdamW without clipping: a one-element tensor, one no workgroup divides, and one just
/// past a multiple of 4096.
web_test!(adamw_matches_cpu_over_steps, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    check_steps(&gpu, &[1, 37, 4099], None, 1).await;
});

/// AdamW with global-norm clipping: gradients scaled by min(1, max_norm / (‖g‖ + 10⁻⁶)).
web_test!(adamw_with_clipping_matches_cpu, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    // Clip hard (the norm is ~ 0.37·√(n·1.75)), then only record the norm.
    check_steps(&gpu, &[301, 1, 1025], Some(2.5), 2).await;
    check_steps(&gpu, &[129, 63], Some(0.0), 3).await;
});

/// AdamW and the norm with a 1 KiB binding limit, so each tensor is bound in ranges.
web_test!(adamw_binds_large_tensors_in_ranges, {
    let Some(gpu) = common::gpu_with(&binding_limit(1024)).await else {
        return;
    };
    check_steps(&gpu, &[3001, 257], Some(4.0), 4).await;
});

/// The sum of squares Σᵢ Σⱼ tᵢⱼ² over the first k tensors, for k = 1..6, with an empty
/// tensor and sizes around the 128-wide reduction and well past it.
web_test!(sum_squares_matches_cpu, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let mut rng = Rng::new(9);
    let sizes = [0usize, 1, 127, 128, 129, 50_003];
    let data: Vec<Vec<f32>> = sizes.iter().map(|&n| rng.vec_f32(n, -2.0, 1.5)).collect();
    let ts: Vec<Tensor> = data
        .iter()
        .map(|d| gpu.upload(&[d.len()], d).unwrap())
        .collect();
    let total = gpu.zeros(&[1]).unwrap();
    for k in 1..=ts.len() {
        let refs: Vec<&Tensor> = ts[..k].iter().collect();
        let ds = adamw::sum_squares(&gpu, &refs, &total).unwrap();
        let host: Vec<&[f32]> = data[..k].iter().map(|d| d.as_slice()).collect();
        let want = adamw::reference::sum_squares(&host) as f32;
        assert_rel_close(
            &format!("sum of squares of {k} tensors"),
            &run(&gpu, &ds, &total).await,
            &[want],
            1e-5,
        );
    }
});

/// Several steps in one submit: each step's scalars row is copied from a table into the
/// scalars tensor inside the recording, as training does with many steps per submit.
web_test!(adamw_steps_recorded_in_one_submit, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    let n = 77;
    let mut rng = Rng::new(5);
    let mut theta = rng.vec_f32(n, -1.0, 1.0);
    let g = rng.vec_f32(n, -1.0, 1.0);
    let p = gpu.upload(&[n], &theta).unwrap();
    let gt = gpu.upload(&[n], &g).unwrap();
    let opt = Optimizer::new(&gpu, OPT, &[(&p, &gt)], None).unwrap();
    let steps = 4u32;
    let mut table = Vec::new();
    for s in 1..=steps {
        table.extend(
            OPT.step_scalars(s, OPT.lr * 0.5f32.powi(s as i32), 1.0 + s as f32)
                .unwrap(),
        );
    }
    let table = gpu.upload(&[steps as usize, SCALARS], &table).unwrap();
    let mut rec = Recorder::new();
    for s in 0..steps as usize {
        rec.copy(
            &table.view(s * SCALARS, SCALARS).unwrap(),
            &opt.scalars.tensor,
        )
        .unwrap();
        rec.run_all(opt.dispatches());
    }
    gpu.run(&rec).unwrap();
    let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
    for s in 1..=steps {
        let lr = OPT.lr * 0.5f32.powi(s as i32);
        adamw::reference::adamw_step(&OPT, s, lr, 1.0 + s as f32, &mut theta, &g, &mut m, &mut v);
    }
    assert_rel_close(
        "θ after 4 recorded steps",
        &down(&gpu, &p).await,
        &theta,
        2e-5,
    );
});

// ---------------------------------------------------------------- elementwise

/// Every elementwise op and both row reductions on `n` values in rows of `cols`, against
/// the CPU.
async fn check_elementwise(gpu: &Gpu, n: usize, cols: usize) {
    let mut rng = Rng::new(n as u64);
    let a = rng.vec_f32(n, -2.0, 2.0);
    let b = rng.vec_f32(n, -2.0, 2.0);
    let ta = gpu.upload(&[n / cols, cols], &a).unwrap();
    let tb = gpu.upload(&[n / cols, cols], &b).unwrap();
    let y = gpu.zeros(&[n]).unwrap();
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, z)| x + z).collect();
    let ds = ew::add(gpu, &ta, &tb, &y).unwrap();
    assert_rel_close("add", &run(gpu, &ds, &y).await, &want, 1e-6);
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, z)| x * z).collect();
    let ds = ew::mul(gpu, &ta, &tb, &y).unwrap();
    assert_rel_close("mul", &run(gpu, &ds, &y).await, &want, 1e-6);
    let want: Vec<f32> = a.iter().map(|x| -1.5 * x).collect();
    let ds = ew::scale(gpu, -1.5, &ta, &y).unwrap();
    assert_rel_close("scale", &run(gpu, &ds, &y).await, &want, 1e-6);
    let ds = ew::copy(gpu, &ta, &y).unwrap();
    assert_rel_close("copy", &run(gpu, &ds, &y).await, &a, 0.0);
    // y holds a copy of a here: y + 0.25·a.
    let want: Vec<f32> = a.iter().map(|x| x + 0.25 * x).collect();
    let ds = ew::axpy(gpu, 0.25, &ta, &y).unwrap();
    assert_rel_close("axpy", &run(gpu, &ds, &y).await, &want, 1e-6);
    let ds = ew::fill(gpu, 3.5, &y).unwrap();
    assert_rel_close("fill", &run(gpu, &ds, &y).await, &vec![3.5; n], 0.0);

    let ys = gpu.zeros(&[n / cols]).unwrap();
    let ds = ew::row_sum(gpu, &ta, &ys).unwrap();
    assert_rel_close(
        "row_sum",
        &run(gpu, &ds, &ys).await,
        &ew::reference::row_sum(&a, cols),
        1e-5,
    );
    let ds = ew::row_max(gpu, &ta, &ys).unwrap();
    assert_rel_close(
        "row_max",
        &run(gpu, &ds, &ys).await,
        &ew::reference::row_max(&a, cols),
        0.0,
    );
}

/// add, mul, scale, copy, axpy, fill, row_sum and row_max at sizes no workgroup divides:
/// 37 rows of 13, a single value, and 4097 rows of 3.
web_test!(elementwise_matches_cpu_at_odd_sizes, {
    let Some(gpu) = common::gpu().await else {
        return;
    };
    check_elementwise(&gpu, 37 * 13, 13).await;
    check_elementwise(&gpu, 1, 1).await;
    check_elementwise(&gpu, 4097 * 3, 3).await;
});

/// The elementwise ops and row reductions with a 2 KiB binding limit: 3001 × 7 floats
/// (84 KB) bound in ranges.
web_test!(elementwise_binds_large_tensors_in_ranges, {
    // Not 1 KiB: WebGPU aligns binding offsets to 256 bytes, so ranges of 28-byte rows
    // come in steps of 64 rows (1792 bytes), which a 1 KiB limit cannot bind (lavapipe's
    // finer alignment can).
    let Some(gpu) = common::gpu_with(&binding_limit(2048)).await else {
        return;
    };
    check_elementwise(&gpu, 3001 * 7, 7).await;
});
