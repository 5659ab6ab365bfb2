//! Chat with a model, with or without an adapter, from your own program:
//! `cargo run --release --example generate -- MODEL "question" [ADAPTER_DIR]`.

use std::io::Write;
use std::path::Path;

use boha::generate::{eos_ids, generate, GenerateOptions, Sampling};
use boha::gpu::{Gpu, GpuOptions};
use boha::loaders::{load_checkpoint, ChatMessage};
use boha::model::kv_cache::Model;
use boha::model::transformer::Adapters;

fn main() -> boha::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model_path, question, rest @ ..] = args.as_slice() else {
        eprintln!("usage: generate MODEL QUESTION [ADAPTER_DIR]");
        std::process::exit(2);
    };
    let gpu = Gpu::new(&GpuOptions::default())?;
    let ck = load_checkpoint(model_path.as_ref())?;
    let mut model = Model::load(&gpu, &ck)?;
    if let Some(dir) = rest.first() {
        let adapters = Adapters::load(&gpu, &model.weights, Path::new(dir))?;
        // Merged: the adapter folded into the weights, so decoding costs what the base does.
        model.attach(&gpu, adapters, true)?;
    }
    let text = ck.render_chat(&[ChatMessage::new("user", question.as_str())], true)?;
    let prompt = ck.encode(&text)?;
    let opts = GenerateOptions {
        max_new_tokens: 64,
        sampling: Sampling::default(), // greedy
        stop_strings: Vec::new(),
        eos: eos_ids(&ck),
    };
    let mut stdout = std::io::stdout();
    let g = generate(&gpu, &model, &ck, &prompt, &opts, &mut |piece| {
        let _ = stdout.write_all(piece.as_bytes());
        let _ = stdout.flush();
    })?;
    println!("\n[{} new tokens, stop: {:?}]", g.tokens.len(), g.stop);
    Ok(())
}
