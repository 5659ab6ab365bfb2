//! What the web suites share. Each test is an `async fn` run two ways: in a browser by
//! wasm-bindgen-test on the browser's WebGPU adapter (scripts/web_test.sh), and natively
//! by `cargo test` on the native adapter, through the same async API, so a failure in
//! the browser can be told apart from a failure of the test itself. The native suites'
//! tests/common/mod.rs takes its start-up hook and comparisons from here too.
#![allow(dead_code)]

use boha::gpu::{Dispatch, Gpu, GpuOptions, Recorder, Tensor};

/// Natively, before the harness starts threads: the private `XDG_RUNTIME_DIR` the `boha`
/// binary sets up, so the Vulkan loader's window-system probing stays quiet (as in
/// tests/common/mod.rs).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array"]
static QUIET_HEADLESS: extern "C" fn() = {
    extern "C" fn init() {
        boha::host::runtime_dir::ensure_valid();
    }
    init
};

/// Declares `async fn $name` as a browser test on wasm32 and a native test elsewhere.
#[macro_export]
macro_rules! web_test {
    ($name:ident, $body:block) => {
        #[cfg(target_arch = "wasm32")]
        #[wasm_bindgen_test::wasm_bindgen_test]
        async fn $name() $body

        #[cfg(not(target_arch = "wasm32"))]
        #[test]
        fn $name() {
            pollster::block_on(async $body)
        }
    };
}

/// The device with `opts`. In the browser there is no skipping: no WebGPU adapter is a
/// failure, so a pass proves the kernels ran on WebGPU. Natively, `None` is
/// `BOHA_SKIP_GPU=1`'s counted skip (see `boha::gpu::test_gpu`).
pub async fn gpu_with(opts: &GpuOptions) -> Option<Gpu> {
    #[cfg(target_arch = "wasm32")]
    {
        let gpu = Gpu::new_async(opts)
            .await
            .unwrap_or_else(|e| panic!("no WebGPU device: {e}"));
        web_log(&format!(
            "WebGPU adapter: '{}' ({}, {}), {} family",
            gpu.info().name,
            gpu.info().backend,
            gpu.info().device_type,
            gpu.gemm_family().name()
        ));
        Some(gpu)
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        boha::gpu::test_gpu_with(opts)
    }
}

/// The default device.
pub async fn gpu() -> Option<Gpu> {
    gpu_with(&GpuOptions::default()).await
}

/// A line in the test output (the browser console, which the runner prints).
pub fn web_log(line: &str) {
    #[cfg(target_arch = "wasm32")]
    wasm_bindgen_test::console_log!("{line}");
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("{line}");
}

/// Asserts `got ≈ want` with an error relative to the reference's magnitude:
/// max |got − want| ≤ tol · max(1, max |want|).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let scale = want.iter().fold(1f32, |m, v| m.max(v.abs()));
    assert_within(what, got, want, tol, scale);
}

/// [`assert_close`] without the floor at 1: max |got − want| ≤ tol · max |want|, for
/// outputs far below 1 in magnitude (gradients of a mean loss, Adam's second moments),
/// where the floor would loosen the check by orders of magnitude.
pub fn assert_rel_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    assert_within(what, got, want, tol, scale);
}

fn assert_within(what: &str, got: &[f32], want: &[f32], tol: f32, scale: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    let mut worst = (0usize, 0f32);
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let e = (g - w).abs();
        // Equal infinities (a masked score) match; any other non-finite value fails.
        assert!(
            e.is_finite() || g == w,
            "{what}: non-finite at {i}: got {g}, want {w}"
        );
        if e > worst.1 {
            worst = (i, e);
        }
    }
    assert!(
        worst.1 <= tol * scale,
        "{what}: max error {} at {} (got {}, want {}) > {tol:e} · {scale}",
        worst.1,
        worst.0,
        got[worst.0],
        want[worst.0]
    );
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// Submits `ds` in one recording.
pub fn submit(gpu: &Gpu, ds: &[Dispatch]) {
    let mut r = Recorder::new();
    r.run_all(ds);
    gpu.run(&r).unwrap();
}

/// Reads `t` back without blocking (the browser cannot block).
pub async fn down(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    gpu.download_async(t).await.unwrap()
}

/// Submits `ds` and reads `out` back.
pub async fn run(gpu: &Gpu, ds: &[Dispatch], out: &Tensor) -> Vec<f32> {
    submit(gpu, ds);
    down(gpu, out).await
}
