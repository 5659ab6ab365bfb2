//! Device profiles: what each class of adapter runs by default (kernel family, GEMM tile,
//! how many workgroups fill it), before `boha tune` has timed anything on it.
//!
//! The class comes from the adapter's type and PCI vendor id. A profile only sets
//! defaults: a tuning file ([`super::tuning`]) written by `boha tune` for this adapter and
//! driver overrides the GEMM tile per product shape and the pair kinds' path per matrix.

use super::devices::DeviceInfo;
use super::options::GemmFamily;

/// The kind of device a profile is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeviceClass {
    /// A CPU adapter (Mesa's lavapipe/llvmpipe, SwiftShader): a workgroup runs on one
    /// thread, barriers cost a thread switch and every non-uniform load is a per-lane loop.
    Cpu,
    Nvidia,
    Amd,
    Intel,
    Apple,
    /// Any other GPU (Qualcomm, ARM, ...).
    OtherGpu,
}

impl DeviceClass {
    /// The class of an adapter from its type and PCI vendor id.
    pub fn of(info: &DeviceInfo) -> DeviceClass {
        if info.device_type == "Cpu" {
            return DeviceClass::Cpu;
        }
        match info.vendor {
            0x10de => DeviceClass::Nvidia,
            0x1002 | 0x1022 => DeviceClass::Amd,
            0x8086 => DeviceClass::Intel,
            0x106b => DeviceClass::Apple,
            _ if info.name.to_ascii_lowercase().contains("apple") => DeviceClass::Apple,
            _ => DeviceClass::OtherGpu,
        }
    }

    /// Lower-case name used in reports and tuning files.
    pub fn name(self) -> &'static str {
        match self {
            DeviceClass::Cpu => "cpu",
            DeviceClass::Nvidia => "nvidia",
            DeviceClass::Amd => "amd",
            DeviceClass::Intel => "intel",
            DeviceClass::Apple => "apple",
            DeviceClass::OtherGpu => "gpu",
        }
    }
}

/// The tiled kernel a GEMM runs on (GEMV-shaped products aside). Every variant computes
/// the same C = α·op(A)·op(B) + β·C; they differ only in how the work is tiled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GemmTile {
    /// The register family: each invocation keeps a 16 × 8 tile of C in vec4
    /// accumulators and reads global memory directly (no workgroup memory, no barriers).
    Register,
    /// The shared family's 64 × 64 workgroup tile, 4 × 4 outputs per invocation.
    Shared64,
    /// CPU adapters with 8-lane subgroups (llvmpipe on AVX2): a subgroup shares 16 rows of
    /// A through `subgroupBroadcast`, each lane keeps 4 columns of op(B); A stored [m, k]
    /// and k a multiple of 4, else the register tile runs.
    Subgroup,
    /// The discrete-GPU tier: a `bm` × `bn` workgroup tile (128 × 128, 64 × 128 or
    /// 128 × 64), 8 × 8 outputs per invocation in vec4 accumulators, K-major padded
    /// workgroup tiles, register-staged double buffering with one barrier per K step.
    Tier { bm: u32, bn: u32 },
}

impl GemmTile {
    /// The tier's workgroup tiles, largest first.
    pub const TIER_SHAPES: [(u32, u32); 3] = [(128, 128), (64, 128), (128, 64)];

    /// Every tile a device may run, in the order `boha tune` tries them.
    pub fn candidates() -> Vec<GemmTile> {
        let mut v = vec![GemmTile::Register, GemmTile::Subgroup, GemmTile::Shared64];
        v.extend(
            Self::TIER_SHAPES
                .iter()
                .map(|&(bm, bn)| GemmTile::Tier { bm, bn }),
        );
        v
    }

    /// The name used in tuning files, reports and on the command line: `register`,
    /// `shared64`, `tier128x128`, ...
    pub fn name(self) -> String {
        match self {
            GemmTile::Register => "register".into(),
            GemmTile::Shared64 => "shared64".into(),
            GemmTile::Subgroup => "subgroup8".into(),
            GemmTile::Tier { bm, bn } => format!("tier{bm}x{bn}"),
        }
    }

    /// Parses [`GemmTile::name`]'s output; `None` for anything else.
    pub fn parse(s: &str) -> Option<GemmTile> {
        match s {
            "register" => Some(GemmTile::Register),
            "shared64" => Some(GemmTile::Shared64),
            "subgroup8" => Some(GemmTile::Subgroup),
            _ => {
                let (bm, bn) = s.strip_prefix("tier")?.split_once('x')?;
                let t = (bm.parse().ok()?, bn.parse().ok()?);
                Self::TIER_SHAPES
                    .contains(&t)
                    .then_some(GemmTile::Tier { bm: t.0, bn: t.1 })
            }
        }
    }

    /// The tile the family runs by default.
    pub fn of_family(family: GemmFamily) -> GemmTile {
        match family {
            GemmFamily::Register => GemmTile::Register,
            GemmFamily::Shared => GemmTile::Shared64,
        }
    }
}

/// What a device class runs when nothing has been tuned.
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub class: DeviceClass,
    /// Kernel family of the fused adapter kernels, the adapter gradients, RMSNorm and
    /// the GEMV.
    pub family: GemmFamily,
    /// The plain GEMM's tile.
    pub gemm_tile: GemmTile,
    /// Workgroups that keep the device busy: the adapter-gradient planner splits a layer
    /// into about this many regions.
    pub busy_workgroups: usize,
    /// Most loop iterations one invocation may run before the work is split into more
    /// dispatches: llvmpipe silently ends every loop after 65535 iterations per
    /// invocation, so its budget stays well below; GPUs have none.
    pub loop_budget: Option<usize>,
}

impl Profile {
    /// The profile of `info`'s class; `family` (from `--gemm`) overrides its family and,
    /// with it, the GEMM tile.
    pub fn for_device(info: &DeviceInfo, family: Option<GemmFamily>) -> Profile {
        let class = DeviceClass::of(info);
        let cpu_threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut p = match class {
            // Measured on lavapipe: more regions than threads only cost.
            DeviceClass::Cpu => Profile {
                class,
                family: GemmFamily::Register,
                gemm_tile: GemmTile::Register,
                busy_workgroups: (2 * cpu_threads).clamp(2, 64),
                loop_budget: Some(40_000),
            },
            // Discrete GPUs. The 128 × 128 tier is built for them but has not yet been
            // timed on one, so until a GPU run shows it winning the default stays the
            // 64 × 64 tile and `boha tune` (which checks every tile's output first) is what
            // moves a device onto the tier.
            DeviceClass::Nvidia | DeviceClass::Amd => Profile {
                class,
                family: GemmFamily::Shared,
                gemm_tile: GemmTile::Shared64,
                busy_workgroups: 264,
                loop_budget: None,
            },
            // Integrated and mobile GPUs: smaller register files and fewer cores.
            DeviceClass::Intel | DeviceClass::Apple | DeviceClass::OtherGpu => Profile {
                class,
                family: GemmFamily::Shared,
                gemm_tile: GemmTile::Shared64,
                busy_workgroups: 64,
                loop_budget: None,
            },
        };
        if let Some(f) = family.filter(|&f| f != p.family) {
            p.family = f;
            p.gemm_tile = GemmTile::of_family(f);
            if f == GemmFamily::Register {
                p.busy_workgroups = (2 * cpu_threads).clamp(2, 64);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_names_round_trip() {
        for t in GemmTile::candidates() {
            assert_eq!(GemmTile::parse(&t.name()), Some(t));
        }
        assert_eq!(GemmTile::parse("tier32x32"), None);
        assert_eq!(GemmTile::parse("tier128"), None);
        assert_eq!(GemmTile::parse("fast"), None);
    }
}
