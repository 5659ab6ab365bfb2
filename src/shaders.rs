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

/// Every shader, for the portability test and `boha check-shaders`.
pub const ALL: &[Shader] = &[ELEMENTWISE];
