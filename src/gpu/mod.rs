//! The GPU runtime: the only module that touches wgpu. Everything above it speaks of
//! [`Gpu`], [`Tensor`], [`Kernel`], [`Dispatch`] and [`Recorder`].

mod asynchronous;
mod context;
mod devices;
mod dispatch;
mod oneshot;
mod options;
mod profile;
mod registry;
mod tensor;
#[cfg(not(target_arch = "wasm32"))]
mod test_device;
pub mod tuning;

pub use context::{Gpu, SubmitGate};
#[cfg(not(target_arch = "wasm32"))]
pub use devices::list as list_devices;
pub use devices::DeviceInfo;
pub use dispatch::{Dispatch, Params, Recorder};
pub use options::{BaseDType, GemmFamily, GpuOptions};
pub use profile::{DeviceClass, GemmTile, Profile};
pub use registry::{validate_wgsl, Kernel};
pub use tensor::{DType, Tensor};
#[cfg(not(target_arch = "wasm32"))]
pub use test_device::{skipped_gpu_tests, test_gpu, test_gpu_with};
