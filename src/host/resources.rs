//! What the process has used of the host: its peak resident memory, for the figures the
//! demo prints at the end.

/// The most resident memory this process has had, in bytes (`getrusage`'s `ru_maxrss`:
/// KiB on Linux and the BSDs, bytes on macOS); `None` where it cannot be read.
#[cfg(unix)]
pub fn peak_resident_bytes() -> Option<u64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: initialized by the successful call above.
    let max = unsafe { usage.assume_init() }.ru_maxrss.max(0) as u64;
    Some(if cfg!(target_vendor = "apple") {
        max
    } else {
        max * 1024
    })
}

#[cfg(not(unix))]
pub fn peak_resident_bytes() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_peak_grows_with_what_the_process_touches() {
        let before = super::peak_resident_bytes();
        if cfg!(unix) {
            let before = before.expect("getrusage works on unix");
            // 64 MiB written page by page must show in the high-water mark.
            let big = vec![1u8; 64 << 20];
            std::hint::black_box(&big);
            let after = super::peak_resident_bytes().unwrap();
            assert!(after >= before && after >= 64 << 20, "{before} -> {after}");
        }
    }
}
