//! The host machine around the GPU: installing a Vulkan driver when none is found
//! ([`driver`]), a quiet headless environment ([`runtime_dir`]) and the process's peak
//! memory ([`resources`]).

pub mod driver;
pub mod resources;
pub mod runtime_dir;
