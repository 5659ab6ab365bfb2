//! Reading the records under docs/benchmarks/ and saying where each came from.

use std::path::Path;

use serde_json::Value;

use crate::bench::record::Record;
use crate::error::{Error, Result};

/// One record file, parsed.
pub struct Loaded {
    /// The file's name inside docs/benchmarks/.
    pub name: String,
    pub value: Value,
}

impl Loaded {
    /// The envelope, when the record has one.
    pub fn record(&self) -> Option<Record> {
        serde_json::from_value(self.value.get("record")?.clone()).ok()
    }

    /// A number field of `v` (a part of this record), or an error naming both.
    pub fn num(&self, v: &Value, key: &str) -> Result<f64> {
        v.get(key)
            .and_then(Value::as_f64)
            .ok_or_else(|| Error::Invalid(format!("{}: no number `{key}`", self.name)))
    }

    /// A string field of `v`, or an error naming it.
    pub fn str<'a>(&self, v: &'a Value, key: &str) -> Result<&'a str> {
        v.get(key)
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Invalid(format!("{}: no string `{key}`", self.name)))
    }

    /// An array field of `v`, or an error naming it.
    pub fn list<'a>(&self, v: &'a Value, key: &str) -> Result<&'a Vec<Value>> {
        v.get(key)
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Invalid(format!("{}: no list `{key}`", self.name)))
    }
}

/// The records in `dir` whose names match `pattern` (`*` matches any run of
/// characters), sorted by name; none is an error naming the pattern.
pub fn load(dir: &Path, pattern: &str) -> Result<Vec<Loaded>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::Invalid(format!("{}: {e}", dir.display())))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| glob_match(pattern, n))
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(Error::Invalid(format!(
            "no record matches {}/{pattern}",
            dir.display()
        )));
    }
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            let value = serde_json::from_str(&text)
                .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
            Ok(Loaded { name, value })
        })
        .collect()
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !name.starts_with(first) || !name[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &name[first.len()..name.len() - last.len()];
    for p in &parts[1..parts.len() - 1] {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    true
}

/// The line above each table: which record, device, driver, commit, date and command
/// it comes from, and the record's note where its envelope was added afterwards.
/// `link` is the path from the document to docs/benchmarks/.
pub fn caption(l: &Loaded, link: &str) -> String {
    let file = format!("[`{}`]({link}{})", l.name, l.name);
    match l.record() {
        Some(r) => {
            let mut s = format!(
                "Record {file}: {} ({}, {}), driver {} {}; commit `{}`, {}; `{}`.",
                r.device.name,
                r.device.backend,
                r.device.device_type,
                r.driver.name,
                r.driver.info,
                r.commit,
                r.date,
                r.command
            );
            if let Some(h) = r.host_load {
                s.pop();
                s += &format!("; host load {:.1} on {} CPUs.", h.load_1m, h.cpus);
            }
            if let Some(t) = &r.tuning {
                s.pop();
                s += &format!("; kernels tuned by `boha tune` (`{t}`).");
            }
            if let Some(n) = r.note {
                s += &format!(" {n}");
            }
            s
        }
        None => format!("Record {file}: no envelope; its device, commit and date are unknown."),
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs() {
        assert!(glob_match("a_*.json", "a_4x128.json"));
        assert!(glob_match("a.json", "a.json"));
        assert!(!glob_match("a_*.json", "a_4x128.txt"));
        assert!(!glob_match("a_*x*.json", "a_4.json"));
        assert!(glob_match("a_*x*.json", "a_4x1.json"));
    }
}
