//! One interface for every adapter kind, and the one place kinds are registered
//! ([`Method`] and [`Method::kind`]).
//!
//! Every kind keeps its trainable parameters in the same two tensors, A [b, b, r_b, q]
//! and B [b, b, p, r_b] (p = d_out/b, q = d_in/b), and its update is a function of them:
//!
//! ```text
//! W' = W0 ⊙ (1 + s·M)   or   W0 + s·M          M = F_B(B) · F_A(A), block by block
//! ```
//!
//! where F_A, F_B ([`Kernels::m_factors`]) are the identity for BoHA, HiRA, LoRA and the
//! additive control, and the row- and column-wise Khatri–Rao products of the two halves
//! of A and B for the Hadamard-pair kinds (ABBA, LoHa):
//! (B1A1) ⊙ (B2A2) = (B1 ⊙ᵣ B2)(A1 ⊙ᶜ A2). The optimizer, checkpoints, the block-norm
//! heatmap and the CPU reference therefore treat every kind alike. A kind is four
//! choices:
//!
//! - [`AdapterKind`]: its name, grid, scale, update, rank groups and initialisation (the
//!   kind's file);
//! - its WGSL snippet ([`AdapterKind::snippet`], `shaders/kinds/`): how M is formed from
//!   rank sums (one group, or the pairs' two groups multiplied elementwise) and how it
//!   modulates a W0 tile, W0 ⊙ (1 + s·m) or W0 + s·m, with ∂W'/∂m for the gradients. It
//!   completes the fused forward/dx, gradient and merge templates, so every kind the
//!   fused kernels run gets all three from its few lines; kinds with the same algebra
//!   share one (BoHA and HiRA; the control and LoRA; ABBA and LoHa);
//! - [`Kernels`]: how the GPU runs it — the fused kernels that modulate each W0 tile as
//!   it is loaded (`fused_kernels`: BoHA, HiRA, additive), the plain bottleneck GEMMs
//!   (`bottleneck`: LoRA), or for ABBA and LoHa per matrix whichever of the fused
//!   kernels and the Khatri–Rao bottleneck costs less (`pair`);
//! - [`AdapterFormat`]: its adapter file (`formats`: PEFT's LoRA, HiRA, GraLoRA and LoHa,
//!   and boha's BOHA).
//!
//! Adding a kind: one file implementing [`AdapterKind`] (reusing kernels, a snippet and a
//! format where the algebra and the file allow), one variant of [`Method`] and one line
//! in [`Method::kind`], both below.

use std::path::Path;

use serde_json::{Map, Value};

use super::grad::GradScratch;
use super::layer::AdaptedLinear;
use super::{AdapterSpec, Update};
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::shaders::Shader;

/// The adapter kinds (their implementations: [`Method::kind`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Boha,
    Hira,
    Lora,
    Additive,
    Abba,
    Loha,
}

impl Method {
    /// Every kind, in the order commands and reports list them.
    pub const ALL: [Method; 6] = [
        Method::Boha,
        Method::Hira,
        Method::Lora,
        Method::Additive,
        Method::Abba,
        Method::Loha,
    ];

    /// The registry: the implementation of each kind.
    pub fn kind(self) -> &'static dyn AdapterKind {
        match self {
            Method::Boha => &super::kinds::BOHA,
            Method::Hira => &super::kinds::HIRA,
            Method::Lora => &super::kinds::LORA,
            Method::Additive => &super::kinds::ADDITIVE,
            Method::Abba => &super::abba::Abba,
            Method::Loha => &super::loha::Loha,
        }
    }

    /// Parses a kind's name (`boha`, `hira`, `lora`, `additive`, `abba`, `loha`).
    pub fn parse(s: &str) -> Result<Method> {
        let want = s.to_ascii_lowercase();
        Method::ALL
            .into_iter()
            .find(|m| m.name() == want)
            .ok_or_else(|| {
                let names: Vec<&str> = Method::ALL.iter().map(|m| m.name()).collect();
                Error::Invalid(format!(
                    "unknown method '{s}' (expected one of {})",
                    names.join(", ")
                ))
            })
    }

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        self.kind().name()
    }

    /// The file format that reads `peft_type`, if any kind's does.
    pub fn format_for(peft_type: &str) -> Option<&'static dyn AdapterFormat> {
        Method::ALL
            .into_iter()
            .map(|m| m.kind().format())
            .find(|f| f.peft_types().contains(&peft_type))
    }
}

/// The host-side W0 of the matrix being initialised, fetched only by kinds that need it.
pub type HostW0<'a> = &'a dyn Fn() -> Result<Vec<f32>>;

/// What an adapter kind is (see the module docs).
pub trait AdapterKind: Sync {
    /// The name on the command line and in reports (`boha`, `lora`, …).
    fn name(&self) -> &'static str;

    /// A short description of one spec, e.g. "BoHA b = 4, r_b = 2".
    fn label(&self, spec: &AdapterSpec) -> String;

    /// Whether the kind cuts W0 into a b × b grid (`--blocks`); otherwise b = 1.
    fn has_grid(&self) -> bool {
        false
    }

    /// Rank groups whose products multiply elementwise in M (2 for the pair kinds, whose
    /// two factor pairs share r_b); r_b must be a multiple of it. The snippet's `GROUPS`.
    fn groups(&self) -> usize {
        1
    }

    /// The WGSL snippet (`shaders/kinds/`) that completes the fused kernels for this
    /// kind: how M is formed from rank sums and how it modulates a W0 tile.
    fn snippet(&self) -> Shader;

    /// The scale s for per-block rank `block_rank`, from `--alpha` when given.
    fn scale(&self, block_rank: usize, alpha: Option<f32>) -> f32;

    /// How M enters W'.
    fn update(&self) -> Update;

    /// Whether [`AdapterKind::init`] reads W0 (ABBA's SVD does): the browser cannot block
    /// on that read-back, so [`super::layer::AdaptedLinear::new_async`] awaits it first.
    fn init_reads_w0(&self) -> bool {
        false
    }

    /// Fresh (A, B) for a d_out × d_in matrix from `seed`, in the layouts above, with
    /// ΔW = 0. `w0` returns W0 [d_out, d_in] for kinds that initialise from it (those
    /// whose [`AdapterKind::init_reads_w0`] is true).
    fn init(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        seed: u64,
        w0: HostW0<'_>,
    ) -> Result<(Vec<f32>, Vec<f32>)>;

    /// How the GPU runs it.
    fn kernels(&self) -> &'static dyn Kernels;

    /// Its adapter file.
    fn format(&self) -> &'static dyn AdapterFormat;
}

/// Which pass a uniform-buffer count is asked for (the memory estimate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Forward,
    /// The adapter's gradients, and dx += dy·W' when `dx` is set.
    Backward {
        dx: bool,
    },
}

/// How the GPU runs a kind: forward, backward, merge and their scratch, plus the factors
/// of M for the CPU reference and the heatmap.
pub trait Kernels: Sync {
    /// M's factors: (its rank, F_A(A) [b, b, R, q], F_B(B) [b, b, p, R]). The identity
    /// unless M is formed from products of the parameters.
    fn m_factors(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f64],
        b: &[f64],
    ) -> Result<(usize, Vec<f64>, Vec<f64>)> {
        let _ = (d_out, d_in);
        Ok((spec.block_rank, a.to_vec(), b.to_vec()))
    }

    /// The chain rule through [`Kernels::m_factors`]: (dA, dB) from the gradients of M's
    /// factors.
    #[allow(clippy::too_many_arguments)]
    fn m_factor_grads(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f64],
        b: &[f64],
        d_fa: Vec<f64>,
        d_fb: Vec<f64>,
    ) -> Result<(Vec<f64>, Vec<f64>)> {
        let _ = (spec, d_out, d_in, a, b);
        Ok((d_fa, d_fb))
    }

    /// Elements of the shared scratch's three rooms (dA partials, dB partials, the
    /// bottleneck's intermediate) one matrix needs at `tokens` (see [`GradScratch`]).
    fn room_lens(
        &self,
        gpu: &Gpu,
        spec: &AdapterSpec,
        tokens: usize,
        d_out: usize,
        d_in: usize,
    ) -> (usize, usize, usize);

    /// y[T, d_out] = x[T, d_in]·W'ᵀ (overwrites y).
    fn forward(
        &self,
        gpu: &Gpu,
        lin: &AdaptedLinear,
        w0: &Tensor,
        x: &Tensor,
        y: &Tensor,
    ) -> Result<Vec<Dispatch>>;

    /// grad_a, grad_b += the adapter's gradients and, if given, dx += dy·W'.
    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        gpu: &Gpu,
        lin: &AdaptedLinear,
        w0: &Tensor,
        x: &Tensor,
        dy: &Tensor,
        dx: Option<&Tensor>,
        scratch: Option<&GradScratch>,
    ) -> Result<Vec<Dispatch>>;

    /// merged = W' (d_out × d_in); `merged` must not alias `w0`.
    #[allow(clippy::too_many_arguments)]
    fn merge(
        &self,
        gpu: &Gpu,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        w0: &Tensor,
        a: &Tensor,
        b: &Tensor,
        merged: &Tensor,
    ) -> Result<Vec<Dispatch>>;

    /// Bytes of the uniform buffers of one matrix's dispatches in `pass` at `tokens`.
    fn uniform_bytes(
        &self,
        gpu: &Gpu,
        spec: &AdapterSpec,
        tokens: usize,
        d_out: usize,
        d_in: usize,
        pass: Pass,
    ) -> u64;
}

/// One stored tensor of an adapter file: its name suffix (after the module path), shape
/// and values.
pub type FileTensor = (&'static str, Vec<usize>, Vec<f32>);

/// A tensor as read from a file: its shape and values.
pub type Stored = (Vec<usize>, Vec<f32>);

/// (d_out, d_in, A, B) of one matrix read from a file.
pub type ReadMatrix = (usize, usize, Vec<f32>, Vec<f32>);

/// An adapter file format (the shared parts, atomic writing and validation, are in
/// [`super::files`]).
pub trait AdapterFormat: Sync {
    /// The `peft_type`s this format reads.
    fn peft_types(&self) -> &'static [&'static str];

    /// The `peft_type` it writes.
    fn written_peft_type(&self) -> &'static str {
        self.peft_types()[0]
    }

    /// The tensor-name suffixes of one matrix in a file of `peft_type`, in the order of
    /// [`AdapterFormat::to_file`].
    fn suffixes(&self, peft_type: &str) -> &'static [&'static str];

    /// `adapter_config.json` for `spec`: `common` holds the fields every format writes
    /// (base model, target modules, task type, inference mode).
    fn config(&self, spec: &AdapterSpec, common: Map<String, Value>) -> Value;

    /// The spec an `adapter_config.json` describes (`path` names the file in errors).
    fn spec_from_config(&self, cfg: &Map<String, Value>, path: &Path) -> Result<AdapterSpec>;

    /// The stored tensors of one matrix, one per suffix, from (A, B) in boha's layout.
    fn to_file(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        a: &[f32],
        b: &[f32],
    ) -> Vec<FileTensor>;

    /// One matrix from its stored tensors (one per suffix), or None when their shapes
    /// do not fit `spec`.
    fn read_file(&self, spec: &AdapterSpec, parts: Vec<Stored>) -> Option<ReadMatrix>;
}
