//! The envelope every benchmark record carries: which device and driver measured it,
//! from which source commit, when, and the exact command line. `boha bench … --json`
//! and `boha synthetic --json` print `{"record": {…}, …the report's own fields…}`, and
//! `boha report` prints each table's provenance from it, so a published figure can be
//! traced to the run that made it.
//!
//! The commit is read when the command runs, from the source tree the binary was built
//! from (`git -C $CARGO_MANIFEST_DIR`), not baked in by a build script: a build script
//! that watched `.git` would rebuild the library on every commit. `cargo run --release`
//! rebuilds before it runs, so the tree it reads is the tree that was compiled. The
//! commit gets `-dirty` when `git status --porcelain` lists anything outside docs/ and
//! the Markdown files (a changed tracked file or an untracked one that is not ignored),
//! so a record made from uncommitted code says so, while the records and prose a run
//! writes do not. Outside that tree (an installed binary, no git) it is `unknown`;
//! `BOHA_COMMIT` overrides it for binaries built elsewhere.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::gpu::Gpu;

/// Who measured a record, with what, when and how.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// The command line as typed (argv joined, quoted where a shell would need it).
    pub command: String,
    /// When the run started: UTC, ISO 8601 (`2026-12-05T08:40:00Z`).
    pub date: String,
    /// `git rev-parse --short HEAD` of the source tree, `-dirty` when it had changes.
    pub commit: String,
    pub device: RecordDevice,
    pub driver: RecordDriver,
    /// The host's 1-minute load average when the run started, and its CPU count: on a CPU adapter such as lavapipe, other work on the host is noise in every
    /// time (Linux only; absent elsewhere).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_load: Option<HostLoad>,
    /// The `boha tune` file the run used (its file name), absent when none was in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<String>,
    /// Set only on records whose envelope was added afterwards (see docs/benchmarks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The adapter, as wgpu's `AdapterInfo` names it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordDevice {
    pub name: String,
    pub backend: String,
    pub device_type: String,
}

/// The driver, as wgpu's `AdapterInfo` names it (`driver`, `driver_info`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct RecordDriver {
    pub name: String,
    pub info: String,
}

/// How busy the host was.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HostLoad {
    pub load_1m: f64,
    pub cpus: usize,
}

impl HostLoad {
    /// From /proc/loadavg, where there is one.
    pub fn now() -> Option<HostLoad> {
        let text = std::fs::read_to_string("/proc/loadavg").ok()?;
        Some(HostLoad {
            load_1m: text.split_whitespace().next()?.parse().ok()?,
            cpus: std::thread::available_parallelism().ok()?.get(),
        })
    }
}

/// A report with its envelope: the envelope under `record`, the report's own fields
/// beside it, so readers of the old records' fields keep working.
#[derive(Serialize)]
pub struct Recorded<'a, T: Serialize> {
    pub record: Record,
    #[serde(flatten)]
    pub report: &'a T,
}

impl Record {
    /// The envelope of a run on `gpu` made by this process's command line, starting
    /// now (taken before the run, so the commit is that of the tree as the run began).
    pub fn now(gpu: &Gpu) -> Record {
        let i = gpu.info();
        Record {
            command: command_line(std::env::args()),
            date: iso8601_utc(SystemTime::now()),
            commit: source_commit(),
            device: RecordDevice {
                name: i.name.clone(),
                backend: i.backend.clone(),
                device_type: i.device_type.clone(),
            },
            driver: RecordDriver {
                name: i.driver.clone(),
                info: i.driver_info.clone(),
            },
            host_load: HostLoad::now(),
            tuning: gpu
                .tuning()
                .source
                .as_ref()
                .and_then(|p| p.file_name())
                .map(|f| f.to_string_lossy().into_owned()),
            note: None,
        }
    }
}

/// `report` wrapped with its envelope `record`, as one line of JSON.
pub fn to_json<T: Serialize>(record: Record, report: &T) -> serde_json::Result<String> {
    serde_json::to_string(&Recorded { record, report })
}

/// argv joined by spaces, each argument single-quoted when a shell would split or expand
/// it, so the line can be pasted back.
pub fn command_line(args: impl IntoIterator<Item = String>) -> String {
    let plain = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
    };
    args.into_iter()
        .map(|a| {
            if plain(&a) {
                a
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The source tree's commit (see the module comment).
pub fn source_commit() -> String {
    if let Ok(c) = std::env::var("BOHA_COMMIT") {
        if !c.is_empty() {
            return c;
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| -> Option<String> {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // Only the build's own tree counts, not a repository somewhere above it.
    let top = git(&["rev-parse", "--show-toplevel"]).map(std::path::PathBuf::from);
    let same = match (top.and_then(|t| t.canonicalize().ok()), dir.canonicalize()) {
        (Some(t), Ok(d)) => t == d,
        _ => false,
    };
    let head = same
        .then(|| git(&["rev-parse", "--short", "HEAD"]))
        .flatten();
    match head {
        None => "unknown".into(),
        // Records and prose do not change what was measured: a run that writes its own
        // record, or follows an uncommitted edit of the docs, is still the commit's.
        Some(h) => match git(&["status", "--porcelain", "--", ".", ":!docs", ":!*.md"]) {
            Some(s) if s.is_empty() => h,
            _ => format!("{h}-dirty"),
        },
    }
}

/// `t` as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn iso8601_utc(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn dates() {
        let at = |s| iso8601_utc(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_460_621), "2026-12-05T08:50:21Z");
    }

    #[test]
    fn command_lines_paste_back() {
        let args = ["boha", "bench", "step", "--model", "/a b/m.gguf", "it's"];
        assert_eq!(
            command_line(args.iter().map(|s| s.to_string())),
            r"boha bench step --model '/a b/m.gguf' 'it'\''s'"
        );
    }
}
