//! Fine-tuning runs: the loop around [`crate::graph::Trainer`] — data, learning-rate
//! schedule, gradient accumulation, evaluation, checkpoints and resume, metrics and the
//! loss plot — as `boha finetune` and the library's users run it.

pub mod checkpoint;
pub mod continual;
pub mod metrics;
#[cfg(not(target_arch = "wasm32"))]
pub mod plot;
pub mod run;
pub mod schedule;

pub use run::{finetune, Control, Event, FinetuneConfig, Summary};
pub use schedule::Schedule;
