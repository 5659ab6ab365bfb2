//! `boha score --model PATH [--adapter DIR [--merged]] --text TEXT [--json]
//! [--dump-logits FILE]`: mean next-token NLL and perplexity of a text; optionally every
//! position's logits as safetensors.

use std::path::PathBuf;

use clap::Args;

use boha::generate::score::{dump_logits, score};
use boha::loaders::load_checkpoint;
use boha::Result;

use super::generate::{load_model, AdapterArgs};
use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// A Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub adapter: AdapterArgs,
    #[arg(long)]
    pub text: String,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write `tokens` (I64 [T]) and `logits` (F32 [T, V]) to this safetensors file.
    #[arg(long)]
    pub dump_logits: Option<PathBuf>,
}

pub fn run(dev: &DeviceArgs, a: &ScoreArgs) -> Result<()> {
    let ck = load_checkpoint(&a.model)?;
    let ids = super::generate::prompt_tokens(&ck, &a.text, false)?;
    let adapter = a.adapter.read()?;
    let gpu = dev.open()?;
    let model = load_model(&gpu, &ck, adapter.as_ref())?;
    let s = score(&gpu, &model, &ids)?;
    if let Some(p) = &a.dump_logits {
        dump_logits(p, &s)?;
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "tokens": s.tokens.len(),
                "scored": s.nll.len(),
                "mean_nll": s.mean_nll(),
                "perplexity": s.perplexity(),
            })
        );
    } else {
        println!(
            "tokens: {} (scored {})\nmean NLL: {:.6}\nperplexity: {:.4}",
            s.tokens.len(),
            s.nll.len(),
            s.mean_nll(),
            s.perplexity()
        );
    }
    Ok(())
}
