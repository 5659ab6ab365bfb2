//! Tensors: a GPU buffer with a shape, and views of contiguous sub-ranges of it.
//!
//! Storage is f32, except frozen weights, which may be stored as f16, bf16 or ggml's
//! blocks ([`DType`]):
//! only the kernels that read a frozen weight accept those (through the weights snippets
//! of [`crate::shaders`]), and [`Gpu::prepare`] refuses a low-precision tensor anywhere
//! else. A view is what a kernel binds: ops that handle tensors larger than the
//! storage-binding limit bind several views in turn (see [`Tensor::view`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use wgpu::util::DeviceExt;

use super::context::Gpu;
use crate::error::{Error, Result};
use crate::loaders::gguf::GgmlType;

/// Element type of a tensor's storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(non_camel_case_types)]
pub enum DType {
    F32,
    /// IEEE 754 half, two to a u32 (element 2j in the low 16 bits).
    F16,
    /// bfloat16 (the top half of an f32), two to a u32 (element 2j in the low 16 bits).
    BF16,
    /// ggml's 8-bit blocks: 32 values in 34 bytes (an f16 scale, 32 i8).
    #[serde(rename = "q8_0")]
    Q8_0,
    /// ggml's 4-bit blocks: 32 values in 18 bytes (an f16 scale, 16 bytes of nibbles).
    #[serde(rename = "q4_0")]
    Q4_0,
    /// ggml's 4-bit blocks with a minimum: 32 values in 20 bytes (f16 scale and minimum).
    #[serde(rename = "q4_1")]
    Q4_1,
    /// ggml's 4-bit super-blocks: 256 values in 144 bytes (f16 d and dmin, eight 6-bit
    /// scales and mins, 128 bytes of nibbles). Kept from a GGUF file only: no quantizer.
    #[serde(rename = "q4_k")]
    Q4_K,
    /// ggml's 5-bit super-blocks: 256 values in 176 bytes (Q4_K's plus 32 bytes of fifth
    /// bits). Kept from a GGUF file only.
    #[serde(rename = "q5_k")]
    Q5_K,
    /// ggml's 6-bit super-blocks: 256 values in 210 bytes (low nibbles, high bit pairs,
    /// sixteen i8 scales, f16 d). Kept from a GGUF file only.
    #[serde(rename = "q6_k")]
    Q6_K,
}

impl DType {
    /// Every storage dtype.
    pub const ALL: &'static [DType] = &[
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
        DType::Q4_K,
        DType::Q5_K,
        DType::Q6_K,
    ];

    /// The dtypes any f32 weight can be stored in (`--base-dtype`): all but the K-quants,
    /// which have no quantizer here and only come from a GGUF file as they are.
    pub const ENCODED: &'static [DType] = &[
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::Q8_0,
        DType::Q4_0,
        DType::Q4_1,
    ];

    /// Elements per block: 32 for ggml's Q8_0 / Q4_0 / Q4_1, 256 for its K-quant
    /// super-blocks, else 1. A tensor of a block type holds whole blocks, and its views
    /// start and end on block boundaries.
    pub fn block(self) -> usize {
        match self {
            DType::F32 | DType::F16 | DType::BF16 => 1,
            DType::Q8_0 | DType::Q4_0 | DType::Q4_1 => 32,
            DType::Q4_K | DType::Q5_K | DType::Q6_K => 256,
        }
    }

    /// Bytes per block (per element for the float types).
    fn block_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::Q8_0 => 34,
            DType::Q4_0 => 18,
            DType::Q4_1 => 20,
            DType::Q4_K => 144,
            DType::Q5_K => 176,
            DType::Q6_K => 210,
        }
    }

    /// Bytes that `n` elements take (`n` whole blocks for a block type; a partial block
    /// counts whole).
    pub fn bytes_for(self, n: usize) -> usize {
        n.div_ceil(self.block()) * self.block_bytes()
    }

    /// The ggml type with this layout.
    pub(crate) fn ggml(self) -> GgmlType {
        match self {
            DType::F32 => GgmlType::F32,
            DType::F16 => GgmlType::F16,
            DType::BF16 => GgmlType::BF16,
            DType::Q8_0 => GgmlType::Q8_0,
            DType::Q4_0 => GgmlType::Q4_0,
            DType::Q4_1 => GgmlType::Q4_1,
            DType::Q4_K => GgmlType::Q4_K,
            DType::Q5_K => GgmlType::Q5_K,
            DType::Q6_K => GgmlType::Q6_K,
        }
    }

    /// The lowercase name used on the command line and in records.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::Q8_0 => "q8_0",
            DType::Q4_0 => "q4_0",
            DType::Q4_1 => "q4_1",
            DType::Q4_K => "q4_k",
            DType::Q5_K => "q5_k",
            DType::Q6_K => "q6_k",
        }
    }

    /// What a kernel reads for a weight stored from `data` in this dtype: each value
    /// rounded to nearest even (f16, bf16), or quantized and decoded block by block
    /// (ggml's reference quantizers). `None` when `data` is not whole blocks, or for a
    /// K-quant (no quantizer).
    pub fn round_trip(self, data: &[f32]) -> Option<Vec<f32>> {
        let bytes = self.encode(data)?;
        self.decode(&bytes, data.len())
    }

    /// The storage bytes of `data` in this dtype (padded to 4 bytes); `None` when `data`
    /// is not whole blocks, or for a K-quant (not in [`DType::ENCODED`]).
    pub fn encode(self, data: &[f32]) -> Option<Vec<u8>> {
        if !DType::ENCODED.contains(&self) {
            return None;
        }
        let mut out: Vec<u8> = match self {
            DType::F32 => bytemuck::cast_slice(data).to_vec(),
            DType::F16 => data
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
            DType::BF16 => data
                .iter()
                .flat_map(|&v| half::bf16::from_f32(v).to_le_bytes())
                .collect(),
            _ => crate::loaders::gguf::quantize::quantize(self.ggml(), data)?,
        };
        out.resize(out.len().div_ceil(4) * 4, 0);
        Some(out)
    }

    /// f32 values of `n` elements stored as `bytes` (at least their size) in this dtype.
    pub(crate) fn decode(self, bytes: &[u8], n: usize) -> Option<Vec<f32>> {
        let bytes = bytes.get(..self.bytes_for(n))?;
        match self {
            // Activations come back this way: no per-element decoding.
            DType::F32 => Some(bytemuck::pod_collect_to_vec(bytes)),
            _ => crate::loaders::gguf::dequantize(self.ggml(), bytes, n).ok(),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<DType, String> {
        DType::ALL
            .iter()
            .copied()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = DType::ALL.iter().map(|d| d.name()).collect();
                format!("unknown dtype '{s}' ({})", names.join(", "))
            })
    }
}

/// Bytes currently held by the buffers boha creates, and the high-water mark (the
/// benchmarks' peak memory and the check of `graph::memory`'s estimate read it).
///
/// Counted: every tensor's storage (its size rounded up to 4 bytes, at least 4), the
/// uniform buffer of every prepared [`super::Dispatch`] (its `Params` rounded up to 16
/// bytes), and the staging buffer of [`Gpu::download`] while a read is in flight (a
/// step's loss read-back lives only then, but it is real memory at the step's end).
/// Not counted: the driver's own allocations (pipelines, bind groups, alignment padding
/// of allocations), wgpu's internal staging for [`Gpu::write`] / [`Gpu::upload`], and
/// the 32 bytes of timestamp buffers that `Gpu::run_timed` makes for one timing.
#[derive(Debug, Default)]
pub(crate) struct MemoryMeter {
    pub(crate) live: AtomicU64,
    pub(crate) peak: AtomicU64,
}

impl MemoryMeter {
    fn add(&self, n: u64) {
        let now = self.live.fetch_add(n, Ordering::Relaxed) + n;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    fn sub(&self, n: u64) {
        self.live.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A buffer counted by the meter while it lives: the storage under one or more tensors,
/// a dispatch's uniform, a download's staging buffer.
#[derive(Debug)]
pub(crate) struct Storage {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) bytes: u64,
    meter: Arc<MemoryMeter>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        self.meter.sub(self.bytes);
    }
}

/// A GPU tensor: shared storage, an element offset into it, and a row-major shape.
#[derive(Clone, Debug)]
pub struct Tensor {
    pub(crate) storage: Arc<Storage>,
    /// Offset of element 0, in elements.
    pub(crate) offset: usize,
    shape: Vec<usize>,
    dtype: DType,
}

impl Tensor {
    /// The row-major shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a tensor with no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Size of the elements in bytes.
    pub fn bytes(&self) -> u64 {
        self.dtype.bytes_for(self.len()) as u64
    }

    /// Offset of element 0 in the buffer, in bytes.
    pub fn byte_offset(&self) -> u64 {
        self.dtype.bytes_for(self.offset) as u64
    }

    /// Same storage, new shape with the same element count.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.len() {
            return Err(Error::shape(
                "reshape",
                format!(
                    "{:?} ({} elements) to {:?} ({n})",
                    self.shape,
                    self.len(),
                    shape
                ),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.clone()
        })
    }

    /// A view of `len` elements starting at element `start`, as a flat tensor. The byte
    /// offset must meet the device's binding alignment if a kernel is to bind it.
    pub fn view(&self, start: usize, len: usize) -> Result<Tensor> {
        let block = self.dtype.block();
        if !start.is_multiple_of(block) || !len.is_multiple_of(block) {
            return Err(Error::shape(
                "view",
                format!(
                    "range {start}..{} of a {} tensor does not fall on its {block}-element blocks",
                    start + len,
                    self.dtype
                ),
            ));
        }
        if start + len > self.len() {
            return Err(Error::shape(
                "view",
                format!(
                    "range {start}..{} outside {} elements",
                    start + len,
                    self.len()
                ),
            ));
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            offset: self.offset + start,
            shape: vec![len],
            dtype: self.dtype,
        })
    }

    /// A view of rows `start..start + rows` of a tensor seen as `[rows_total, row_len]`
    /// with `row_len` its last dimension.
    pub fn rows(&self, start: usize, rows: usize) -> Result<Tensor> {
        let row_len = *self.shape.last().unwrap_or(&1);
        let mut shape = vec![rows];
        if self.shape.len() > 1 {
            shape.push(row_len);
        }
        let v = self.view(start * row_len, rows * row_len)?;
        v.reshape(&shape)
    }

    /// True if both tensors live in the same GPU buffer.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }
}

/// Refuses a block dtype for a shape whose rows are not whole blocks.
fn check_blocks(shape: &[usize], dtype: DType) -> Result<()> {
    let row = shape.last().copied().unwrap_or(1);
    if !row.is_multiple_of(dtype.block()) {
        return Err(Error::Invalid(format!(
            "{dtype} stores rows of whole {}-value blocks; a {shape:?} tensor's rows have {row}",
            dtype.block()
        )));
    }
    Ok(())
}

impl Gpu {
    /// Creates a buffer (inside error scopes naming `context`) and counts its bytes until
    /// the returned storage drops.
    fn metered(
        &self,
        bytes: u64,
        context: &str,
        create: impl FnOnce() -> wgpu::Buffer,
    ) -> Result<Arc<Storage>> {
        let buffer = self.scoped(context, create)?;
        self.meter.add(bytes);
        Ok(Arc::new(Storage {
            buffer,
            bytes,
            meter: self.meter.clone(),
        }))
    }

    /// A uniform buffer holding `contents` (a multiple of 16 bytes), counted by the meter
    /// for as long as the dispatch that binds it lives.
    pub(crate) fn uniform(&self, contents: &[u8], label: &str) -> Result<Arc<Storage>> {
        self.metered(contents.len() as u64, &format!("params of {label}"), || {
            self.device
                .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                    label: Some("params"),
                    contents,
                    usage: wgpu::BufferUsages::UNIFORM,
                })
        })
    }

    fn new_storage(&self, bytes: u64, label: &str) -> Result<Arc<Storage>> {
        // Buffers are padded to 4 bytes and at least 4 so every tensor, empty ones too,
        // can be bound and copied.
        let size = bytes.max(4).div_ceil(4) * 4;
        if size > self.limits.max_buffer_size {
            return Err(Error::Gpu {
                context: format!("allocating {label}"),
                message: format!(
                    "{size} bytes exceeds the device's max buffer size {}",
                    self.limits.max_buffer_size
                ),
            });
        }
        self.metered(size, &format!("allocating {label} ({size} bytes)"), || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage: wgpu::BufferUsages::STORAGE
                    | wgpu::BufferUsages::COPY_SRC
                    | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })
    }

    /// A zero-filled f32 tensor.
    pub fn zeros(&self, shape: &[usize]) -> Result<Tensor> {
        self.zeros_as(shape, DType::F32)
    }

    /// A zero-filled tensor stored as `dtype`.
    pub fn zeros_as(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        // wgpu zero-initialises new buffers.
        let storage = self.new_storage(dtype.bytes_for(n) as u64, "tensor")?;
        Ok(Tensor {
            storage,
            offset: 0,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// Uploads `data` as a tensor of `shape` stored as `dtype` (rounded or quantized, see
    /// [`DType::round_trip`]): how a frozen weight goes to the GPU. A block dtype needs
    /// rows (the last dimension) of whole blocks; a K-quant is refused (no quantizer:
    /// [`Gpu::upload_bytes`] takes a file's blocks).
    pub fn upload_as(&self, shape: &[usize], data: &[f32], dtype: DType) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape(
                "upload",
                format!("shape {shape:?} needs {n} values, got {}", data.len()),
            ));
        }
        check_blocks(shape, dtype)?;
        if !DType::ENCODED.contains(&dtype) {
            return Err(Error::Invalid(format!(
                "no quantizer for {dtype}; K-quant weights come from a GGUF file as they are"
            )));
        }
        let bytes = dtype
            .encode(data)
            .ok_or_else(|| Error::shape("upload", format!("{shape:?} as {dtype}")))?;
        self.upload_bytes(shape, dtype, &bytes)
    }

    /// Uploads a tensor of `shape` stored as `dtype`, about `chunk_values` values (whole
    /// rows, four at a time) at a time: `rows(start, n)` gives the storage bytes of rows
    /// start..start + n in `dtype` (a file's own blocks, or values encoded with
    /// [`DType::encode`]), which are written and their staging released before the next
    /// chunk is asked for. A weight so never exists whole on the host, in the file's
    /// encoding, in f32 or in the device's.
    pub fn upload_rows(
        &self,
        shape: &[usize],
        dtype: DType,
        chunk_values: usize,
        mut rows: impl FnMut(usize, usize) -> Result<Vec<u8>>,
    ) -> Result<Tensor> {
        check_blocks(shape, dtype)?;
        let n_rows = shape.first().copied().unwrap_or(1);
        let cols = shape.iter().skip(1).product::<usize>();
        let t = self.zeros_as(shape, dtype)?;
        // Four rows of whole blocks are a whole number of 4-byte words in every dtype, so
        // every chunk but the last starts and ends on a word.
        let step = (chunk_values / cols.max(1)).max(1).next_multiple_of(4);
        let mut start = 0;
        while start < n_rows && cols > 0 {
            let n = step.min(n_rows - start);
            let mut bytes = rows(start, n)?;
            let need = dtype.bytes_for(n * cols);
            if bytes.len() < need || bytes.len() > need.next_multiple_of(4) {
                return Err(Error::shape(
                    "upload",
                    format!(
                        "rows {start}..{} of {shape:?} as {dtype} take {need} bytes, got {}",
                        start + n,
                        bytes.len()
                    ),
                ));
            }
            bytes.resize(need.next_multiple_of(4), 0);
            let offset = dtype.bytes_for(start * cols) as u64;
            self.scoped("writing a tensor", || {
                self.queue.write_buffer(&t.storage.buffer, offset, &bytes)
            })?;
            drop(bytes);
            self.finish_uploads()?;
            start += n;
        }
        Ok(t)
    }

    /// Uploads a tensor's storage bytes as they are (a GGUF file's blocks): `bytes` holds
    /// exactly what `shape` needs in `dtype`.
    pub fn upload_bytes(&self, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<Tensor> {
        check_blocks(shape, dtype)?;
        let n: usize = shape.iter().product();
        let need = dtype.bytes_for(n);
        if bytes.len() < need || bytes.len() > need.div_ceil(4) * 4 {
            return Err(Error::shape(
                "upload",
                format!(
                    "{shape:?} as {dtype} takes {need} bytes, got {}",
                    bytes.len()
                ),
            ));
        }
        let t = self.zeros_as(shape, dtype)?;
        if n > 0 {
            // Buffers are written in whole words: the bytes' word-aligned part as it is
            // (no host copy of the tensor), the last partial word padded with zeros.
            let bytes = &bytes[..need];
            let whole = need / 4 * 4;
            self.scoped("writing a tensor", || {
                if whole > 0 {
                    self.queue
                        .write_buffer(&t.storage.buffer, 0, &bytes[..whole]);
                }
                if whole < need {
                    let mut tail = [0u8; 4];
                    tail[..need - whole].copy_from_slice(&bytes[whole..]);
                    self.queue
                        .write_buffer(&t.storage.buffer, whole as u64, &tail);
                }
            })?;
        }
        Ok(t)
    }

    /// Uploads `data` as an f32 tensor of `shape`.
    pub fn upload(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape(
                "upload",
                format!("shape {shape:?} needs {n} values, got {}", data.len()),
            ));
        }
        let t = self.zeros(shape)?;
        self.write(&t, data)?;
        Ok(t)
    }

    /// Uploads `data` (token ids, targets, positions) as raw u32 bits in a tensor that
    /// stays [`DType::F32`]: kernels bind it as `array<u32>`; reading it as f32 on the host
    /// gives the bit patterns (`f32::to_bits` recovers the values).
    pub fn upload_u32(&self, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(Error::shape(
                "upload_u32",
                format!("shape {shape:?} needs {n} values, got {}", data.len()),
            ));
        }
        let t = self.zeros(shape)?;
        if !data.is_empty() {
            self.scoped("writing a u32 tensor", || {
                self.queue
                    .write_buffer(&t.storage.buffer, 0, bytemuck::cast_slice(data))
            })?;
        }
        Ok(t)
    }

    /// Overwrites a tensor's elements with `data`.
    pub fn write(&self, t: &Tensor, data: &[f32]) -> Result<()> {
        if data.len() != t.len() {
            return Err(Error::shape(
                "write",
                format!("tensor has {} elements, data {}", t.len(), data.len()),
            ));
        }
        if data.is_empty() {
            return Ok(());
        }
        if t.dtype != DType::F32 {
            return Err(Error::Invalid(format!(
                "write: the tensor is stored as {}; only f32 tensors are written in place",
                t.dtype
            )));
        }
        self.scoped("writing a tensor", || {
            self.queue.write_buffer(
                &t.storage.buffer,
                t.byte_offset(),
                bytemuck::cast_slice(data),
            )
        })
    }

    /// Copies a tensor back to the host as f32 (widening f16 and bf16), waiting at most the
    /// poll timeout.
    /// In the browser this cannot block: it refuses, naming [`Gpu::download_async`].
    pub fn download(&self, t: &Tensor) -> Result<Vec<f32>> {
        #[cfg(target_arch = "wasm32")]
        if !t.is_empty() {
            return Err(Error::Invalid(
                "a blocking read-back in the browser; use Gpu::download_async".into(),
            ));
        }
        let Some((staging, idx)) = self.start_download(t)? else {
            return Ok(Vec::new());
        };
        let staging = &staging.buffer;
        let (tx, rx) = std::sync::mpsc::channel();
        staging.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait_for(Some(idx))?;
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(Error::Gpu {
                    context: "mapping a download".into(),
                    message: e.to_string(),
                })
            }
            Err(_) => return Err(Error::DeviceTimeout(self.timeout)),
        }
        self.finish_download(staging, t)
    }

    /// Copies `t` into a new mappable staging buffer and submits the copy (`None` for an
    /// empty tensor): the first half of a read-back, shared by [`Gpu::download`] and
    /// [`Gpu::download_async`].
    pub(crate) fn start_download(
        &self,
        t: &Tensor,
    ) -> Result<Option<(Arc<Storage>, wgpu::SubmissionIndex)>> {
        if t.is_empty() {
            return Ok(None);
        }
        // Copies are whole u32 words: a 2-byte dtype's odd tail word is read whole.
        let bytes = t.bytes().div_ceil(4) * 4;
        let staging = self.metered(bytes, "allocating a download buffer", || {
            self.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("download"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            })
        })?;
        let mut enc = self.device.create_command_encoder(&Default::default());
        enc.copy_buffer_to_buffer(
            &t.storage.buffer,
            t.byte_offset(),
            &staging.buffer,
            0,
            bytes,
        );
        let idx = self.scoped("downloading a tensor", || self.queue.submit([enc.finish()]))?;
        Ok(Some((staging, idx)))
    }

    /// Decodes a mapped staging buffer of `t` and unmaps it: the second half of a
    /// read-back.
    pub(crate) fn finish_download(&self, staging: &wgpu::Buffer, t: &Tensor) -> Result<Vec<f32>> {
        let n = t.len();
        let out = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Gpu {
                    context: "reading a download".into(),
                    message: e.to_string(),
                })?;
            t.dtype.decode(&view, n).ok_or_else(|| Error::Gpu {
                context: "reading a download".into(),
                message: format!("{n} {} elements do not decode", t.dtype),
            })?
        };
        staging.unmap();
        Ok(out)
    }

    /// Bytes held by live tensors.
    pub fn live_bytes(&self) -> u64 {
        self.meter.live.load(Ordering::Relaxed)
    }

    /// Peak of [`Gpu::live_bytes`] since the last [`Gpu::reset_peak`].
    pub fn peak_bytes(&self) -> u64 {
        self.meter.peak.load(Ordering::Relaxed)
    }

    /// Restarts peak tracking from the bytes live now.
    pub fn reset_peak(&self) {
        self.meter
            .peak
            .store(self.meter.live.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}
