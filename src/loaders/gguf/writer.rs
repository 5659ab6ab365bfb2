//! GGUF v3 writer (little-endian), the counterpart of `super::reader`.
//!
//! Layout written: magic "GGUF", version 3 (u32), tensor count (u64), key/value count
//! (u64); each key/value as key (u64 length + UTF-8), value type (u32), value; each
//! tensor info as name (u64 length + UTF-8), n_dims (u32), ne\[n_dims\] (u64, `ne[0]`
//! innermost), ggml type (u32), offset (u64, from the start of the data section); zero
//! padding to [`ALIGNMENT`]; then each tensor's bytes at its offset, every offset a
//! multiple of [`ALIGNMENT`] (the file ends padded too, as llama.cpp's writers leave it).
//!
//! Value types: 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool (one byte 0/1),
//! 8 string (u64 length + UTF-8), 9 array (element type u32, count u64, elements), 10
//! u64, 11 i64, 12 f64.
//!
//! The writer streams: the tensor infos (name, shape, type) are known up front, which
//! fixes every offset, and the bytes of each tensor are asked of a callback one tensor at
//! a time, so the caller holds one tensor in memory, never the whole model.
//!
//! The file is written atomically: into a hidden temporary sibling, synced, then linked
//! into place. An existing destination is refused; any failure (including one reported
//! by the callback) removes the temporary file and leaves nothing at the destination.

use std::io::{BufWriter, Write};
use std::path::Path;

use super::dequant::GgmlType;
use super::reader::MetaValue;
use crate::{Error, Result};

/// The data alignment this writer uses (llama.cpp's default; `general.alignment`, if
/// present in the metadata, must say the same).
pub const ALIGNMENT: u64 = 32;

/// ggml's `GGML_MAX_NAME` is 64 bytes including the terminating NUL.
pub const MAX_TENSOR_NAME: usize = 63;

const VERSION: u32 = 3;

/// One tensor's header entry, as the writer is given it (the offset is computed).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorEntry {
    pub name: String,
    /// ggml order: `ne[0]` is the innermost (contiguous) dimension, i.e. the PyTorch
    /// shape reversed.
    pub ne: Vec<u64>,
    pub ggml_type: GgmlType,
}

impl TensorEntry {
    /// An entry for a tensor of PyTorch shape `shape` (outermost first).
    pub fn from_shape(name: impl Into<String>, shape: &[usize], ggml_type: GgmlType) -> Self {
        TensorEntry {
            name: name.into(),
            ne: shape.iter().rev().map(|&d| d as u64).collect(),
            ggml_type,
        }
    }

    /// Element count (product of `ne`), `None` on overflow.
    pub fn n_elements(&self) -> Option<u64> {
        self.ne.iter().try_fold(1u64, |a, &d| a.checked_mul(d))
    }

    /// Bytes of the tensor's data: `n_elements / block_size · type_size`.
    pub fn n_bytes(&self) -> Option<u64> {
        let t = self.ggml_type;
        self.n_elements()?
            .checked_div(t.block_size() as u64)?
            .checked_mul(t.type_size() as u64)
    }
}

/// Refuses a destination that exists (a file, a directory or a link, even a dangling
/// one), with a one-line error naming it; also one without a file name.
pub fn check_destination(path: &Path) -> Result<()> {
    if path.file_name().is_none() {
        return Err(Error::Invalid(format!(
            "{}: not a usable output file name",
            path.display()
        )));
    }
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(path, e)),
        Ok(_) => Err(Error::Invalid(format!(
            "{}: exists (refusing to overwrite it)",
            path.display()
        ))),
    }
}

/// Writes a GGUF v3 file at `path` with `metadata` (in the given order) and `tensors`
/// (in the given order); `data(i, entry)` returns the bytes of tensor `i`, exactly
/// `entry.n_bytes()` of them (ggml's layout for its type: rows along `ne[0]`, blocks of
/// `block_size` values within a row). Everything the header needs is checked before
/// the file is created: unique keys, arrays of one element type, unique tensor names of
/// at most [`MAX_TENSOR_NAME`] bytes, 1 to 4 dimensions, rows that are whole blocks.
///
/// Returns the file's size in bytes. Atomic (see the module docs); an existing `path`
/// is refused. Empty arrays are written with element type u8 (a [`MetaValue::Array`]
/// does not record the type of an empty one).
pub fn write_gguf<F>(
    path: &Path,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorEntry],
    mut data: F,
) -> Result<u64>
where
    F: FnMut(usize, &TensorEntry) -> Result<Vec<u8>>,
{
    check_destination(path)?;
    let bad = |m: String| Error::Invalid(format!("{}: {m}", path.display()));
    let mut keys = std::collections::HashSet::new();
    for (k, v) in metadata {
        if !keys.insert(k.as_str()) {
            return Err(bad(format!("metadata key {k} given twice")));
        }
        check_value(v).map_err(|m| bad(format!("metadata {k}: {m}")))?;
    }
    if let Some(v) = metadata
        .iter()
        .find(|(k, _)| k == "general.alignment")
        .map(|(_, v)| v)
    {
        if v.as_int() != Some(ALIGNMENT as i128) {
            return Err(bad(format!(
                "general.alignment {v:?} differs from the writer's {ALIGNMENT}"
            )));
        }
    }
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut names = std::collections::HashSet::new();
    let mut offset = 0u64;
    for t in tensors {
        let what = format!("tensor '{}'", t.name);
        if t.name.is_empty() || t.name.len() > MAX_TENSOR_NAME {
            return Err(bad(format!(
                "{what}: name of {} bytes (1 to {MAX_TENSOR_NAME} allowed)",
                t.name.len()
            )));
        }
        if !names.insert(t.name.as_str()) {
            return Err(bad(format!("{what} given twice")));
        }
        if t.ne.is_empty() || t.ne.len() > 4 {
            return Err(bad(format!(
                "{what} has {} dimensions (1 to 4 allowed)",
                t.ne.len()
            )));
        }
        let block = t.ggml_type.block_size() as u64;
        if t.ne[0] % block != 0 {
            return Err(bad(format!(
                "{what}: row length {} is not a multiple of the {} block size {block}",
                t.ne[0],
                t.ggml_type.name()
            )));
        }
        let n = t
            .n_bytes()
            .ok_or_else(|| bad(format!("{what} has an absurd shape {:?}", t.ne)))?;
        offsets.push(offset);
        sizes.push(n);
        offset = offset
            .checked_add(n)
            .map(|e| e.div_ceil(ALIGNMENT) * ALIGNMENT)
            .ok_or_else(|| bad(format!("{what} makes the file absurdly large")))?;
    }

    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    let tmp = crate::model::export::temp_sibling(path)?;
    let result = (|| {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        let mut w = Counting {
            inner: BufWriter::with_capacity(1 << 20, file),
            pos: 0,
        };
        let io = |e| Error::io(&tmp, e);
        w.put(b"GGUF").map_err(io)?;
        w.put(&VERSION.to_le_bytes()).map_err(io)?;
        w.put(&(tensors.len() as u64).to_le_bytes()).map_err(io)?;
        w.put(&(metadata.len() as u64).to_le_bytes()).map_err(io)?;
        for (k, v) in metadata {
            put_str(&mut w, k).map_err(io)?;
            w.put(&type_id(v).to_le_bytes()).map_err(io)?;
            put_value(&mut w, v).map_err(io)?;
        }
        for (t, &off) in tensors.iter().zip(&offsets) {
            put_str(&mut w, &t.name).map_err(io)?;
            w.put(&(t.ne.len() as u32).to_le_bytes()).map_err(io)?;
            for d in &t.ne {
                w.put(&d.to_le_bytes()).map_err(io)?;
            }
            w.put(&t.ggml_type.id().to_le_bytes()).map_err(io)?;
            w.put(&off.to_le_bytes()).map_err(io)?;
        }
        w.pad().map_err(io)?;
        let data_start = w.pos;
        for (i, t) in tensors.iter().enumerate() {
            let bytes = data(i, t)?;
            if bytes.len() as u64 != sizes[i] {
                return Err(Error::Invalid(format!(
                    "{}: tensor '{}' came with {} bytes, its {} shape {:?} needs {}",
                    path.display(),
                    t.name,
                    bytes.len(),
                    t.ggml_type.name(),
                    t.ne,
                    sizes[i]
                )));
            }
            debug_assert_eq!(w.pos - data_start, offsets[i]);
            w.put(&bytes).map_err(io)?;
            w.pad().map_err(io)?;
        }
        let size = w.pos;
        let file = w
            .inner
            .into_inner()
            .map_err(|e| Error::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(io)?;
        drop(file);
        publish(&tmp, path)?;
        Ok(size)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Moves the finished temporary file to `path` without ever replacing a file that
/// appeared there meanwhile: a hard link fails on an existing name, where rename(2)
/// would silently clobber it. Filesystems without hard links fall back to a check and a
/// rename.
fn publish(tmp: &Path, path: &Path) -> Result<()> {
    match std::fs::hard_link(tmp, path) {
        Ok(()) => {
            let _ = std::fs::remove_file(tmp);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(Error::Invalid(format!(
                "{}: exists (refusing to overwrite it)",
                path.display()
            )))
        }
        Err(_) => {
            check_destination(path)?;
            std::fs::rename(tmp, path).map_err(|e| Error::io(path, e))?;
        }
    }
    if let Some(parent) = path.parent() {
        crate::model::export::sync_dir(if parent.as_os_str().is_empty() {
            Path::new(".")
        } else {
            parent
        });
    }
    Ok(())
}

/// A writer that knows its position, for the padding.
struct Counting<W: Write> {
    inner: W,
    pos: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(b)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    /// Zeros up to the next multiple of [`ALIGNMENT`].
    fn pad(&mut self) -> std::io::Result<()> {
        let n = self.pos.div_ceil(ALIGNMENT) * ALIGNMENT - self.pos;
        self.put(&[0u8; ALIGNMENT as usize][..n as usize])
    }
}

/// GGUF's value type id of `v`.
fn type_id(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::Str(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

/// GGUF arrays have one element type: refuses mixed arrays (at any depth) and nesting
/// deeper than the reader accepts.
fn check_value(v: &MetaValue) -> std::result::Result<(), String> {
    fn go(v: &MetaValue, depth: usize) -> std::result::Result<(), String> {
        let MetaValue::Array(items) = v else {
            return Ok(());
        };
        if depth >= 3 {
            return Err("arrays nested deeper than 3".into());
        }
        if let Some(first) = items.first() {
            let t = type_id(first);
            if let Some(other) = items.iter().find(|i| type_id(i) != t) {
                return Err(format!(
                    "array mixes {} and {} elements",
                    first.type_name(),
                    other.type_name()
                ));
            }
        }
        items.iter().try_for_each(|i| go(i, depth + 1))
    }
    go(v, 0)
}

fn put_str<W: Write>(w: &mut Counting<W>, s: &str) -> std::io::Result<()> {
    w.put(&(s.len() as u64).to_le_bytes())?;
    w.put(s.as_bytes())
}

fn put_value<W: Write>(w: &mut Counting<W>, v: &MetaValue) -> std::io::Result<()> {
    match v {
        MetaValue::U8(x) => w.put(&[*x]),
        MetaValue::I8(x) => w.put(&x.to_le_bytes()),
        MetaValue::U16(x) => w.put(&x.to_le_bytes()),
        MetaValue::I16(x) => w.put(&x.to_le_bytes()),
        MetaValue::U32(x) => w.put(&x.to_le_bytes()),
        MetaValue::I32(x) => w.put(&x.to_le_bytes()),
        MetaValue::U64(x) => w.put(&x.to_le_bytes()),
        MetaValue::I64(x) => w.put(&x.to_le_bytes()),
        MetaValue::F32(x) => w.put(&x.to_le_bytes()),
        MetaValue::F64(x) => w.put(&x.to_le_bytes()),
        MetaValue::Bool(x) => w.put(&[*x as u8]),
        MetaValue::Str(s) => put_str(w, s),
        MetaValue::Array(items) => {
            let elem = items.first().map_or(0, type_id);
            w.put(&elem.to_le_bytes())?;
            w.put(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|i| put_value(w, i))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loaders::gguf::{quantize::quantize, GgufFile};
    use std::path::PathBuf;

    fn temp_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("boha-gguf-writer-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn every_value_type() -> Vec<(String, MetaValue)> {
        use MetaValue::*;
        let kv = |k: &str, v: MetaValue| (k.to_string(), v);
        vec![
            kv("general.architecture", Str("llama".into())),
            kv("general.alignment", U32(32)),
            kv("t.u8", U8(200)),
            kv("t.i8", I8(-100)),
            kv("t.u16", U16(60000)),
            kv("t.i16", I16(-30000)),
            kv("t.u32", U32(4_000_000_000)),
            kv("t.i32", I32(-2_000_000_000)),
            kv("t.u64", U64(u64::MAX - 1)),
            kv("t.i64", I64(i64::MIN + 1)),
            kv("t.f32", F32(1e-5)),
            kv("t.f64", F64(-2.5e300)),
            kv("t.true", Bool(true)),
            kv("t.false", Bool(false)),
            kv("t.str", Str("héllo\nwörld {{ x }}".into())),
            kv("t.empty_str", Str(String::new())),
            kv(
                "t.arr_str",
                Array(vec![Str("a b".into()), Str("Ġthe".into())]),
            ),
            kv("t.arr_i32", Array(vec![I32(1), I32(-3), I32(5)])),
            kv("t.arr_f32", Array(vec![F32(0.5), F32(-0.25)])),
            kv("t.arr_bool", Array(vec![Bool(true), Bool(false)])),
            kv("t.arr_u64", Array(vec![U64(7)])),
            kv("t.arr_empty", Array(vec![])),
            kv(
                "t.arr_nested",
                Array(vec![
                    Array(vec![U8(1), U8(2)]),
                    Array(vec![U8(3)]),
                    Array(vec![]),
                ]),
            ),
        ]
    }

    /// Every value type and a few tensors (F32, F16, Q8_0, 1 to 3 dims) read back with
    /// boha's reader as written: the same metadata, shapes, types, aligned offsets, and
    /// bytes (values for F32/F16, blocks for Q8_0).
    #[test]
    fn gguf_writer_round_trips_through_the_reader() {
        let dir = temp_dir("round-trip");
        let path = dir.join("sub").join("t.gguf");
        let meta = every_value_type();
        let f32s: Vec<f32> = (0..12).map(|i| i as f32 * 0.5 - 2.0).collect();
        let f16s: Vec<f32> = (0..3 * 5).map(|i| (i as f32 - 7.0) / 8.0).collect();
        let q8: Vec<f32> = (0..2 * 64)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 9.0)
            .collect();
        let q8_bytes = quantize(GgmlType::Q8_0, &q8).unwrap();
        let tensors = vec![
            TensorEntry::from_shape("a.f32", &[3, 4], GgmlType::F32),
            TensorEntry::from_shape("b.f16", &[3, 1, 5], GgmlType::F16),
            TensorEntry::from_shape("c.q8_0", &[2, 64], GgmlType::Q8_0),
            TensorEntry::from_shape("d.norm", &[7], GgmlType::F32),
        ];
        let norm = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
        let mut asked = Vec::new();
        let size = write_gguf(&path, &meta, &tensors, |i, t| {
            asked.push(t.name.clone());
            Ok(match i {
                0 => f32s.iter().flat_map(|v| v.to_le_bytes()).collect(),
                1 => f16s
                    .iter()
                    .flat_map(|v| half::f16::from_f32(*v).to_le_bytes())
                    .collect(),
                2 => q8_bytes.clone(),
                _ => norm.iter().flat_map(|v| v.to_le_bytes()).collect(),
            })
        })
        .unwrap();
        assert_eq!(asked, ["a.f32", "b.f16", "c.q8_0", "d.norm"]);
        assert_eq!(size, std::fs::metadata(&path).unwrap().len());
        assert_eq!(size % ALIGNMENT, 0);
        assert_eq!(
            std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
            1
        );

        let f = GgufFile::open(&path).unwrap();
        assert_eq!(f.version, 3);
        assert_eq!(f.alignment, 32);
        assert_eq!(f.metadata.entries.len(), meta.len());
        for (k, v) in &meta {
            assert_eq!(f.metadata.get(k), Some(v), "{k}");
        }
        assert_eq!(f.data_start % 32, 0);
        let names: Vec<_> = f.tensors.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a.f32", "b.f16", "c.q8_0", "d.norm"]);
        for t in &f.tensors {
            assert_eq!(t.offset % 32, 0, "{}", t.name);
        }
        let a = f.tensor("a.f32").unwrap();
        assert_eq!((a.ne.clone(), a.ggml_type), (vec![4, 3], GgmlType::F32));
        assert_eq!(f.read_f32(a).unwrap().to_f32().unwrap(), f32s);
        let b = f.tensor("b.f16").unwrap();
        assert_eq!(b.shape(), vec![3, 1, 5]);
        assert_eq!(b.ggml_type, GgmlType::F16);
        assert_eq!(f.read_f32(b).unwrap().to_f32().unwrap(), f16s);
        let c = f.tensor("c.q8_0").unwrap();
        assert_eq!((c.shape(), c.ggml_type), (vec![2, 64], GgmlType::Q8_0));
        assert_eq!(f.read_bytes(c).unwrap(), q8_bytes);
        let back = f.read_f32(c).unwrap().to_f32().unwrap();
        for (x, y) in q8.iter().zip(&back) {
            // Half a step of the block's grid (max |x| / 127), plus the f16 scale's rounding.
            assert!((x - y).abs() <= 0.6 * (50.0 / 9.0) / 127.0, "{x} → {y}");
        }
        assert_eq!(
            f.read_f32(f.tensor("d.norm").unwrap())
                .unwrap()
                .to_f32()
                .unwrap(),
            norm
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A destination that exists is refused untouched; a failure reported by the callback
    /// mid-stream, or a wrong byte count, leaves nothing at the destination and no
    /// temporary file; bad headers are refused before any file is created.
    #[test]
    fn gguf_writer_refuses_and_leaves_nothing_behind() {
        let dir = temp_dir("refuse");
        let meta = vec![(
            "general.architecture".to_string(),
            MetaValue::Str("x".into()),
        )];
        let tensors = vec![
            TensorEntry::from_shape("a", &[4], GgmlType::F32),
            TensorEntry::from_shape("b", &[4], GgmlType::F32),
        ];
        let four = |_: usize, _: &TensorEntry| Ok(vec![0u8; 16]);

        let existing = dir.join("exists.gguf");
        std::fs::write(&existing, "keep").unwrap();
        let e = write_gguf(&existing, &meta, &tensors, four)
            .unwrap_err()
            .to_string();
        assert!(e.contains("exists") && e.contains("exists.gguf"), "{e}");
        assert!(!e.contains('\n'));
        assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep");

        let out = dir.join("out.gguf");
        let e = write_gguf(&out, &meta, &tensors, |i, _| {
            if i == 1 {
                Err(Error::Invalid("tensor b is broken".into()))
            } else {
                Ok(vec![0u8; 16])
            }
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("tensor b is broken"), "{e}");
        let e = write_gguf(&out, &meta, &tensors, |_, _| Ok(vec![0u8; 12]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("12 bytes") && e.contains("needs 16"), "{e}");

        let refused = |meta: &[(String, MetaValue)], tensors: &[TensorEntry], want: &str| {
            let e = write_gguf(&out, meta, tensors, four)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        };
        let mixed = vec![(
            "k".to_string(),
            MetaValue::Array(vec![MetaValue::U8(1), MetaValue::I32(2)]),
        )];
        refused(&mixed, &tensors, "mixes u8 and i32");
        let twice = vec![meta[0].clone(), meta[0].clone()];
        refused(&twice, &tensors, "given twice");
        let align = vec![("general.alignment".to_string(), MetaValue::U32(64))];
        refused(&align, &tensors, "general.alignment");
        let dup = vec![tensors[0].clone(), tensors[0].clone()];
        refused(&meta, &dup, "given twice");
        let long = vec![TensorEntry::from_shape("x".repeat(64), &[4], GgmlType::F32)];
        refused(&meta, &long, "name of 64 bytes");
        let ragged = vec![TensorEntry::from_shape("q", &[2, 48], GgmlType::Q8_0)];
        refused(&meta, &ragged, "not a multiple of the Q8_0 block size 32");
        let deep = vec![TensorEntry::from_shape(
            "d",
            &[1, 1, 1, 1, 2],
            GgmlType::F32,
        )];
        refused(&meta, &deep, "5 dimensions");

        let left: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(left, ["exists.gguf"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
