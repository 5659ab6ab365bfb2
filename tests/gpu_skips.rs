//! A GPU test on a machine without an adapter fails, naming `boha setup`; it skips only
//! with `BOHA_SKIP_GPU=1`, and then the skip is counted and printed when the test binary
//! exits; `BOHA_REQUIRE_GPU=1` overrides the skip. Checked by running this very test
//! binary's `probe` test again with the Vulkan loader pointed at no driver.

mod common;

use std::process::{Command, Output};

/// The GPU test the others run in a child process (`BOHA_PROBE=1`); on its own it is an
/// ordinary GPU test that must find the device.
#[test]
fn probe() {
    let Some(gpu) = common::gpu() else {
        assert_eq!(std::env::var("BOHA_SKIP_GPU").as_deref(), Ok("1"));
        return;
    };
    assert!(!gpu.info().name.is_empty());
}

fn run_probe(envs: &[(&str, &str)]) -> (Output, String) {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["probe", "--exact", "--test-threads=1"])
        .env("VK_ICD_FILENAMES", "/nonexistent")
        .env_remove("BOHA_REQUIRE_GPU")
        .env_remove("BOHA_SKIP_GPU");
    for (k, v) in envs {
        c.env(k, v);
    }
    let o = c.output().unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o, all)
}

#[test]
fn no_adapter_fails_naming_boha_setup() {
    let (o, all) = run_probe(&[]);
    assert!(!o.status.success(), "{all}");
    assert!(
        all.contains("boha setup") && all.contains("BOHA_SKIP_GPU=1"),
        "{all}"
    );
}

#[test]
fn skip_gpu_counts_and_prints_the_skip() {
    let (o, all) = run_probe(&[("BOHA_SKIP_GPU", "1")]);
    assert!(o.status.success(), "{all}");
    assert!(
        all.contains("BOHA_SKIP_GPU=1: 1 GPU test(s) of this test binary skipped"),
        "{all}"
    );
}

#[test]
fn require_gpu_overrides_skip_gpu() {
    let (o, all) = run_probe(&[("BOHA_SKIP_GPU", "1"), ("BOHA_REQUIRE_GPU", "1")]);
    assert!(!o.status.success(), "{all}");
    assert!(all.contains("BOHA_REQUIRE_GPU=1 but no GPU"), "{all}");
}
