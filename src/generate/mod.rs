//! Text generation: token sampling and the prefill / decode loop.

#[allow(clippy::module_inception)]
pub mod generate;
pub mod sampling;
pub mod score;

pub use generate::{eos_ids, generate, GenerateOptions, Generation, StopReason};
pub use sampling::{greedy, Sampler, Sampling};
