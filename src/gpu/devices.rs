//! Adapter enumeration for `boha devices` and for choosing the adapter a command runs on.

use serde::Serialize;

#[cfg(not(target_arch = "wasm32"))]
use crate::error::{Error, Result};

/// What `boha devices` prints about one adapter.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceInfo {
    /// Position in the enumeration; `--device N` picks it.
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    /// PCI vendor id (0x10de NVIDIA, 0x1002 AMD, 0x8086 Intel, ...; 0 when unknown).
    pub vendor: u32,
    pub driver: String,
    pub driver_info: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_storage_buffers_per_shader_stage: u32,
    pub timestamp_query: bool,
    pub shader_f16: bool,
    /// Subgroup operations in compute shaders (wgpu's `SUBGROUP`), with the subgroup
    /// sizes the adapter may use.
    pub subgroups: bool,
    pub subgroup_min_size: u32,
    pub subgroup_max_size: u32,
    /// Cooperative-matrix (tensor core) operations (`EXPERIMENTAL_COOPERATIVE_MATRIX`).
    pub cooperative_matrix: bool,
}

impl DeviceInfo {
    pub(crate) fn from_adapter(index: usize, adapter: &wgpu::Adapter) -> DeviceInfo {
        let i = adapter.get_info();
        let l = adapter.limits();
        let f = adapter.features();
        DeviceInfo {
            index,
            name: i.name,
            backend: format!("{:?}", i.backend),
            device_type: format!("{:?}", i.device_type),
            vendor: i.vendor,
            driver: i.driver,
            driver_info: i.driver_info,
            max_buffer_size: l.max_buffer_size,
            max_storage_buffer_binding_size: l.max_storage_buffer_binding_size,
            max_compute_workgroup_storage_size: l.max_compute_workgroup_storage_size,
            max_compute_invocations_per_workgroup: l.max_compute_invocations_per_workgroup,
            max_storage_buffers_per_shader_stage: l.max_storage_buffers_per_shader_stage,
            timestamp_query: f.contains(wgpu::Features::TIMESTAMP_QUERY),
            shader_f16: f.contains(wgpu::Features::SHADER_F16),
            subgroups: f.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: i.subgroup_min_size,
            subgroup_max_size: i.subgroup_max_size,
            cooperative_matrix: f.contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// The backends to search: `WGPU_BACKEND` (e.g. `vulkan`, `metal`, `dx12`, `gl`), else
/// Vulkan, Metal and DX12.
fn backends() -> wgpu::Backends {
    // GL is opt-in (WGPU_BACKEND=gl): its compute support is the weakest, and probing EGL
    // on a headless machine only prints noise.
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

#[cfg(not(target_arch = "wasm32"))]
/// Every adapter wgpu finds on the chosen backends, in a stable order.
pub(crate) fn enumerate() -> Vec<wgpu::Adapter> {
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends: backends(),
        ..wgpu::InstanceDescriptor::new_without_display_handle()
    });
    pollster::block_on(instance.enumerate_adapters(backends()))
}

#[cfg(not(target_arch = "wasm32"))]
/// Lists every adapter (for `boha devices`).
pub fn list() -> Vec<DeviceInfo> {
    enumerate()
        .iter()
        .enumerate()
        .map(|(i, a)| DeviceInfo::from_adapter(i, a))
        .collect()
}

#[cfg(not(target_arch = "wasm32"))]
/// Ranks adapters so that the default is the fastest kind present.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

#[cfg(not(target_arch = "wasm32"))]
/// Picks an adapter by index or name substring, or the best-ranked one (Vulkan first
/// among equals, since it is the backend tested most).
pub(crate) fn choose(adapters: Vec<wgpu::Adapter>, wanted: Option<&str>) -> Result<wgpu::Adapter> {
    let names: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    let mut adapters = adapters;
    if let Some(w) = wanted {
        let pos = match w.parse::<usize>() {
            Ok(i) if i < adapters.len() => Some(i),
            _ => {
                let lw = w.to_ascii_lowercase();
                names
                    .iter()
                    .position(|n| n.to_ascii_lowercase().contains(&lw))
            }
        };
        return match pos {
            Some(i) => Ok(adapters.swap_remove(i)),
            None => Err(Error::NoAdapter(format!(
                "no adapter matches '{w}'; found: {}",
                names.join(", ")
            ))),
        };
    }
    let best = (0..adapters.len())
        .min_by_key(|&i| {
            let info = adapters[i].get_info();
            (
                rank(info.device_type),
                info.backend != wgpu::Backend::Vulkan,
                i,
            )
        })
        .expect("non-empty");
    Ok(adapters.swap_remove(best))
}
