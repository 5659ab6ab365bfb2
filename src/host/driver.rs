//! Installing a Vulkan driver when wgpu finds no adapter: Mesa's lavapipe (software
//! Vulkan on the CPU) through the system's package manager, so that `boha demo` and
//! `boha setup` work on a fresh machine with no GPU.
//!
//! The plan is pure (an /etc/os-release text and the target OS in, commands out) so it
//! is tested without touching the system; [`run`] executes it. Packages per family:
//!
//! ```text
//! Debian, Ubuntu  apt-get update; apt-get install -y mesa-vulkan-drivers libvulkan1
//! Fedora, RHEL    dnf install -y mesa-vulkan-drivers vulkan-loader
//! Arch            pacman -S --noconfirm --needed vulkan-swrast vulkan-icd-loader
//! ```
//!
//! Elsewhere (macOS, Windows, an unknown Linux) there is nothing boha may install: the
//! plan is a sentence saying what to do.

use std::process::Command;

use crate::{Error, Result};

/// A Linux distribution family with a package manager boha knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Debian,
    Fedora,
    Arch,
}

impl Family {
    /// The family named by an /etc/os-release text (`ID`, then `ID_LIKE`), if known.
    pub fn from_os_release(text: &str) -> Option<Family> {
        let field = |key: &str| -> String {
            text.lines()
                .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| {
                    v.trim()
                        .trim_matches(|c| c == '"' || c == '\'')
                        .to_lowercase()
                })
                .next()
                .unwrap_or_default()
        };
        let (id, like) = (field("ID"), field("ID_LIKE"));
        let words = std::iter::once(id.as_str()).chain(like.split_whitespace());
        for w in words {
            match w {
                "debian" | "ubuntu" => return Some(Family::Debian),
                "fedora" | "rhel" | "centos" => return Some(Family::Fedora),
                "arch" | "archlinux" => return Some(Family::Arch),
                _ => {}
            }
        }
        None
    }

    /// The commands that install lavapipe and the Vulkan loader, without privilege
    /// escalation.
    fn commands(self) -> Vec<Vec<&'static str>> {
        match self {
            // The front end stays quiet instead of asking about configuration files.
            Family::Debian => vec![
                vec!["env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "update"],
                vec![
                    "env",
                    "DEBIAN_FRONTEND=noninteractive",
                    "apt-get",
                    "install",
                    "-y",
                    "mesa-vulkan-drivers",
                    "libvulkan1",
                ],
            ],
            Family::Fedora => vec![vec![
                "dnf",
                "install",
                "-y",
                "mesa-vulkan-drivers",
                "vulkan-loader",
            ]],
            Family::Arch => vec![vec![
                "pacman",
                "-S",
                "--noconfirm",
                "--needed",
                "vulkan-swrast",
                "vulkan-icd-loader",
            ]],
        }
    }
}

/// How boha may run a package manager here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privilege {
    /// The process runs as root.
    Root,
    /// `sudo -n` works without a password.
    Sudo,
    /// Neither: the user has to run the command.
    None,
}

impl Privilege {
    /// Root, else password-less sudo, else none.
    pub fn detect() -> Privilege {
        if is_root() {
            return Privilege::Root;
        }
        let sudo_ok = Command::new("sudo")
            .args(["-n", "true"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if sudo_ok {
            Privilege::Sudo
        } else {
            Privilege::None
        }
    }
}

#[cfg(unix)]
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(not(unix))]
fn is_root() -> bool {
    false
}

/// What to do about a missing driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Commands boha runs itself, in order (already prefixed with `sudo -n` if needed).
    Run(Vec<Vec<String>>),
    /// Commands the user must run (no privileges here); shown, not run.
    Manual(Vec<Vec<String>>),
    /// No package manager boha knows: what to do, in words.
    Advice(String),
}

/// The plan for a machine: `target_os` as in `std::env::consts::OS`, its /etc/os-release
/// text (Linux) and the privilege boha has.
pub fn plan(target_os: &str, os_release: Option<&str>, privilege: Privilege) -> Plan {
    match target_os {
        "linux" => {}
        "macos" | "ios" => {
            return Plan::Advice(
                "Metal is part of macOS: update macOS, or check that boha was built with its \
                 `metal` backend and that WGPU_BACKEND does not exclude it"
                    .into(),
            )
        }
        "windows" => {
            return Plan::Advice(
                "install or update the GPU vendor's driver (DX12 or Vulkan); without a GPU, \
                 DX12's WARP adapter needs WGPU_BACKEND unset or including dx12"
                    .into(),
            )
        }
        other => {
            return Plan::Advice(format!(
                "install a Vulkan driver for {other} (Mesa's lavapipe runs on the CPU)"
            ))
        }
    }
    let Some(family) = os_release.and_then(Family::from_os_release) else {
        return Plan::Advice(
            "install Mesa's software Vulkan driver (lavapipe) and the Vulkan loader with your \
             package manager (Debian: mesa-vulkan-drivers libvulkan1; Fedora: \
             mesa-vulkan-drivers vulkan-loader; Arch: vulkan-swrast vulkan-icd-loader)"
                .into(),
        );
    };
    let prefix: &[&str] = match privilege {
        Privilege::Root => &[],
        Privilege::Sudo => &["sudo", "-n"],
        Privilege::None => &["sudo"],
    };
    let commands = family
        .commands()
        .into_iter()
        .map(|c| prefix.iter().chain(&c).map(|s| s.to_string()).collect())
        .collect();
    match privilege {
        Privilege::None => Plan::Manual(commands),
        _ => Plan::Run(commands),
    }
}

/// The plan for this machine.
pub fn plan_here() -> Plan {
    let release = std::fs::read_to_string("/etc/os-release")
        .or_else(|_| std::fs::read_to_string("/usr/lib/os-release"))
        .ok();
    plan(
        std::env::consts::OS,
        release.as_deref(),
        Privilege::detect(),
    )
}

/// One shell line for the commands: what the user reads and could paste.
pub fn shell_line(commands: &[Vec<String>]) -> String {
    commands
        .iter()
        .map(|c| c.join(" "))
        .collect::<Vec<_>>()
        .join(" && ")
}

/// Runs the commands in order, telling `say` each exact command first; the first that
/// fails stops the rest. Their output goes to stderr, so that stdout keeps only what the
/// calling command reports.
pub fn run(commands: &[Vec<String>], say: &mut dyn FnMut(&str)) -> Result<()> {
    for c in commands {
        say(&format!("running: {}", c.join(" ")));
        let status = Command::new(&c[0])
            .args(&c[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::io::stderr())
            .status()
            .map_err(|e| Error::Invalid(format!("could not start `{}`: {e}", c.join(" "))))?;
        if !status.success() {
            return Err(Error::Invalid(format!(
                "`{}` failed ({status}); run it by hand to see why",
                c.join(" ")
            )));
        }
    }
    Ok(())
}

/// Environment variables that point the Vulkan loader at particular driver files: when
/// one is set, installing a driver does not help until it is unset.
pub fn driver_overrides() -> Vec<String> {
    ["VK_ICD_FILENAMES", "VK_DRIVER_FILES", "VK_ADD_DRIVER_FILES"]
        .iter()
        .filter_map(|k| {
            let v = std::env::var_os(k)?;
            (!v.is_empty()).then(|| format!("{k}={}", v.to_string_lossy()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
    const UBUNTU: &str = "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n";
    const MINT: &str = "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n";
    const FEDORA: &str = "NAME=\"Fedora Linux\"\nID=fedora\n";
    const ROCKY: &str = "ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\n";
    const ARCH: &str = "NAME=\"Arch Linux\"\nID=arch\n";
    const MANJARO: &str = "ID=manjaro\nID_LIKE=arch\n";
    const ALPINE: &str = "ID=alpine\n";

    #[test]
    fn families_from_os_release() {
        for (text, want) in [
            (DEBIAN, Some(Family::Debian)),
            (UBUNTU, Some(Family::Debian)),
            (MINT, Some(Family::Debian)),
            (FEDORA, Some(Family::Fedora)),
            (ROCKY, Some(Family::Fedora)),
            (ARCH, Some(Family::Arch)),
            (MANJARO, Some(Family::Arch)),
            (ALPINE, None),
            ("", None),
        ] {
            assert_eq!(Family::from_os_release(text), want, "{text}");
        }
    }

    #[test]
    fn root_runs_the_package_manager_itself() {
        let Plan::Run(c) = plan("linux", Some(DEBIAN), Privilege::Root) else {
            panic!("root on Debian must run the install");
        };
        assert_eq!(
            shell_line(&c),
            "env DEBIAN_FRONTEND=noninteractive apt-get update && \
             env DEBIAN_FRONTEND=noninteractive apt-get install -y mesa-vulkan-drivers libvulkan1"
        );
        let Plan::Run(c) = plan("linux", Some(ARCH), Privilege::Root) else {
            panic!("root on Arch must run the install");
        };
        assert_eq!(
            shell_line(&c),
            "pacman -S --noconfirm --needed vulkan-swrast vulkan-icd-loader"
        );
    }

    #[test]
    fn sudo_without_password_is_used_and_otherwise_shown() {
        let Plan::Run(c) = plan("linux", Some(FEDORA), Privilege::Sudo) else {
            panic!("password-less sudo must run the install");
        };
        assert_eq!(
            shell_line(&c),
            "sudo -n dnf install -y mesa-vulkan-drivers vulkan-loader"
        );
        let Plan::Manual(c) = plan("linux", Some(UBUNTU), Privilege::None) else {
            panic!("without privileges the command is shown, not run");
        };
        assert!(shell_line(&c).starts_with("sudo env DEBIAN_FRONTEND"));
    }

    #[test]
    fn elsewhere_only_advice() {
        for os in ["macos", "windows", "freebsd"] {
            assert!(matches!(plan(os, None, Privilege::Root), Plan::Advice(_)));
        }
        assert!(matches!(
            plan("linux", Some(ALPINE), Privilege::Root),
            Plan::Advice(_)
        ));
    }
}
