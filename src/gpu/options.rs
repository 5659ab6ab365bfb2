//! How the user picks and configures a device: `--device`, `WGPU_BACKEND`,
//! `WGPU_ADAPTER_NAME`, the poll timeout and the GEMM kernel family.

use std::time::Duration;

/// Which GEMM kernel family to use. Register tiles suit CPU-type adapters (llvmpipe /
/// lavapipe), where a workgroup barrier is very expensive; workgroup-shared tiles suit
/// discrete and integrated GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmFamily {
    /// Each invocation computes a register tile, reading global memory directly; no barriers.
    Register,
    /// Workgroup-shared tiles with barriers between loads and products.
    Shared,
}

impl GemmFamily {
    /// Parses `register` / `shared` (as given to `--gemm`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "register" | "reg" | "cpu" => Some(GemmFamily::Register),
            "shared" | "tiled" | "gpu" => Some(GemmFamily::Shared),
            _ => None,
        }
    }

    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            GemmFamily::Register => "register",
            GemmFamily::Shared => "shared",
        }
    }
}

/// Options for opening a [`crate::gpu::Gpu`].
#[derive(Clone, Debug)]
pub struct GpuOptions {
    /// An adapter index (as listed by `boha devices`) or a case-insensitive substring of
    /// its name. Falls back to `WGPU_ADAPTER_NAME`, then to the best adapter.
    pub device: Option<String>,
    /// Longest wait on the device before a submit counts as hung.
    pub timeout: Duration,
    /// Forces a smaller storage-binding limit than the adapter's (tests use this to
    /// exercise ranged binding of large tensors).
    pub max_binding_override: Option<u64>,
    /// Overrides the GEMM family chosen from the adapter type.
    pub gemm_family: Option<GemmFamily>,
    /// Ignores the tuning file (`boha tune` itself, tests that compare kernels).
    pub untuned: bool,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            device: None,
            timeout: Duration::from_secs(120),
            max_binding_override: None,
            gemm_family: None,
            untuned: false,
        }
    }
}
