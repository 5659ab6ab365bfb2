//! The web page's Rust side (`examples/web/`, served by `scripts/web.sh`): a model chosen
//! with the File API (a GGUF's bytes, or a Hugging Face checkpoint's files), BoHA fine-tuning one awaited step at a time so
//! the page stays responsive, chat with the base and the adapted model, and the adapter
//! files for download. The page (index.html, app.js) calls the `App` methods; each
//! returns a promise.
#![cfg(target_arch = "wasm32")]

mod data;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use boha::adapters::block_norms::block_norms;
use boha::adapters::{AdapterSpec, Method};
use boha::generate::sampling::greedy;
use boha::gpu::{Gpu, GpuOptions};
use boha::graph::{TrainOptions, Trainer};
use boha::loaders::{gguf, hf, random, ChatMessage, Checkpoint};
use boha::model::kv_cache::{Model, Session};
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::{future_to_promise, js_sys};

/// What a loaded page holds: the device, the checkpoint and, once training starts, the
/// trainer and its examples.
struct State {
    gpu: Gpu,
    ck: Checkpoint,
    name: String,
    trainer: Option<Trainer>,
    examples: Vec<data::Example>,
    next: usize,
}

/// The page's handle. Calls are serialized by the page (one promise at a time); a call
/// while another runs is refused rather than interleaved.
#[wasm_bindgen]
pub struct App {
    state: Rc<RefCell<Option<State>>>,
}

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

#[wasm_bindgen]
impl App {
    #[wasm_bindgen(constructor)]
    pub fn new() -> App {
        console_panic_hook();
        App {
            state: Rc::new(RefCell::new(None)),
        }
    }

    /// Loads a GGUF file's bytes and opens the browser's WebGPU device. Resolves to a
    /// one-line description of the model and the adapter.
    pub fn load(&self, name: String, bytes: Vec<u8>) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let ck = gguf::load_gguf_bytes(Path::new(&name), bytes).map_err(js_err)?;
            install(&state, name, ck).await
        })
    }

    /// Loads a Hugging Face checkpoint from its files (config.json, model.safetensors or
    /// the index and its shards, tokenizer.json, and the optional tokenizer_config.json,
    /// chat_template.jinja, generation_config.json): `names[i]` is the name of the bytes
    /// `files[i]` (a Uint8Array). Resolves as [`App::load`] does.
    pub fn load_hf(&self, names: Vec<String>, files: js_sys::Array) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            if names.len() != files.length() as usize {
                return Err(js_err("one name per file"));
            }
            let files = names
                .iter()
                .cloned()
                .zip(files.iter().map(|f| js_sys::Uint8Array::new(&f).to_vec()))
                .collect();
            let name = "the chosen files".to_string();
            let ck = hf::load_hf_files(Path::new(&name), files).map_err(js_err)?;
            install(&state, name, ck).await
        })
    }

    /// Loads `random:tiny` instead of a file (SmolLM2's architecture with 2 layers of
    /// width 32, a word-level tokenizer): what the headless page check in CI trains.
    pub fn load_tiny(&self) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let cfg = random::preset("tiny").ok_or_else(|| js_err("no preset"))?;
            let ck = random::checkpoint(cfg, "random:tiny").map_err(js_err)?;
            install(&state, "random:tiny".into(), ck).await
        })
    }

    /// Prepares BoHA training on `jsonl` (lines of {"prompt", "completion"}; empty: the
    /// built-in task) with a `blocks` × `blocks` grid of rank `block_rank` on q and v.
    /// Returns the number of examples.
    pub fn start(
        &self,
        jsonl: String,
        blocks: usize,
        block_rank: usize,
        seq: usize,
    ) -> Result<usize, JsValue> {
        let mut guard = self.state.try_borrow_mut().map_err(js_err)?;
        let s = guard.as_mut().ok_or_else(|| js_err("no model loaded"))?;
        let pairs = if jsonl.trim().is_empty() {
            data::builtin()
        } else {
            data::parse_jsonl(&jsonl).map_err(js_err)?
        };
        s.examples = data::tokenize(&s.ck, &pairs, seq).map_err(js_err)?;
        s.next = 0;
        let spec = AdapterSpec {
            method: Method::Boha,
            blocks,
            block_rank,
            scale: 1.0,
        };
        s.trainer = None;
        let opts = TrainOptions::default();
        let trainer =
            Trainer::new(&s.gpu, &s.ck, spec, &["q", "v"], 1, seq, opts).map_err(js_err)?;
        s.trainer = Some(trainer);
        Ok(s.examples.len())
    }

    /// One AdamW step on the next example at learning rate `lr`; resolves to its loss.
    /// Awaiting the loss hands the event loop back to the page between steps.
    pub fn step(&self, lr: f32) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let mut guard = state.try_borrow_mut().map_err(js_err)?;
            let s = guard.as_mut().ok_or_else(|| js_err("no model loaded"))?;
            let ex = &s.examples[s.next % s.examples.len().max(1)];
            s.next += 1;
            let trainer = s
                .trainer
                .as_mut()
                .ok_or_else(|| js_err("training not started"))?;
            let loss = trainer
                .step_async(&s.gpu, &ex.tokens, &ex.targets, lr)
                .await
                .map_err(js_err)?;
            Ok(JsValue::from_f64(loss as f64))
        })
    }

    /// Answers `prompt` greedily with at most `max_tokens` tokens, through the adapter
    /// (`adapted`, once training started) or the base model.
    pub fn chat(&self, prompt: String, adapted: bool, max_tokens: usize) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let guard = state.try_borrow().map_err(js_err)?;
            let s = guard.as_ref().ok_or_else(|| js_err("no model loaded"))?;
            let tr = s
                .trainer
                .as_ref()
                .ok_or_else(|| js_err("start training first"))?;
            // Clones share the trainer's GPU tensors: no upload, and the adapter is live.
            let model = Model {
                weights: tr.weights.clone(),
                adapters: adapted.then(|| tr.adapters.clone()),
            };
            let text = data::prompt_text(&s.ck, &[ChatMessage::new("user", &prompt)]);
            let mut ids = s.ck.encode(&text).map_err(js_err)?;
            if s.ck.add_bos && s.ck.chat_template.is_none() {
                if let Some((_, bos)) = &s.ck.bos_token {
                    ids.insert(0, *bos);
                }
            }
            let eos = boha::generate::generate::eos_ids(&s.ck);
            let mut session =
                Session::new(&s.gpu, &model, ids.len() + max_tokens).map_err(js_err)?;
            let mut logits = session
                .forward_async(&s.gpu, &ids, false)
                .await
                .map_err(js_err)?;
            let mut out = Vec::new();
            for _ in 0..max_tokens {
                let next = greedy(&logits);
                if eos.contains(&next) {
                    break;
                }
                out.push(next);
                logits = session
                    .forward_async(&s.gpu, &[next], false)
                    .await
                    .map_err(js_err)?;
            }
            Ok(JsValue::from_str(&s.ck.decode(&out).map_err(js_err)?))
        })
    }

    /// The block-grid heatmap's values for `proj` (q or v) of layer `layer`: resolves to
    /// [b, Float32Array of b × b norms ‖B_ij A_ij‖_F, row-major] (see
    /// `boha::adapters::block_norms`). Only that matrix's factors are read back.
    pub fn block_norms(&self, layer: usize, proj: String) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let guard = state.try_borrow().map_err(js_err)?;
            let s = guard.as_ref().ok_or_else(|| js_err("no model loaded"))?;
            let tr = s
                .trainer
                .as_ref()
                .ok_or_else(|| js_err("start training first"))?;
            let ads = &tr.adapters;
            let ad = ads
                .layers
                .get(layer)
                .and_then(|m| m.get(&proj))
                .ok_or_else(|| js_err(format!("no adapter on layers.{layer}.{proj}")))?;
            let a = s.gpu.download_async(&ad.a).await.map_err(js_err)?;
            let b = s.gpu.download_async(&ad.b).await.map_err(js_err)?;
            let grid = ads.spec.blocks;
            let norms = block_norms(&ads.spec, &a, &b, ad.d_out, ad.d_in, grid).map_err(js_err)?;
            let out = js_sys::Array::new();
            out.push(&JsValue::from_f64(grid as f64));
            out.push(&js_sys::Float32Array::from(norms.as_slice()));
            Ok(out.into())
        })
    }

    /// The WebGPU adapter as wgpu describes it, as JSON {name, backend, device_type,
    /// driver, driver_info} (browsers often leave the name and driver empty).
    pub fn adapter_info(&self) -> Result<String, JsValue> {
        let guard = self.state.try_borrow().map_err(js_err)?;
        let s = guard.as_ref().ok_or_else(|| js_err("no model loaded"))?;
        let i = s.gpu.info();
        Ok(serde_json::json!({
            "name": i.name,
            "backend": i.backend,
            "device_type": i.device_type,
            "driver": i.driver,
            "driver_info": i.driver_info,
        })
        .to_string())
    }

    /// The number of layers of the loaded model (the heatmap's layer choice).
    pub fn num_layers(&self) -> Result<usize, JsValue> {
        let guard = self.state.try_borrow().map_err(js_err)?;
        let s = guard.as_ref().ok_or_else(|| js_err("no model loaded"))?;
        Ok(s.ck.config.num_layers)
    }

    /// The adapter's files as the CLI writes them (PEFT layout): resolves to
    /// [adapter_config.json text, adapter_model.safetensors bytes].
    pub fn adapter_files(&self) -> js_sys::Promise {
        let state = self.state.clone();
        future_to_promise(async move {
            let guard = state.try_borrow().map_err(js_err)?;
            let s = guard.as_ref().ok_or_else(|| js_err("no model loaded"))?;
            let tr = s
                .trainer
                .as_ref()
                .ok_or_else(|| js_err("start training first"))?;
            let (weights, config) = tr
                .adapters
                .files_async(&s.gpu, &s.name)
                .await
                .map_err(js_err)?;
            let out = js_sys::Array::new();
            out.push(&JsValue::from_str(&config));
            out.push(&js_sys::Uint8Array::from(weights.as_slice()));
            Ok(out.into())
        })
    }
}

/// Opens the browser's WebGPU device and makes `ck` the page's model (training and chat
/// start afresh); resolves to a one-line description of the model and the adapter.
async fn install(
    state: &Rc<RefCell<Option<State>>>,
    name: String,
    ck: Checkpoint,
) -> Result<JsValue, JsValue> {
    let gpu = Gpu::new_async(&GpuOptions::default())
        .await
        .map_err(js_err)?;
    let c = &ck.config;
    let line = format!(
        "{name}: {} layers, width {}, vocabulary {} on '{}' ({})",
        c.num_layers,
        c.hidden_size,
        c.vocab_size,
        gpu.info().name,
        gpu.info().device_type
    );
    *state.borrow_mut() = Some(State {
        gpu,
        ck,
        name,
        trainer: None,
        examples: Vec::new(),
        next: 0,
    });
    Ok(JsValue::from_str(&line))
}

impl Default for App {
    fn default() -> App {
        App::new()
    }
}

/// Panics show in the console with their message instead of "unreachable".
fn console_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        web_sys_log(&info.to_string());
    }));
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn web_sys_log(s: &str);
}
