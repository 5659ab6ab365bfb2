//! A checkpoint tensor on the host side: its shape, the dtype the file stores it in, and
//! where its values are. Loaders read only headers: a tensor of a file is a range of that
//! file, read a few rows at a time when it is used (uploaded to the GPU, or widened to
//! f32 for a reference), so a checkpoint never exists in host memory as a whole, nor
//! does its largest tensor.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use super::bad_file;
use super::gguf::{dequantize, GgmlType};
use super::source::{self, SharedBytes};
use crate::gpu::DType;
use crate::{Error, Result};

/// A tensor of a checkpoint: row-major values of `shape`, stored as `stored`.
#[derive(Clone, Debug, PartialEq)]
pub struct HostTensor {
    pub shape: Vec<usize>,
    /// F32, F16, BF16, or a ggml block type as in the file; F16 for the GGUF block types
    /// no kernel reads (the nearest dtype the kernels read). What `--base-dtype keep`
    /// keeps on the device.
    pub stored: DType,
    payload: Payload,
}

#[derive(Clone, Debug, PartialEq)]
enum Payload {
    /// Values made in memory (random checkpoints, tests).
    Memory(Vec<f32>),
    /// A range of a checkpoint file.
    File(FileTensor),
}

/// Where a tensor's bytes lie in its file and how they are laid out.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct FileTensor {
    pub path: PathBuf,
    /// The file's bytes when it was given in memory (see [`SharedBytes`]), else `None`:
    /// read from `path`.
    pub memory: Option<SharedBytes>,
    /// The file's own name of the tensor, for messages.
    pub name: String,
    /// Absolute byte offset and length in the file.
    pub offset: u64,
    pub len: usize,
    pub layout: FileLayout,
    /// Llama q/k projections of a GGUF file: rows are in llama.cpp's interleaved RoPE
    /// order for this many heads and are read back in Hugging Face order.
    pub unpermute_heads: Option<usize>,
}

/// A file's element encoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum FileLayout {
    /// safetensors F32, F16 or BF16.
    Float(DType),
    /// A ggml type (GGUF).
    Ggml(GgmlType),
}

impl HostTensor {
    /// An f32 tensor held in memory.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> HostTensor {
        HostTensor::stored_as(shape, data, DType::F32)
    }

    /// A tensor held in memory as f32 that a file stored as `stored`.
    pub fn stored_as(shape: Vec<usize>, data: Vec<f32>, stored: DType) -> HostTensor {
        debug_assert_eq!(shape.iter().product::<usize>(), data.len());
        HostTensor {
            shape,
            stored,
            payload: Payload::Memory(data),
        }
    }

    /// A tensor left in its file, read on use.
    pub(crate) fn in_file(shape: Vec<usize>, stored: DType, file: FileTensor) -> HostTensor {
        HostTensor {
            shape,
            stored,
            payload: Payload::File(file),
        }
    }

    /// Element count.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Rows along the first dimension (1 for a scalar).
    pub fn row_count(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// The values as f32 (dequantized, widened, Llama q/k rows in Hugging Face order).
    /// A file tensor is read now; a NaN or Inf in it is an error naming the file.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        if let Payload::Memory(data) = &self.payload {
            return Ok(data.clone());
        }
        self.rows()?.get(0, self.row_count())
    }

    /// Whether the file holds this tensor in exactly device dtype `dtype` (F16 stays
    /// F16, a GGUF's Q4_1 blocks stay the blocks llama.cpp reads, bit for bit), so that
    /// [`Rows::raw`] can upload its bytes as they are.
    pub fn file_holds(&self, dtype: DType) -> bool {
        match &self.payload {
            Payload::Memory(_) => false,
            Payload::File(f) => match f.layout {
                FileLayout::Float(d) => d == dtype,
                FileLayout::Ggml(t) => t.kept() == dtype && dtype.ggml() == t,
            },
        }
    }

    /// The tensor's rows, read a range at a time ([`Rows::get`], [`Rows::raw`]). Checks
    /// that the file's range holds whole rows.
    pub fn rows(&self) -> Result<Rows<'_>> {
        let n_rows = self.row_count();
        let cols = self.len() / n_rows.max(1);
        let source = match &self.payload {
            Payload::Memory(data) => RowsSource::Memory(data),
            Payload::File(f) => {
                let (block, block_bytes) = match f.layout {
                    FileLayout::Float(d) => (1, d.bytes_for(1)),
                    FileLayout::Ggml(t) => (t.block_size(), t.type_size()),
                };
                if !cols.is_multiple_of(block) || f.len != self.len() / block * block_bytes {
                    return Err(f.bad(format!(
                        "{} bytes do not hold {n_rows} rows of {cols} values",
                        f.len
                    )));
                }
                if let Some(heads) = f.unpermute_heads {
                    if heads == 0 || !n_rows.is_multiple_of(2 * heads) {
                        return Err(f.bad(format!(
                            "has {n_rows} rows, not {heads} heads of an even size"
                        )));
                    }
                }
                RowsSource::File {
                    file: f,
                    row_bytes: cols / block * block_bytes,
                }
            }
        };
        Ok(Rows {
            n_rows,
            cols,
            source,
        })
    }
}

/// A tensor's rows, read from its file on request.
pub struct Rows<'a> {
    n_rows: usize,
    cols: usize,
    source: RowsSource<'a>,
}

enum RowsSource<'a> {
    Memory(&'a [f32]),
    File {
        file: &'a FileTensor,
        row_bytes: usize,
    },
}

impl Rows<'_> {
    /// Rows start..start + n as f32; a NaN or Inf among them is an error naming the file
    /// and the tensor.
    pub fn get(&self, start: usize, n: usize) -> Result<Vec<f32>> {
        self.check_range(start, n)?;
        let count = n * self.cols;
        let f = match &self.source {
            RowsSource::Memory(data) => {
                return Ok(data[start * self.cols..start * self.cols + count].to_vec())
            }
            RowsSource::File { file, .. } => *file,
        };
        let bytes = self.read(start, n)?;
        let data = decode(f.layout, &bytes, count)
            .ok_or_else(|| f.bad(format!("{} bytes do not hold {count} values", bytes.len())))?;
        self.check_finite(&data, start)?;
        Ok(data)
    }

    /// Rows start..start + n in the file's own encoding (see
    /// [`HostTensor::file_holds`]), checked for NaN and Inf.
    pub fn raw(&self, start: usize, n: usize) -> Result<Vec<u8>> {
        self.check_range(start, n)?;
        let RowsSource::File { file, .. } = &self.source else {
            return Err(Error::Invalid(
                "a tensor made in memory has no file bytes".into(),
            ));
        };
        let bytes = self.read(start, n)?;
        let values = decode(file.layout, &bytes, n * self.cols).ok_or_else(|| {
            file.bad(format!(
                "{} bytes do not hold {} values",
                bytes.len(),
                n * self.cols
            ))
        })?;
        self.check_finite(&values, start)?;
        Ok(bytes)
    }

    fn check_range(&self, start: usize, n: usize) -> Result<()> {
        if start + n > self.n_rows {
            return Err(Error::Invalid(format!(
                "rows {start}..{} of a {}-row tensor",
                start + n,
                self.n_rows
            )));
        }
        Ok(())
    }

    fn check_finite(&self, values: &[f32], start: usize) -> Result<()> {
        let RowsSource::File { file, .. } = &self.source else {
            return Ok(());
        };
        match values.iter().position(|v| !v.is_finite()) {
            None => Ok(()),
            Some(j) => Err(file.bad(format!(
                "holds a non-finite value ({}) at element {} (a damaged file?)",
                values[j],
                start * self.cols + j
            ))),
        }
    }

    /// The file bytes of rows start..start + n, in Hugging Face row order: one read for
    /// a plain tensor, one per row for Llama's permuted q/k (HF row s·hs/2 + j of a head
    /// is the file's row 2j + s, see `gguf::unpermute_rows`).
    fn read(&self, start: usize, n: usize) -> Result<Vec<u8>> {
        let RowsSource::File { file, row_bytes } = &self.source else {
            return Ok(Vec::new());
        };
        let row_bytes = *row_bytes;
        let io = |e| Error::io(&file.path, e);
        // The loader checked that the range lies inside the file; a file that shrank
        // since gives an I/O error here, not a panic.
        let (mut handle, _) = source::open(&file.path, file.memory.as_ref())?;
        let mut out = vec![0u8; n * row_bytes];
        let Some(heads) = file.unpermute_heads else {
            let at = file.offset + (start * row_bytes) as u64;
            handle.seek(SeekFrom::Start(at)).map_err(io)?;
            handle.read_exact(&mut out).map_err(io)?;
            return Ok(out);
        };
        let hs = self.n_rows / heads;
        for (i, row) in out.chunks_exact_mut(row_bytes).enumerate() {
            let r = start + i;
            let (h, within) = (r / hs, r % hs);
            let (s, j) = (within / (hs / 2), within % (hs / 2));
            let file_row = h * hs + 2 * j + s;
            let at = file.offset + (file_row * row_bytes) as u64;
            handle.seek(SeekFrom::Start(at)).map_err(io)?;
            handle.read_exact(row).map_err(io)?;
        }
        Ok(out)
    }
}

/// `count` values of `layout` from `bytes` as f32.
fn decode(layout: FileLayout, bytes: &[u8], count: usize) -> Option<Vec<f32>> {
    match layout {
        FileLayout::Float(d) => d.decode(bytes, count),
        FileLayout::Ggml(t) => dequantize(t, bytes, count).ok(),
    }
}

impl FileTensor {
    fn bad(&self, message: impl Into<String>) -> Error {
        bad_file(
            &self.path,
            format!("tensor '{}' {}", self.name, message.into()),
        )
    }
}
