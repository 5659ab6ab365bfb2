//! The GPU runtime: the only module that touches wgpu. Everything above it speaks of
//! [`Gpu`], [`Tensor`], [`Kernel`], [`Dispatch`] and [`Recorder`].

mod context;
mod devices;
mod dispatch;
mod options;
mod registry;
mod tensor;

pub use context::{Gpu, SubmitGate};
pub use devices::{list as list_devices, DeviceInfo};
pub use dispatch::{Dispatch, Params, Recorder};
pub use options::{GemmFamily, GpuOptions};
pub use registry::{validate_wgsl, Kernel};
pub use tensor::{DType, Tensor};

/// Opens the default device for tests: `None` when no adapter exists, unless
/// `BOHA_REQUIRE_GPU=1`, in which case a missing adapter is a test failure.
pub fn test_gpu() -> Option<Gpu> {
    test_gpu_with(&GpuOptions::default())
}

/// Like [`test_gpu`], with options.
pub fn test_gpu_with(opts: &GpuOptions) -> Option<Gpu> {
    let _ = env_logger::builder().is_test(true).try_init();
    match Gpu::new(opts) {
        Ok(g) => Some(g),
        Err(e) => {
            if std::env::var("BOHA_REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("BOHA_REQUIRE_GPU=1 but no GPU: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    }
}
