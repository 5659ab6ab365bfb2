//! CPU f64 reference of a whole model, for tests: the forward to logits or to the
//! cross-entropy loss, and the backward of that loss into adapter factors, composed from
//! the ops' own references (RMSNorm, RoPE, attention, GLU, chunk-free cross-entropy, the
//! adapters' dense W'). The backward mirrors the GPU graph in
//! [`crate::graph`]: residual gradients flow down, each linear returns dx = dy·W' and,
//! where adapted, (dA, dB) from `adapters::reference::backward`.

use std::collections::BTreeMap;

use crate::adapters::reference as adref;
use crate::adapters::AdapterSpec;
use crate::error::{Error, Result};
use crate::loaders::Checkpoint;
use crate::model::config::ModelConfig;
use crate::ops::activation::reference as act;
use crate::ops::attention::{reference as attn, Attention};
use crate::ops::cross_entropy::reference as ce;
use crate::ops::rmsnorm::{reference as rms, RmsNorm};
use crate::ops::rope::reference as rope;

/// An adapter's factors in f64 (A [b, b, r_b, q], B [b, b, p, r_b]).
#[derive(Clone, Debug)]
pub struct RefAdapter {
    pub spec: AdapterSpec,
    pub a: Vec<f64>,
    pub b: Vec<f64>,
}

/// The reference model: weights in f64 under boha's names, adapters by
/// `layers.{i}.{proj}`.
pub struct Reference {
    pub config: ModelConfig,
    pub weights: BTreeMap<String, Vec<f64>>,
    pub adapters: BTreeMap<String, RefAdapter>,
}

/// Gradients of the loss: adapter name → (dA, dB).
pub type AdapterGrads = BTreeMap<String, (Vec<f64>, Vec<f64>)>;

struct LayerCache {
    x: Vec<f64>,
    h1: Vec<f64>,
    q: Vec<f64>,
    k: Vec<f64>,
    v: Vec<f64>,
    att: Vec<f64>,
    a: Vec<f64>,
    xmid: Vec<f64>,
    h2: Vec<f64>,
    g: Vec<f64>,
    u: Vec<f64>,
    m: Vec<f64>,
    d: Vec<f64>,
}

/// y [rows, n] = x [rows, k] · W[n, k]ᵀ
fn matmul_nt(x: &[f64], w: &[f64], k: usize) -> Vec<f64> {
    let n = w.len() / k;
    let mut y = Vec::with_capacity(x.len() / k * n);
    for xr in x.chunks(k) {
        for wr in w.chunks(k) {
            y.push(xr.iter().zip(wr).map(|(a, b)| a * b).sum());
        }
    }
    y
}

/// dx [rows, k] = dy [rows, n] · W[n, k]
fn matmul_nn(dy: &[f64], w: &[f64], k: usize) -> Vec<f64> {
    let n = w.len() / k;
    let mut dx = vec![0.0; dy.len() / n * k];
    for (r, dr) in dy.chunks(n).enumerate() {
        for (j, &g) in dr.iter().enumerate() {
            for (o, wv) in dx[r * k..(r + 1) * k]
                .iter_mut()
                .zip(&w[j * k..(j + 1) * k])
            {
                *o += g * wv;
            }
        }
    }
    dx
}

fn add(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(x, y)| x + y).collect()
}

fn add_into(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

impl Reference {
    /// The checkpoint's weights in f64, no adapters (file tensors are read now).
    pub fn new(ck: &Checkpoint) -> crate::Result<Reference> {
        let mut weights = BTreeMap::new();
        for (k, t) in &ck.tensors {
            let values = t.to_f32()?.iter().map(|&v| v as f64).collect();
            weights.insert(k.clone(), values);
        }
        Ok(Reference {
            config: ck.config.clone(),
            weights,
            adapters: BTreeMap::new(),
        })
    }

    /// Adds (or replaces) the adapter on `name` = `layers.{i}.{proj}`.
    pub fn set_adapter(&mut self, name: &str, spec: AdapterSpec, a: &[f32], b: &[f32]) {
        self.adapters.insert(
            name.to_string(),
            RefAdapter {
                spec,
                a: adref::f64s(a),
                b: adref::f64s(b),
            },
        );
    }

    fn w(&self, name: &str) -> Result<&[f64]> {
        self.weights
            .get(name)
            .map(|v| v.as_slice())
            .ok_or_else(|| Error::Invalid(format!("reference: no tensor {name}")))
    }

    fn norm(&self) -> RmsNorm {
        RmsNorm {
            eps: self.config.rms_norm_eps,
            unit_offset: self.config.norm_weight_offset,
        }
    }

    fn attention(&self, l: usize, batch: usize, seq: usize) -> Attention {
        let c = &self.config;
        Attention {
            batch,
            seq,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_size: c.head_dim,
            scale: c.attn_scale(),
            window: c.layer_window(l),
            softcap: c.attn_logit_softcapping,
        }
    }

    /// y = x·W'ᵀ for projection `name` (W' merged from its adapter, if any).
    fn linear(&self, name: &str, x: &[f64]) -> Result<Vec<f64>> {
        let w0 = self.w(name)?;
        let k = self.in_dim(name)?;
        match self.adapters.get(name) {
            Some(ad) => {
                let w = adref::merged_weight(&ad.spec, w0, &ad.a, &ad.b)?;
                Ok(matmul_nt(x, &w, k))
            }
            None => Ok(matmul_nt(x, w0, k)),
        }
    }

    fn in_dim(&self, name: &str) -> Result<usize> {
        let c = &self.config;
        let proj = name.rsplit('.').next().unwrap_or("");
        Ok(match proj {
            "q" | "k" | "v" | "gate" | "up" => c.hidden_size,
            "o" => c.q_dim(),
            "down" => c.intermediate_size,
            _ => {
                return Err(Error::Invalid(format!(
                    "reference: {name} is not a projection"
                )))
            }
        })
    }

    /// dx = dy·W' and, when adapted, the adapter's (dA, dB) added into `grads`.
    fn linear_back(
        &self,
        name: &str,
        x: &[f64],
        dy: &[f64],
        grads: &mut AdapterGrads,
    ) -> Result<Vec<f64>> {
        let w0 = self.w(name)?;
        let k = self.in_dim(name)?;
        match self.adapters.get(name) {
            Some(ad) => {
                let (dx, da, db) = adref::backward(&ad.spec, w0, &ad.a, &ad.b, x, dy)?;
                let e = grads
                    .entry(name.to_string())
                    .or_insert_with(|| (vec![0.0; da.len()], vec![0.0; db.len()]));
                add_into(&mut e.0, &da);
                add_into(&mut e.1, &db);
                Ok(dx)
            }
            None => Ok(matmul_nn(dy, w0, k)),
        }
    }

    fn check_tokens(&self, tokens: &[u32], batch: usize) -> Result<usize> {
        if batch == 0 || tokens.is_empty() || !tokens.len().is_multiple_of(batch) {
            return Err(Error::Invalid(format!(
                "{} tokens do not split into {batch} sequences",
                tokens.len()
            )));
        }
        Ok(tokens.len() / batch)
    }

    /// The final normed hidden states [N, C] (before the LM head) and, per layer, what the
    /// backward needs.
    fn hidden(
        &self,
        tokens: &[u32],
        batch: usize,
    ) -> Result<(Vec<f64>, Vec<LayerCache>, Vec<f64>)> {
        let seq = self.check_tokens(tokens, batch)?;
        let cfg = &self.config;
        let c = cfg.hidden_size;
        let embed = self.w("embed")?;
        let scale = cfg.embedding_scale() as f64;
        let mut x = Vec::with_capacity(tokens.len() * c);
        for &t in tokens {
            let row = embed
                .get(t as usize * c..(t as usize + 1) * c)
                .ok_or_else(|| Error::Invalid(format!("token {t} out of the vocabulary")))?;
            x.extend(row.iter().map(|v| v * scale));
        }
        let inv: Vec<f32> = cfg.rope_inv_freq().iter().map(|&f| f as f32).collect();
        let starts = vec![0u32; batch];
        let norm = self.norm();
        let mut caches = Vec::new();
        for l in 0..cfg.num_layers {
            let n = |s: &str| format!("layers.{l}.{s}");
            let h1 = rms::forward(&norm, &x, self.w(&n("attn_norm"))?);
            let mut qkv = Vec::new();
            for p in ["q", "k", "v"] {
                let mut y = self.linear(&n(p), &h1)?;
                if cfg.qkv_bias {
                    let b = self.w(&n(&format!("{p}_bias")))?;
                    for row in y.chunks_mut(b.len()) {
                        add_into(row, b);
                    }
                }
                qkv.push(y);
            }
            let v = qkv.pop().expect("three");
            let k = rope::rotate(
                &qkv.pop().expect("two"),
                &inv,
                &starts,
                seq,
                cfg.head_dim,
                1.0,
            );
            let q = rope::rotate(
                &qkv.pop().expect("one"),
                &inv,
                &starts,
                seq,
                cfg.head_dim,
                1.0,
            );
            let (att, _) = attn::forward(&self.attention(l, batch, seq), &q, &k, &v);
            let a = self.linear(&n("o"), &att)?;
            let a2 = if cfg.post_norms {
                rms::forward(&norm, &a, self.w(&n("post_attn_norm"))?)
            } else {
                a.clone()
            };
            let xmid = add(&x, &a2);
            let h2 = rms::forward(&norm, &xmid, self.w(&n("mlp_norm"))?);
            let g = self.linear(&n("gate"), &h2)?;
            let u = self.linear(&n("up"), &h2)?;
            let m = act::glu_forward(cfg.hidden_activation, &g, &u);
            let d = self.linear(&n("down"), &m)?;
            let d2 = if cfg.post_norms {
                rms::forward(&norm, &d, self.w(&n("post_mlp_norm"))?)
            } else {
                d.clone()
            };
            let next = add(&xmid, &d2);
            caches.push(LayerCache {
                x: std::mem::replace(&mut x, next),
                h1,
                q,
                k,
                v,
                att,
                a,
                xmid,
                h2,
                g,
                u,
                m,
                d,
            });
        }
        let hf = rms::forward(&norm, &x, self.w("final_norm")?);
        Ok((hf, caches, x))
    }

    fn head(&self) -> Result<&[f64]> {
        if self.config.tie_word_embeddings {
            self.w("embed")
        } else {
            self.w("lm_head")
        }
    }

    /// Logits [N, V] of `batch` sequences of equal length laid end to end.
    pub fn logits(&self, tokens: &[u32], batch: usize) -> Result<Vec<f64>> {
        let (hf, _, _) = self.hidden(tokens, batch)?;
        let cap = self.config.final_logit_softcapping.map(|c| c as f64);
        Ok(ce::logits(&hf, self.head()?, self.config.hidden_size, cap))
    }

    /// Mean cross-entropy over rows whose target is < V.
    pub fn loss(&self, tokens: &[u32], targets: &[u32], batch: usize) -> Result<f64> {
        Ok(self.loss_and_grads(tokens, targets, batch, false)?.0)
    }

    /// The loss and, with `grads`, its gradients with respect to every adapter's factors.
    pub fn loss_and_grads(
        &self,
        tokens: &[u32],
        targets: &[u32],
        batch: usize,
        grads: bool,
    ) -> Result<(f64, AdapterGrads)> {
        if targets.len() != tokens.len() {
            return Err(Error::Invalid(format!(
                "{} targets for {} tokens",
                targets.len(),
                tokens.len()
            )));
        }
        let cfg = &self.config;
        let c = cfg.hidden_size;
        let seq = self.check_tokens(tokens, batch)?;
        let (hf, caches, x_last) = self.hidden(tokens, batch)?;
        let cap = cfg.final_logit_softcapping.map(|c| c as f64);
        let (loss, dhf) = ce::loss_and_grad(&hf, self.head()?, c, targets, cap);
        let mut out = AdapterGrads::new();
        if !grads {
            return Ok((loss, out));
        }
        let norm = self.norm();
        let inv: Vec<f32> = cfg.rope_inv_freq().iter().map(|&f| f as f32).collect();
        let starts = vec![0u32; batch];
        let mut dres = rms::backward(&norm, &x_last, self.w("final_norm")?, &dhf);
        for (l, lc) in caches.iter().enumerate().rev() {
            let n = |s: &str| format!("layers.{l}.{s}");
            let dd = if cfg.post_norms {
                rms::backward(&norm, &lc.d, self.w(&n("post_mlp_norm"))?, &dres)
            } else {
                dres.clone()
            };
            let dm = self.linear_back(&n("down"), &lc.m, &dd, &mut out)?;
            let (dg, du) = act::glu_backward(cfg.hidden_activation, &lc.g, &lc.u, &dm);
            let mut dh2 = self.linear_back(&n("gate"), &lc.h2, &dg, &mut out)?;
            add_into(
                &mut dh2,
                &self.linear_back(&n("up"), &lc.h2, &du, &mut out)?,
            );
            add_into(
                &mut dres,
                &rms::backward(&norm, &lc.xmid, self.w(&n("mlp_norm"))?, &dh2),
            );
            let da = if cfg.post_norms {
                rms::backward(&norm, &lc.a, self.w(&n("post_attn_norm"))?, &dres)
            } else {
                dres.clone()
            };
            let datt = self.linear_back(&n("o"), &lc.att, &da, &mut out)?;
            let at = self.attention(l, batch, seq);
            let (dq, dk, dv) = attn::backward(&at, &lc.q, &lc.k, &lc.v, &datt);
            let dq = rope::rotate(&dq, &inv, &starts, seq, cfg.head_dim, -1.0);
            let dk = rope::rotate(&dk, &inv, &starts, seq, cfg.head_dim, -1.0);
            let mut dh1 = self.linear_back(&n("q"), &lc.h1, &dq, &mut out)?;
            add_into(&mut dh1, &self.linear_back(&n("k"), &lc.h1, &dk, &mut out)?);
            add_into(&mut dh1, &self.linear_back(&n("v"), &lc.h1, &dv, &mut out)?);
            add_into(
                &mut dres,
                &rms::backward(&norm, &lc.x, self.w(&n("attn_norm"))?, &dh1),
            );
        }
        Ok((loss, out))
    }
}
