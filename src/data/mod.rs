//! Training and evaluation data on the CPU side: JSONL records ([`jsonl`]), their prompt
//! text ([`template`]), tokenized examples and batches with a resumable order
//! ([`batch`]), generated tasks ([`tasks`]), the real benchmarks ([`benchmarks`]),
//! answer scoring ([`answer`]) and ranked-classification choices ([`ranked`]).

pub mod answer;
pub mod batch;
pub mod benchmarks;
pub mod jsonl;
pub mod ranked;
pub mod tasks;
pub mod template;

pub use answer::{AccuracyReport, AnswerFormat, Scorer, TaskScore};
pub use batch::{Batch, DataPosition, Example, Layout, Loader, TokenizeOptions, IGNORE};
pub use jsonl::{read_jsonl, Record, Sample};
pub use template::{alpaca_prompt, render, Rendered, TextCodec};
