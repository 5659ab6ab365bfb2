//! Ops: the host side of each kernel family — shape checks, dispatch preparation, and a
//! CPU reference the tests compare against.

pub mod chunks;
pub mod elementwise;
