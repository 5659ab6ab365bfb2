//! The GPU context: adapter choice, device creation with the adapter's own limits, error
//! scopes, and waiting on the device with a timeout. Together with the other files in
//! `gpu/`, this is the only code that touches wgpu.

use std::sync::{Arc, Mutex};
use std::time::Duration;

#[cfg(not(target_arch = "wasm32"))]
use super::devices;
use super::devices::DeviceInfo;
use super::options::{GemmFamily, GpuOptions};
use super::profile::{GemmTile, Profile};
use super::tuning::{GemmKey, PairKey, Tuning};
use crate::error::{Error, Result};

/// An open device: everything above this module speaks of tensors and dispatches.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    pub(crate) info: DeviceInfo,
    pub(crate) features: wgpu::Features,
    pub(crate) limits: wgpu::Limits,
    /// The storage-binding limit the ops chunk against (≤ the device's).
    pub(crate) max_binding: u64,
    pub(crate) timeout: Duration,
    /// What this device class runs by default.
    pub(crate) profile: Profile,
    /// What `boha tune` measured on this adapter and driver (empty when untuned).
    pub(crate) tuning: Tuning,
    /// How models loaded for this device store their frozen weights.
    pub(crate) base_dtype: Mutex<super::options::BaseDType>,
    /// The GEMM shapes asked for since [`Gpu::log_gemm_shapes`] turned logging on.
    pub(crate) gemm_log: Mutex<Option<std::collections::BTreeSet<GemmKey>>>,
    pub(crate) pipelines: super::registry::PipelineCache,
    /// Errors no scope caught and the device-lost reason, checked after every wait.
    pub(crate) fault: Arc<Mutex<Option<String>>>,
    pub(crate) meter: Arc<super::tensor::MemoryMeter>,
    /// The adapter the device was opened on, and the instance that found it when
    /// [`Gpu::new_shareable`] kept it: what a window needs to present with this device.
    pub(crate) adapter: wgpu::Adapter,
    pub(crate) instance: Option<wgpu::Instance>,
    /// Most commands per submit (None: a recording is one submit); see
    /// [`Gpu::set_submit_limit`].
    pub(crate) submit_limit: Option<usize>,
    /// Called before every submit of a recording; see [`Gpu::set_submit_gate`].
    pub(crate) submit_gate: Option<SubmitGate>,
}

/// A function the submitting thread calls before each submit of a recording (each part,
/// under a submit limit); it may block to hold the queue back. See
/// [`Gpu::set_submit_gate`].
pub type SubmitGate = Arc<dyn Fn() + Send + Sync>;

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Gpu({} on {})", self.info.name, self.info.backend)
    }
}

impl Gpu {
    /// Opens the adapter chosen by `opts` (see [`GpuOptions::device`]) and `WGPU_BACKEND`.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new(opts: &GpuOptions) -> Result<Gpu> {
        Self::from_adapter(Self::pick(devices::enumerate(), opts)?, opts)
    }

    /// The adapter `opts` (or `WGPU_ADAPTER_NAME`) asks for among `adapters`.
    #[cfg(not(target_arch = "wasm32"))]
    fn pick(adapters: Vec<wgpu::Adapter>, opts: &GpuOptions) -> Result<wgpu::Adapter> {
        if adapters.is_empty() {
            return Err(Error::no_adapter_found());
        }
        let wanted = opts
            .device
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok());
        devices::choose(adapters, wanted.as_deref())
    }

    /// Opens a device like [`Gpu::new`] and keeps the wgpu instance that found the
    /// adapter, so that a window (e.g. eframe/egui-wgpu) can create its surface on that
    /// instance and render with this very device and queue ([`Gpu::wgpu_handles`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_shareable(opts: &GpuOptions) -> Result<Gpu> {
        // The same backends `Gpu::new` searches (WGPU_BACKEND, else Vulkan, Metal, DX12).
        let backends = wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY);
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends,
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let mut gpu = Self::from_adapter(Self::pick(adapters, opts)?, opts)?;
        gpu.instance = Some(instance);
        Ok(gpu)
    }

    /// The instance, adapter, device and queue, for a renderer that shares this device
    /// (with egui-wgpu: `WgpuSetupExisting`). `None` unless opened with
    /// [`Gpu::new_shareable`], since only that keeps the instance. Work the renderer
    /// submits goes to the same queue as boha's, in submission order.
    pub fn wgpu_handles(
        &self,
    ) -> Option<(wgpu::Instance, wgpu::Adapter, wgpu::Device, wgpu::Queue)> {
        let instance = self.instance.clone()?;
        Some((
            instance,
            self.adapter.clone(),
            self.device.clone(),
            self.queue.clone(),
        ))
    }

    /// Caps the commands (dispatches, copies, clears) of one submit: a longer recording
    /// then goes to the queue in parts of at most `max_commands`, each waited for before
    /// the next is submitted. Off (`None`) by default. A window sharing the device
    /// (see [`Gpu::wgpu_handles`]) cannot show a frame while a step is in flight: its
    /// work queues behind the step where one queue runs everything in order (lavapipe),
    /// and presenting takes a device lock that a thread waiting on the device holds.
    /// In parts, the frame runs between two of them. Results are the same either way;
    /// the waits cost some throughput.
    pub fn set_submit_limit(&mut self, max_commands: Option<usize>) {
        self.submit_limit = max_commands.filter(|&n| n > 0);
    }

    /// Sets a gate that every submit of a recording passes first: with a submit limit,
    /// before each part. A window sharing a device whose one queue runs everything in
    /// order (lavapipe) uses it to keep training's next part out of the queue while a
    /// frame is being drawn, so the frame waits for at most the part already running.
    /// The gate only delays; results are the same with or without it.
    pub fn set_submit_gate(&mut self, gate: Option<SubmitGate>) {
        self.submit_gate = gate;
    }

    /// Passes the submit gate, if one is set.
    pub(crate) fn pass_gate(&self) {
        if let Some(g) = &self.submit_gate {
            g();
        }
    }

    /// Opens a device on `adapter`, requesting its own limits and the optional features
    /// boha can use.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn from_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Gpu> {
        pollster::block_on(Self::from_adapter_async(adapter, opts))
    }

    /// [`Gpu::from_adapter`] for callers that cannot block (the browser, where the
    /// device request is a promise).
    pub async fn from_adapter_async(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Gpu> {
        let info = DeviceInfo::from_adapter(0, &adapter);
        // Subgroups serve the CPU profile's subgroup GEMM (8-lane llvmpipe).
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SHADER_F16 | wgpu::Features::SUBGROUP;
        let features = adapter.features() & wanted;
        let limits = adapter.limits();
        let kept = adapter.clone();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("boha"),
                required_features: features,
                required_limits: limits.clone(),
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::DeviceRequest {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        let fault = Arc::new(Mutex::new(None::<String>));
        {
            let fault = fault.clone();
            device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
                let mut slot = fault.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| one_line(&e.to_string()));
            }));
        }
        {
            let fault = fault.clone();
            device.set_device_lost_callback(move |reason, msg| {
                let mut slot = fault.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| format!("device lost ({reason:?}): {}", one_line(&msg)));
            });
        }
        let device_max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size);
        let max_binding = opts
            .max_binding_override
            .map_or(device_max, |m| m.min(device_max));
        let profile = Profile::for_device(&info, opts.gemm_family);
        // A forced family means the user wants that family's kernels, not tuned ones.
        let tuning = if opts.gemm_family.is_some() || opts.untuned {
            Tuning::default()
        } else {
            Tuning::load_for(&info)
        };
        log::info!(
            "opened {} ({}, {}), max binding {} bytes, {} profile, gemm {} / {}, {} tuned shapes",
            info.name,
            info.backend,
            info.device_type,
            max_binding,
            profile.class.name(),
            profile.family.name(),
            profile.gemm_tile.name(),
            tuning.len().0
        );
        Ok(Gpu {
            device,
            queue,
            info,
            features,
            limits,
            max_binding,
            timeout: opts.timeout,
            profile,
            tuning,
            base_dtype: Mutex::new(opts.base_dtype),
            gemm_log: Mutex::new(None),
            pipelines: Default::default(),
            fault,
            meter: Default::default(),
            adapter: kept,
            instance: None,
            submit_limit: None,
            submit_gate: None,
        })
    }

    /// Name, backend, type, driver and limits of the open adapter.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// The GEMM family the ops use on this device.
    pub fn gemm_family(&self) -> GemmFamily {
        self.profile.family
    }

    /// The device profile in force.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// How models loaded for this device store their frozen weights (`--base-dtype`).
    pub fn base_dtype(&self) -> super::options::BaseDType {
        *self.base_dtype.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sets how models loaded from now on store their frozen weights (models already
    /// loaded keep theirs).
    pub fn set_base_dtype(&self, base: super::options::BaseDType) {
        *self.base_dtype.lock().unwrap_or_else(|p| p.into_inner()) = base;
    }

    /// The tuning table in force (empty when untuned).
    pub fn tuning(&self) -> &Tuning {
        &self.tuning
    }

    /// Replaces the tuning table (what `boha tune` does as it measures).
    pub fn set_tuning(&mut self, tuning: Tuning) {
        self.tuning = tuning;
    }

    /// The tile a GEMM of this shape runs on: the tuned winner, else the profile's tile.
    /// A tile the device cannot hold (too little workgroup memory or too few invocations)
    /// falls back to the family's own.
    pub fn gemm_tile_for(&self, key: &GemmKey) -> GemmTile {
        if let Some(log) = self
            .gemm_log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
        {
            log.insert(*key);
        }
        let t = self.tuning.gemm(key).unwrap_or(self.profile.gemm_tile);
        if self.tile_fits(t) {
            t
        } else {
            GemmTile::of_family(self.profile.family)
        }
    }

    /// Starts (`true`) or stops logging the shape of every GEMM the ops plan, and returns
    /// what was logged since the last start: how `boha tune` learns a model's products
    /// by building its trainer.
    pub fn log_gemm_shapes(&self, on: bool) -> Vec<GemmKey> {
        let mut slot = self.gemm_log.lock().unwrap_or_else(|p| p.into_inner());
        let logged = slot
            .take()
            .map(|s| s.into_iter().collect())
            .unwrap_or_default();
        if on {
            *slot = Some(Default::default());
        }
        logged
    }

    /// Whether the pair kinds should run this matrix fused, if `boha tune` measured it.
    pub fn tuned_pair_fused(&self, key: &PairKey) -> Option<bool> {
        self.tuning.pair_fused(key)
    }

    /// Whether the device's limits hold `tile`'s workgroup: its invocations and its
    /// workgroup memory (two buffers of an A and a B tile, 8 deep along k, for the tier).
    pub fn tile_fits(&self, tile: GemmTile) -> bool {
        match tile {
            GemmTile::Register | GemmTile::Shared64 => true,
            // One subgroup must be exactly one row of 8 invocations.
            GemmTile::Subgroup => {
                self.features.contains(wgpu::Features::SUBGROUP)
                    && self.info.subgroup_min_size == 8
                    && self.info.subgroup_max_size == 8
            }
            GemmTile::Tier { bm, bn } => {
                let invocations = (bm / 8) * (bn / 8);
                let bytes = 2 * 8 * (bm + bn + 8) * 4;
                invocations <= self.limits.max_compute_invocations_per_workgroup
                    && bytes <= self.limits.max_compute_workgroup_storage_size
            }
        }
    }
    /// Largest storage binding in bytes that the ops may use (the device limit, or the
    /// forced smaller one).
    pub fn max_binding_bytes(&self) -> u64 {
        self.max_binding
    }

    /// Alignment of a storage binding's offset, in bytes.
    pub fn binding_offset_align(&self) -> u64 {
        self.limits.min_storage_buffer_offset_alignment as u64
    }

    /// Largest workgroup count in one dimension of a dispatch.
    pub fn max_workgroups_per_dim(&self) -> u32 {
        self.limits.max_compute_workgroups_per_dimension
    }

    /// Whether the adapter can write GPU timestamps inside compute passes.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The poll timeout in force.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Changes the poll timeout (tests use a tiny one to check that waits cannot hang).
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns whatever they
    /// caught into [`Error::Gpu`] naming `context`.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn scoped<T>(&self, context: &str, f: impl FnOnce() -> T) -> Result<T> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(validation.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = v.or(o) {
            return Err(Error::Gpu {
                context: context.to_string(),
                message: one_line(&e.to_string()),
            });
        }
        Ok(out)
    }

    /// In the browser an error scope's result is a promise that only the event loop
    /// settles, so nothing here can wait for it: `f` runs unscoped, and what it does wrong
    /// reaches the uncaptured-error handler, which [`Gpu::check_fault`] reports at the
    /// next awaited read-back ([`Gpu::download_async`]).
    #[cfg(target_arch = "wasm32")]
    pub(crate) fn scoped<T>(&self, _context: &str, f: impl FnOnce() -> T) -> Result<T> {
        let out = f();
        self.check_fault()?;
        Ok(out)
    }

    /// Waits for `submission` (or everything submitted) with the poll timeout. A timeout,
    /// a lost device or an uncaptured error becomes an error. In the browser the poll
    /// returns at once (the queue runs on its own; ordering still holds, since every
    /// later submit and read-back queues behind it), so only the fault check remains.
    pub(crate) fn wait_for(&self, submission: Option<wgpu::SubmissionIndex>) -> Result<()> {
        let r = self.device.poll(wgpu::PollType::Wait {
            submission_index: submission,
            timeout: Some(self.timeout),
        });
        self.check_fault()?;
        match r {
            Ok(_) => Ok(()),
            Err(wgpu::PollError::Timeout) => Err(Error::DeviceTimeout(self.timeout)),
            Err(e) => Err(Error::DeviceLost(e.to_string())),
        }
    }

    /// Submits the uploads written so far and waits for them. `queue.write_buffer` keeps
    /// each upload's bytes in a staging buffer until the next submission has run, so a
    /// model uploaded without this would sit in host memory a second time.
    pub fn finish_uploads(&self) -> Result<()> {
        let index = self.queue.submit(std::iter::empty());
        self.wait_for(Some(index))
    }

    /// Blocks until all submitted work is done, within the poll timeout.
    pub fn wait(&self) -> Result<()> {
        self.wait_for(None)
    }

    /// Returns the first uncaptured error or device-lost reason, if any was reported.
    pub(crate) fn check_fault(&self) -> Result<()> {
        let slot = self.fault.lock().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(msg) if msg.starts_with("device lost") => Err(Error::DeviceLost(msg.clone())),
            Some(msg) => Err(Error::Gpu {
                context: "device".into(),
                message: msg.clone(),
            }),
            None => Ok(()),
        }
    }
}

/// Folds a multi-line wgpu message into one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
