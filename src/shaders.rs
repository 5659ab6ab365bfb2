//! The WGSL sources in `shaders/`, one file per op family, compiled into the binary.

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
shader!(GEMV, "gemv");
shader!(BENCH, "bench");
shader!(KHATRI_RAO, "khatri_rao");

/// Every shader, for the portability test.
pub const ALL: &[Shader] = &[
    ELEMENTWISE,
    ADAMW,
    LOSS,
    BOHA_FORWARD,
    MERGE,
    BOHA_GRAD,
    RMSNORM,
    ROPE,
    ACTIVATION,
    EMBEDDING,
    ATTENTION,
    CROSS_ENTROPY,
    GEMM_REGISTER,
    GEMM_SHARED,
    GEMV,
    BENCH,
    KHATRI_RAO,
];
