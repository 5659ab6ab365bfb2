//! An adapter directory whose adapter_config.json and adapter_model.safetensors come
//! from the input (the first two bytes, little-endian, give the config's length),
//! loaded with `load_adapter`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let n = (u16::from_le_bytes([data[0], data[1]]) as usize).min(data.len() - 2);
    let (config, weights) = data[2..].split_at(n);
    let dir = std::env::temp_dir().join(format!("boha-fuzz-adapter-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("adapter_config.json"), config).unwrap();
    std::fs::write(dir.join("adapter_model.safetensors"), weights).unwrap();
    if let Ok(a) = boha::adapters::files::load_adapter(&dir) {
        for t in &a.tensors {
            let _ = a.spec.check_shape(&t.target, t.d_out, t.d_in);
            let _ = a.spec.param_count(t.d_out, t.d_in);
        }
    }
});
