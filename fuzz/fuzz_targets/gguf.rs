//! GGUF bytes → a temporary file → the GGUF reader and the whole checkpoint loader.
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
    let _ = boha::loaders::load_checkpoint(&path);
});
