//! Running third-party parsers that may panic on hostile input.
//!
//! Some dependencies (the `tokenizers` crate among them) `expect` on malformed parts of a
//! file instead of returning an error. [`catch`] turns such a panic into an ordinary
//! error, so a bad file gives boha's one-line message instead of a crash. A panic hook
//! still runs before unwinding; [`install_quiet_hook`] wraps the current hook so that it
//! stays silent while [`catch`] is running on this thread and speaks as before otherwise.

use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is inside [`catch`].
pub fn catching() -> bool {
    CATCHING.with(Cell::get)
}

/// Runs `f`; a panic inside it comes back as `Err(its message)`.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let was = CATCHING.with(|c| c.replace(true));
    let out = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    out.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into())
    })
}

/// Wraps the process's panic hook (once) so that panics caught by [`catch`] print
/// nothing; every other panic goes to the hook that was there before.
pub fn install_quiet_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !catching() {
                previous(info)
            }
        }));
    });
}
