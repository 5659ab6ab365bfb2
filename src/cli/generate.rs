//! `boha generate --model PATH [--adapter DIR [--merged]] (--prompt TEXT | --chat
//! [--prompt TEXT]) [--max-new-tokens N] [--temperature T] [--top-p P] [--top-k K]
//! [--seed S] [--stop STR]...`
//!
//! Text is streamed to stdout; prefill and decode speeds go to stderr. Also home of the
//! helpers `score` and `eval` share: prompt tokens and `--adapter DIR [--merged]`.

use std::io::{Read, Write};
use std::path::PathBuf;

use clap::Args;

use boha::adapters::files::{load_adapter, LoadedAdapter};
use boha::bench::record::{to_json, Record};
use boha::data::jsonl::write_atomic;
use boha::generate::{eos_ids, generate, GenerateOptions, Sampling};
use boha::gpu::Gpu;
use boha::loaders::{load_checkpoint, tokenizer::ChatMessage, Checkpoint};
use boha::model::kv_cache::Model;
use boha::model::transformer::Adapters;
use boha::{Error, Result};

use super::DeviceArgs;

/// `--adapter DIR [--merged]`: an adapter applied to the model (generate, score, eval).
#[derive(Args, Debug, Clone, Default)]
pub struct AdapterArgs {
    /// An adapter directory (adapter_config.json and adapter_model.safetensors, as
    /// `boha finetune` or PEFT writes them) to apply to the model.
    #[arg(long, value_name = "DIR")]
    pub adapter: Option<PathBuf>,
    /// Merge the adapter into the weights (faster generation) instead of running it
    /// unmerged beside them.
    #[arg(long)]
    pub merged: bool,
}

/// An adapter read from disk, not yet uploaded (so that a bad directory fails before
/// the device is opened and the model uploaded).
pub struct PendingAdapter {
    dir: PathBuf,
    loaded: LoadedAdapter,
    merged: bool,
}

impl AdapterArgs {
    /// Reads the adapter files, if an adapter was given.
    pub fn read(&self) -> Result<Option<PendingAdapter>> {
        match &self.adapter {
            None if self.merged => Err(Error::Invalid(
                "--merged needs an adapter to merge (--adapter DIR)".into(),
            )),
            None => Ok(None),
            Some(dir) => Ok(Some(PendingAdapter {
                dir: dir.clone(),
                loaded: load_adapter(dir)?,
                merged: self.merged,
            })),
        }
    }
}

/// Uploads the checkpoint's weights and attaches the adapter (unmerged or merged).
pub fn load_model(gpu: &Gpu, ck: &Checkpoint, adapter: Option<&PendingAdapter>) -> Result<Model> {
    let mut model = Model::load(gpu, ck)?;
    if let Some(p) = adapter {
        let ads = Adapters::from_loaded(gpu, &model.weights, &p.loaded, &p.dir)?;
        model.attach(gpu, ads, p.merged)?;
    }
    Ok(model)
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A Hugging Face directory or a .gguf file.
    #[arg(long)]
    pub model: PathBuf,
    #[command(flatten)]
    pub adapter: AdapterArgs,
    /// The prompt (with --chat, the user message; read from stdin when absent).
    #[arg(long)]
    pub prompt: Option<String>,
    /// Apply the model's chat template to the prompt as one user turn.
    #[arg(long)]
    pub chat: bool,
    #[arg(long, default_value_t = 256)]
    pub max_new_tokens: usize,
    /// Sampling temperature; greedy when absent or 0.
    #[arg(long)]
    pub temperature: Option<f32>,
    #[arg(long)]
    pub top_p: Option<f32>,
    #[arg(long)]
    pub top_k: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop before this string (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Also write the prefill and decode speeds as a JSON record (device, driver,
    /// commit, date, command) to FILE, as the benchmarks do.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// What `--record` writes: the speeds `generate` prints on stderr, and the text.
#[derive(serde::Serialize)]
struct GenerateSpeed<'a> {
    model: String,
    prompt_tokens: usize,
    prefill_s: f64,
    prefill_tokens_per_s: f64,
    decode_tokens: usize,
    decode_s: f64,
    decode_tokens_per_s: f64,
    text: &'a str,
}

/// The prompt's token ids: chat-templated or plain, with BOS where the model wants it.
pub fn prompt_tokens(ck: &Checkpoint, prompt: &str, chat: bool) -> Result<Vec<u32>> {
    let text = if chat {
        ck.render_chat(&[ChatMessage::new("user", prompt)], true)?
    } else {
        prompt.to_string()
    };
    let mut ids = ck.encode(&text)?;
    if let (true, Some((_, bos))) = (ck.add_bos, &ck.bos_token) {
        if ids.first() != Some(bos) {
            ids.insert(0, *bos);
        }
    }
    if ids.is_empty() {
        return Err(Error::Invalid("the prompt encodes to no tokens".into()));
    }
    Ok(ids)
}

pub fn run(dev: &DeviceArgs, a: &GenerateArgs) -> Result<()> {
    let prompt = match &a.prompt {
        Some(p) => p.clone(),
        None if a.chat => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| Error::Invalid(format!("reading the prompt from stdin: {e}")))?;
            s
        }
        None => return Err(Error::Invalid("give --prompt TEXT or --chat".into())),
    };
    let ck = load_checkpoint(&a.model)?;
    let ids = prompt_tokens(&ck, &prompt, a.chat)?;
    let adapter = a.adapter.read()?;
    let gpu = dev.open()?;
    let model = load_model(&gpu, &ck, adapter.as_ref())?;
    let opts = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        sampling: Sampling {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            seed: a.seed,
        },
        stop_strings: a.stop.clone(),
        eos: eos_ids(&ck),
    };
    let mut out = std::io::stdout();
    let g = generate(&gpu, &model, &ck, &ids, &opts, &mut |s| {
        let _ = out.write_all(s.as_bytes());
        let _ = out.flush();
    })?;
    println!();
    let speed = GenerateSpeed {
        model: a.model.display().to_string(),
        prompt_tokens: g.prompt_tokens,
        prefill_s: g.prefill_seconds,
        prefill_tokens_per_s: g.prompt_tokens as f64 / g.prefill_seconds.max(1e-9),
        decode_tokens: g.decode_steps,
        decode_s: g.decode_seconds,
        decode_tokens_per_s: g.decode_steps as f64 / g.decode_seconds.max(1e-9),
        text: &g.text,
    };
    eprintln!(
        "prefill: {} tokens in {:.3} s ({:.1} tok/s); decode: {} tokens in {:.3} s ({:.2} tok/s); stop: {:?}",
        speed.prompt_tokens,
        speed.prefill_s,
        speed.prefill_tokens_per_s,
        speed.decode_tokens,
        speed.decode_s,
        speed.decode_tokens_per_s,
        g.stop
    );
    if let Some(path) = &a.record {
        let json = to_json(Record::now(&gpu), &speed).map_err(|e| Error::Invalid(e.to_string()))?;
        write_atomic(path, (json + "\n").as_bytes())?;
    }
    Ok(())
}
