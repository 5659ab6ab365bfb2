//! safetensors files (single or sharded with `model.safetensors.index.json`) opened as
//! host tensors under their file names, left in the file until used (no whole-file
//! read). F32, F16 and BF16 are accepted.
//!
//! The `safetensors` crate's header type validates the header (JSON, offsets contiguous,
//! sizes matching shapes) before any tensor is touched.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use safetensors::tensor::Metadata;
use safetensors::Dtype;

use super::folder::Folder;
use super::{bad_file, FileLayout, FileTensor, HostTensor, SharedBytes};
use crate::gpu::DType;
use crate::{Error, Result};

/// Every tensor of one safetensors file, in file order, left in the file: only the
/// header is read here (and checked as the `safetensors` crate checks it: JSON, offsets
/// contiguous and inside the file, sizes matching shapes and dtypes); the values are
/// read when the tensor is used ([`HostTensor`]).
pub fn read_file(path: &Path) -> Result<Vec<(String, HostTensor)>> {
    read(path, None)
}

/// [`read_file`] for a safetensors file held in memory (a file chosen in a web page);
/// `name` names it in messages. Tensors read their values from `bytes` when used.
pub fn read_bytes(name: &Path, bytes: impl Into<SharedBytes>) -> Result<Vec<(String, HostTensor)>> {
    read(name, Some(bytes.into()))
}

fn read(path: &Path, memory: Option<SharedBytes>) -> Result<Vec<(String, HostTensor)>> {
    let io = |e| Error::io(path, e);
    let (mut file, file_len) = super::source::open(path, memory.as_ref())?;
    let invalid = |m: String| bad_file(path, format!("not a valid safetensors file: {m}"));
    let mut n = [0u8; 8];
    file.read_exact(&mut n)
        .map_err(|_| invalid("shorter than its 8-byte header size".into()))?;
    let n = u64::from_le_bytes(n);
    if n > MAX_HEADER_BYTES || 8 + n > file_len {
        return Err(invalid(format!(
            "header size {n} does not fit the file's {file_len} bytes"
        )));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(io)?;
    let meta: Metadata =
        serde_json::from_slice(&header).map_err(|e| invalid(format!("header: {e}")))?;
    let data_start = 8 + n;
    if data_start + meta.data_len() as u64 != file_len {
        return Err(invalid(format!(
            "the header describes {} bytes of data, the file holds {}",
            meta.data_len(),
            file_len - data_start
        )));
    }
    let mut out = Vec::new();
    for name in meta.offset_keys() {
        let Some(info) = meta.info(&name) else {
            continue;
        };
        let stored = match info.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => {
                return Err(bad_file(
                    path,
                    format!(
                        "tensor '{name}' has dtype {other:?}; only F32, F16 and BF16 are supported"
                    ),
                ))
            }
        };
        let (start, end) = info.data_offsets;
        let file_tensor = FileTensor {
            path: path.to_path_buf(),
            memory: memory.clone(),
            name: name.clone(),
            offset: data_start + start as u64,
            len: end - start,
            layout: FileLayout::Float(stored),
            unpermute_heads: None,
        };
        out.push((
            name,
            HostTensor::in_file(info.shape.clone(), stored, file_tensor),
        ));
    }
    Ok(out)
}

/// The weights of a Hugging Face checkpoint folder: `model.safetensors`, or the shards
/// that `model.safetensors.index.json` lists. Names are the checkpoint's own. Also
/// returns the file that names them (model.safetensors or the index), for messages.
pub fn read_folder(dir: &Folder) -> Result<(PathBuf, Vec<(String, HostTensor)>)> {
    let index = "model.safetensors.index.json";
    if dir.has(index) {
        return Ok((dir.join(index), read_sharded(dir, index)?));
    }
    if dir.has(SINGLE) {
        return Ok((dir.join(SINGLE), read_in(dir, SINGLE)?));
    }
    let hint = if dir.has("pytorch_model.bin") {
        " (pytorch_model.bin is not supported: convert it to safetensors)"
    } else {
        ""
    };
    Err(bad_file(
        dir.path(),
        format!("no model.safetensors or model.safetensors.index.json{hint}"),
    ))
}

/// The one-file layout's name.
const SINGLE: &str = "model.safetensors";

/// `file` of the folder, from disk or from the bytes it was given.
fn read_in(dir: &Folder, file: &str) -> Result<Vec<(String, HostTensor)>> {
    let path = dir.join(file);
    match dir.memory_bytes(file) {
        Some(bytes) => read(&path, Some(bytes)),
        None if matches!(dir, Folder::Memory { .. }) => {
            Err(bad_file(&path, "no such file among those given"))
        }
        None => read_file(&path),
    }
}

fn read_sharded(dir: &Folder, index_file: &str) -> Result<Vec<(String, HostTensor)>> {
    let index = &dir.join(index_file);
    let json = dir.read_json(index_file)?;
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
        let tensors = read_in(dir, file)?;
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

/// The largest header the `safetensors` crate accepts (100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

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
