//! How the user picks and configures a device: `--device`, `WGPU_BACKEND`,
//! `WGPU_ADAPTER_NAME`, the poll timeout, the GEMM kernel family and the storage dtype
//! of frozen weights (`--base-dtype`).

use std::time::Duration;

use super::DType;

/// How a model's frozen weights (linear layers, embedding, LM head) are stored on the
/// device (`--base-dtype`). Norm weights and biases stay f32 (they are a thousandth of a
/// model), and so do adapters, activations, gradients and optimizer state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum BaseDType {
    /// What the file holds: F32, F16, BF16 and GGUF's Q8_0, Q4_0, Q4_1, Q4_K, Q5_K and
    /// Q6_K blocks as they are; GGUF's other block types (Q2_K, Q3_K, Q5_0, Q5_1) as F16,
    /// the nearest dtype the kernels read.
    #[default]
    Keep,
    /// Every frozen weight in this dtype.
    Fixed(DType),
}

impl BaseDType {
    /// Parses `keep` or the name of a dtype any weight can be stored in
    /// ([`DType::ENCODED`]: `f32`, `f16`, `bf16`, `q8_0`, `q4_0`, `q4_1`). The K-quants are
    /// not offered: only `keep` keeps them.
    pub fn parse(s: &str) -> Option<BaseDType> {
        if s == "keep" {
            return Some(BaseDType::Keep);
        }
        s.parse()
            .ok()
            .filter(|d| DType::ENCODED.contains(d))
            .map(BaseDType::Fixed)
    }

    /// The dtype a frozen weight that the file stores as `stored` gets on the device.
    pub fn resolve(self, stored: DType) -> DType {
        match self {
            BaseDType::Keep => stored,
            BaseDType::Fixed(d) => d,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            BaseDType::Keep => "keep",
            BaseDType::Fixed(d) => d.name(),
        }
    }
}

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
    /// How models loaded for this device store their frozen weights.
    pub base_dtype: BaseDType,
}

impl Default for GpuOptions {
    fn default() -> Self {
        GpuOptions {
            device: None,
            timeout: Duration::from_secs(120),
            max_binding_override: None,
            gemm_family: None,
            untuned: false,
            base_dtype: BaseDType::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_dtype_offers_only_the_dtypes_with_a_quantizer() {
        for &d in DType::ALL {
            let offered = BaseDType::parse(d.name()) == Some(BaseDType::Fixed(d));
            assert_eq!(offered, DType::ENCODED.contains(&d), "{d}");
            assert_eq!(d.name().parse::<DType>(), Ok(d));
        }
        for d in [DType::Q4_K, DType::Q5_K, DType::Q6_K] {
            assert_eq!(BaseDType::parse(d.name()), None);
            assert_eq!(BaseDType::Keep.resolve(d), d);
            assert!(d.round_trip(&[0.5; 256]).is_none());
            assert_eq!(d.block(), 256);
        }
        assert_eq!(
            [DType::Q4_K, DType::Q5_K, DType::Q6_K].map(|d| d.bytes_for(512)),
            [288, 352, 420]
        );
    }
}
