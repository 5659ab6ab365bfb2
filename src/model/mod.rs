//! The model's description in boha's own terms. Loaders (`crate::loaders`) translate
//! Hugging Face and GGUF checkpoints into these types; nothing above them sees a
//! checkpoint's own names.

pub mod adapter_io;
pub mod config;
pub mod decode_batch;
pub mod export;
pub mod export_gguf;
mod gguf_metadata;
pub mod kv_cache;
pub mod reference;
pub mod transformer;

pub use config::{Activation, Architecture, ModelConfig, RopeScaling, TensorSpec};
