//! GGUF v2/v3 reader (little-endian), written to survive hostile files: every count,
//! length and offset is checked against the bytes left in the file before anything is
//! allocated, nested arrays are depth-limited, and every failure is an error naming the
//! file and the problem (never a panic).
//!
//! Layout: magic "GGUF", version u32, tensor count u64, metadata count u64, the metadata
//! key/values, the tensor infos (name, n_dims u32, ne[n_dims] u64 with ne[0] innermost,
//! ggml type u32, offset u64 relative to the data section), padding to
//! `general.alignment` (default 32), then the tensor data.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::dequant::{dequantize, GgmlType};
use crate::loaders::source::{self, ReadSeek, SharedBytes};
use crate::loaders::{bad_file, HostTensor};
use crate::{Error, Result};

/// One metadata value. Integer and float widths are kept as the file has them.
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// Any integer (or bool) value as i128, so that every width converts losslessly.
    pub fn as_int(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v as i128,
            MetaValue::I8(v) => v as i128,
            MetaValue::U16(v) => v as i128,
            MetaValue::I16(v) => v as i128,
            MetaValue::U32(v) => v as i128,
            MetaValue::I32(v) => v as i128,
            MetaValue::U64(v) => v as i128,
            MetaValue::I64(v) => v as i128,
            MetaValue::Bool(v) => v as i128,
            _ => return None,
        })
    }

    /// Any number as f64.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v as f64),
            MetaValue::F64(v) => Some(v),
            _ => self.as_int().map(|v| v as f64),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A short type name for messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::Str(_) => "string",
            MetaValue::Array(_) => "array",
        }
    }
}

/// The metadata of one file, with typed getters whose errors name file and key.
#[derive(Clone, Debug, Default)]
pub struct Metadata {
    pub path: PathBuf,
    pub entries: BTreeMap<String, MetaValue>,
}

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.entries.get(key)
    }

    fn wrong(&self, key: &str, want: &str, v: &MetaValue) -> Error {
        bad_file(
            &self.path,
            format!("metadata {key} is a {}, expected {want}", v.type_name()),
        )
    }

    fn missing(&self, key: &str) -> Error {
        bad_file(&self.path, format!("metadata {key} is missing"))
    }

    /// A non-negative integer that fits `usize`.
    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_int().and_then(|i| usize::try_from(i).ok()) {
                Some(n) => Ok(Some(n)),
                None => Err(self.wrong(key, "a non-negative integer", v)),
            },
        }
    }

    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?.ok_or_else(|| self.missing(key))
    }

    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        match self.opt_usize(key)? {
            None => Ok(None),
            Some(n) => u32::try_from(n).map(Some).map_err(|_| {
                bad_file(
                    &self.path,
                    format!("metadata {key} = {n} does not fit 32 bits"),
                )
            }),
        }
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a number", v)),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.wrong(key, "a bool", v)),
        }
    }

    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v
                .as_str()
                .map(Some)
                .ok_or_else(|| self.wrong(key, "a string", v)),
        }
    }

    pub fn str(&self, key: &str) -> Result<&str> {
        self.opt_str(key)?.ok_or_else(|| self.missing(key))
    }

    /// An array, if present.
    pub fn opt_array(&self, key: &str) -> Result<Option<&[MetaValue]>> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.wrong(key, "an array", v)),
        }
    }

    /// An array of strings.
    pub fn opt_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        let Some(a) = self.opt_array(key)? else {
            return Ok(None);
        };
        a.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .ok_or_else(|| self.wrong(&format!("{key}[{i}]"), "a string", v))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of numbers as f64.
    pub fn opt_f64_array(&self, key: &str) -> Result<Option<Vec<f64>>> {
        let Some(a) = self.opt_array(key)? else {
            return Ok(None);
        };
        a.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .ok_or_else(|| self.wrong(&format!("{key}[{i}]"), "a number", v))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// An array of integers.
    pub fn opt_int_array(&self, key: &str) -> Result<Option<Vec<i128>>> {
        let Some(a) = self.opt_array(key)? else {
            return Ok(None);
        };
        a.iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_int()
                    .ok_or_else(|| self.wrong(&format!("{key}[{i}]"), "an integer", v))
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }
}

/// One tensor's header entry.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorInfo {
    pub name: String,
    /// ggml order: `ne[0]` is the innermost (contiguous) dimension.
    pub ne: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
    pub n_elements: u64,
    pub n_bytes: u64,
}

impl TensorInfo {
    /// The shape in PyTorch order (outermost first): `ne` reversed.
    pub fn shape(&self) -> Vec<usize> {
        self.ne.iter().rev().map(|&d| d as usize).collect()
    }
}

/// An opened GGUF file: its header parsed and checked; tensor data is read on demand.
#[derive(Clone, Debug)]
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub alignment: u64,
    /// Absolute offset of the data section.
    pub data_start: u64,
    pub file_len: u64,
    /// The file's bytes when it was opened from memory ([`GgufFile::from_bytes`]).
    pub memory: Option<SharedBytes>,
}

const MAGIC: &[u8; 4] = b"GGUF";
const MAX_ARRAY_DEPTH: usize = 3;
/// ggml's own limit on tensor names is 64 bytes; leave room, refuse nonsense.
const MAX_NAME: u64 = 1024;
const MAX_DIMS: u32 = 4;

impl GgufFile {
    /// Opens `path` and parses and checks the whole header.
    pub fn open(path: &Path) -> Result<GgufFile> {
        Self::open_in(path, None)
    }

    /// Parses and checks the header of a GGUF file held in memory; `name` names it in
    /// messages.
    pub fn from_bytes(name: &Path, bytes: SharedBytes) -> Result<GgufFile> {
        Self::open_in(name, Some(bytes))
    }

    /// Parses `memory`, else the file at `path`.
    pub(crate) fn open_in(path: &Path, memory: Option<SharedBytes>) -> Result<GgufFile> {
        let (file, file_len) = source::open(path, memory.as_ref())?;
        let mut c = Cursor {
            r: BufReader::new(file),
            pos: 0,
            len: file_len,
            path,
        };
        let magic = c.bytes(4, "the magic number")?;
        if magic != MAGIC {
            return Err(c.err(format!(
                "not a GGUF file (magic {:02x?}, expected \"GGUF\")",
                magic
            )));
        }
        let version = c.u32("the version")?;
        match version {
            2 | 3 => {}
            1 => return Err(c.err("GGUF version 1 is not supported (only 2 and 3)")),
            v if v.swap_bytes() <= 3 => return Err(c.err("big-endian GGUF is not supported")),
            v => return Err(c.err(format!("unsupported GGUF version {v} (only 2 and 3)"))),
        }
        let n_tensors = c.u64("the tensor count")?;
        let n_kv = c.u64("the metadata count")?;
        // Each key/value takes at least 13 bytes (key length, type, one byte of value);
        // each tensor info at least 24 (name length, n_dims, type, offset).
        c.check_count(n_kv, 13, "metadata entries")?;
        c.check_count(n_tensors, 24, "tensors")?;

        let mut metadata = Metadata {
            path: path.to_path_buf(),
            entries: BTreeMap::new(),
        };
        for i in 0..n_kv {
            let what = format!("metadata entry {i} of {n_kv}");
            let key = c.name(&what)?;
            let ty = c.u32(&what)?;
            let value = c.value(ty, 0, &format!("metadata {key}"))?;
            if metadata.entries.insert(key.clone(), value).is_some() {
                return Err(c.err(format!("metadata key {key} appears twice")));
            }
        }

        let alignment = match metadata.get("general.alignment") {
            None => 32,
            Some(v) => match v.as_int() {
                Some(a) if a > 0 && a <= 1 << 20 && (a & (a - 1)) == 0 => a as u64,
                _ => return Err(c.err(format!("general.alignment {v:?} is not a power of two"))),
            },
        };

        let mut tensors: Vec<TensorInfo> = Vec::new();
        let mut names = std::collections::HashSet::new();
        for i in 0..n_tensors {
            let what = format!("tensor info {i} of {n_tensors}");
            let name = c.name(&what)?;
            let what = format!("tensor '{name}'");
            let n_dims = c.u32(&what)?;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(c.err(format!(
                    "{what} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)"
                )));
            }
            let mut ne = Vec::with_capacity(n_dims as usize);
            for _ in 0..n_dims {
                ne.push(c.u64(&what)?);
            }
            let type_id = c.u32(&what)?;
            let offset = c.u64(&what)?;
            let ggml_type = GgmlType::from_id(type_id).ok_or_else(|| {
                c.err(format!(
                    "{what} has unknown or unsupported ggml type {type_id}"
                ))
            })?;
            let n_elements = ne
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= 1 << 40)
                .ok_or_else(|| c.err(format!("{what} has an absurd shape {ne:?}")))?;
            let block = ggml_type.block_size() as u64;
            if ne[0] % block != 0 {
                return Err(c.err(format!(
                    "{what}: row length {} is not a multiple of the {} block size {block}",
                    ne[0],
                    ggml_type.name()
                )));
            }
            let n_bytes = n_elements / block * ggml_type.type_size() as u64;
            if offset % alignment != 0 {
                return Err(c.err(format!(
                    "{what} data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            if !names.insert(name.clone()) {
                return Err(c.err(format!("tensor '{name}' appears twice")));
            }
            tensors.push(TensorInfo {
                name,
                ne,
                ggml_type,
                offset,
                n_elements,
                n_bytes,
            });
        }

        let data_start = c.pos.div_ceil(alignment) * alignment;
        for t in &tensors {
            let end = data_start
                .checked_add(t.offset)
                .and_then(|s| s.checked_add(t.n_bytes));
            if end.is_none_or(|e| e > file_len) {
                return Err(c.err(format!(
                    "tensor '{}' data at offset {} ({} bytes) runs past the end of the file ({file_len} bytes)",
                    t.name,
                    data_start.saturating_add(t.offset),
                    t.n_bytes
                )));
            }
        }
        Ok(GgufFile {
            path: path.to_path_buf(),
            version,
            metadata,
            tensors,
            alignment,
            data_start,
            file_len,
            memory,
        })
    }

    /// The header entry of tensor `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// The raw bytes of one tensor.
    pub fn read_bytes(&self, t: &TensorInfo) -> Result<Vec<u8>> {
        let mut f = self.reader()?;
        self.read_bytes_from(&mut f, t)
    }

    /// A reader over the file (or its bytes in memory), for [`GgufFile::read_f32_from`].
    pub fn reader(&self) -> Result<Box<dyn ReadSeek>> {
        Ok(source::open(&self.path, self.memory.as_ref())?.0)
    }

    fn read_bytes_from<R: Read + Seek>(&self, f: &mut R, t: &TensorInfo) -> Result<Vec<u8>> {
        // `open` checked that the range lies inside the file; a file that shrank since
        // then gives an I/O error here, not a panic.
        let io = |e| Error::io(&self.path, e);
        f.seek(SeekFrom::Start(self.data_start + t.offset))
            .map_err(io)?;
        let mut buf = vec![0u8; t.n_bytes as usize];
        f.read_exact(&mut buf).map_err(io)?;
        Ok(buf)
    }

    /// One tensor dequantized to f32, in PyTorch shape order, marked with the dtype
    /// `--base-dtype keep` gives it ([`GgmlType::kept`]).
    pub fn read_f32(&self, t: &TensorInfo) -> Result<HostTensor> {
        let mut f = self.reader()?;
        self.read_f32_from(&mut f, t)
    }

    /// Like [`GgufFile::read_f32`], reusing an open reader ([`GgufFile::reader`]).
    pub fn read_f32_from<R: Read + Seek>(&self, f: &mut R, t: &TensorInfo) -> Result<HostTensor> {
        let bytes = self.read_bytes_from(f, t)?;
        let data = dequantize(t.ggml_type, &bytes, t.n_elements as usize)
            .map_err(|m| bad_file(&self.path, format!("tensor '{}': {m}", t.name)))?;
        Ok(HostTensor::stored_as(t.shape(), data, t.ggml_type.kept()))
    }
}

/// A bounds-checked little-endian reader over the header.
struct Cursor<'a> {
    r: BufReader<Box<dyn ReadSeek>>,
    pos: u64,
    len: u64,
    path: &'a Path,
}

impl Cursor<'_> {
    fn err(&self, message: impl Into<String>) -> Error {
        bad_file(self.path, message)
    }

    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    /// Refuses `count` items of at least `min_size` bytes each if they cannot fit.
    fn check_count(&self, count: u64, min_size: u64, what: &str) -> Result<()> {
        match count.checked_mul(min_size) {
            Some(n) if n <= self.remaining() => Ok(()),
            _ => Err(self.err(format!(
                "header claims {count} {what} at byte {}, more than the {} bytes left could hold",
                self.pos,
                self.remaining()
            ))),
        }
    }

    fn bytes(&mut self, n: u64, what: &str) -> Result<Vec<u8>> {
        if n > self.remaining() {
            return Err(self.err(format!(
                "truncated: {what} needs {n} bytes at byte {}, the file has {} bytes",
                self.pos, self.len
            )));
        }
        let mut buf = vec![0u8; n as usize];
        self.r
            .read_exact(&mut buf)
            .map_err(|e| Error::io(self.path, e))?;
        self.pos += n;
        Ok(buf)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let b = self.bytes(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&b);
        Ok(out)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let b = self.bytes(n, what)?;
        String::from_utf8(b).map_err(|_| self.err(format!("{what}: string is not UTF-8")))
    }

    /// A key or tensor name: a string with a sane length limit.
    fn name(&mut self, what: &str) -> Result<String> {
        let start = self.pos;
        let n = self.u64(what)?;
        if n > MAX_NAME {
            return Err(self.err(format!(
                "{what}: name of {n} bytes at byte {start} is too long"
            )));
        }
        let b = self.bytes(n, what)?;
        String::from_utf8(b).map_err(|_| self.err(format!("{what}: name is not UTF-8")))
    }

    /// Minimum encoded size of a value of type `ty`, for count checks.
    fn min_size(ty: u32) -> u64 {
        match ty {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            8 => 8,  // string: its length
            9 => 12, // array: element type and count
            _ => 1,
        }
    }

    fn value(&mut self, ty: u32, depth: usize, what: &str) -> Result<MetaValue> {
        Ok(match ty {
            0 => MetaValue::U8(self.array::<1>(what)?[0]),
            1 => MetaValue::I8(self.array::<1>(what)?[0] as i8),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetaValue::U32(self.u32(what)?),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => match self.array::<1>(what)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(self.err(format!("{what}: bool byte {b} is neither 0 nor 1"))),
            },
            8 => MetaValue::Str(self.string(what)?),
            9 => {
                if depth >= MAX_ARRAY_DEPTH {
                    return Err(self.err(format!(
                        "{what}: arrays nested deeper than {MAX_ARRAY_DEPTH}"
                    )));
                }
                let elem = self.u32(what)?;
                let count = self.u64(what)?;
                if elem > 12 {
                    return Err(self.err(format!("{what}: unknown array element type {elem}")));
                }
                self.check_count(count, Self::min_size(elem), &format!("elements in {what}"))?;
                // No `with_capacity(count)`: each element consumes file bytes, so the
                // vector only grows as far as the file really goes.
                let mut items = Vec::new();
                for _ in 0..count {
                    items.push(self.value(elem, depth + 1, what)?);
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(self.u64(what)?),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            t => return Err(self.err(format!("{what}: unknown value type {t}"))),
        })
    }
}
