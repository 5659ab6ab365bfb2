//! Fine-tune BoHA adapters from your own program:
//! `cargo run --release --example finetune -- MODEL DATA.jsonl OUT_DIR [steps]`.
//!
//! MODEL is a Hugging Face directory or a .gguf file; DATA.jsonl holds
//! {"instruction", "input", "output"}, {"prompt", "completion"} or {"messages"} records
//! (`boha data --task arith --n 64 --out DATA.jsonl` makes one).

use std::path::PathBuf;

use boha::adapters::{AdapterSpec, Method};
use boha::gpu::{Gpu, GpuOptions};
use boha::loaders::load_checkpoint;
use boha::train::{finetune, Control, Event, FinetuneConfig};

fn main() -> boha::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, out, rest @ ..] = args.as_slice() else {
        eprintln!("usage: finetune MODEL DATA.jsonl OUT_DIR [steps]");
        std::process::exit(2);
    };
    let steps = rest.first().and_then(|s| s.parse().ok()).unwrap_or(20);

    let gpu = Gpu::new(&GpuOptions::default())?;
    let ck = load_checkpoint(model.as_ref())?;
    // b = 4 blocks of rank 2 each: the parameter budget of rank-8 LoRA.
    let spec = AdapterSpec::from_options(Method::Boha, Some(4), None, Some(2), None)?;
    let cfg = FinetuneConfig {
        data: PathBuf::from(data),
        out: PathBuf::from(out),
        spec,
        targets: vec!["q,k,v,o,gate,up,down".into()],
        lr: 2e-3,
        steps: Some(steps),
        batch: 4,
        max_len: 128,
        ..FinetuneConfig::default()
    };
    let summary = finetune(&gpu, &ck, &cfg, &mut |event| {
        if let Event::Step {
            step,
            total_steps,
            loss,
            ..
        } = event
        {
            println!("step {step}/{total_steps}: loss {loss:.4}");
        }
        Control::Continue
    })?;
    println!(
        "{} steps in {:.1} s; adapter, metrics.jsonl and loss.png in {}",
        summary.steps,
        summary.seconds,
        summary.out.display()
    );
    Ok(())
}
