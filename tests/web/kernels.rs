//! What the kernel suites (tests/web_gemm.rs, tests/web_adapters.rs,
//! tests/web_dtypes.rs) share: devices with a forced GEMM family or binding limit, the
//! families, and the fused adapter tests' layer shape and specs.
#![allow(dead_code)]

use boha::adapters::{AdapterSpec, Method};
use boha::gpu::{GemmFamily, Gpu, GpuOptions, Tensor};

pub const FAMILIES: [GemmFamily; 2] = [GemmFamily::Register, GemmFamily::Shared];

pub fn up(gpu: &Gpu, shape: &[usize], v: &[f32]) -> Tensor {
    gpu.upload(shape, v).unwrap()
}

/// The device with the GEMM family forced to `family`.
pub async fn family_gpu(family: GemmFamily) -> Option<Gpu> {
    crate::common::gpu_with(&GpuOptions {
        gemm_family: Some(family),
        ..Default::default()
    })
    .await
}

/// The device with a storage-binding limit of `bytes`, so that larger tensors are bound
/// in ranges.
pub async fn limited_gpu(bytes: u64) -> Option<Gpu> {
    crate::common::gpu_with(&GpuOptions {
        max_binding_override: Some(bytes),
        ..Default::default()
    })
    .await
}

/// A layer no tile divides: 96 × 80 with 37 tokens.
pub const D_OUT: usize = 96;
pub const D_IN: usize = 80;
pub const T: usize = 37;

pub fn spec(method: Method, blocks: usize, block_rank: usize, scale: f32) -> AdapterSpec {
    AdapterSpec {
        method,
        blocks,
        block_rank,
        scale,
    }
}

/// The specs the fused tests run: both updates over b ∈ {1, 2, 4} × r_b ∈ {1, 2, 8}, HiRA
/// at r = 32 (past the register cache of factor rows), LoRA, a wide block rank, and the
/// pair kinds with h = 1, 4 and 8 per pair.
pub fn specs() -> Vec<AdapterSpec> {
    let mut v = Vec::new();
    for &b in &[1, 2, 4] {
        for &rb in &[1, 2, 8] {
            v.push(spec(Method::Boha, b, rb, 0.8));
            v.push(spec(Method::Additive, b, rb, 0.6));
        }
    }
    v.push(spec(Method::Hira, 1, 32, 1.0));
    v.push(spec(Method::Lora, 1, 4, 0.5));
    v.push(spec(Method::Boha, 2, 12, 0.3));
    v.push(spec(Method::Abba, 1, 2, 0.7));
    v.push(spec(Method::Loha, 1, 8, 0.9));
    v.push(spec(Method::Abba, 1, 16, 0.4));
    v
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
