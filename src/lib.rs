//! boha: fine-tune and run Llama-family language models with BoHA (blockwise Hadamard)
//! adapters on any GPU that WebGPU reaches.
//!
//! Layers, bottom up: [`gpu`] (the only module that touches wgpu), [`ops`] (each op's
//! host side: shape checks, dispatch, CPU reference), then adapters and models.

pub mod adapters;
#[cfg(not(target_arch = "wasm32"))]
pub mod bench;
pub mod data;
pub mod error;
pub mod eval;
pub mod experiments;
pub mod generate;
pub mod gpu;
pub mod graph;
#[cfg(not(target_arch = "wasm32"))]
pub mod host;
pub mod linalg;
pub mod loaders;
pub mod model;
pub mod ops;
pub mod panic_guard;
#[cfg(not(target_arch = "wasm32"))]
pub mod report;
pub mod rng;
pub mod shaders;
// Runs commands, writes files and plots: the command line's, not the browser's.
#[cfg(not(target_arch = "wasm32"))]
pub mod study;
pub mod train;

pub use error::{Error, Result};
