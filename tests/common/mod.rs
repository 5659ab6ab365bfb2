//! Helpers shared by the integration tests.
#![allow(dead_code)]

use boha::gpu::{Gpu, GpuOptions};

pub mod olmo_samples;
pub mod tiny_checkpoint;

// The helpers the browser suites share (tests/web/common.rs): the quiet-headless hook
// that runs before the harness, and the comparisons.
#[path = "../web/common.rs"]
mod web;
/// max |got − want| ≤ tol · max |want| (the browser suites' `assert_rel_close`).
#[allow(unused_imports)]
pub use web::assert_rel_close as assert_close;

/// The test device; without one the test fails, or is skipped (`None`) with
/// `BOHA_SKIP_GPU=1` (see `boha::gpu::test_gpu`).
pub fn gpu() -> Option<Gpu> {
    boha::gpu::test_gpu()
}

/// The test device with options.
pub fn gpu_with(opts: &GpuOptions) -> Option<Gpu> {
    boha::gpu::test_gpu_with(opts)
}
