//! A Llama-family decoder's state on the GPU: its frozen weights (bound by name into
//! the op graph, `graph::builder` describes the layers) and its adapters, one
//! [`AdaptedLinear`] per adapted projection of every layer.

use std::collections::BTreeMap;

use crate::adapters::layer::AdaptedLinear;
use crate::adapters::AdapterSpec;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::loaders::Checkpoint;
use crate::model::config::ModelConfig;
use crate::ops::attention::Attention;
use crate::ops::gemm::matmul_nt;
use crate::ops::rmsnorm::RmsNorm;

/// Values read, converted and uploaded at a time (16 MiB in f32): the host holds about
/// this much of a frozen weight while it is uploaded.
const UPLOAD_CHUNK_VALUES: usize = 1 << 22;

/// The seven projections an adapter may attach to, in boha's names.
pub const PROJECTIONS: [&str; 7] = ["q", "k", "v", "o", "gate", "up", "down"];

/// One layer's frozen weights (linear weights [out, in]).
#[derive(Clone)]
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
    /// \[C\]
    pub final_norm: Tensor,
    /// [V, C]; the same tensor as `embed` when tied.
    pub lm_head: Tensor,
    /// RoPE inverse frequencies [HS/2].
    pub inv_freq: Tensor,
    /// Ones [rows, 1] for the bias add (a K = 1 GEMM), grown on demand.
    ones: std::sync::Mutex<Option<Tensor>>,
}

/// A clone shares the GPU tensors (a [`Tensor`] is a view of shared storage): a second
/// user of the same model, such as a chat session beside a trainer, costs no upload.
impl Clone for Weights {
    fn clone(&self) -> Weights {
        let ones = self.ones.lock().unwrap_or_else(|p| p.into_inner()).clone();
        Weights {
            config: self.config.clone(),
            embed: self.embed.clone(),
            layers: self.layers.clone(),
            final_norm: self.final_norm.clone(),
            lm_head: self.lm_head.clone(),
            inv_freq: self.inv_freq.clone(),
            ones: std::sync::Mutex::new(ones),
        }
    }
}

impl Weights {
    /// The frozen matrices: the embedding, every layer's projections, the LM head (the
    /// embedding again when tied).
    pub fn frozen_tensors(&self) -> impl Iterator<Item = &Tensor> {
        let projections = self
            .layers
            .iter()
            .flat_map(|l| PROJECTIONS.iter().filter_map(move |p| l.projection(p).ok()));
        std::iter::once(&self.embed)
            .chain(projections)
            .chain(std::iter::once(&self.lm_head))
    }

    /// Uploads every tensor of `ck` the config needs (checked against
    /// [`ModelConfig::expected_tensors`]). Linear weights, the embedding and the LM head
    /// are stored as [`Gpu::base_dtype`] says (what the file holds by default); norm
    /// weights and biases as f32.
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
        // A few rows at a time: read from the file, uploaded, the host bytes dropped and
        // the upload's staging memory released before the next rows are read.
        let up = |name: &str| -> Result<Tensor> {
            let t = ck.tensor(name)?;
            let out = gpu.upload(&t.shape, &t.to_f32()?)?;
            gpu.finish_uploads()?;
            Ok(out)
        };
        let frozen = |name: &str| -> Result<Tensor> {
            let t = ck.tensor(name)?;
            let dtype = gpu.base_dtype().resolve(t.stored);
            let rows = t.rows()?;
            let out = if t.file_holds(dtype) {
                // The file's own bytes: bit for bit what llama.cpp reads.
                gpu.upload_rows(&t.shape, dtype, UPLOAD_CHUNK_VALUES, |s, n| rows.raw(s, n))
            } else {
                gpu.upload_rows(&t.shape, dtype, UPLOAD_CHUNK_VALUES, |s, n| {
                    dtype.encode(&rows.get(s, n)?).ok_or_else(|| {
                        Error::Invalid(format!("{dtype} cannot encode {name}'s values"))
                    })
                })
            }
            .map_err(|e| Error::Invalid(format!("{name}: {e}")))?;
            gpu.finish_uploads()?;
            Ok(out)
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
                q: frozen(&n("q"))?,
                k: frozen(&n("k"))?,
                v: frozen(&n("v"))?,
                o: frozen(&n("o"))?,
                q_bias: opt(n("q_bias"), cfg.qkv_bias)?,
                k_bias: opt(n("k_bias"), cfg.qkv_bias)?,
                v_bias: opt(n("v_bias"), cfg.qkv_bias)?,
                post_attn_norm: opt(n("post_attn_norm"), cfg.post_norms)?,
                mlp_norm: up(&n("mlp_norm"))?,
                gate: frozen(&n("gate"))?,
                up: frozen(&n("up"))?,
                down: frozen(&n("down"))?,
                post_mlp_norm: opt(n("post_mlp_norm"), cfg.post_norms)?,
            });
        }
        let embed = frozen("embed")?;
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            frozen("lm_head")?
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

    /// The tensor a graph value named `name` binds to: `embed`, `final_norm`,
    /// `lm_head`, `rope.inv_freq` or `layers.{i}.{weight}` (projections, biases, norms).
    pub fn tensor(&self, name: &str) -> Option<&Tensor> {
        match name {
            "embed" => return Some(&self.embed),
            "final_norm" => return Some(&self.final_norm),
            "lm_head" => return Some(&self.lm_head),
            "rope.inv_freq" => return Some(&self.inv_freq),
            _ => {}
        }
        let rest = name.strip_prefix("layers.")?;
        let (i, field) = rest.split_once('.')?;
        let lw = self.layers.get(i.parse::<usize>().ok()?)?;
        match field {
            "attn_norm" => Some(&lw.attn_norm),
            "mlp_norm" => Some(&lw.mlp_norm),
            "q_bias" => lw.q_bias.as_ref(),
            "k_bias" => lw.k_bias.as_ref(),
            "v_bias" => lw.v_bias.as_ref(),
            "post_attn_norm" => lw.post_attn_norm.as_ref(),
            "post_mlp_norm" => lw.post_mlp_norm.as_ref(),
            p => lw.projection(p).ok(),
        }
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
    pub(crate) fn add_bias(&self, gpu: &Gpu, bias: &Tensor, y: &Tensor) -> Result<Vec<Dispatch>> {
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

/// Adapters on a chosen set of projections of every layer. A clone shares the factors'
/// GPU storage: a chat session built on a trainer's clone sees every update.
#[derive(Clone)]
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
        let mut layers = vec![BTreeMap::new(); weights.layers.len()];
        for (l, t, name, s) in Self::slots(&targets, weights.layers.len(), seed) {
            let w = weights.layers[l].projection(&t)?;
            let ad = AdaptedLinear::new(gpu, spec, &name, w, s)?;
            layers[l].insert(t, ad);
        }
        Ok(Adapters {
            spec,
            targets,
            layers,
        })
    }

    /// [`Adapters::new`] for callers that cannot block (the browser): a kind that
    /// initialises from W0 (ABBA) reads it back without blocking.
    pub async fn new_async(
        gpu: &Gpu,
        weights: &Weights,
        spec: AdapterSpec,
        targets: &[&str],
        seed: u64,
    ) -> Result<Adapters> {
        let targets = Self::parse_targets(targets)?;
        let mut layers = vec![BTreeMap::new(); weights.layers.len()];
        for (l, t, name, s) in Self::slots(&targets, weights.layers.len(), seed) {
            let w = weights.layers[l].projection(&t)?;
            let ad = AdaptedLinear::new_async(gpu, spec, &name, w, s).await?;
            layers[l].insert(t, ad);
        }
        Ok(Adapters {
            spec,
            targets,
            layers,
        })
    }

    /// Every adapted matrix of `layers` layers: (layer, projection, name, its seed). The
    /// seeds differ per matrix and depend only on `seed` and the matrix's place.
    fn slots(targets: &[String], layers: usize, seed: u64) -> Vec<(usize, String, String, u64)> {
        let mut out = Vec::new();
        for l in 0..layers {
            for (j, t) in targets.iter().enumerate() {
                let s = seed
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add((l * PROJECTIONS.len() + j) as u64);
                out.push((l, t.clone(), format!("layers.{l}.{t}"), s));
            }
        }
        out
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
