//! The device the tests run on. A machine without an adapter fails every GPU test with a
//! line naming `boha setup`, so a green `cargo test` means the GPU tests ran. Skipping
//! takes `BOHA_SKIP_GPU=1`; each skip is counted, and when the test binary exits it
//! prints how many of its tests were skipped and how many so far in the same
//! `cargo test` run. `BOHA_REQUIRE_GPU=1` (CI) overrides `BOHA_SKIP_GPU`.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Once;

use super::{Gpu, GpuOptions};

static SKIPPED: AtomicUsize = AtomicUsize::new(0);
static REPORT_AT_EXIT: Once = Once::new();

fn env_is(key: &str) -> bool {
    std::env::var(key).is_ok_and(|v| v == "1")
}

/// Opens the default device for tests; see the module docs for what happens without
/// one. `None` means: skip this test.
pub fn test_gpu() -> Option<Gpu> {
    test_gpu_with(&GpuOptions::default())
}

/// Like [`test_gpu`], with options.
pub fn test_gpu_with(opts: &GpuOptions) -> Option<Gpu> {
    let _ = env_logger::builder().is_test(true).try_init();
    let e = match Gpu::new(opts) {
        Ok(g) => return Some(g),
        Err(e) => e,
    };
    if env_is("BOHA_REQUIRE_GPU") {
        panic!("BOHA_REQUIRE_GPU=1 but no GPU: {e}");
    }
    if !env_is("BOHA_SKIP_GPU") {
        panic!(
            "{e}; the GPU tests need an adapter: `boha setup` (`cargo run --release -- setup`) \
             installs one, BOHA_SKIP_GPU=1 skips them"
        );
    }
    SKIPPED.fetch_add(1, Ordering::Relaxed);
    REPORT_AT_EXIT.call_once(register_report);
    None
}

/// How many GPU tests this process has skipped.
pub fn skipped_gpu_tests() -> usize {
    SKIPPED.load(Ordering::Relaxed)
}

#[cfg(unix)]
fn register_report() {
    extern "C" fn report() {
        let n = skipped_gpu_tests();
        let total = add_to_run_total(n);
        let run = total.map_or(String::new(), |t| format!(", {t} so far in this cargo run"));
        let _ = writeln!(
            std::io::stderr(),
            "BOHA_SKIP_GPU=1: {n} GPU test(s) of this test binary skipped (no adapter){run}"
        );
    }
    // SAFETY: `report` is a plain function that only reads an atomic and writes stderr
    // and a file, all of which work while the process exits.
    unsafe {
        libc::atexit(report);
    }
}

#[cfg(not(unix))]
fn register_report() {}

/// Adds `n` to the skips of the current `cargo test` run, kept in a file named after the
/// parent process (cargo, which runs every test binary of the run), and returns the sum.
#[cfg(unix)]
fn add_to_run_total(n: usize) -> Option<usize> {
    // SAFETY: getppid has no preconditions and cannot fail.
    let parent = unsafe { libc::getppid() };
    let path = std::env::temp_dir().join(format!("boha-gpu-skips-{parent}"));
    let before: usize = std::fs::read_to_string(&path)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let total = before + n;
    std::fs::write(&path, total.to_string()).ok()?;
    Some(total)
}
