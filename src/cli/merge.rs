//! `boha merge` (being built).

use clap::Args;

use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct MergeArgs {}

pub fn run(_dev: &DeviceArgs, _a: &MergeArgs) -> Result<()> {
    Err(Error::Invalid("boha merge is not built yet".into()))
}
