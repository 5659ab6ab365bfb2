//! JSONL datasets: each line through `parse_line`, and the bytes as a file through
//! `read_jsonl`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            if let Ok(s) = boha::data::jsonl::parse_line(line) {
                let _ = s.gold();
            }
        }
    }
    let path = std::env::temp_dir().join(format!("boha-fuzz-{}.jsonl", std::process::id()));
    std::fs::write(&path, data).unwrap();
    let _ = boha::data::jsonl::read_jsonl(&path);
});
