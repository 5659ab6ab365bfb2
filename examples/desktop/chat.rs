//! The chat worker: answers one prompt greedily with the base model and then with the
//! adapter of the latest snapshot, on a background thread, streaming both answers into
//! shared state for the UI.
//!
//! One uploaded copy of the weights serves both answers (the adapter is attached
//! unmerged for the second and detached after) and is kept for the next question.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use boha::data::template::TextCodec;
use boha::generate::{eos_ids, generate, GenerateOptions, Sampling};
use boha::gpu::Gpu;
use boha::loaders::{ChatMessage, Checkpoint};
use boha::model::kv_cache::Model;

use crate::models::CheckpointCache;
use crate::snapshot::Snapshot;

/// One question.
#[derive(Clone, Debug)]
pub struct Question {
    pub model: PathBuf,
    pub prompt: String,
    /// Wrap the prompt in the model's chat template (one user turn); otherwise it is
    /// raw text, as the generated tasks' prompt/completion records are trained.
    pub chat_template: bool,
    pub max_new_tokens: usize,
}

/// Where an answer stands.
#[derive(Clone, Debug, PartialEq)]
pub enum ChatPhase {
    Idle,
    Loading,
    Answering,
    Done,
    Failed(String),
}

/// What the chat panel shows; written by the chat thread.
pub struct ChatState {
    pub phase: ChatPhase,
    pub base: String,
    pub adapted: String,
    /// The training step whose adapter answered (None: no adapter yet).
    pub adapted_step: Option<usize>,
    /// Seconds each answer took.
    pub base_s: Option<f64>,
    pub adapted_s: Option<f64>,
}

impl Default for ChatState {
    fn default() -> Self {
        ChatState {
            phase: ChatPhase::Idle,
            base: String::new(),
            adapted: String::new(),
            adapted_step: None,
            base_s: None,
            adapted_s: None,
        }
    }
}

/// The chat thread's handle.
#[derive(Default)]
pub struct Chat {
    state: Arc<Mutex<ChatState>>,
    /// The uploaded weights, kept between questions.
    model: Arc<Mutex<Option<(PathBuf, Model)>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Chat {
    /// The state, locked for reading.
    pub fn state(&self) -> MutexGuard<'_, ChatState> {
        lock(&self.state)
    }

    /// Whether an answer is being made.
    pub fn busy(&self) -> bool {
        matches!(
            self.state().phase,
            ChatPhase::Loading | ChatPhase::Answering
        )
    }

    /// Answers `q` with the base model and with `snapshot`'s adapter, on a new thread.
    pub fn ask(
        &self,
        gpu: Arc<Gpu>,
        models: CheckpointCache,
        q: Question,
        snapshot: Option<Arc<Snapshot>>,
        ctx: eframe::egui::Context,
    ) {
        *self.state() = ChatState {
            phase: ChatPhase::Loading,
            adapted_step: snapshot.as_ref().map(|s| s.step),
            ..ChatState::default()
        };
        let state = self.state.clone();
        let slot = self.model.clone();
        std::thread::spawn(move || {
            let r = answer(&gpu, &models, &q, snapshot.as_deref(), &slot, &state, &ctx);
            let mut s = lock(&state);
            s.phase = match r {
                Ok(()) => ChatPhase::Done,
                Err(e) => ChatPhase::Failed(e.to_string()),
            };
            ctx.request_repaint();
        });
    }
}

/// The prompt's ids: raw text with BOS where the model wants it (as training renders
/// prompt/completion records), or one chat-templated user turn.
fn prompt_ids(ck: &Checkpoint, q: &Question) -> boha::Result<Vec<u32>> {
    let mut ids = Vec::new();
    if q.chat_template {
        let text = ck.render_chat(&[ChatMessage::new("user", &q.prompt)], true)?;
        ids.extend(ck.encode(&text)?);
    } else {
        ids.extend(ck.bos_for_raw_text());
        ids.extend(ck.encode(&q.prompt)?);
    }
    if ids.is_empty() {
        return Err(boha::Error::Invalid(
            "the prompt encodes to no tokens".into(),
        ));
    }
    Ok(ids)
}

fn answer(
    gpu: &Gpu,
    models: &CheckpointCache,
    q: &Question,
    snapshot: Option<&Snapshot>,
    slot: &Mutex<Option<(PathBuf, Model)>>,
    state: &Mutex<ChatState>,
    ctx: &eframe::egui::Context,
) -> boha::Result<()> {
    let ck = models.get(&q.model)?;
    let ids = prompt_ids(&ck, q)?;
    let mut slot = lock(slot);
    if slot.as_ref().is_none_or(|(p, _)| p != &q.model) {
        *slot = None;
        *slot = Some((q.model.clone(), Model::load(gpu, &ck)?));
    }
    let (_, model) = slot.as_mut().expect("loaded above");
    let opts = GenerateOptions {
        max_new_tokens: q.max_new_tokens,
        sampling: Sampling::default(),
        stop_strings: Vec::new(),
        eos: eos_ids(&ck),
    };
    lock(state).phase = ChatPhase::Answering;
    ctx.request_repaint();

    model.adapters = None;
    let t0 = Instant::now();
    generate(gpu, model, &ck, &ids, &opts, &mut |text| {
        // No repaint request per token: the app draws paced frames while the chat runs.
        lock(state).base.push_str(text);
    })?;
    lock(state).base_s = Some(t0.elapsed().as_secs_f64());

    let Some(snap) = snapshot else {
        lock(state).adapted = "(no adapter yet: start training first)".into();
        return Ok(());
    };
    model.adapters = Some(snap.upload(gpu, ck.config.num_layers)?);
    let t1 = Instant::now();
    let result = generate(gpu, model, &ck, &ids, &opts, &mut |text| {
        lock(state).adapted.push_str(text);
    });
    model.adapters = None;
    result?;
    lock(state).adapted_s = Some(t1.elapsed().as_secs_f64());
    Ok(())
}
