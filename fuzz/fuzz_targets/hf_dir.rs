//! A Hugging Face directory whose config.json and model.safetensors come from the input
//! (the first two bytes, little-endian, give the config's length; the rest is the
//! safetensors file), loaded with `load_checkpoint`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (config, weights) = data[2..].split_at(n);
    let dir = std::env::temp_dir().join(format!("boha-fuzz-hf-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), config).unwrap();
    std::fs::write(dir.join("model.safetensors"), weights).unwrap();
    // Loading reads headers only: each tensor's values are read here, as an upload would.
    if let Ok(tensors) = boha::loaders::safetensors::read_file(&dir.join("model.safetensors")) {
        for (_, t) in &tensors {
            let _ = t.to_f32();
        }
    }
    let _ = boha::loaders::hf::config_from_json_file(&dir.join("config.json"));
    let _ = boha::loaders::load_checkpoint(&dir);
});
