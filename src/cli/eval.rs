//! `boha eval` (being built).

use clap::Args;

use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct EvalArgs {}

pub fn run(_dev: &DeviceArgs, _a: &EvalArgs) -> Result<()> {
    Err(Error::Invalid("boha eval is not built yet".into()))
}
