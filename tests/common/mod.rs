//! Helpers shared by the integration tests.
#![allow(dead_code)]

use boha::gpu::{Gpu, GpuOptions};

pub mod olmo_samples;
pub mod tiny_checkpoint;

/// Runs before the test harness's `main`, while the process has one thread: the same
/// private `XDG_RUNTIME_DIR` the `boha` binary sets up, so the Vulkan loader's
/// window-system probing stays quiet in the tests too.
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static QUIET_HEADLESS: extern "C" fn() = {
    extern "C" fn init() {
        boha::host::runtime_dir::ensure_valid();
    }
    init
};

/// The test device; without one the test fails, or is skipped (`None`) with
/// `BOHA_SKIP_GPU=1` (see `boha::gpu::test_gpu`).
pub fn gpu() -> Option<Gpu> {
    boha::gpu::test_gpu()
}

/// The test device with options.
pub fn gpu_with(opts: &GpuOptions) -> Option<Gpu> {
    boha::gpu::test_gpu_with(opts)
}

/// Asserts `got ≈ want` with an error relative to the reference's magnitude:
/// max |got − want| ≤ tol · max(1, max |want|).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    let mut worst = (0usize, 0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        assert!(
            e.is_finite() || g == w,
            "{what}: non-finite at {i}: got {g}, want {w}"
        );
        if e > worst.1 {
            worst = (i, e);
        }
    }
    let rel = worst.1 / scale;
    assert!(
        rel <= tol,
        "{what}: max error {} at {} (got {}, want {}), {rel:e} of max |want| {scale} > {tol:e}",
        worst.1,
        worst.0,
        got[worst.0],
        want[worst.0]
    );
}
