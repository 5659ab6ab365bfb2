//! The WGSL sources in `shaders/`, one file per op family, compiled into the binary.
//!
//! The fused adapter kernels ([`BOHA_FORWARD`], [`BOHA_GRAD`], [`MERGE`]) are templates:
//! each adapter kind names a snippet in `shaders/kinds/` ([`KIND_HADAMARD`],
//! [`KIND_ADDITIVE`], [`KIND_PAIR`]) that says how M is formed from its rank sums and how
//! it enters W', and [`with_kind`] prepends it to a template.
//!
//! Every kernel that reads a frozen weight (those templates, the GEMMs' B operand, the
//! GEMV and the embedding gather) is also completed by a weights snippet in
//! `shaders/weights/` ([`weights_snippet`]): the weight is stored as f32, f16, bf16 or
//! ggml's Q8_0 / Q4_0 / Q4_1 blocks or Q4_K / Q5_K / Q6_K super-blocks and widened to f32
//! where a tile loads it, so a low-precision weight never exists in f32.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::gpu::DType;

/// A WGSL source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shader {
    /// File stem, used in cache keys and error messages.
    pub name: &'static str,
    /// The WGSL text.
    pub source: &'static str,
}

macro_rules! shader {
    ($id:ident, $file:literal) => {
        #[doc = concat!("`shaders/", $file, ".wgsl`")]
        pub const $id: Shader = Shader {
            name: $file,
            source: include_str!(concat!("../shaders/", $file, ".wgsl")),
        };
    };
}

shader!(ELEMENTWISE, "elementwise");
shader!(ADAMW, "adamw");
shader!(LOSS, "loss");
shader!(BOHA_FORWARD, "boha_forward");
shader!(MERGE, "merge");
shader!(BOHA_GRAD, "boha_grad");
shader!(RMSNORM, "rmsnorm");
shader!(ROPE, "rope");
shader!(ACTIVATION, "activation");
shader!(EMBEDDING, "embedding");
shader!(ATTENTION, "attention");
shader!(CROSS_ENTROPY, "cross_entropy");
shader!(GEMM_REGISTER, "gemm_register");
shader!(GEMM_SHARED, "gemm_shared");
shader!(GEMM_TIER, "gemm_tier");
shader!(GEMM_SUBGROUP, "gemm_subgroup");
shader!(GEMV, "gemv");
shader!(BENCH, "bench");
shader!(KHATRI_RAO, "khatri_rao");
shader!(KIND_HADAMARD, "kinds/hadamard");
shader!(KIND_ADDITIVE, "kinds/additive");
shader!(KIND_PAIR, "kinds/pair");

// Snippets that say how a frozen weight is stored: each defines the element types `WQ`
// and `WQ4` of the `wq` / `wq4` bindings and the loads `wload(i)` / `wload4(i4)` that
// widen them to f32 ([`weights_snippet`]).
shader!(WEIGHTS_HALF, "weights/half");
shader!(WEIGHTS_F32, "weights/f32");
shader!(WEIGHTS_F16, "weights/f16");
shader!(WEIGHTS_BF16, "weights/bf16");
shader!(WEIGHTS_Q8_0, "weights/q8_0");
shader!(WEIGHTS_Q4_0, "weights/q4_0");
shader!(WEIGHTS_Q4_1, "weights/q4_1");
shader!(WEIGHTS_Q4_K, "weights/q4_k");
shader!(WEIGHTS_Q5_K, "weights/q5_k");
shader!(WEIGHTS_Q6_K, "weights/q6_k");

/// The weights snippets: the f16 decoder they share ([`WEIGHTS_HALF`], prepended to
/// each), then one per storage dtype.
pub const WEIGHT_SNIPPETS: &[Shader] = &[
    WEIGHTS_HALF,
    WEIGHTS_F32,
    WEIGHTS_F16,
    WEIGHTS_BF16,
    WEIGHTS_Q8_0,
    WEIGHTS_Q4_0,
    WEIGHTS_Q4_1,
    WEIGHTS_Q4_K,
    WEIGHTS_Q5_K,
    WEIGHTS_Q6_K,
];

/// The snippet for a frozen weight stored as `dtype`.
pub fn weights_snippet(dtype: DType) -> Shader {
    match dtype {
        DType::F32 => WEIGHTS_F32,
        DType::F16 => WEIGHTS_F16,
        DType::BF16 => WEIGHTS_BF16,
        DType::Q8_0 => WEIGHTS_Q8_0,
        DType::Q4_0 => WEIGHTS_Q4_0,
        DType::Q4_1 => WEIGHTS_Q4_1,
        DType::Q4_K => WEIGHTS_Q4_K,
        DType::Q5_K => WEIGHTS_Q5_K,
        DType::Q6_K => WEIGHTS_Q6_K,
    }
}

/// The templates that an adapter kind's snippet and a weights snippet complete.
pub const TEMPLATES: &[Shader] = &[BOHA_FORWARD, BOHA_GRAD, MERGE];

/// The templates that only a weights snippet completes: every kernel that reads a frozen
/// weight (the GEMMs read it as B).
pub const WEIGHT_TEMPLATES: &[Shader] = &[
    GEMM_REGISTER,
    GEMM_SHARED,
    GEMM_TIER,
    GEMM_SUBGROUP,
    GEMV,
    EMBEDDING,
];

/// The adapter kinds' snippets.
pub const KIND_SNIPPETS: &[Shader] = &[KIND_HADAMARD, KIND_ADDITIVE, KIND_PAIR];

/// `template` completed by `snippets` (prepended in order): one module per combination,
/// built once and kept for the life of the process.
fn compose(template: Shader, snippets: &[Shader]) -> Shader {
    type Built = HashMap<(&'static str, Vec<&'static str>), Shader>;
    static BUILT: OnceLock<Mutex<Built>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let key = (template.name, snippets.iter().map(|s| s.name).collect());
    *built.entry(key).or_insert_with(|| {
        let mut name = template.name.to_string();
        let mut source = String::new();
        for s in snippets {
            name.push('+');
            name.push_str(s.name);
            source.push_str(s.source);
            source.push('\n');
        }
        source.push_str(template.source);
        Shader {
            name: String::leak(name),
            source: String::leak(source),
        }
    })
}

/// A template of [`TEMPLATES`] completed by the kind snippet `kind`, reading its frozen
/// weight as `weights`.
pub fn with_kind(template: Shader, kind: Shader, weights: DType) -> Shader {
    compose(template, &[kind, WEIGHTS_HALF, weights_snippet(weights)])
}

/// A template of [`WEIGHT_TEMPLATES`] reading its frozen weight (the GEMMs' B) as
/// `weights`.
pub fn with_weights(template: Shader, weights: DType) -> Shader {
    compose(template, &[WEIGHTS_HALF, weights_snippet(weights)])
}

/// The template a composed shader was built from (its name up to the first `+`).
pub fn base_name(shader: &Shader) -> &'static str {
    shader.name.split('+').next().unwrap_or(shader.name)
}

/// Every complete shader: the stand-alone ones, each weights template with each weights
/// snippet, and each kind template with each kind and weights snippet (the portability
/// test).
pub fn all() -> Vec<Shader> {
    let mut v = ALL.to_vec();
    for &d in DType::ALL {
        v.extend(WEIGHT_TEMPLATES.iter().map(|&t| with_weights(t, d)));
        for &t in TEMPLATES {
            v.extend(KIND_SNIPPETS.iter().map(|&k| with_kind(t, k, d)));
        }
    }
    v
}

/// The shaders that are complete on their own (they read no frozen weight).
pub const ALL: &[Shader] = &[
    ELEMENTWISE,
    ADAMW,
    LOSS,
    RMSNORM,
    ROPE,
    ACTIVATION,
    ATTENTION,
    CROSS_ENTROPY,
    BENCH,
    KHATRI_RAO,
];
