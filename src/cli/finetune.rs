//! `boha finetune` (being built).

use clap::Args;

use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct FinetuneArgs {}

pub fn run(_dev: &DeviceArgs, _a: &FinetuneArgs) -> Result<()> {
    Err(Error::Invalid("boha finetune is not built yet".into()))
}
