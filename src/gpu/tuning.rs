//! What `boha tune` measured on one adapter and driver, and where it is kept.
//!
//! A tuning file is JSON in the cache directory (`$XDG_CACHE_HOME/boha/tune/`, else
//! `~/.cache/boha/tune/`), one per adapter name, driver and boha version, so a driver
//! update or a new build never reuses stale winners. Every [`super::Gpu`] loads the file
//! of its adapter when one exists (`BOHA_NO_TUNE=1` ignores it) and then asks it, per
//! product, which GEMM tile to run and, per adapted matrix, which path the pair kinds take;
//! whatever it does not know falls back to the device profile (`super::profile`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::devices::DeviceInfo;
use super::profile::GemmTile;
use crate::error::{Error, Result};

/// A GEMM's shape as the tuning table keys it. The row count m (tokens in a linear
/// layer) is bucketed to the next power of two, so one tuning serves nearby batch shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GemmKey {
    pub m_bucket: usize,
    pub n: usize,
    pub k: usize,
    pub trans_a: bool,
    pub trans_b: bool,
    pub batched: bool,
}

impl GemmKey {
    /// The key of an m × k by k × n product (`batch` products when batch > 1).
    pub fn new(m: usize, n: usize, k: usize, trans_a: bool, trans_b: bool, batch: usize) -> Self {
        GemmKey {
            m_bucket: m.max(1).next_power_of_two(),
            n,
            k,
            trans_a,
            trans_b,
            batched: batch > 1,
        }
    }

    /// `m<bucket> n<n> k<k> nt` style text, the form a tuning file stores.
    pub fn text(&self) -> String {
        let t = |b: bool| if b { 't' } else { 'n' };
        format!(
            "m{} n{} k{} {}{}{}",
            self.m_bucket,
            self.n,
            self.k,
            t(self.trans_a),
            t(self.trans_b),
            if self.batched { " batched" } else { "" }
        )
    }

    /// Parses [`GemmKey::text`].
    pub fn parse(s: &str) -> Option<GemmKey> {
        let mut it = s.split_whitespace();
        let num = |w: Option<&str>, p: char| w?.strip_prefix(p)?.parse::<usize>().ok();
        let m_bucket = num(it.next(), 'm')?;
        let n = num(it.next(), 'n')?;
        let k = num(it.next(), 'k')?;
        let tr: Vec<char> = it.next()?.chars().collect();
        let flag = |c: char| match c {
            't' => Some(true),
            'n' => Some(false),
            _ => None,
        };
        if tr.len() != 2 {
            return None;
        }
        let batched = match it.next() {
            None => false,
            Some("batched") => true,
            Some(_) => return None,
        };
        Some(GemmKey {
            m_bucket,
            n,
            k,
            trans_a: flag(tr[0])?,
            trans_b: flag(tr[1])?,
            batched,
        })
    }
}

/// The pair kinds' (ABBA, LoHa) path for one adapted matrix, keyed by its shape and the
/// rank per pair. The token count is left out: the forward, the backward and the scratch
/// plan of one matrix must agree on its path whatever batch they see.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PairKey {
    pub d_out: usize,
    pub d_in: usize,
    pub rank: usize,
}

impl PairKey {
    pub fn new(d_out: usize, d_in: usize, rank: usize) -> PairKey {
        PairKey { d_out, d_in, rank }
    }

    /// `<d_out>x<d_in> r<rank>`, the form a tuning file stores.
    pub fn text(&self) -> String {
        format!("{}x{} r{}", self.d_out, self.d_in, self.rank)
    }

    fn parse(s: &str) -> Option<PairKey> {
        let mut it = s.split_whitespace();
        let (o, i) = it.next()?.split_once('x')?;
        let r = it.next()?.strip_prefix('r')?.parse().ok()?;
        it.next().is_none().then_some(())?;
        Some(PairKey {
            d_out: o.parse().ok()?,
            d_in: i.parse().ok()?,
            rank: r,
        })
    }
}

/// One measured choice: the winner and the times (ms) of every candidate that ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Measured {
    pub winner: String,
    pub ms: BTreeMap<String, f64>,
}

/// The file `boha tune` writes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TuningFile {
    pub adapter: String,
    pub driver: String,
    pub boha_version: String,
    pub date: String,
    /// GEMM shape ([`GemmKey::text`]) → tile name ([`GemmTile::name`]).
    pub gemm: BTreeMap<String, Measured>,
    /// Pair-kind matrix (`<d_out>x<d_in> r<rank per pair>`) → `fused` or `khatri-rao`.
    pub pair: BTreeMap<String, Measured>,
}

/// The loaded table, parsed into keys (entries that do not parse are dropped with a
/// warning: a file from another version may name tiles this build lacks).
#[derive(Clone, Debug, Default)]
pub struct Tuning {
    gemm: BTreeMap<GemmKey, GemmTile>,
    pair: BTreeMap<PairKey, bool>,
    /// Where it came from, for `boha devices` and logs.
    pub source: Option<PathBuf>,
}

impl Tuning {
    /// The tile tuned for `key`, if any.
    pub fn gemm(&self, key: &GemmKey) -> Option<GemmTile> {
        self.gemm.get(key).copied()
    }

    /// Whether the pair kinds run `key`'s matrix fused (`Some(true)`), on the Khatri–Rao
    /// bottleneck (`Some(false)`), or untuned (`None`).
    pub fn pair_fused(&self, key: &PairKey) -> Option<bool> {
        self.pair.get(key).copied()
    }

    /// Number of tuned entries (GEMM shapes, pair matrices).
    pub fn len(&self) -> (usize, usize) {
        (self.gemm.len(), self.pair.len())
    }

    /// Whether nothing is tuned.
    pub fn is_empty(&self) -> bool {
        self.gemm.is_empty() && self.pair.is_empty()
    }

    /// The table a tuning file describes.
    pub fn from_file(f: &TuningFile, source: Option<PathBuf>) -> Tuning {
        let mut t = Tuning {
            source,
            ..Default::default()
        };
        for (k, m) in &f.gemm {
            match (GemmKey::parse(k), GemmTile::parse(&m.winner)) {
                (Some(key), Some(tile)) => {
                    t.gemm.insert(key, tile);
                }
                _ => log::warn!("tuning: ignoring GEMM entry '{k}' → '{}'", m.winner),
            }
        }
        for (k, m) in &f.pair {
            match (PairKey::parse(k), m.winner.as_str()) {
                (Some(key), "fused") => {
                    t.pair.insert(key, true);
                }
                (Some(key), "khatri-rao") => {
                    t.pair.insert(key, false);
                }
                _ => log::warn!("tuning: ignoring pair entry '{k}' → '{}'", m.winner),
            }
        }
        t
    }

    /// Loads the tuning file of `info`'s adapter and driver, if there is one and
    /// `BOHA_NO_TUNE` is not set. A file that cannot be read is ignored with a warning:
    /// tuning only ever changes speed, never results.
    pub fn load_for(info: &DeviceInfo) -> Tuning {
        if std::env::var_os("BOHA_NO_TUNE").is_some_and(|v| !v.is_empty() && v != "0") {
            return Tuning::default();
        }
        let Some(path) = file_for(info) else {
            return Tuning::default();
        };
        if !path.is_file() {
            return Tuning::default();
        }
        match read(&path) {
            Ok(f) => {
                let t = Tuning::from_file(&f, Some(path.clone()));
                log::info!(
                    "tuning: {} GEMM shapes and {} pair matrices from {}",
                    t.gemm.len(),
                    t.pair.len(),
                    path.display()
                );
                t
            }
            Err(e) => {
                log::warn!("tuning: ignoring {e}");
                Tuning::default()
            }
        }
    }

    /// Stores the tile for a key (what `boha tune` does as it measures, so a later
    /// candidate list sees the earlier winners).
    pub fn set_gemm(&mut self, key: GemmKey, tile: GemmTile) {
        self.gemm.insert(key, tile);
    }

    /// Stores the pair path for a key.
    pub fn set_pair(&mut self, key: PairKey, fused: bool) {
        self.pair.insert(key, fused);
    }
}

/// Adds a measured GEMM choice to a tuning file.
pub fn record_gemm(f: &mut TuningFile, key: &GemmKey, winner: GemmTile, ms: BTreeMap<String, f64>) {
    f.gemm.insert(
        key.text(),
        Measured {
            winner: winner.name(),
            ms,
        },
    );
}

/// Adds a measured pair-path choice to a tuning file.
pub fn record_pair(f: &mut TuningFile, key: &PairKey, fused: bool, ms: BTreeMap<String, f64>) {
    f.pair.insert(
        key.text(),
        Measured {
            winner: if fused { "fused" } else { "khatri-rao" }.into(),
            ms,
        },
    );
}

/// The tuning file's path for `info`: the cache's `tune/` folder, a name made of the
/// adapter name, driver and boha version with anything but letters, digits, `.` and `-`
/// turned into `_`.
pub fn file_for(info: &DeviceInfo) -> Option<PathBuf> {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let name = format!(
        "{}__{}__{}__boha-{}.json",
        clean(&info.name),
        clean(&info.backend),
        clean(&info.driver_info),
        env!("CARGO_PKG_VERSION")
    );
    // A browser tab has no cache directory: the web build runs untuned.
    #[cfg(target_arch = "wasm32")]
    let cache: Option<PathBuf> = None;
    #[cfg(not(target_arch = "wasm32"))]
    let cache = crate::loaders::fetch::cache_dir();
    cache.map(|c| c.join("tune").join(name))
}

/// Reads and parses a tuning file; errors name the file.
pub fn read(path: &Path) -> Result<TuningFile> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Invalid(format!("{}: not a tuning file: {e}", path.display())))
}

/// Writes a tuning file atomically (a temporary file renamed into place), creating the
/// folder.
pub fn write(path: &Path, f: &TuningFile) -> Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| Error::Invalid(format!("{}: no parent folder", path.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))?;
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let text = serde_json::to_string_pretty(f).expect("a tuning file serializes");
    std::fs::write(&tmp, text + "\n")
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Invalid(format!("{}: {e}", path.display()))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_bucket_rows() {
        let k = GemmKey::new(300, 576, 1536, false, true, 1);
        assert_eq!(k.m_bucket, 512);
        assert_eq!(GemmKey::parse(&k.text()), Some(k));
        let b = GemmKey::new(1, 7, 9, true, false, 3);
        assert_eq!(GemmKey::parse(&b.text()), Some(b));
        assert_eq!(GemmKey::parse("m4 n4 k4 xx"), None);
        assert_eq!(GemmKey::parse("m4 n4 k4 nt extra"), None);
        let p = PairKey::new(1536, 576, 16);
        assert_eq!(PairKey::parse(&p.text()), Some(p));
        assert_eq!(PairKey::parse("1536x576 r16 t3"), None);
    }

    #[test]
    fn file_entries_become_a_table_and_unknown_ones_are_dropped() {
        let mut f = TuningFile::default();
        let k = GemmKey::new(512, 576, 576, false, true, 1);
        let t = GemmTile::Tier { bm: 64, bn: 128 };
        record_gemm(&mut f, &k, t, BTreeMap::from([("x".to_string(), 1.0)]));
        f.gemm.insert(
            "m1 n1 k1 nn".into(),
            Measured {
                winner: "warp-speed".into(),
                ms: BTreeMap::new(),
            },
        );
        let p = PairKey::new(64, 32, 4);
        record_pair(&mut f, &p, false, BTreeMap::new());
        let json = serde_json::to_string(&f).unwrap();
        let back: TuningFile = serde_json::from_str(&json).unwrap();
        let table = Tuning::from_file(&back, None);
        assert_eq!(table.gemm(&k), Some(t));
        assert_eq!(table.len(), (1, 1));
        assert_eq!(table.pair_fused(&p), Some(false));
    }
}
