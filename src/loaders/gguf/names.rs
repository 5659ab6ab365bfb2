//! What llama.cpp's GGUF conventions mean in boha's terms: tensor names, the row
//! permutation its converter applies to Llama's q/k weights, and the config keys.

use crate::loaders::bad_file;
use crate::model::{Activation, Architecture, ModelConfig, RopeScaling};
use crate::Result;

use super::reader::Metadata;

/// What a GGUF tensor name is to boha.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GgufName {
    /// A model tensor under boha's name.
    Ours(String),
    /// `rope_freqs.weight`: llama.cpp's precomputed Llama-3 RoPE frequency divisors.
    RopeFreqs,
}

/// boha's name for a GGUF tensor name, or `None` when it is not one of ours.
pub fn boha_name(gguf: &str) -> Option<GgufName> {
    let ours = |s: &str| Some(GgufName::Ours(s.to_string()));
    match gguf {
        "token_embd.weight" => return ours("embed"),
        "output_norm.weight" => return ours("final_norm"),
        "output.weight" => return ours("lm_head"),
        "rope_freqs.weight" => return Some(GgufName::RopeFreqs),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let n: usize = layer.parse().ok()?;
    if n.to_string() != layer {
        return None;
    }
    let part = match part {
        "attn_norm.weight" => "attn_norm",
        "attn_q.weight" => "q",
        "attn_k.weight" => "k",
        "attn_v.weight" => "v",
        "attn_output.weight" => "o",
        "attn_q.bias" => "q_bias",
        "attn_k.bias" => "k_bias",
        "attn_v.bias" => "v_bias",
        "ffn_norm.weight" => "mlp_norm",
        "ffn_gate.weight" => "gate",
        "ffn_up.weight" => "up",
        "ffn_down.weight" => "down",
        _ => return None,
    };
    Some(GgufName::Ours(format!("layers.{n}.{part}")))
}

/// The GGUF name of one of boha's tensor names (`embed` → `token_embd.weight`,
/// `layers.3.q` → `blk.3.attn_q.weight`, …); `None` for a name llama.cpp's llama and
/// qwen2 architectures have no tensor for (Gemma-2's extra norms). The inverse of
/// [`boha_name`].
pub fn gguf_name(ours: &str) -> Option<String> {
    match ours {
        "embed" => return Some("token_embd.weight".into()),
        "final_norm" => return Some("output_norm.weight".into()),
        "lm_head" => return Some("output.weight".into()),
        _ => {}
    }
    let (layer, part) = ours.strip_prefix("layers.")?.split_once('.')?;
    let n: usize = layer.parse().ok()?;
    if n.to_string() != layer {
        return None;
    }
    let part = match part {
        "attn_norm" => "attn_norm.weight",
        "q" => "attn_q.weight",
        "k" => "attn_k.weight",
        "v" => "attn_v.weight",
        "o" => "attn_output.weight",
        "q_bias" => "attn_q.bias",
        "k_bias" => "attn_k.bias",
        "v_bias" => "attn_v.bias",
        "mlp_norm" => "ffn_norm.weight",
        "gate" => "ffn_gate.weight",
        "up" => "ffn_up.weight",
        "down" => "ffn_down.weight",
        _ => return None,
    };
    Some(format!("blk.{n}.{part}"))
}

/// llama.cpp's converter reorders the rows of Llama's q and k projections (and their
/// biases) so that its interleaved-pair RoPE equals Hugging Face's rotate-half RoPE:
/// within each head of `hs` rows, HF row `s·hs/2 + j` (s ∈ {0, 1}, j < hs/2) is stored at
/// row `2j + s`. This puts them back. `data` is [rows, cols] row-major.
pub fn unpermute_rows<T: Copy + Default>(
    data: &[T],
    rows: usize,
    cols: usize,
    n_head: usize,
) -> Option<Vec<T>> {
    permute_impl(data, rows, cols, n_head, true)
}

/// The converter's permutation (HF → GGUF order); the inverse of [`unpermute_rows`].
pub fn permute_rows(data: &[f32], rows: usize, cols: usize, n_head: usize) -> Option<Vec<f32>> {
    permute_impl(data, rows, cols, n_head, false)
}

fn permute_impl<T: Copy + Default>(
    data: &[T],
    rows: usize,
    cols: usize,
    n_head: usize,
    undo: bool,
) -> Option<Vec<T>> {
    if n_head == 0
        || !rows.is_multiple_of(n_head)
        || !(rows / n_head).is_multiple_of(2)
        || data.len() != rows.checked_mul(cols)?
    {
        return None;
    }
    let hs = rows / n_head;
    let mut out = vec![T::default(); data.len()];
    for h in 0..n_head {
        for s in 0..2 {
            for j in 0..hs / 2 {
                let hf = h * hs + s * hs / 2 + j;
                let gg = h * hs + 2 * j + s;
                let (src, dst) = if undo { (gg, hf) } else { (hf, gg) };
                out[dst * cols..(dst + 1) * cols]
                    .copy_from_slice(&data[src * cols..(src + 1) * cols]);
            }
        }
    }
    Some(out)
}

/// GGUF metadata → [`ModelConfig`] for `general.architecture` "llama" (Llama, Mistral,
/// SmolLM, …) or "qwen2".
///
/// GGUF has no tie flag: this returns `tie_word_embeddings = false`, and the loader sets
/// it when the file has no `output.weight`. Llama-3 RoPE scaling lives in the
/// `rope_freqs.weight` tensor, which the loader also reads.
pub fn config_from_metadata(m: &Metadata) -> Result<ModelConfig> {
    let arch_name = m.str("general.architecture")?;
    let arch = match arch_name {
        "llama" => Architecture::Llama,
        "qwen2" => Architecture::Qwen2,
        other => {
            return Err(bad_file(
                &m.path,
                format!("unsupported general.architecture \"{other}\""),
            ))
        }
    };
    let k = |s: &str| format!("{arch_name}.{s}");
    let err = |msg: String| bad_file(&m.path, msg);

    let hidden_size = m.usize(&k("embedding_length"))?;
    let num_heads = m.usize(&k("attention.head_count"))?;
    let num_kv_heads = m
        .opt_usize(&k("attention.head_count_kv"))?
        .unwrap_or(num_heads);
    let head_dim = match m.opt_usize(&k("attention.key_length"))? {
        Some(d) => d,
        None if num_heads > 0 && hidden_size % num_heads == 0 => hidden_size / num_heads,
        None => {
            return Err(err(format!(
                "{} {hidden_size} is not a multiple of {} {num_heads}",
                k("embedding_length"),
                k("attention.head_count")
            )))
        }
    };
    if let Some(v) = m.opt_usize(&k("attention.value_length"))? {
        if v != head_dim {
            return Err(err(format!(
                "unsupported {} {v} (differs from the key length {head_dim})",
                k("attention.value_length")
            )));
        }
    }
    if let Some(r) = m.opt_usize(&k("rope.dimension_count"))? {
        if r != head_dim {
            return Err(err(format!(
                "unsupported {} {r} (partial rotary; head size is {head_dim})",
                k("rope.dimension_count")
            )));
        }
    }

    let scaling_type = m.opt_str(&k("rope.scaling.type"))?;
    let factor = m.opt_f64(&k("rope.scaling.factor"))?;
    let rope_scaling = match (scaling_type, factor, m.opt_f64(&k("rope.scale_linear"))?) {
        (None | Some("none"), _, None) => None,
        (None | Some("none"), _, Some(f)) | (Some("linear"), Some(f), _) => {
            Some(RopeScaling::Linear { factor: f as f32 })
        }
        (Some("linear"), None, _) => {
            return Err(err(format!(
                "{} is linear but {} is missing",
                k("rope.scaling.type"),
                k("rope.scaling.factor")
            )))
        }
        (Some(other), _, _) => {
            return Err(err(format!(
                "unsupported {} \"{other}\"",
                k("rope.scaling.type")
            )))
        }
    };

    let vocab_size = match m.opt_usize(&k("vocab_size"))? {
        Some(v) => v,
        None => m
            .opt_array("tokenizer.ggml.tokens")?
            .map(|a| a.len())
            .ok_or_else(|| {
                err(format!(
                    "neither {} nor tokenizer.ggml.tokens is present",
                    k("vocab_size")
                ))
            })?,
    };

    let mut eos_token_ids = Vec::new();
    for key in [
        "tokenizer.ggml.eos_token_id",
        "tokenizer.ggml.eot_token_id",
        "tokenizer.ggml.eom_token_id",
    ] {
        if let Some(id) = m.opt_u32(key)? {
            crate::loaders::push_unique(&mut eos_token_ids, id);
        }
    }

    let config = ModelConfig {
        architecture: arch,
        vocab_size,
        hidden_size,
        intermediate_size: m.usize(&k("feed_forward_length"))?,
        num_layers: m.usize(&k("block_count"))?,
        num_heads,
        num_kv_heads,
        head_dim,
        rope_theta: m.opt_f64(&k("rope.freq_base"))?.unwrap_or(10000.0) as f32,
        rope_scaling,
        rms_norm_eps: m
            .opt_f64(&k("attention.layer_norm_rms_epsilon"))?
            .unwrap_or(1e-5) as f32,
        tie_word_embeddings: false,
        max_position_embeddings: m.opt_usize(&k("context_length"))?.unwrap_or(2048),
        sliding_window: m.opt_usize(&k("attention.sliding_window"))?,
        alternating_sliding_window: false,
        hidden_activation: Activation::Silu,
        norm_weight_offset: false,
        scale_embeddings: false,
        attn_logit_softcapping: None,
        final_logit_softcapping: None,
        query_pre_attn_scalar: None,
        qkv_bias: arch == Architecture::Qwen2,
        post_norms: false,
        bos_token_id: m.opt_u32("tokenizer.ggml.bos_token_id")?,
        eos_token_ids,
    };
    config.check().map_err(err)?;
    Ok(config)
}

/// Recognizes llama.cpp's `rope_freqs` (per-pair divisors of the RoPE frequencies) as
/// Llama-3 scaling. The converter writes them from `factor`, `low_freq_factor` 1,
/// `high_freq_factor` 4 and an original context of 8192 unless the model says
/// otherwise; boha accepts the tensor only if those parameters reproduce it.
pub fn llama3_from_rope_freqs(config: &ModelConfig, divisors: &[f32]) -> Option<RopeScaling> {
    if divisors.len() != config.head_dim / 2 {
        return None;
    }
    let (lo, hi, old) = (1.0f64, 4.0f64, 8192.0f64);
    // Solve for `factor` from the lowest frequency (the last pair): its divisor is
    // `factor` past the low-frequency wavelength, 1 / ((1 − s)/factor + s) on the ramp,
    // and 1 (any factor fits) below it. Every pair is then checked against the result.
    let plain_freqs = ModelConfig {
        rope_scaling: None,
        ..config.clone()
    }
    .rope_inv_freq();
    let (&last_freq, &last_div) = (plain_freqs.last()?, divisors.last()?);
    let wavelen = 2.0 * std::f64::consts::PI / last_freq;
    let d = last_div as f64;
    let factor = if wavelen > old / lo {
        d
    } else if wavelen >= old / hi {
        let s = (old / wavelen - lo) / (hi - lo);
        (1.0 - s) / (1.0 / d - s)
    } else {
        1.0
    };
    if !(factor.is_finite() && factor >= 1.0) {
        return None;
    }
    let scaling = RopeScaling::Llama3 {
        factor: factor as f32,
        low_freq_factor: lo as f32,
        high_freq_factor: hi as f32,
        original_max_position_embeddings: old as usize,
    };
    let plain = ModelConfig {
        rope_scaling: None,
        ..config.clone()
    };
    let scaled = ModelConfig {
        rope_scaling: Some(scaling),
        ..config.clone()
    };
    let fits = plain
        .rope_inv_freq()
        .iter()
        .zip(scaled.rope_inv_freq())
        .zip(divisors)
        .all(|((p, s), &d)| ((p / s) - d as f64).abs() <= 1e-3 * d.abs().max(1.0) as f64);
    fits.then_some(scaling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_names() {
        assert_eq!(
            boha_name("blk.7.attn_k.weight"),
            Some(GgufName::Ours("layers.7.k".into()))
        );
        assert_eq!(
            boha_name("blk.0.ffn_norm.weight"),
            Some(GgufName::Ours("layers.0.mlp_norm".into()))
        );
        assert_eq!(
            boha_name("output.weight"),
            Some(GgufName::Ours("lm_head".into()))
        );
        assert_eq!(boha_name("blk.07.attn_k.weight"), None);
        assert_eq!(boha_name("blk.1.attn_qkv.weight"), None);
    }

    #[test]
    fn gguf_names_invert_boha_names() {
        for ours in [
            "embed",
            "final_norm",
            "lm_head",
            "layers.0.attn_norm",
            "layers.3.q",
            "layers.3.k",
            "layers.3.v",
            "layers.3.o",
            "layers.12.q_bias",
            "layers.12.k_bias",
            "layers.12.v_bias",
            "layers.1.mlp_norm",
            "layers.1.gate",
            "layers.1.up",
            "layers.1.down",
        ] {
            let g = gguf_name(ours).unwrap();
            assert_eq!(boha_name(&g), Some(GgufName::Ours(ours.into())), "{g}");
        }
        assert_eq!(gguf_name("layers.2.post_attn_norm"), None);
        assert_eq!(gguf_name("layers.02.q"), None);
        assert_eq!(gguf_name("rope.inv_freq"), None);
        let x: Vec<f32> = (0..24).map(|i| i as f32).collect();
        let p = permute_rows(&x, 8, 3, 2).unwrap();
        assert_ne!(p, x);
        assert_eq!(unpermute_rows(&p, 8, 3, 2).unwrap(), x);
    }
}
