//! Causal grouped-query attention with a fused scaled softmax (`shaders/attention.wgsl`),
//! flash style: an online softmax over the keys keeps memory O(T); the per-row
//! logsumexp is saved for the backward.
//!
//!   z_ij = scale · q_i·k_j,  z_ij ← cap·tanh(z_ij / cap) with a soft-cap (Gemma-2)
//!   o_i  = Σ_j softmax_j(z_i·) v_j   over keys j ≤ pos_i, and pos_i − W < j with a window W
//!   lse_i = log Σ_j exp(z_ij)
//!
//! Query head h uses key/value head h / (NH / NKV). Layouts are those a linear layer
//! writes: q, o [B·T, NH·HS]; k, v [B·T, NKV·HS]; lse [B·T, NH]. HS must be a multiple
//! of 4 and at most 256.
//!
//! Backward (FlashAttention-2 recomputation from lse): D_i = dO_i·o_i;
//! dz_ij = P_ij (dO_i·v_j − D_i) (times 1 − tanh² under a soft-cap);
//! dq_i = scale Σ_j dz_ij k_j;  dk_j = scale Σ_i dz_ij q_i;  dv_j = Σ_i P_ij dO_i.
//! dq comes from one invocation per query row looping over keys, dk and dv from one per
//! key row looping over the queries of all query heads that share it, so no float atomics
//! are needed.
//!
//! KV-cache inference ([`forward_cached`], no backward): the cache is [B, Tmax, NKV·HS]
//! (rows as the k/v projection writes them, so appending is a row copy, see
//! [`cache_write`]); the T new queries of sequence b sit at positions starts\[b\]..+T and
//! see cached keys 0..=position.

use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Kernel, Params, Tensor};
use crate::shaders::ATTENTION;

/// Shapes and options of one attention call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attention {
    /// B
    pub batch: usize,
    /// T: query rows per sequence (and key rows, except in cache mode).
    pub seq: usize,
    /// NH
    pub heads: usize,
    /// NKV (divides NH)
    pub kv_heads: usize,
    /// HS (multiple of 4, ≤ 256)
    pub head_size: usize,
    /// Factor on q·k: 1/√HS, or query_pre_attn_scalar^-½ for Gemma-2.
    pub scale: f32,
    /// Sliding window W: key j is visible from position i when i − W < j ≤ i.
    pub window: Option<usize>,
    /// Attention-logit soft-cap (Gemma-2).
    pub softcap: Option<f32>,
}

impl Attention {
    fn check(&self, op: &str) -> Result<()> {
        let a = self;
        if a.batch == 0
            || a.seq == 0
            || a.heads == 0
            || a.kv_heads == 0
            || !a.heads.is_multiple_of(a.kv_heads)
        {
            return Err(Error::shape(
                op,
                format!("{a:?}: sizes must be positive and NKV must divide NH"),
            ));
        }
        if a.head_size == 0 || !a.head_size.is_multiple_of(4) || a.head_size > 256 {
            return Err(Error::shape(
                op,
                format!("head size {} must be a multiple of 4, ≤ 256", a.head_size),
            ));
        }
        if a.window == Some(0) || a.softcap.is_some_and(|c| !(c.is_finite() && c > 0.0)) {
            return Err(Error::Invalid(format!(
                "{op}: window and soft-cap must be positive ({a:?})"
            )));
        }
        Ok(())
    }

    fn params(&self, kv_rows: usize, use_starts: bool) -> Params {
        Params::new()
            .u(self.batch)
            .u(self.seq)
            .u(self.heads)
            .u(self.kv_heads)
            .u(kv_rows)
            .u(self.window.unwrap_or(0))
            .u(use_starts as usize)
            .f(self.scale)
            .f(self.softcap.unwrap_or(0.0))
    }

    /// An entry point specialised for this head size.
    fn kernel(&self, entry: &'static str) -> Kernel {
        Kernel::new(ATTENTION, entry).with("HS4", (self.head_size / 4) as f64)
    }

    fn q_len(&self) -> usize {
        self.batch * self.seq * self.heads * self.head_size
    }
}

fn expect(op: &str, what: &str, t: &Tensor, len: usize) -> Result<()> {
    if t.len() != len {
        return Err(Error::shape(
            op,
            format!("{what} {:?} should hold {len} elements", t.shape()),
        ));
    }
    Ok(())
}

fn groups(gpu: &Gpu, n: usize) -> [u32; 3] {
    gpu.grid(n.div_ceil(64))
}

/// Training / prefill forward: o and lse from q, k, v (keys are the same T positions).
pub fn forward(
    gpu: &Gpu,
    a: &Attention,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &Tensor,
    lse: &Tensor,
) -> Result<Vec<Dispatch>> {
    let op = "attention_forward";
    a.check(op)?;
    let kv = a.batch * a.seq * a.kv_heads * a.head_size;
    expect(op, "q", q, a.q_len())?;
    expect(op, "o", o, a.q_len())?;
    expect(op, "k", k, kv)?;
    expect(op, "v", v, kv)?;
    expect(op, "lse", lse, a.batch * a.seq * a.heads)?;
    let kernel = a.kernel(op);
    let n = a.batch * a.heads * a.seq;
    // The starts binding is unused without a cache: q (read-only there too) fills it
    // instead of a placeholder buffer.
    Ok(vec![gpu.prepare(
        &kernel,
        &a.params(a.seq, false),
        &[q, k, v, q, o, lse],
        groups(gpu, n),
    )?])
}

/// Inference forward against a KV cache: `q` [B·T, NH·HS] holds T new queries per
/// sequence at positions starts\[b\]..starts\[b\] + T; `k_cache`, `v_cache`
/// \[B, Tmax, NKV·HS\] already hold keys 0..starts\[b\] + T (write the new ones first
/// with [`cache_write`]). `starts` \[B\] is u32 bits. Queries past Tmax get zero outputs.
pub fn forward_cached(
    gpu: &Gpu,
    a: &Attention,
    q: &Tensor,
    k_cache: &Tensor,
    v_cache: &Tensor,
    starts: &Tensor,
    o: &Tensor,
) -> Result<Vec<Dispatch>> {
    let op = "attention_forward";
    a.check(op)?;
    let tmax = cache_rows(op, a, k_cache)?;
    expect(op, "v_cache", v_cache, k_cache.len())?;
    expect(op, "q", q, a.q_len())?;
    expect(op, "o", o, a.q_len())?;
    expect(op, "starts", starts, a.batch)?;
    let lse = gpu.zeros(&[a.batch * a.seq * a.heads])?;
    let kernel = a.kernel(op);
    let n = a.batch * a.heads * a.seq;
    Ok(vec![gpu.prepare(
        &kernel,
        &a.params(tmax, true),
        &[q, k_cache, v_cache, starts, o, &lse],
        groups(gpu, n),
    )?])
}

fn cache_rows(op: &str, a: &Attention, cache: &Tensor) -> Result<usize> {
    let row = a.kv_heads * a.head_size;
    if cache.is_empty() || !cache.len().is_multiple_of(a.batch * row) {
        return Err(Error::shape(
            op,
            format!(
                "cache {:?} is not [B={}, Tmax, {row}]",
                cache.shape(),
                a.batch
            ),
        ));
    }
    Ok(cache.len() / (a.batch * row))
}

/// Appends new keys or values `new` [B·T, NKV·HS] to `cache` [B, Tmax, NKV·HS]: row t of
/// sequence b goes to cache row starts\[b\] + t (rows past Tmax are dropped).
pub fn cache_write(
    gpu: &Gpu,
    a: &Attention,
    new: &Tensor,
    cache: &Tensor,
    starts: &Tensor,
) -> Result<Vec<Dispatch>> {
    let op = "kv_cache_write_forward";
    a.check(op)?;
    let tmax = cache_rows(op, a, cache)?;
    let row = a.kv_heads * a.head_size;
    expect(op, "new", new, a.batch * a.seq * row)?;
    expect(op, "starts", starts, a.batch)?;
    let kernel = a.kernel(op);
    let n = a.batch * a.seq * row / 4;
    Ok(vec![gpu.prepare(
        &kernel,
        &a.params(tmax, true),
        &[new, starts, cache],
        groups(gpu, n),
    )?])
}

/// Backward of [`forward`]: dq [B·T, NH·HS], dk, dv [B·T, NKV·HS] (overwritten) from the
/// forward's inputs, its output `o`, its `lse` and the output gradient `d_o`. Holds a
/// [B·T, NH] scratch for D.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    a: &Attention,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    o: &Tensor,
    lse: &Tensor,
    d_o: &Tensor,
    dq: &Tensor,
    dk: &Tensor,
    dv: &Tensor,
) -> Result<Vec<Dispatch>> {
    backward_with(gpu, a, [q, k, v, o, lse, d_o], [dq, dk, dv], None)
}

/// [`backward`] with the per-row deltas [B·T, H] in `delta` (a planned temporary)
/// instead of a buffer of its own.
pub fn backward_with(
    gpu: &Gpu,
    a: &Attention,
    [q, k, v, o, lse, d_o]: [&Tensor; 6],
    [dq, dk, dv]: [&Tensor; 3],
    delta: Option<&Tensor>,
) -> Result<Vec<Dispatch>> {
    let op = "attention_backward";
    a.check(op)?;
    let kv = a.batch * a.seq * a.kv_heads * a.head_size;
    for (what, t) in [("q", q), ("o", o), ("d_o", d_o), ("dq", dq)] {
        expect(op, what, t, a.q_len())?;
    }
    for (what, t) in [("k", k), ("v", v), ("dk", dk), ("dv", dv)] {
        expect(op, what, t, kv)?;
    }
    expect(op, "lse", lse, a.batch * a.seq * a.heads)?;
    let delta = match delta {
        Some(d) => {
            expect(op, "delta", d, a.batch * a.seq * a.heads)?;
            d.clone()
        }
        None => gpu.zeros(&[a.batch * a.seq, a.heads])?,
    };
    let params = a.params(a.seq, false);
    let rows = a.batch * a.heads * a.seq;
    let k_delta = a.kernel("attention_delta_backward");
    let k_dq = a.kernel("attention_dq_backward");
    let k_dkv = a.kernel("attention_dkv_backward");
    Ok(vec![
        gpu.prepare(&k_delta, &params, &[o, d_o, &delta], groups(gpu, rows))?,
        gpu.prepare(
            &k_dq,
            &params,
            &[q, k, v, d_o, lse, &delta, dq],
            groups(gpu, rows),
        )?,
        gpu.prepare(
            &k_dkv,
            &params,
            &[q, k, v, d_o, lse, &delta, dk, dv],
            groups(gpu, a.batch * a.kv_heads * a.seq),
        )?,
    ])
}

/// f64 CPU reference: materialises the T×T scores (tests only).
pub mod reference {
    use super::Attention;

    struct Ix<'a>(&'a Attention);
    impl Ix<'_> {
        fn q(&self, b: usize, i: usize, h: usize) -> usize {
            ((b * self.0.seq + i) * self.0.heads + h) * self.0.head_size
        }
        fn k(&self, b: usize, j: usize, h: usize) -> usize {
            let a = self.0;
            ((b * a.seq + j) * a.kv_heads + h / (a.heads / a.kv_heads)) * a.head_size
        }
        fn visible(&self, i: usize, j: usize) -> bool {
            j <= i && self.0.window.is_none_or(|w| i < j + w)
        }
    }

    fn dot(x: &[f64], y: &[f64]) -> f64 {
        x.iter().zip(y).map(|(a, b)| a * b).sum()
    }

    /// Capped logit and its derivative with respect to the scaled score.
    fn logit(a: &Attention, s: f64) -> (f64, f64) {
        match a.softcap {
            Some(c) => {
                let c = c as f64;
                let t = (s / c).tanh();
                (c * t, 1.0 - t * t)
            }
            None => (s, 1.0),
        }
    }

    /// Softmax rows P[b, h, i, j] (zero where masked) with the logit derivatives.
    fn probs(a: &Attention, q: &[f64], k: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let ix = Ix(a);
        let (t, hs) = (a.seq, a.head_size);
        let mut p = vec![0.0; a.batch * a.heads * t * t];
        let mut dz = vec![0.0; p.len()];
        for b in 0..a.batch {
            for h in 0..a.heads {
                for i in 0..t {
                    let base = ((b * a.heads + h) * t + i) * t;
                    let qi = &q[ix.q(b, i, h)..][..hs];
                    let mut m = f64::MIN;
                    for j in (0..t).filter(|&j| ix.visible(i, j)) {
                        let (z, d) = logit(a, a.scale as f64 * dot(qi, &k[ix.k(b, j, h)..][..hs]));
                        p[base + j] = z;
                        dz[base + j] = d;
                        m = m.max(z);
                    }
                    let mut sum = 0.0;
                    for j in (0..t).filter(|&j| ix.visible(i, j)) {
                        p[base + j] = (p[base + j] - m).exp();
                        sum += p[base + j];
                    }
                    for j in 0..t {
                        p[base + j] /= sum;
                    }
                }
            }
        }
        (p, dz)
    }

    /// (o, lse).
    pub fn forward(a: &Attention, q: &[f64], k: &[f64], v: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let ix = Ix(a);
        let (t, hs) = (a.seq, a.head_size);
        let (p, _) = probs(a, q, k);
        let mut o = vec![0.0; q.len()];
        let mut lse = vec![0.0; a.batch * t * a.heads];
        for b in 0..a.batch {
            for h in 0..a.heads {
                for i in 0..t {
                    let base = ((b * a.heads + h) * t + i) * t;
                    let qi = &q[ix.q(b, i, h)..][..hs];
                    let mut m = f64::MIN;
                    let zs: Vec<f64> = (0..t)
                        .filter(|&j| ix.visible(i, j))
                        .map(|j| logit(a, a.scale as f64 * dot(qi, &k[ix.k(b, j, h)..][..hs])).0)
                        .collect();
                    zs.iter().for_each(|&z| m = m.max(z));
                    lse[(b * t + i) * a.heads + h] =
                        m + zs.iter().map(|z| (z - m).exp()).sum::<f64>().ln();
                    for j in 0..t {
                        let pij = p[base + j];
                        for d in 0..hs {
                            o[ix.q(b, i, h) + d] += pij * v[ix.k(b, j, h) + d];
                        }
                    }
                }
            }
        }
        (o, lse)
    }

    /// (dq, dk, dv) by the chain rule through the materialised softmax.
    pub fn backward(
        a: &Attention,
        q: &[f64],
        k: &[f64],
        v: &[f64],
        d_o: &[f64],
    ) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let ix = Ix(a);
        let (t, hs) = (a.seq, a.head_size);
        let (p, dlogit) = probs(a, q, k);
        let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        let sc = a.scale as f64;
        for b in 0..a.batch {
            for h in 0..a.heads {
                for i in 0..t {
                    let base = ((b * a.heads + h) * t + i) * t;
                    let go = &d_o[ix.q(b, i, h)..][..hs];
                    let dp: Vec<f64> = (0..t).map(|j| dot(go, &v[ix.k(b, j, h)..][..hs])).collect();
                    let pd: f64 = (0..t).map(|j| p[base + j] * dp[j]).sum();
                    for j in (0..t).filter(|&j| ix.visible(i, j)) {
                        let pij = p[base + j];
                        let ds = pij * (dp[j] - pd) * dlogit[base + j] * sc;
                        let (qo, ko) = (ix.q(b, i, h), ix.k(b, j, h));
                        for d in 0..hs {
                            dv[ko + d] += pij * go[d];
                            dq[qo + d] += ds * k[ko + d];
                            dk[ko + d] += ds * q[qo + d];
                        }
                    }
                }
            }
        }
        (dq, dk, dv)
    }
}
