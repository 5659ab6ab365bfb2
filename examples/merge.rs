//! Fold an adapter into its model and write a Hugging Face directory (config.json,
//! model.safetensors, tokenizer files) that any HF-format tool loads:
//! `cargo run --release --example merge -- MODEL ADAPTER_DIR OUT_DIR`.

use std::path::Path;

use boha::gpu::{Gpu, GpuOptions};
use boha::model::export::merge_to_hf;

fn main() -> boha::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, adapter, out] = args.as_slice() else {
        eprintln!("usage: merge MODEL ADAPTER_DIR OUT_DIR");
        std::process::exit(2);
    };
    let gpu = Gpu::new(&GpuOptions::default())?;
    let s = merge_to_hf(
        &gpu,
        Path::new(model),
        Path::new(adapter),
        Path::new(out),
        None,
    )?;
    println!(
        "merged {} matrices; wrote {} tensors ({:.1} MiB) to {out}",
        s.merged_matrices,
        s.tensors,
        s.weight_bytes as f64 / (1 << 20) as f64
    );
    Ok(())
}
