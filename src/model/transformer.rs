//! A Llama-family decoder on the GPU: its frozen weights, its adapters, and the dispatch
//! lists of one layer's forward (training or KV-cached). Per layer, with N = B·T rows:
//!
//! ```text
//! h1 = rmsnorm(x, attn_norm)
//! q, k, v = h1·Wqᵀ (+ bq), h1·Wkᵀ (+ bk), h1·Wvᵀ (+ bv);  rope(q), rope(k)
//! att = causal_gqa(q, k, v)            (window, logit soft-cap per layer)
//! a = att·Woᵀ;  a2 = rmsnorm(a, post_attn_norm) (Gemma-2) or a;  xmid = x + a2
//! h2 = rmsnorm(xmid, mlp_norm);  g = h2·Wgateᵀ;  u = h2·Wupᵀ;  m = act(g) ⊙ u
//! d = m·Wdownᵀ;  d2 = rmsnorm(d, post_mlp_norm) or d;  x' = xmid + d2
//! ```
//!
//! Then `rmsnorm(x_L, final_norm)` and the LM head (or the tied embedding), soft-capped
//! for Gemma-2. A projection with an adapter runs through [`AdaptedLinear`] (W0 frozen).

use std::collections::BTreeMap;

use crate::adapters::layer::AdaptedLinear;
use crate::adapters::AdapterSpec;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::loaders::Checkpoint;
use crate::model::config::ModelConfig;
use crate::ops::attention::{self, Attention};
use crate::ops::gemm::matmul_nt;
use crate::ops::rmsnorm::{self, RmsNorm};
use crate::ops::{activation, elementwise, embedding, rope};

/// The seven projections an adapter may attach to, in boha's names.
pub const PROJECTIONS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// One layer's frozen weights (linear weights [out, in]).
pub struct LayerWeights {
    pub attn_norm: Tensor,
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    pub o: Tensor,
    pub q_bias: Option<Tensor>,
    pub k_bias: Option<Tensor>,
    pub v_bias: Option<Tensor>,
    pub post_attn_norm: Option<Tensor>,
    pub mlp_norm: Tensor,
    pub gate: Tensor,
    pub up: Tensor,
    pub down: Tensor,
    pub post_mlp_norm: Option<Tensor>,
}

impl LayerWeights {
    /// The weight of projection `name` (one of [`PROJECTIONS`]).
    pub fn projection(&self, name: &str) -> Result<&Tensor> {
        Ok(match name {
            "q" => &self.q,
            "k" => &self.k,
            "v" => &self.v,
            "o" => &self.o,
            "gate" => &self.gate,
            "up" => &self.up,
            "down" => &self.down,
            _ => return Err(unknown_projection(name)),
        })
    }

    fn projection_mut(&mut self, name: &str) -> Result<&mut Tensor> {
        Ok(match name {
            "q" => &mut self.q,
            "k" => &mut self.k,
            "v" => &mut self.v,
            "o" => &mut self.o,
            "gate" => &mut self.gate,
            "up" => &mut self.up,
            "down" => &mut self.down,
            _ => return Err(unknown_projection(name)),
        })
    }
}

fn unknown_projection(name: &str) -> Error {
    Error::Invalid(format!(
        "unknown projection '{name}' (expected one of {})",
        PROJECTIONS.join(", ")
    ))
}

/// A model's frozen weights on the GPU, with the constants its ops need.
pub struct Weights {
    pub config: ModelConfig,
    /// [V, C]
    pub embed: Tensor,
    pub layers: Vec<LayerWeights>,
    /// [C]
    pub final_norm: Tensor,
    /// [V, C]; the same tensor as `embed` when tied.
    pub lm_head: Tensor,
    /// RoPE inverse frequencies [HS/2].
    pub inv_freq: Tensor,
    /// Ones [rows, 1] for the bias add (a K = 1 GEMM), grown on demand.
    ones: std::sync::Mutex<Option<Tensor>>,
}

impl Weights {
    /// Uploads every tensor of `ck` the config needs (checked against
    /// [`ModelConfig::expected_tensors`]).
    pub fn upload(gpu: &Gpu, ck: &Checkpoint) -> Result<Weights> {
        let cfg = ck.config.clone();
        cfg.check()
            .map_err(|m| Error::Invalid(format!("model config: {m}")))?;
        for spec in cfg.expected_tensors() {
            let t = ck.tensor(&spec.name)?;
            if t.shape != spec.shape {
                return Err(Error::shape(
                    "model",
                    format!(
                        "{} is {:?}, the config needs {:?}",
                        spec.name, t.shape, spec.shape
                    ),
                ));
            }
        }
        let up = |name: &str| -> Result<Tensor> {
            let t = ck.tensor(name)?;
            gpu.upload(&t.shape, &t.data)
        };
        let opt = |name: String, present: bool| -> Result<Option<Tensor>> {
            if present {
                up(&name).map(Some)
            } else {
                Ok(None)
            }
        };
        let mut layers = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let n = |s: &str| format!("layers.{i}.{s}");
            layers.push(LayerWeights {
                attn_norm: up(&n("attn_norm"))?,
                q: up(&n("q"))?,
                k: up(&n("k"))?,
                v: up(&n("v"))?,
                o: up(&n("o"))?,
                q_bias: opt(n("q_bias"), cfg.qkv_bias)?,
                k_bias: opt(n("k_bias"), cfg.qkv_bias)?,
                v_bias: opt(n("v_bias"), cfg.qkv_bias)?,
                post_attn_norm: opt(n("post_attn_norm"), cfg.post_norms)?,
                mlp_norm: up(&n("mlp_norm"))?,
                gate: up(&n("gate"))?,
                up: up(&n("up"))?,
                down: up(&n("down"))?,
                post_mlp_norm: opt(n("post_mlp_norm"), cfg.post_norms)?,
            });
        }
        let embed = up("embed")?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            up("lm_head")?
        };
        let inv: Vec<f32> = cfg.rope_inv_freq().iter().map(|&f| f as f32).collect();
        Ok(Weights {
            inv_freq: gpu.upload(&[inv.len()], &inv)?,
            final_norm: up("final_norm")?,
            embed,
            lm_head,
            layers,
            config: cfg,
            ones: std::sync::Mutex::new(None),
        })
    }

    /// The RMSNorm constants of this model.
    pub fn norm(&self) -> RmsNorm {
        RmsNorm {
            eps: self.config.rms_norm_eps,
            unit_offset: self.config.norm_weight_offset,
        }
    }

    /// The attention shapes of layer `layer` for `batch` sequences of `seq` new tokens.
    pub fn attention(&self, layer: usize, batch: usize, seq: usize) -> Attention {
        let c = &self.config;
        Attention {
            batch,
            seq,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            head_size: c.head_dim,
            scale: c.attn_scale(),
            window: c.layer_window(layer),
            softcap: c.attn_logit_softcapping,
        }
    }

    fn ones(&self, gpu: &Gpu, rows: usize) -> Result<Tensor> {
        let mut slot = self
            .ones
            .lock()
            .map_err(|_| Error::Invalid("poisoned".into()))?;
        if slot.as_ref().is_none_or(|t| t.len() < rows) {
            *slot = Some(gpu.upload(&[rows, 1], &vec![1.0; rows])?);
        }
        slot.as_ref()
            .expect("set above")
            .view(0, rows)?
            .reshape(&[rows, 1])
    }

    /// y += 1·biasᵀ row-wise, as a K = 1 GEMM (no broadcast kernel needed).
    fn add_bias(&self, gpu: &Gpu, bias: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
        let rows = y.len() / bias.len();
        let ones = self.ones(gpu, rows)?;
        let b = bias.reshape(&[bias.len(), 1])?;
        matmul_nt(gpu, &ones, &b, &y.reshape(&[rows, bias.len()])?, 1.0)
    }

    /// Replaces each adapted projection's weight by its merge (W0 ⊙ (1 + s·M) or
    /// W0 + s·M): inference without adapter cost. W0 is not modified in place; the
    /// merged weight is a new tensor, and the adapters are no longer needed.
    pub fn merge(&mut self, gpu: &Gpu, adapters: &Adapters) -> Result<()> {
        let mut ds = Vec::new();
        for (l, layer) in adapters.layers.iter().enumerate() {
            for (name, ad) in layer {
                let w0 = self.layers[l].projection(name)?.clone();
                let merged = gpu.zeros(w0.shape())?;
                ds.extend(ad.merge(gpu, &w0, &merged)?);
                *self.layers[l].projection_mut(name)? = merged;
            }
        }
        let mut rec = crate::gpu::Recorder::new();
        rec.run_all(&ds);
        gpu.run(&rec)
    }
}

/// Adapters on a chosen set of projections of every layer.
pub struct Adapters {
    pub spec: AdapterSpec,
    /// Projection names, in [`PROJECTIONS`] order.
    pub targets: Vec<String>,
    /// Per layer: projection name → adapter.
    pub layers: Vec<BTreeMap<String, AdaptedLinear>>,
}

impl Adapters {
    /// Parses target names ("q,v", "all", or a list): unknown names are an error.
    pub fn parse_targets(names: &[&str]) -> Result<Vec<String>> {
        let mut set = Vec::new();
        for n in names {
            for part in n.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if part == "all" {
                    set.extend(PROJECTIONS.iter().map(|s| s.to_string()));
                } else if let Some(p) = PROJECTIONS.iter().find(|&&p| p == part) {
                    set.push(p.to_string());
                } else {
                    return Err(unknown_projection(part));
                }
            }
        }
        let ordered: Vec<String> = PROJECTIONS
            .iter()
            .filter(|p| set.iter().any(|s| s == *p))
            .map(|s| s.to_string())
            .collect();
        if ordered.is_empty() {
            return Err(Error::Invalid("no adapter targets given".into()));
        }
        Ok(ordered)
    }

    /// Fresh adapters (ΔW = 0, initialised by the kind from `seed`) on `targets` of every
    /// layer.
    pub fn new(
        gpu: &Gpu,
        weights: &Weights,
        spec: AdapterSpec,
        targets: &[&str],
        seed: u64,
    ) -> Result<Adapters> {
        let targets = Self::parse_targets(targets)?;
        let mut layers = Vec::new();
        for (l, lw) in weights.layers.iter().enumerate() {
            let mut map = BTreeMap::new();
            for (j, t) in targets.iter().enumerate() {
                let w = lw.projection(t)?;
                let name = format!("layers.{l}.{t}");
                let s = seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add((l * PROJECTIONS.len() + j) as u64);
                map.insert(t.clone(), AdaptedLinear::new(gpu, spec, &name, w, s)?);
            }
            layers.push(map);
        }
        Ok(Adapters {
            spec,
            targets,
            layers,
        })
    }

    /// The adapter on projection `proj` of layer `layer`, if any.
    pub fn get(&self, layer: usize, proj: &str) -> Option<&AdaptedLinear> {
        self.layers.get(layer).and_then(|m| m.get(proj))
    }

    /// True when `proj` carries adapters.
    pub fn has(&self, proj: &str) -> bool {
        self.targets.iter().any(|t| t == proj)
    }

    /// Every (name, adapter) pair, named `layers.{i}.{proj}`.
    pub fn iter(&self) -> impl Iterator<Item = (String, &AdaptedLinear)> {
        self.layers
            .iter()
            .enumerate()
            .flat_map(|(l, m)| m.iter().map(move |(p, a)| (format!("layers.{l}.{p}"), a)))
    }
}

/// y = x·Wᵀ, through the adapter when there is one.
pub fn linear(
    gpu: &Gpu,
    w: &Tensor,
    adapter: Option<&AdaptedLinear>,
    x: &Tensor,
    y: &Tensor,
) -> Result<Vec<Dispatch>> {
    match adapter {
        Some(a) => a.forward(gpu, w, x, y),
        None => matmul_nt(gpu, x, w, y, 0.0),
    }
}

/// One layer's activations for N rows (those the backward reads are all kept).
pub struct LayerActs {
    pub h1: Tensor,
    pub q: Tensor,
    pub k: Tensor,
    pub v: Tensor,
    pub att: Tensor,
    pub lse: Tensor,
    pub a: Tensor,
    pub a2: Tensor,
    pub xmid: Tensor,
    pub h2: Tensor,
    pub g: Tensor,
    pub u: Tensor,
    pub m: Tensor,
    pub d: Tensor,
    pub d2: Tensor,
}

impl LayerActs {
    pub fn new(gpu: &Gpu, cfg: &ModelConfig, rows: usize) -> Result<LayerActs> {
        let (c, f) = (cfg.hidden_size, cfg.intermediate_size);
        let (qd, kvd) = (cfg.q_dim(), cfg.kv_dim());
        let post = cfg.post_norms;
        // Without post-norms a2 / d2 are a / d: a 1-element placeholder saves memory.
        let maybe = |n: usize| {
            if post {
                gpu.zeros(&[rows, n])
            } else {
                gpu.zeros(&[1])
            }
        };
        Ok(LayerActs {
            h1: gpu.zeros(&[rows, c])?,
            q: gpu.zeros(&[rows, qd])?,
            k: gpu.zeros(&[rows, kvd])?,
            v: gpu.zeros(&[rows, kvd])?,
            att: gpu.zeros(&[rows, qd])?,
            lse: gpu.zeros(&[rows, cfg.num_heads])?,
            a: gpu.zeros(&[rows, c])?,
            a2: maybe(c)?,
            xmid: gpu.zeros(&[rows, c])?,
            h2: gpu.zeros(&[rows, c])?,
            g: gpu.zeros(&[rows, f])?,
            u: gpu.zeros(&[rows, f])?,
            m: gpu.zeros(&[rows, f])?,
            d: gpu.zeros(&[rows, c])?,
            d2: maybe(c)?,
        })
    }
}

/// How attention sees its keys.
pub enum AttnMode<'a> {
    /// Keys are the same T positions (training, scoring without a cache).
    Train,
    /// New keys are appended to the layer's cache at `starts` and attention reads it.
    Cached {
        k_cache: &'a Tensor,
        v_cache: &'a Tensor,
        starts: &'a Tensor,
    },
}

/// The forward of layer `l` from `x` into `out` ([N, C] each, N = batch·seq).
#[allow(clippy::too_many_arguments)]
pub fn layer_forward(
    gpu: &Gpu,
    w: &Weights,
    adapters: Option<&Adapters>,
    l: usize,
    batch: usize,
    seq: usize,
    x: &Tensor,
    acts: &LayerActs,
    out: &Tensor,
    mode: AttnMode,
) -> Result<Vec<Dispatch>> {
    let cfg = &w.config;
    let lw = &w.layers[l];
    let norm = w.norm();
    let ad = |p: &str| adapters.and_then(|a| a.get(l, p));
    let mut ds = rmsnorm::forward(gpu, &norm, x, &lw.attn_norm, &acts.h1)?;
    for (p, wt, bias, y) in [
        ("q", &lw.q, &lw.q_bias, &acts.q),
        ("k", &lw.k, &lw.k_bias, &acts.k),
        ("v", &lw.v, &lw.v_bias, &acts.v),
    ] {
        ds.extend(linear(gpu, wt, ad(p), &acts.h1, y)?);
        if let Some(b) = bias {
            ds.extend(w.add_bias(gpu, b, y)?);
        }
    }
    let att = w.attention(l, batch, seq);
    let hs = cfg.head_dim;
    match mode {
        AttnMode::Train => {
            ds.extend(rope::forward(gpu, &acts.q, &w.inv_freq, None, seq, hs)?);
            ds.extend(rope::forward(gpu, &acts.k, &w.inv_freq, None, seq, hs)?);
            ds.extend(attention::forward(
                gpu, &att, &acts.q, &acts.k, &acts.v, &acts.att, &acts.lse,
            )?);
        }
        AttnMode::Cached {
            k_cache,
            v_cache,
            starts,
        } => {
            ds.extend(rope::forward(
                gpu,
                &acts.q,
                &w.inv_freq,
                Some(starts),
                seq,
                hs,
            )?);
            ds.extend(rope::forward(
                gpu,
                &acts.k,
                &w.inv_freq,
                Some(starts),
                seq,
                hs,
            )?);
            ds.extend(attention::cache_write(gpu, &att, &acts.k, k_cache, starts)?);
            ds.extend(attention::cache_write(gpu, &att, &acts.v, v_cache, starts)?);
            ds.extend(attention::forward_cached(
                gpu, &att, &acts.q, k_cache, v_cache, starts, &acts.att,
            )?);
        }
    }
    ds.extend(linear(gpu, &lw.o, ad("o"), &acts.att, &acts.a)?);
    let a_res = match &lw.post_attn_norm {
        Some(pn) => {
            ds.extend(rmsnorm::forward(gpu, &norm, &acts.a, pn, &acts.a2)?);
            &acts.a2
        }
        None => &acts.a,
    };
    ds.extend(elementwise::add(gpu, x, a_res, &acts.xmid)?);
    ds.extend(rmsnorm::forward(
        gpu,
        &norm,
        &acts.xmid,
        &lw.mlp_norm,
        &acts.h2,
    )?);
    ds.extend(linear(gpu, &lw.gate, ad("gate"), &acts.h2, &acts.g)?);
    ds.extend(linear(gpu, &lw.up, ad("up"), &acts.h2, &acts.u)?);
    ds.extend(activation::glu_forward(
        gpu,
        cfg.hidden_activation,
        &acts.g,
        &acts.u,
        &acts.m,
    )?);
    ds.extend(linear(gpu, &lw.down, ad("down"), &acts.m, &acts.d)?);
    let d_res = match &lw.post_mlp_norm {
        Some(pn) => {
            ds.extend(rmsnorm::forward(gpu, &norm, &acts.d, pn, &acts.d2)?);
            &acts.d2
        }
        None => &acts.d,
    };
    ds.extend(elementwise::add(gpu, &acts.xmid, d_res, out)?);
    Ok(ds)
}

/// The embedding lookup of `ids` [N] into `x` [N, C], scaled by √C for Gemma.
pub fn embed(gpu: &Gpu, w: &Weights, ids: &Tensor, x: &Tensor) -> Result<Vec<Dispatch>> {
    embedding::forward(gpu, &w.embed, ids, x, w.config.embedding_scale())
}
