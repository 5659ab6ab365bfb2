//! `boha merge --model PATH --adapter DIR --out DIR [--dtype f32|f16|bf16]`: merge an
//! adapter into its model and write an adapter-free Hugging Face directory (config.json,
//! model.safetensors, tokenizer files, generation_config.json) that boha and
//! transformers both load. The weights are written in the model's own precision unless
//! `--dtype` says otherwise (a quantized GGUF gives f16). `--out` must not exist or be
//! empty; it is written atomically.
//!
//! With `--gguf`, `--out` is a GGUF file instead (llama.cpp's layout and metadata; linear
//! weights in `--dtype f16` (default) or `q8_0`), which must not exist.

use std::path::PathBuf;

use clap::Args;

use boha::gpu::DType;
use boha::model::export::{check_output_dtype, merge_to_hf};
use boha::model::export_gguf::{merge_to_gguf, GgufOutType};
use boha::Error;
use boha::Result;

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The base model: a Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    /// The adapter directory (adapter_config.json, adapter_model.safetensors).
    #[arg(long)]
    pub adapter: PathBuf,
    /// Where to write the merged model; must not exist or be an empty directory (a
    /// file that must not exist, with --gguf).
    #[arg(long)]
    pub out: PathBuf,
    /// The weights' dtype: f32, f16 or bf16. Default: the model's precision (f32, f16
    /// or bf16 as its file holds the projections; f16 for a quantized GGUF). With
    /// --gguf: f16 (default) or q8_0.
    #[arg(long)]
    pub dtype: Option<DType>,
    /// Write one GGUF file (llama.cpp's format) instead of a Hugging Face directory.
    #[arg(long)]
    pub gguf: bool,
}

/// Merges `--adapter` into `--model` on the chosen device and writes `--out`.
pub fn run(dev: &DeviceArgs, a: &MergeArgs) -> Result<()> {
    if a.gguf {
        return run_gguf(dev, a);
    }
    // Refuse a bad destination before opening the device or reading the model.
    boha::model::export::check_destination(&a.out)?;
    if let Some(d) = a.dtype {
        check_output_dtype(d)?;
    }
    let gpu = dev.open()?;
    let s = merge_to_hf(&gpu, &a.model, &a.adapter, &a.out, a.dtype)?;
    println!(
        "merged {} adapted matrices from {} into {}: wrote {} ({} tensors, {:.1} MB {})",
        s.merged_matrices,
        a.adapter.display(),
        a.model.display(),
        a.out.display(),
        s.tensors,
        s.weight_bytes as f64 / 1e6,
        s.dtype
    );
    Ok(())
}

/// `--gguf`: the same merge written as one GGUF file.
fn run_gguf(dev: &DeviceArgs, a: &MergeArgs) -> Result<()> {
    let dtype = match a.dtype {
        None | Some(DType::F16) => GgufOutType::F16,
        Some(DType::Q8_0) => GgufOutType::Q8_0,
        Some(other) => {
            return Err(Error::Invalid(format!(
                "--dtype {other}: a merged GGUF is written as f16 or q8_0"
            )))
        }
    };
    boha::loaders::gguf::writer::check_destination(&a.out)?;
    let gpu = dev.open()?;
    let s = merge_to_gguf(&gpu, &a.model, &a.adapter, &a.out, dtype)?;
    println!(
        "merged {} adapted matrices from {} into {}: wrote {} ({} tensors, {:.1} MB, linear weights {})",
        s.merged_matrices,
        a.adapter.display(),
        a.model.display(),
        a.out.display(),
        s.tensors,
        s.file_bytes as f64 / 1e6,
        dtype.ggml_type().name()
    );
    if !s.f16_fallback.is_empty() {
        println!(
            "  {} matrices kept f16 (rows not whole 32-value blocks): {}",
            s.f16_fallback.len(),
            s.f16_fallback.join(", ")
        );
    }
    Ok(())
}
