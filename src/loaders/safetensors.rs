//! safetensors files (single or sharded with `model.safetensors.index.json`) read into
//! f32 host tensors under their file names. F32, F16 and BF16 are accepted.
//!
//! The `safetensors` crate validates the header (size, JSON, offsets inside the file,
//! no overlaps) before any tensor is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};

use super::{bad_file, read_text, HostTensor};
use crate::gpu::DType;
use crate::{Error, Result};

/// Every tensor of one safetensors file, converted to f32, in file order.
pub fn read_file(path: &Path) -> Result<Vec<(String, HostTensor)>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st = SafeTensors::deserialize(&bytes)
        .map_err(|e| bad_file(path, format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::new();
    for (name, view) in st.iter() {
        let data = to_f32(view.dtype(), view.data()).ok_or_else(|| {
            bad_file(
                path,
                format!(
                    "tensor '{name}' has dtype {:?}; only F32, F16 and BF16 are supported",
                    view.dtype()
                ),
            )
        })?;
        super::check_finite(path, name, &data)?;
        let stored = match view.dtype() {
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            _ => DType::F32,
        };
        out.push((
            name.to_string(),
            HostTensor::stored_as(view.shape().to_vec(), data, stored),
        ));
    }
    Ok(out)
}

/// The weights of a Hugging Face directory: `model.safetensors`, or the shards that
/// `model.safetensors.index.json` lists. Names are the checkpoint's own. Also returns
/// the file that names them (model.safetensors or the index), for messages.
pub fn read_dir(dir: &Path) -> Result<(std::path::PathBuf, Vec<(String, HostTensor)>)> {
    let single = dir.join("model.safetensors");
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return Ok((index.clone(), read_sharded(dir, &index)?));
    }
    if single.is_file() {
        return Ok((single.clone(), read_file(&single)?));
    }
    let hint = if dir.join("pytorch_model.bin").exists() {
        " (pytorch_model.bin is not supported: convert it to safetensors)"
    } else {
        ""
    };
    Err(bad_file(
        dir,
        format!("no model.safetensors or model.safetensors.index.json{hint}"),
    ))
}

fn read_sharded(dir: &Path, index: &Path) -> Result<Vec<(String, HostTensor)>> {
    let json: serde_json::Value = serde_json::from_str(&read_text(index)?)
        .map_err(|e| bad_file(index, format!("invalid JSON: {e}")))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| bad_file(index, "no \"weight_map\" object"))?;
    // Shard → the tensors the index puts there.
    let mut shards: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad_file(index, format!("weight_map[\"{name}\"] is not a file name")))?;
        // A shard must be a plain file in this directory, never a path elsewhere.
        if file.is_empty() || file.contains(['/', '\\']) || file == "." || file == ".." {
            return Err(bad_file(
                index,
                format!("weight_map[\"{name}\"] names \"{file}\", not a file in this directory"),
            ));
        }
        shards.entry(file).or_default().insert(name);
    }
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for (file, names) in &shards {
        let path = dir.join(file);
        let tensors = read_file(&path)?;
        for want in names {
            if !tensors.iter().any(|(n, _)| n == want) {
                return Err(bad_file(
                    &path,
                    format!(
                        "tensor '{want}' listed in {} is not in this shard",
                        index.display()
                    ),
                ));
            }
        }
        for (name, t) in tensors {
            if !seen.insert(name.clone()) {
                return Err(bad_file(
                    &path,
                    format!("tensor '{name}' appears in more than one shard"),
                ));
            }
            out.push((name, t));
        }
    }
    Ok(out)
}

/// Little-endian F32 / F16 / BF16 bytes as f32; `None` for other dtypes.
pub fn to_f32(dtype: Dtype, bytes: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        _ => return None,
    })
}
