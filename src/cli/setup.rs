//! `boha setup`: makes this machine ready to run boha. When wgpu finds no adapter it
//! installs Mesa's software Vulkan driver (lavapipe) with the system's package manager
//! — as root, or through password-less sudo — printing each exact command before it
//! runs; without the privileges it prints the command to run and fails. `boha demo` does
//! the same before it starts, unless told `--no-setup`.

use clap::Args;

use boha::gpu::{list_devices, DeviceInfo, Gpu};
use boha::host::driver::{self, Plan};
use boha::{Error, Result};

use super::DeviceArgs;

#[derive(Args, Debug)]
pub struct SetupArgs {
    /// Print what would be installed, change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

fn describe(devices: &[DeviceInfo]) -> String {
    devices
        .iter()
        .map(|d| {
            format!(
                "[{}] {} ({}, {})",
                d.index, d.name, d.backend, d.device_type
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn run(a: &SetupArgs) -> Result<()> {
    let devices = list_devices();
    if !devices.is_empty() {
        println!("ready: {}", describe(&devices));
        return Ok(());
    }
    if a.dry_run {
        match driver::plan_here() {
            Plan::Run(c) => println!("would run: {}", driver::shell_line(&c)),
            Plan::Manual(c) => println!("run by hand: {}", driver::shell_line(&c)),
            Plan::Advice(s) => println!("{s}"),
        }
        return Ok(());
    }
    install()?;
    println!("ready: {}", describe(&list_devices()));
    Ok(())
}

/// Installs lavapipe where boha may (see the module docs) and checks that wgpu now finds
/// an adapter; every other case is an error saying what to do.
fn install() -> Result<()> {
    let overrides = driver::driver_overrides();
    if !overrides.is_empty() {
        return Err(Error::NoAdapter(format!(
            "{} points the Vulkan loader at particular driver files, so installing a driver \
             would not help: unset it",
            overrides.join(" ")
        )));
    }
    match driver::plan_here() {
        Plan::Run(commands) => {
            eprintln!(
                "no GPU adapter found: installing Mesa's software Vulkan driver (lavapipe): {}",
                driver::shell_line(&commands)
            );
            driver::run(&commands, &mut |m| eprintln!("{m}"))?;
            if list_devices().is_empty() {
                return Err(Error::NoAdapter(
                    "installed lavapipe, but wgpu still finds no adapter (see `vulkaninfo \
                     --summary` from vulkan-tools)"
                        .into(),
                ));
            }
            Ok(())
        }
        Plan::Manual(commands) => Err(Error::NoAdapter(format!(
            "wgpu found none, and installing a driver needs root: run `{}`, then try again",
            driver::shell_line(&commands)
        ))),
        Plan::Advice(advice) => Err(Error::NoAdapter(format!("wgpu found none: {advice}"))),
    }
}

/// Opens the device `dev` names; when the machine has no adapter at all and `allow` is
/// set, installs a driver first (the demo's self-set-up).
pub fn open_or_install(dev: &DeviceArgs, allow: bool) -> Result<Gpu> {
    match dev.open() {
        Err(Error::NoAdapter(_)) if allow && list_devices().is_empty() => {
            install()?;
            dev.open()
        }
        other => other,
    }
}
