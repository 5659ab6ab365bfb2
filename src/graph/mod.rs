//! The graph executor: a decoder described once as an op graph ([`ir`], [`builder`]),
//! its backward derived from each op's rule ([`autodiff`], `rules`), every
//! intermediate assigned to reusable buffers by liveness ([`liveness`], [`plan`]), and
//! the whole compiled once into dispatches that are replayed ([`compile`]). Training
//! ([`Trainer`]), scoring ([`forward::ForwardPass`]) and generation
//! (`model::kv_cache::Session`) all run compiled graphs; `boha graph` prints them
//! ([`show`]).

pub mod autodiff;
pub mod builder;
pub mod compile;
pub mod forward;
pub mod ir;
pub mod liveness;
pub mod memory;
pub mod plan;
mod rules;
pub mod show;
mod trainer;
pub(crate) mod uniforms;

pub use trainer::{train_graph, TrainOptions, Trainer, IGNORE};
