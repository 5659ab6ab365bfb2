//! Writing a model as one GGUF file (llama.cpp's format), adapter-free: what
//! `boha merge` writes when the output is to run in llama.cpp.
//!
//! Tensors follow llama.cpp's converter (`convert_hf_to_gguf.py`): GGUF names
//! ([`crate::loaders::gguf::gguf_name`]), dims innermost first (the PyTorch shape
//! reversed), Llama's q/k rows in llama.cpp's interleaved order
//! ([`crate::loaders::gguf::permute_rows`]; the loader undoes it), no `output.weight`
//! when the embeddings are tied, Llama-3 RoPE scaling as the `rope_freqs.weight`
//! tensor. Linear weights and the embedding are F16 or Q8_0 ([`GgufOutType`]; Q8_0 by
//! llama.cpp's reference quantizer, with F16 for a matrix whose rows are not whole
//! 32-value blocks), norms and biases F32.
//!
//! Metadata (built in `model::gguf_metadata`): a GGUF source's key/values are copied as they are, with
//! `general.file_type` set to the output's and `general.alignment` to 32. A Hugging Face
//! source's are built from its [`ModelConfig`] (the exact inverse of
//! [`crate::loaders::gguf::config_from_metadata`], for the llama and qwen2
//! architectures) and its tokenizer, which must be a byte-level BPE (written as
//! `tokenizer.ggml.model` "gpt2").
//!
//! Before anything is written the metadata is read back with boha's own GGUF code: the
//! config must come back as the model's [`ModelConfig`] and a rebuilt tokenizer must
//! tokenize like the original, so the file loads back as the same model. Tensors are
//! read from the GPU one at a time and streamed into the file
//! ([`crate::loaders::gguf::writer`]), which is written atomically.

use std::collections::HashMap;
use std::path::Path;

use half::f16;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::loaders::gguf::writer::{self, TensorEntry};
use crate::loaders::gguf::{gguf_name, permute_rows, quantize, GgmlType, MetaValue};
use crate::loaders::{self, Checkpoint};
use crate::model::config::{Architecture, ModelConfig};
use crate::model::export::{merged_values, named_tensors};
use crate::model::gguf_metadata::{
    check_reads_back, config_metadata, copied_metadata, llama3_rope_freqs, tokenizer_metadata,
};
use crate::model::transformer::{Adapters, Weights};

/// The storage type of the written linear weights and embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum GgufOutType {
    /// IEEE half precision (`general.file_type` 1, MOSTLY_F16).
    F16,
    /// ggml's Q8_0 blocks: 32 values as i8 codes q with one f16 scale d = max|x| / 127,
    /// x ≈ q·d (`general.file_type` 7, MOSTLY_Q8_0).
    Q8_0,
}

impl GgufOutType {
    /// The ggml type of the linear weights.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            GgufOutType::F16 => GgmlType::F16,
            GgufOutType::Q8_0 => GgmlType::Q8_0,
        }
    }

    /// llama.cpp's `enum llama_ftype` value written as `general.file_type`.
    pub fn file_type(self) -> u32 {
        match self {
            GgufOutType::F16 => 1,
            GgufOutType::Q8_0 => 7,
        }
    }

    /// The type for a ggml weight of PyTorch shape `shape`: F32 for vectors (norms,
    /// biases), else `self`, or F16 where Q8_0's 32-value blocks do not tile a row
    /// (`shape`'s last dimension), as llama.cpp's converter falls back.
    pub fn for_shape(self, shape: &[usize]) -> GgmlType {
        match (shape.len(), self) {
            (0 | 1, _) => GgmlType::F32,
            (_, GgufOutType::Q8_0) if !shape[shape.len() - 1].is_multiple_of(32) => GgmlType::F16,
            _ => self.ggml_type(),
        }
    }
}

impl std::str::FromStr for GgufOutType {
    type Err = Error;

    /// "f16" or "q8_0" (any case).
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(GgufOutType::F16),
            "q8_0" => Ok(GgufOutType::Q8_0),
            _ => Err(Error::Invalid(format!(
                "unknown GGUF output type '{s}' (expected f16 or q8_0)"
            ))),
        }
    }
}

/// What [`write_gguf_model`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufWritten {
    /// Tensors in the file (`rope_freqs.weight` included when written).
    pub tensors: usize,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// GGUF names of the matrices written as F16 in a Q8_0 file (rows not whole blocks).
    pub f16_fallback: Vec<String>,
}

/// What [`merge_to_gguf`] did.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufMergeSummary {
    /// Adapted matrices merged into the weights.
    pub merged_matrices: usize,
    /// Tensors in the file.
    pub tensors: usize,
    /// Size of the file in bytes.
    pub file_bytes: u64,
    /// GGUF names of the matrices written as F16 in a Q8_0 file.
    pub f16_fallback: Vec<String>,
}

/// Loads the checkpoint at `model` (a Hugging Face directory or a GGUF file), attaches
/// the adapter in `adapter` (an error if it does not fit the model), merges it into the
/// weights on the GPU and writes the merged model to the file `out` as GGUF with linear
/// weights in `dtype` (see the module docs). `out` must not exist; it and the metadata
/// (architecture, tokenizer) are checked before any weight is uploaded, so a refused
/// model costs no GPU work. Nothing is left at `out` on failure.
pub fn merge_to_gguf(
    gpu: &Gpu,
    model: &Path,
    adapter: &Path,
    out: &Path,
    dtype: GgufOutType,
) -> Result<GgufMergeSummary> {
    writer::check_destination(out)?;
    let ck = loaders::load_checkpoint(model)?;
    let plan = Plan::new(&ck, &ck.config, dtype, out)?;
    let weights = Weights::upload(gpu, &ck)?;
    let adapters = Adapters::load(gpu, &weights, adapter)?;
    let merged_matrices = adapters.iter().count();
    let w = plan.write(gpu, &weights, Some(&adapters), out)?;
    Ok(GgufMergeSummary {
        merged_matrices,
        tensors: w.tensors,
        file_bytes: w.file_bytes,
        f16_fallback: w.f16_fallback,
    })
}

/// Writes `weights`, with `adapters` merged into them when given (one projection at a
/// time on the GPU, as [`crate::model::export`] does), as a GGUF file at `out`, linear
/// weights in `dtype`, with the metadata of `ck`'s source (a GGUF source's key/values,
/// or ones built from the config and tokenizer of a Hugging Face one; `ck`'s host
/// tensors are not used and may have been dropped). Atomic; an existing `out` is
/// refused.
pub fn write_gguf_model(
    gpu: &Gpu,
    weights: &Weights,
    adapters: Option<&Adapters>,
    ck: &Checkpoint,
    out: &Path,
    dtype: GgufOutType,
) -> Result<GgufWritten> {
    writer::check_destination(out)?;
    Plan::new(ck, &weights.config, dtype, out)?.write(gpu, weights, adapters, out)
}

/// Where one tensor's bytes come from.
enum Source {
    /// A weight on the GPU under boha's name; `permute` is the head count whose q/k
    /// rows go to llama.cpp's order.
    Weight {
        name: String,
        permute: Option<usize>,
    },
    /// Llama-3 RoPE divisors computed on the host.
    RopeFreqs(Vec<f32>),
}

/// Everything about the file that does not need the weights' values.
struct Plan {
    dtype: GgufOutType,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<TensorEntry>,
    sources: Vec<Source>,
}

impl Plan {
    /// Builds the metadata and tensor list for a model of config `cfg` loaded as `ck`,
    /// and checks that they read back as the same model.
    fn new(ck: &Checkpoint, cfg: &ModelConfig, dtype: GgufOutType, out: &Path) -> Result<Plan> {
        let arch = gguf_architecture(cfg, &ck.source)?;
        // What the model says about BOS/EOS lives in the checkpoint, as for
        // Hugging Face output (`crate::model::export`).
        let mut want = cfg.clone();
        want.bos_token_id = ck
            .bos_token
            .as_ref()
            .map(|(_, id)| *id)
            .or(cfg.bos_token_id);
        if !ck.eos_tokens.is_empty() {
            want.eos_token_ids = ck.eos_tokens.clone();
        }
        let rope_freqs = llama3_rope_freqs(&want)?;

        let gguf_source = ck.source.is_file()
            && ck
                .source
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        let metadata = if gguf_source {
            copied_metadata(&ck.source, dtype)?
        } else {
            let mut m = config_metadata(&want, arch, &ck.source, dtype)?;
            m.extend(tokenizer_metadata(ck, &want)?);
            m
        };
        check_reads_back(&metadata, rope_freqs.as_deref(), &want, out)?;

        let mut tensors = Vec::new();
        let mut sources = Vec::new();
        if let Some(d) = rope_freqs {
            tensors.push(TensorEntry::from_shape(
                "rope_freqs.weight",
                &[d.len()],
                GgmlType::F32,
            ));
            sources.push(Source::RopeFreqs(d));
        }
        for spec in cfg.expected_tensors() {
            let name = gguf_name(&spec.name).ok_or_else(|| {
                Error::Invalid(format!("tensor '{}' has no GGUF name", spec.name))
            })?;
            let permute = match (arch, spec.name.rsplit('.').next()) {
                ("llama", Some("q" | "q_bias")) => Some(cfg.num_heads),
                ("llama", Some("k" | "k_bias")) => Some(cfg.num_kv_heads),
                _ => None,
            };
            tensors.push(TensorEntry::from_shape(
                name,
                &spec.shape,
                dtype.for_shape(&spec.shape),
            ));
            sources.push(Source::Weight {
                name: spec.name,
                permute,
            });
        }
        Ok(Plan {
            dtype,
            metadata,
            tensors,
            sources,
        })
    }

    /// Streams the tensors of `weights` (merged with `adapters`) from the GPU into the
    /// file at `out`.
    fn write(
        &self,
        gpu: &Gpu,
        weights: &Weights,
        adapters: Option<&Adapters>,
        out: &Path,
    ) -> Result<GgufWritten> {
        let on_gpu: HashMap<String, _> = named_tensors(weights)?.into_iter().collect();
        let file_bytes = writer::write_gguf(out, &self.metadata, &self.tensors, |i, entry| {
            match &self.sources[i] {
                Source::RopeFreqs(d) => Ok(d.iter().flat_map(|v| v.to_le_bytes()).collect()),
                Source::Weight { name, permute } => {
                    let t = on_gpu.get(name).ok_or_else(|| {
                        Error::Invalid(format!("the model has no tensor '{name}'"))
                    })?;
                    let mut data = merged_values(gpu, weights, adapters, name)?;
                    if let Some(n_head) = permute {
                        let rows = t.shape()[0];
                        let cols = data.len() / rows.max(1);
                        data = permute_rows(&data, rows, cols, *n_head).ok_or_else(|| {
                                Error::Invalid(format!(
                                    "tensor '{name}' has {rows} rows, not {n_head} heads of an even size"
                                ))
                            })?;
                    }
                    encode(&entry.name, name, &data, entry.ggml_type)
                }
            }
        })?;
        let f16_fallback = self
            .tensors
            .iter()
            .filter(|t| self.dtype == GgufOutType::Q8_0 && t.ggml_type == GgmlType::F16)
            .map(|t| t.name.clone())
            .collect();
        Ok(GgufWritten {
            tensors: self.tensors.len(),
            file_bytes,
            f16_fallback,
        })
    }
}

/// llama.cpp's architecture name for `cfg`: Mistral is a Llama (with a window, as
/// llama.cpp's converter writes it); Gemma-2 has a GGUF form boha does not write.
fn gguf_architecture(cfg: &ModelConfig, source: &Path) -> Result<&'static str> {
    match cfg.architecture {
        Architecture::Llama | Architecture::Mistral => Ok("llama"),
        Architecture::Qwen2 => Ok("qwen2"),
        Architecture::Gemma2 => Err(Error::Invalid(format!(
            "{}: a Gemma-2 model cannot be written as GGUF (only the llama and qwen2 architectures)",
            source.display()
        ))),
    }
}

/// The value each element of `x` takes in `t`'s bytes; refuses values the type cannot
/// hold (non-finite merged weights, magnitudes past f16's 65504, Q8_0 scales past it),
/// naming the tensor, rather than writing a file that computes NaN.
fn encode(gguf: &str, ours: &str, x: &[f32], t: GgmlType) -> Result<Vec<u8>> {
    let refuse = |what: String| {
        Err(Error::Invalid(format!(
            "merged tensor '{gguf}' ({ours}) {what}; nothing written"
        )))
    };
    if let Some(i) = x.iter().position(|v| !v.is_finite()) {
        return refuse(format!("has a non-finite value {} at element {i}", x[i]));
    }
    match t {
        GgmlType::F32 => Ok(x.iter().flat_map(|v| v.to_le_bytes()).collect()),
        GgmlType::F16 => {
            let mut out = Vec::with_capacity(2 * x.len());
            for (i, &v) in x.iter().enumerate() {
                let h = f16::from_f32(v);
                if !h.is_finite() {
                    return refuse(format!(
                        "has {v} at element {i}, beyond F16's range (±65504)"
                    ));
                }
                out.extend(h.to_le_bytes());
            }
            Ok(out)
        }
        GgmlType::Q8_0 => {
            let Some(q) = quantize::quantize(t, x) else {
                return refuse(format!("has {} values, not whole Q8_0 blocks", x.len()));
            };
            // Each block starts with its f16 scale max|x| / 127.
            let size = t.type_size();
            if let Some(b) = q
                .chunks_exact(size)
                .position(|b| !f16::from_le_bytes([b[0], b[1]]).is_finite())
            {
                return refuse(format!(
                    "has values past ±{} in block {b}, beyond Q8_0's range",
                    65504.0 * 127.0
                ));
            }
            Ok(q)
        }
        other => refuse(format!("cannot be written as {}", other.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Activation, RopeScaling};

    fn llama() -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: 300,
            hidden_size: 64,
            intermediate_size: 96,
            num_layers: 2,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            rope_theta: 500000.0,
            rope_scaling: None,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            max_position_embeddings: 4096,
            sliding_window: None,
            alternating_sliding_window: false,
            hidden_activation: Activation::Silu,
            norm_weight_offset: false,
            scale_embeddings: false,
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
            query_pre_attn_scalar: None,
            qkv_bias: false,
            post_norms: false,
            bos_token_id: Some(1),
            eos_token_ids: vec![2, 5],
        }
    }

    /// The metadata built for a config reads back as that config through the GGUF
    /// loader's own parser, for plain, windowed, linearly scaled and Llama-3-scaled
    /// Llamas, Qwen2, and a Mistral (a windowed Llama to llama.cpp).
    #[test]
    fn gguf_config_metadata_reads_back() {
        let out = Path::new("x.gguf");
        let mut cases = vec![llama()];
        cases.push(ModelConfig {
            sliding_window: Some(64),
            architecture: Architecture::Mistral,
            ..llama()
        });
        cases.push(ModelConfig {
            rope_scaling: Some(RopeScaling::Linear { factor: 4.0 }),
            ..llama()
        });
        cases.push(ModelConfig {
            rope_scaling: Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            }),
            ..llama()
        });
        cases.push(ModelConfig {
            architecture: Architecture::Qwen2,
            qkv_bias: true,
            eos_token_ids: vec![7],
            bos_token_id: None,
            ..llama()
        });
        for cfg in cases {
            let arch = gguf_architecture(&cfg, out).unwrap();
            let mut m = config_metadata(&cfg, arch, out, GgufOutType::F16).unwrap();
            if let Some(b) = cfg.bos_token_id {
                m.push(("tokenizer.ggml.bos_token_id".into(), MetaValue::U32(b)));
            }
            for (k, &id) in ["eos", "eot", "eom"].iter().zip(&cfg.eos_token_ids) {
                m.push((format!("tokenizer.ggml.{k}_token_id"), MetaValue::U32(id)));
            }
            let freqs = llama3_rope_freqs(&cfg).unwrap();
            assert_eq!(
                freqs.is_some(),
                matches!(cfg.rope_scaling, Some(RopeScaling::Llama3 { .. }))
            );
            check_reads_back(&m, freqs.as_deref(), &cfg, out)
                .unwrap_or_else(|e| panic!("{:?}: {e}", cfg.architecture));
        }

        // What GGUF cannot say is refused, naming the problem.
        let odd = ModelConfig {
            rope_scaling: Some(RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 4096,
            }),
            ..llama()
        };
        let e = llama3_rope_freqs(&odd).unwrap_err().to_string();
        assert!(e.contains("original context 4096"), "{e}");
        let gemma = ModelConfig {
            architecture: Architecture::Gemma2,
            ..llama()
        };
        let e = gguf_architecture(&gemma, Path::new("m"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Gemma-2") && e.starts_with("invalid argument: m:"),
            "{e}"
        );
        let biased = ModelConfig {
            qkv_bias: true,
            ..llama()
        };
        let m = config_metadata(&biased, "llama", out, GgufOutType::F16).unwrap();
        let e = check_reads_back(&m, None, &biased, out)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("reads back differently") && e.contains("qkv_bias"),
            "{e}"
        );
    }

    #[test]
    fn gguf_out_types() {
        use GgufOutType::*;
        assert_eq!("Q8_0".parse::<GgufOutType>().unwrap(), Q8_0);
        assert_eq!("f16".parse::<GgufOutType>().unwrap(), F16);
        assert!("q4_0".parse::<GgufOutType>().is_err());
        assert_eq!(Q8_0.for_shape(&[10, 64]), GgmlType::Q8_0);
        assert_eq!(Q8_0.for_shape(&[64, 44]), GgmlType::F16);
        assert_eq!(Q8_0.for_shape(&[64]), GgmlType::F32);
        assert_eq!(F16.for_shape(&[10, 44]), GgmlType::F16);
        assert_eq!((F16.file_type(), Q8_0.file_type()), (1, 7));
        let e = encode("a", "b", &[1e5, 0.0], GgmlType::F16)
            .unwrap_err()
            .to_string();
        assert!(e.contains("F16's range") && e.contains("'a' (b)"), "{e}");
        let e = encode("a", "b", &[f32::NAN], GgmlType::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("non-finite"), "{e}");
        let mut big = vec![0f32; 32];
        big[3] = 1e10;
        let e = encode("a", "b", &big, GgmlType::Q8_0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Q8_0's range"), "{e}");
    }
}
