//! Benchmarks behind `boha bench …`. Every figure is reported with a ratio measured in
//! the same run (against the FMA peak, the base GEMM, LoRA), since machines are noisy.

pub mod decode;
pub mod gemm;
pub mod layer;
pub mod load;
pub mod record;
pub mod step;
pub mod timing;
pub mod tune;
