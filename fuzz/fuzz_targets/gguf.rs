//! GGUF bytes → a temporary file → the GGUF reader, the whole checkpoint loader and a
//! read of every tensor's values.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("boha-fuzz-{}.gguf", std::process::id()));
    std::fs::write(&path, data).unwrap();
    if let Ok(f) = boha::loaders::gguf::GgufFile::open(&path) {
        for t in f.tensors.iter().take(4) {
            let _ = f.read_f32(t);
        }
    }
    if let Ok(ck) = boha::loaders::load_checkpoint(&path) {
        // Loading reads headers only: the values are read here, as an upload would.
        let _ = ck.check_values();
    }
});
