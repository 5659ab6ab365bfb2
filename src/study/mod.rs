//! `boha study`: the paper's comparison on the real benchmarks. Single-task runs at a
//! matched budget for BoHA, LoRA, HiRA, ABBA and the additive control (the commonsense
//! mix tested on each of its eight tasks; GSM8K tested on GSM8K), a learning-rate sweep
//! per method chosen on a validation slice, several seeds at the chosen rate, and the
//! continual diagnostic (commonsense, then GSM8K, on the same adapter).
//!
//! - [`preset`]: the sizes (`smoke`, `lavapipe`, `gpu`);
//! - [`data`]: the data files, made from the benchmark package;
//! - [`run`]: the units, each with one JSON result, resumable across sessions;
//! - [`partial`]: a test unit's finished chunks, so a test cut short goes on from there;
//! - [`stats`]: intervals over seeds and the paired bootstrap over items;
//! - [`report`]: the Markdown report, rebuilt from the result files.

pub mod data;
pub mod partial;
pub mod preset;
pub mod report;
pub mod run;
pub mod stats;
pub mod sweep;

pub use preset::Preset;
pub use run::{Layout, Outcome, Study};
