//! The four kinds the project started with, which differ only in data: BoHA, HiRA, LoRA
//! and the additive control. All start at ΔW = 0 with B = 0 and A Kaiming-uniform
//! ([`super::init`]), and take s = alpha / r_b from `--alpha`.

use super::kind::{AdapterFormat, AdapterKind, HostW0, Kernels};
use super::{bottleneck, formats, fused_kernels, init, AdapterSpec, Update};
use crate::error::Result;
use crate::shaders::{Shader, KIND_ADDITIVE, KIND_HADAMARD};

/// A kind described by its fields.
pub struct Simple {
    name: &'static str,
    title: &'static str,
    grid: bool,
    update: Update,
    /// s without `--alpha`.
    default_scale: f32,
    kernels: &'static dyn Kernels,
    format: &'static dyn AdapterFormat,
    snippet: Shader,
}

/// BoHA: W' = W0 ⊙ (1 + s·M) on a b × b grid, each block its own rank-r_b factor.
pub static BOHA: Simple = Simple {
    name: "boha",
    title: "BoHA",
    grid: true,
    update: Update::Hadamard,
    default_scale: 1.0,
    kernels: &fused_kernels::Fused,
    format: &formats::Boha,
    snippet: KIND_HADAMARD,
};

/// HiRA: W' = W0 ⊙ (1 + s·BA), b = 1.
pub static HIRA: Simple = Simple {
    name: "hira",
    title: "HiRA",
    grid: false,
    update: Update::Hadamard,
    default_scale: 1.0,
    kernels: &fused_kernels::Fused,
    format: &formats::Hira,
    snippet: KIND_HADAMARD,
};

/// LoRA: W' = W0 + s·BA, b = 1, s = alpha / r with alpha = 2r by default.
pub static LORA: Simple = Simple {
    name: "lora",
    title: "LoRA",
    grid: false,
    update: Update::Additive,
    default_scale: 2.0,
    kernels: &bottleneck::Plain,
    format: &formats::Lora,
    snippet: KIND_ADDITIVE,
};

/// The W0-free control: W' = W0 + s·M on BoHA's grid (PEFT's GraLoRA, hybrid_r = 0).
pub static ADDITIVE: Simple = Simple {
    name: "additive",
    title: "additive",
    grid: true,
    update: Update::Additive,
    default_scale: 1.0,
    kernels: &fused_kernels::Fused,
    format: &formats::Gralora,
    snippet: KIND_ADDITIVE,
};

impl AdapterKind for Simple {
    fn name(&self) -> &'static str {
        self.name
    }
    fn label(&self, spec: &AdapterSpec) -> String {
        if self.grid {
            format!(
                "{} b = {}, r_b = {}",
                self.title, spec.blocks, spec.block_rank
            )
        } else {
            format!("{} r = {}", self.title, spec.block_rank)
        }
    }
    fn has_grid(&self) -> bool {
        self.grid
    }
    fn scale(&self, block_rank: usize, alpha: Option<f32>) -> f32 {
        alpha.map_or(self.default_scale, |a| a / block_rank as f32)
    }
    fn update(&self) -> Update {
        self.update
    }
    fn init(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        seed: u64,
        _w0: HostW0<'_>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok(init::init_params(spec, d_out, d_in, seed))
    }
    fn kernels(&self) -> &'static dyn Kernels {
        self.kernels
    }
    fn format(&self) -> &'static dyn AdapterFormat {
        self.format
    }
    fn snippet(&self) -> Shader {
        self.snippet
    }
}
