//! The WGSL sources in `shaders/`, one file per op family, compiled into the binary.
//!
//! The fused adapter kernels ([`BOHA_FORWARD`], [`BOHA_GRAD`], [`MERGE`]) are templates:
//! each adapter kind names a snippet in `shaders/kinds/` ([`KIND_HADAMARD`],
//! [`KIND_ADDITIVE`], [`KIND_PAIR`]) that says how M is formed from its rank sums and how
//! it enters W', and [`with_kind`] prepends it to a template.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

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

/// The templates that an adapter kind's snippet completes.
pub const TEMPLATES: &[Shader] = &[BOHA_FORWARD, BOHA_GRAD, MERGE];

/// The adapter kinds' snippets.
pub const KIND_SNIPPETS: &[Shader] = &[KIND_HADAMARD, KIND_ADDITIVE, KIND_PAIR];

/// `template` completed by the kind snippet `snippet`: one module per pair, built once
/// and kept for the life of the process (there are |templates| × |snippets| of them).
pub fn with_kind(template: Shader, snippet: Shader) -> Shader {
    static BUILT: OnceLock<Mutex<HashMap<(&'static str, &'static str), Shader>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    *built
        .entry((template.name, snippet.name))
        .or_insert_with(|| Shader {
            name: String::leak(format!("{}+{}", template.name, snippet.name)),
            source: String::leak(format!("{}\n{}", snippet.source, template.source)),
        })
}

/// Every complete shader: the stand-alone ones and each template with each snippet (the
/// portability test).
pub fn all() -> Vec<Shader> {
    let mut v = ALL.to_vec();
    for &t in TEMPLATES {
        v.extend(KIND_SNIPPETS.iter().map(|&k| with_kind(t, k)));
    }
    v
}

/// The shaders that are complete on their own.
pub const ALL: &[Shader] = &[
    ELEMENTWISE,
    ADAMW,
    LOSS,
    RMSNORM,
    ROPE,
    ACTIVATION,
    EMBEDDING,
    ATTENTION,
    CROSS_ENTROPY,
    GEMM_REGISTER,
    GEMM_SHARED,
    GEMM_TIER,
    GEMM_SUBGROUP,
    GEMV,
    BENCH,
    KHATRI_RAO,
];
