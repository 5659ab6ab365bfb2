//! A private `XDG_RUNTIME_DIR` for headless runs. The Vulkan loader's window-system
//! probing (libwayland, through Mesa's drivers) prints "error: XDG_RUNTIME_DIR is invalid
//! or not set" on every command of a machine without a login session, though compute
//! needs no window system; a valid private directory keeps stderr to boha's own lines.

use std::path::{Path, PathBuf};

/// Whether `XDG_RUNTIME_DIR` names an absolute directory, as libwayland requires.
fn valid(value: Option<&std::ffi::OsStr>) -> bool {
    value
        .map(Path::new)
        .is_some_and(|p| p.is_absolute() && p.is_dir())
}

/// The directory this user's runs share, `$TMPDIR/boha-runtime-<uid>`, created with mode
/// 0700 if missing; `None` when it exists but is not a private directory of ours (a
/// link, someone else's, or open to others), so nothing is trusted that another user
/// could have planted.
#[cfg(unix)]
fn private_dir() -> Option<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("boha-runtime-{uid}"));
    let _ = std::fs::DirBuilder::new().mode(0o700).create(&dir);
    let meta = std::fs::symlink_metadata(&dir).ok()?;
    let ours = meta.is_dir() && meta.uid() == uid && meta.permissions().mode() & 0o077 == 0;
    ours.then_some(dir)
}

#[cfg(not(unix))]
fn private_dir() -> Option<PathBuf> {
    None
}

/// Points `XDG_RUNTIME_DIR` at a private directory when it is unset or invalid (Linux
/// only; elsewhere the variable means nothing). Call first thing in `main`, before any
/// thread exists: it changes the process environment.
pub fn ensure_valid() {
    if !cfg!(target_os = "linux") || valid(std::env::var_os("XDG_RUNTIME_DIR").as_deref()) {
        return;
    }
    if let Some(dir) = private_dir() {
        // Sound here: called before any other thread starts (see above).
        std::env::set_var("XDG_RUNTIME_DIR", dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_absolute_directories_are_valid() {
        assert!(!valid(None));
        assert!(!valid(Some("".as_ref())));
        assert!(!valid(Some("relative/dir".as_ref())));
        assert!(!valid(Some("/nonexistent/boha-runtime".as_ref())));
        assert!(valid(Some(std::env::temp_dir().as_os_str())));
    }

    #[cfg(unix)]
    #[test]
    fn the_private_directory_is_ours_alone() {
        use std::os::unix::fs::PermissionsExt;
        let dir = private_dir().expect("a private runtime dir in the temp dir");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", dir.display());
    }
}
