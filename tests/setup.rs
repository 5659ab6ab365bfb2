//! `boha setup` and the demo's self-set-up, driven through the binary. Every case that
//! would install something runs with `VK_ICD_FILENAMES=/nonexistent`, where boha must
//! refuse (installing a driver cannot help while the loader is pointed elsewhere), so
//! the tests never touch the system's packages.

mod common;

use std::process::{Command, Output};

fn boha(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_boha"));
    c.args(args)
        .env_remove("BOHA_REQUIRE_GPU")
        .env_remove("BOHA_SKIP_GPU");
    for (k, v) in envs {
        c.env(k, v);
    }
    c.output().unwrap()
}

const NO_DRIVER: (&str, &str) = ("VK_ICD_FILENAMES", "/nonexistent");

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

/// A failed command: exit 1, one line on stderr, no panic.
fn one_line_error(o: &Output) -> String {
    let err = text(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    err
}

#[test]
fn commands_without_an_adapter_name_boha_setup() {
    for args in [
        &["devices"][..],
        &["demo", "--no-setup"],
        &["bench", "gemm"],
    ] {
        let err = one_line_error(&boha(args, &[NO_DRIVER]));
        assert!(err.contains("boha setup"), "{args:?}: {err}");
    }
}

#[test]
fn setup_refuses_while_the_loader_is_pointed_elsewhere() {
    for args in [&["setup"][..], &["demo"]] {
        let err = one_line_error(&boha(args, &[NO_DRIVER]));
        assert!(
            err.contains("VK_ICD_FILENAMES=/nonexistent") && err.contains("unset"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn dry_run_shows_the_plan_for_this_system() {
    let o = boha(&["setup", "--dry-run"], &[NO_DRIVER]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    let release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let debian = release
        .lines()
        .any(|l| l.starts_with("ID=debian") || l.starts_with("ID=ubuntu"));
    if debian {
        assert!(
            out.contains("apt-get install -y mesa-vulkan-drivers libvulkan1"),
            "{out}"
        );
    } else {
        assert!(!out.trim().is_empty());
    }
}

#[test]
fn setup_with_an_adapter_has_nothing_to_do() {
    if common::gpu().is_none() {
        return;
    }
    let o = boha(&["setup"], &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).starts_with("ready: [0] "),
        "{}",
        text(&o.stdout)
    );
}

/// Without a login session the Vulkan loader's window-system probing used to print
/// "XDG_RUNTIME_DIR is invalid or not set" on every command.
#[test]
fn headless_commands_keep_stderr_quiet() {
    if common::gpu().is_none() {
        return;
    }
    for xdg in [None, Some("/nonexistent/run"), Some("relative")] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_boha"));
        c.arg("devices");
        match xdg {
            None => c.env_remove("XDG_RUNTIME_DIR"),
            Some(v) => c.env("XDG_RUNTIME_DIR", v),
        };
        let o = c.env_remove("RUST_LOG").output().unwrap();
        assert!(o.status.success());
        assert_eq!(text(&o.stderr), "", "XDG_RUNTIME_DIR={xdg:?}");
    }
}
