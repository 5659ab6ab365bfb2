//! The paper's experiments in the form this project reproduces them.

pub mod synthetic;
