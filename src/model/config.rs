//! `ModelConfig`: the hyper-parameters of a Llama-family decoder in boha's own names.
//!
//! Shape letters: V vocabulary, C hidden width, F feed-forward width, L layers,
//! NH query heads, NKV key/value heads, HS head size.
//!
//! The four families differ only in a few switches:
//! - Llama / Mistral: RMSNorm `x / rms(x) · w`, SiLU-gated MLP, rotate-half RoPE.
//!   Mistral may use a sliding attention window on every layer.
//! - Qwen2: Llama plus biases on the q, k and v projections.
//! - Gemma-2: RMSNorm in the `(1 + w)` form, GELU (tanh approximation) gate, embeddings
//!   scaled by √C, extra norms after attention and after the MLP, attention logits
//!   soft-capped (`cap · tanh(x / cap)`), final logits soft-capped, attention scaled by
//!   `query_pre_attn_scalar^-½` instead of `HS^-½`, and a sliding window on even layers.

use std::path::Path;

use crate::Result;

/// The model family; it selects the switches listed in the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    Llama,
    Mistral,
    Gemma2,
    Qwen2,
}

/// How RoPE frequencies are rescaled for long contexts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RopeScaling {
    /// Positions divided by `factor` (every frequency divided by `factor`).
    Linear { factor: f32 },
    /// Llama 3.1: low frequencies divided by `factor`, high ones kept, a smooth ramp
    /// between (wavelengths measured against `original_max_position_embeddings`).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
}

/// The MLP gate's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `x · sigmoid(x)` (Llama, Mistral, Qwen2).
    Silu,
    /// GELU with the tanh approximation, PyTorch's `gelu(x, approximate="tanh")` (Gemma-2).
    GeluTanh,
}

/// Hyper-parameters of one model, in boha's names.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// V
    pub vocab_size: usize,
    /// C
    pub hidden_size: usize,
    /// F
    pub intermediate_size: usize,
    /// L
    pub num_layers: usize,
    /// NH
    pub num_heads: usize,
    /// NKV (divides NH)
    pub num_kv_heads: usize,
    /// HS (even; RoPE rotates pairs)
    pub head_dim: usize,
    pub rope_theta: f32,
    pub rope_scaling: Option<RopeScaling>,
    pub rms_norm_eps: f32,
    /// `lm_head` is the embedding matrix (no `lm_head` tensor).
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
    /// Attention window in tokens, on the layers `sliding_window_layer` selects.
    pub sliding_window: Option<usize>,
    /// Gemma-2: the window applies to even layers only (0, 2, …); otherwise to all.
    pub alternating_sliding_window: bool,
    pub hidden_activation: Activation,
    /// RMSNorm multiplies by `(1 + w)` instead of `w` (Gemma).
    pub norm_weight_offset: bool,
    /// Embeddings are multiplied by √C after the lookup (Gemma).
    pub scale_embeddings: bool,
    /// Gemma-2: `cap · tanh(s / cap)` on attention scores before the softmax.
    pub attn_logit_softcapping: Option<f32>,
    /// Gemma-2: `cap · tanh(z / cap)` on the final logits.
    pub final_logit_softcapping: Option<f32>,
    /// Gemma-2: attention scores are scaled by `query_pre_attn_scalar^-½`.
    pub query_pre_attn_scalar: Option<f32>,
    /// q, k and v projections carry biases (Qwen2).
    pub qkv_bias: bool,
    /// Gemma-2: RMSNorms after attention and after the MLP (`post_attn_norm`,
    /// `post_mlp_norm`), before the residual add.
    pub post_norms: bool,
    pub bos_token_id: Option<u32>,
    /// Token ids that end generation (config.json's `eos_token_id` may be a list).
    pub eos_token_ids: Vec<u32>,
}

/// One tensor a model of a given config must have: boha's name and its shape
/// (linear weights in PyTorch's [out, in] layout).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    pub name: String,
    pub shape: Vec<usize>,
}

impl ModelConfig {
    /// Reads a Hugging Face `config.json` (see `crate::loaders::hf` for what is accepted).
    pub fn from_hf_json(path: &Path) -> Result<ModelConfig> {
        crate::loaders::hf::config_from_json_file(path)
    }

    /// Builds the config from GGUF metadata (`general.architecture` "llama" or "qwen2").
    pub fn from_gguf(metadata: &crate::loaders::gguf::Metadata) -> Result<ModelConfig> {
        crate::loaders::gguf::config_from_metadata(metadata)
    }

    /// The attention window of layer `layer`, if it has one.
    pub fn layer_window(&self, layer: usize) -> Option<usize> {
        if self.alternating_sliding_window && layer % 2 == 1 {
            return None;
        }
        self.sliding_window
    }

    /// Factor applied to attention scores `q·k`.
    pub fn attn_scale(&self) -> f32 {
        let d = self.query_pre_attn_scalar.unwrap_or(self.head_dim as f32);
        1.0 / d.sqrt()
    }

    /// Factor applied to embeddings after the lookup (√C for Gemma, else 1).
    ///
    /// Gemma's reference rounds √C to the activation dtype (bf16); boha keeps f32.
    pub fn embedding_scale(&self) -> f32 {
        if self.scale_embeddings {
            (self.hidden_size as f32).sqrt()
        } else {
            1.0
        }
    }

    /// NH·HS: the width of the query projection's output.
    pub fn q_dim(&self) -> usize {
        self.num_heads * self.head_dim
    }

    /// NKV·HS: the width of the key and value projections' outputs.
    pub fn kv_dim(&self) -> usize {
        self.num_kv_heads * self.head_dim
    }

    /// RoPE inverse frequencies θ_i = rope_theta^(−2i/HS) for i < HS/2, rescaled by
    /// `rope_scaling` (Linear: θ_i / factor; Llama3: as transformers'
    /// `_compute_llama3_parameters`). Position p rotates pair i by angle p·θ_i.
    pub fn rope_inv_freq(&self) -> Vec<f64> {
        crate::ops::rope::inv_freq_f64(
            self.head_dim,
            self.rope_theta as f64,
            self.rope_scaling.as_ref(),
        )
    }

    /// Checks internal consistency; returns the first problem as a message.
    pub fn check(&self) -> std::result::Result<(), String> {
        let sizes = [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
        ];
        for (name, v) in sizes {
            if v == 0 {
                return Err(format!("{name} is 0"));
            }
            // Keeps every product of two sizes far from overflow and every tensor
            // allocation bounded by what the file could hold.
            if v > 1 << 24 {
                return Err(format!("{name} {v} is implausibly large"));
            }
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            return Err(format!(
                "num_heads {} is not a multiple of num_kv_heads {}",
                self.num_heads, self.num_kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim {} is odd (RoPE rotates pairs)",
                self.head_dim
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!("rope_theta {} is not positive", self.rope_theta));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps >= 0.0) {
            return Err(format!(
                "rms_norm_eps {} is not a small positive number",
                self.rms_norm_eps
            ));
        }
        if let Some(RopeScaling::Llama3 {
            low_freq_factor,
            high_freq_factor,
            ..
        }) = self.rope_scaling
        {
            if high_freq_factor <= low_freq_factor {
                return Err(format!(
                    "rope_scaling.high_freq_factor {high_freq_factor} is not above low_freq_factor {low_freq_factor}"
                ));
            }
        }
        Ok(())
    }

    /// Every tensor this model needs, in boha's names, in load order:
    /// `embed` \[V, C\]; per layer `layers.{i}.attn_norm` \[C\], `.q` \[NH·HS, C\],
    /// `.k` / `.v` [NKV·HS, C], `.o` [C, NH·HS], optional `.q_bias` / `.k_bias` /
    /// `.v_bias`, optional `.post_attn_norm` \[C\], `.mlp_norm` \[C\], `.gate` / `.up`
    /// \[F, C\], `.down` \[C, F\], optional `.post_mlp_norm` \[C\]; `final_norm` \[C\];
    /// `lm_head` \[V, C\] unless tied.
    pub fn expected_tensors(&self) -> Vec<TensorSpec> {
        let (v, c, f) = (self.vocab_size, self.hidden_size, self.intermediate_size);
        let (qd, kvd) = (self.q_dim(), self.kv_dim());
        let mut out = vec![spec("embed", &[v, c])];
        for i in 0..self.num_layers {
            let l = |n: &str| format!("layers.{i}.{n}");
            out.push(spec(&l("attn_norm"), &[c]));
            out.push(spec(&l("q"), &[qd, c]));
            out.push(spec(&l("k"), &[kvd, c]));
            out.push(spec(&l("v"), &[kvd, c]));
            if self.qkv_bias {
                out.push(spec(&l("q_bias"), &[qd]));
                out.push(spec(&l("k_bias"), &[kvd]));
                out.push(spec(&l("v_bias"), &[kvd]));
            }
            out.push(spec(&l("o"), &[c, qd]));
            if self.post_norms {
                out.push(spec(&l("post_attn_norm"), &[c]));
            }
            out.push(spec(&l("mlp_norm"), &[c]));
            out.push(spec(&l("gate"), &[f, c]));
            out.push(spec(&l("up"), &[f, c]));
            out.push(spec(&l("down"), &[c, f]));
            if self.post_norms {
                out.push(spec(&l("post_mlp_norm"), &[c]));
            }
        }
        out.push(spec("final_norm", &[c]));
        if !self.tie_word_embeddings {
            out.push(spec("lm_head", &[v, c]));
        }
        out
    }

    /// Parameter count of the frozen model (tied embeddings counted once).
    pub fn num_parameters(&self) -> usize {
        self.expected_tensors()
            .iter()
            .map(|t| t.shape.iter().product::<usize>())
            .sum()
    }
}

fn spec(name: &str, shape: &[usize]) -> TensorSpec {
    TensorSpec {
        name: name.to_string(),
        shape: shape.to_vec(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn llama() -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: 11,
            hidden_size: 6,
            intermediate_size: 10,
            num_layers: 2,
            num_heads: 3,
            num_kv_heads: 1,
            head_dim: 2,
            rope_theta: 10000.0,
            rope_scaling: None,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            max_position_embeddings: 64,
            sliding_window: Some(4),
            alternating_sliding_window: true,
            hidden_activation: Activation::Silu,
            norm_weight_offset: false,
            scale_embeddings: false,
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
            query_pre_attn_scalar: Some(16.0),
            qkv_bias: true,
            post_norms: false,
            bos_token_id: None,
            eos_token_ids: vec![],
        }
    }

    #[test]
    fn expected_tensors_and_switches() {
        let c = llama();
        let t = c.expected_tensors();
        // embed + 2 × (norm, q, k, v, 3 biases, o, norm, gate, up, down) + final_norm.
        assert_eq!(t.len(), 1 + 2 * 12 + 1);
        let find = |n: &str| t.iter().find(|s| s.name == n).unwrap().shape.clone();
        assert_eq!(find("layers.1.k"), vec![2, 6]);
        assert_eq!(find("layers.0.o"), vec![6, 6]);
        assert_eq!(find("layers.0.down"), vec![6, 10]);
        assert!(t.iter().all(|s| s.name != "lm_head"));
        assert_eq!(c.layer_window(0), Some(4));
        assert_eq!(c.layer_window(1), None);
        assert_eq!(c.attn_scale(), 0.25);
        assert!(c.check().is_ok());
        let bad = ModelConfig {
            num_kv_heads: 2,
            ..llama()
        };
        assert!(bad.check().unwrap_err().contains("num_kv_heads 2"));
    }
}
