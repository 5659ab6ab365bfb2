//! Dispatches and recordings. A [`Dispatch`] is a pipeline with its bind group and
//! workgroup counts, made once and recorded as often as needed; a [`Recorder`] collects
//! dispatches, copies and clears and submits them as one command buffer.

use std::sync::Arc;
use std::time::Instant;

use super::context::Gpu;
use super::registry::{BindingKind, CachedPipeline, Kernel};
use super::tensor::{DType, Storage, Tensor};
use crate::error::{Error, Result};

/// The per-dispatch sizes a kernel reads from its uniform at binding 0: a flat list of
/// 32-bit words (u32 or f32 bits) matching the WGSL `Params` struct field by field.
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<u32>);

impl Params {
    /// Empty parameter list.
    pub fn new() -> Params {
        Params(Vec::new())
    }
    /// Appends a `u32` field.
    pub fn u(mut self, v: usize) -> Params {
        self.0
            .push(u32::try_from(v).expect("kernel parameter exceeds u32"));
        self
    }
    /// Appends an `f32` field.
    pub fn f(mut self, v: f32) -> Params {
        self.0.push(v.to_bits());
        self
    }
    fn bytes(&self) -> Vec<u8> {
        // Uniform buffers are sized in 16-byte steps.
        let mut words = self.0.clone();
        while words.is_empty() || !words.len().is_multiple_of(4) {
            words.push(0);
        }
        bytemuck::cast_slice(&words).to_vec()
    }
}

/// One kernel launch, ready to record: made once, recorded any number of times.
#[derive(Clone, Debug)]
pub struct Dispatch {
    label: &'static str,
    pipeline: Arc<CachedPipeline>,
    bind_group: wgpu::BindGroup,
    groups: [u32; 3],
    /// Keeps the bound tensors alive with the dispatch (the meter counts them while
    /// they live).
    _tensors: Vec<Tensor>,
    /// The params uniform, counted by the meter too; clones of the dispatch share it.
    _uniform: Option<Arc<Storage>>,
}

impl Dispatch {
    /// The kernel's entry point name.
    pub fn label(&self) -> &'static str {
        self.label
    }
}

enum Command {
    Dispatch(Dispatch),
    Copy { src: Tensor, dst: Tensor },
    Zero(Tensor),
}

/// A list of commands to submit together.
#[derive(Default)]
pub struct Recorder {
    commands: Vec<Command>,
}

impl Recorder {
    /// An empty recording.
    pub fn new() -> Recorder {
        Recorder::default()
    }
    /// Records a prepared dispatch.
    pub fn run(&mut self, d: &Dispatch) {
        self.commands.push(Command::Dispatch(d.clone()));
    }
    /// Records every dispatch of a list, in order.
    pub fn run_all(&mut self, ds: &[Dispatch]) {
        for d in ds {
            self.run(d);
        }
    }
    /// Records a copy of `src`'s elements into `dst` (same element count and dtype).
    pub fn copy(&mut self, src: &Tensor, dst: &Tensor) -> Result<()> {
        if src.len() != dst.len() || src.dtype() != dst.dtype() {
            return Err(Error::shape(
                "copy",
                format!(
                    "{} {} elements into {} {}",
                    src.len(),
                    src.dtype(),
                    dst.len(),
                    dst.dtype()
                ),
            ));
        }
        self.commands.push(Command::Copy {
            src: src.clone(),
            dst: dst.clone(),
        });
        Ok(())
    }
    /// Records zero-filling `t`.
    pub fn zero(&mut self, t: &Tensor) {
        self.commands.push(Command::Zero(t.clone()));
    }
    /// Number of recorded commands.
    pub fn len(&self) -> usize {
        self.commands.len()
    }
    /// True if nothing is recorded.
    pub fn is_empty(&self) -> bool {
        self.commands.is_empty()
    }
}

impl Gpu {
    /// Workgroup counts for `n` workgroups along one logical axis, folded into x and y
    /// when `n` exceeds the per-dimension limit. Kernels rebuild the linear id as
    /// `wg.x + wg.y * num_workgroups.x` and skip ids ≥ n.
    pub fn grid(&self, n: usize) -> [u32; 3] {
        let max = self.max_workgroups_per_dim().max(1) as usize;
        let n = n.max(1);
        let x = n.min(max);
        let y = n.div_ceil(x);
        [x as u32, y as u32, 1]
    }

    /// Prepares a dispatch of `kernel`: `params` fills the uniform at binding 0 and
    /// `tensors` go, in order, to the storage bindings the entry point uses (in binding
    /// order; bindings of the shader file that this entry point does not use take no
    /// tensor). Each bound tensor must fit the storage-binding limit and meet the offset
    /// alignment.
    pub fn prepare(
        &self,
        kernel: &Kernel,
        params: &Params,
        tensors: &[&Tensor],
        groups: [u32; 3],
    ) -> Result<Dispatch> {
        let pipeline = self.pipeline(kernel)?;
        let max_dim = self.max_workgroups_per_dim();
        if groups.iter().any(|&g| g > max_dim) {
            return Err(Error::shape(
                kernel.entry,
                format!("workgroup counts {groups:?} exceed the device limit {max_dim}"),
            ));
        }
        let param_bytes = params.bytes();
        let mut uniform = None;
        let storage_bindings = pipeline
            .bindings
            .iter()
            .filter(|b| b.1 != BindingKind::Uniform)
            .count();
        if tensors.len() != storage_bindings {
            return Err(Error::shape(
                kernel.entry,
                format!(
                    "entry point binds {storage_bindings} tensors, {} given",
                    tensors.len()
                ),
            ));
        }
        let weights = kernel.weights_dtype();
        let mut next = 0usize;
        for &(binding, kind) in &pipeline.bindings {
            if kind == BindingKind::Uniform {
                if binding != 0 {
                    return Err(Error::Shader {
                        shader: kernel.shader.name.into(),
                        message: "the params uniform must be binding 0".into(),
                    });
                }
                uniform = Some(self.uniform(&param_bytes, kernel.entry)?);
                continue;
            }
            let t = tensors[next];
            next += 1;
            let want = if pipeline.weight_bindings.contains(&binding) {
                weights
            } else {
                DType::F32
            };
            if t.dtype() != want {
                return Err(Error::Invalid(format!(
                    "{}: binding {binding} reads {want}, the tensor bound there is stored as {}",
                    kernel.entry,
                    t.dtype()
                )));
            }
            if t.bytes() > self.max_binding {
                return Err(Error::shape(
                    kernel.entry,
                    format!(
                        "binding {binding} is {} bytes, over the {}-byte binding limit; the op must bind it in ranges",
                        t.bytes(),
                        self.max_binding
                    ),
                ));
            }
            if !t.byte_offset().is_multiple_of(self.binding_offset_align()) {
                return Err(Error::shape(
                    kernel.entry,
                    format!(
                        "binding {binding} starts at byte {}, not a multiple of {}",
                        t.byte_offset(),
                        self.binding_offset_align()
                    ),
                ));
            }
        }
        let mut next = 0usize;
        let entries: Vec<wgpu::BindGroupEntry> = pipeline
            .bindings
            .iter()
            .map(|&(binding, kind)| {
                let resource = if kind == BindingKind::Uniform {
                    uniform
                        .as_ref()
                        .expect("made above")
                        .buffer
                        .as_entire_binding()
                } else {
                    let t = tensors[next];
                    next += 1;
                    wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: &t.storage.buffer,
                        offset: t.byte_offset(),
                        // Bindings are whole u32 words (a 2-byte dtype's odd tail too).
                        size: wgpu::BufferSize::new(t.bytes().div_ceil(4).max(1) * 4),
                    })
                };
                wgpu::BindGroupEntry { binding, resource }
            })
            .collect();
        let bind_group = self.scoped(&format!("binding {}", kernel.entry), || {
            self.device.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(kernel.entry),
                layout: &pipeline.layout,
                entries: &entries,
            })
        })?;
        Ok(Dispatch {
            label: kernel.entry,
            pipeline,
            bind_group,
            groups,
            _tensors: tensors.iter().map(|&t| t.clone()).collect(),
            _uniform: uniform,
        })
    }

    fn encode(&self, rec: &Recorder, timestamps: Option<&wgpu::QuerySet>) -> wgpu::CommandEncoder {
        self.encode_commands(&rec.commands, timestamps)
    }

    fn encode_commands(
        &self,
        commands: &[Command],
        timestamps: Option<&wgpu::QuerySet>,
    ) -> wgpu::CommandEncoder {
        let mut enc = self.device.create_command_encoder(&Default::default());
        let n = commands.len();
        let mut i = 0;
        let mut first_pass = true;
        while i < n {
            match &commands[i] {
                Command::Dispatch(_) => {
                    let mut j = i;
                    while j < n && matches!(commands[j], Command::Dispatch(_)) {
                        j += 1;
                    }
                    let last_pass = !commands[j..]
                        .iter()
                        .any(|c| matches!(c, Command::Dispatch(_)));
                    let tw = timestamps.map(|q| wgpu::ComputePassTimestampWrites {
                        query_set: q,
                        beginning_of_pass_write_index: first_pass.then_some(0),
                        end_of_pass_write_index: last_pass.then_some(1),
                    });
                    let tw = tw.filter(|t| {
                        t.beginning_of_pass_write_index.is_some()
                            || t.end_of_pass_write_index.is_some()
                    });
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: None,
                        timestamp_writes: tw,
                    });
                    for c in &commands[i..j] {
                        let Command::Dispatch(d) = c else {
                            unreachable!()
                        };
                        pass.set_pipeline(&d.pipeline.pipeline);
                        pass.set_bind_group(0, &d.bind_group, &[]);
                        pass.dispatch_workgroups(d.groups[0], d.groups[1], d.groups[2]);
                    }
                    drop(pass);
                    first_pass = false;
                    i = j;
                }
                Command::Copy { src, dst } => {
                    if src.bytes() > 0 {
                        enc.copy_buffer_to_buffer(
                            &src.storage.buffer,
                            src.byte_offset(),
                            &dst.storage.buffer,
                            dst.byte_offset(),
                            src.bytes(),
                        );
                    }
                    i += 1;
                }
                Command::Zero(t) => {
                    if t.bytes() > 0 {
                        enc.clear_buffer(&t.storage.buffer, t.byte_offset(), Some(t.bytes()));
                    }
                    i += 1;
                }
            }
        }
        enc
    }

    /// Under a submit limit ([`Gpu::set_submit_limit`]) that `rec` exceeds, submits it
    /// in parts, waiting for each part but the last (and for the last too when
    /// `wait_last`); returns false, having done nothing, when no limit applies.
    fn submit_in_parts(&self, rec: &Recorder, wait_last: bool) -> Result<bool> {
        let Some(limit) = self.submit_limit.filter(|&n| rec.commands.len() > n) else {
            return Ok(false);
        };
        let parts = rec.commands.len().div_ceil(limit);
        for (k, part) in rec.commands.chunks(limit).enumerate() {
            let enc = self.encode_commands(part, None);
            self.pass_gate();
            let idx = self.scoped("submitting", || self.queue.submit([enc.finish()]))?;
            if k + 1 < parts || wait_last {
                self.wait_for(Some(idx))?;
            }
        }
        self.check_fault()?;
        Ok(true)
    }

    /// Submits a recording as one command buffer and returns without waiting.
    pub fn submit(&self, rec: &Recorder) -> Result<()> {
        if self.submit_in_parts(rec, false)? {
            return Ok(());
        }
        let enc = self.encode(rec, None);
        self.pass_gate();
        self.scoped("submitting", || self.queue.submit([enc.finish()]))?;
        self.check_fault()
    }

    /// Submits a recording and waits for it, within the poll timeout.
    pub fn run(&self, rec: &Recorder) -> Result<()> {
        if self.submit_in_parts(rec, true)? {
            return Ok(());
        }
        let enc = self.encode(rec, None);
        self.pass_gate();
        let idx = self.scoped("submitting", || self.queue.submit([enc.finish()]))?;
        self.wait_for(Some(idx))
    }

    /// Submits a recording, waits, and returns how long the device spent on it in
    /// seconds: from timestamp queries where the adapter has them (first pass start to
    /// last pass end), otherwise wall clock around submit and wait.
    pub fn run_timed(&self, rec: &Recorder) -> Result<f64> {
        let has_dispatch = rec
            .commands
            .iter()
            .any(|c| matches!(c, Command::Dispatch(_)));
        if !self.has_timestamps() || !has_dispatch {
            let t0 = Instant::now();
            self.run(rec)?;
            return Ok(t0.elapsed().as_secs_f64());
        }
        let qs = self.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("timing"),
            ty: wgpu::QueryType::Timestamp,
            count: 2,
        });
        let resolve = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: 16,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let read = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps-read"),
            size: 16,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut enc = self.encode(rec, Some(&qs));
        enc.resolve_query_set(&qs, 0..2, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &read, 0, 16);
        let idx = self.scoped("submitting", || self.queue.submit([enc.finish()]))?;
        let (tx, rx) = std::sync::mpsc::channel();
        read.map_async(wgpu::MapMode::Read, .., move |r| {
            let _ = tx.send(r);
        });
        self.wait_for(Some(idx))?;
        match rx.recv_timeout(self.timeout) {
            Ok(Ok(())) => {}
            _ => return Err(Error::DeviceTimeout(self.timeout)),
        }
        let ticks: [u64; 2] = {
            let v = read.slice(..).get_mapped_range().map_err(|e| Error::Gpu {
                context: "reading timestamps".into(),
                message: e.to_string(),
            })?;
            let s: &[u64] = bytemuck::cast_slice(&v);
            [s[0], s[1]]
        };
        read.unmap();
        let period = self.queue.get_timestamp_period() as f64;
        Ok(ticks[1].saturating_sub(ticks[0]) as f64 * period * 1e-9)
    }
}
