//! Ops: the host side of each kernel family — shape checks, dispatch preparation, and a
//! CPU reference the tests compare against.

pub mod activation;
pub mod adamw;
pub mod attention;
pub mod chunks;
pub mod cross_entropy;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod rmsnorm;
pub mod rope;
