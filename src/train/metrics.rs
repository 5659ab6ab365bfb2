//! The run's metrics log: one JSON object per line in DIR/metrics.jsonl.
//!
//! ```text
//! {"step": 12, "loss": 1.93, "lr": 0.0009, "grad_norm": 0.41, "tokens": 3072,
//!  "tokens_per_s": 212.0, "elapsed_s": 14.5}
//! {"step": 20, "eval_loss": 1.71}
//! ```
//!
//! A resumed run first drops the lines of steps after its checkpoint (they belong to
//! the part of the interrupted run that is being redone), so the log reads as one run.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{Error, Result};

/// An append-only JSONL log.
pub struct MetricsLog {
    path: PathBuf,
    file: std::fs::File,
}

/// Training losses and eval losses by step, as read back from a log.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Curves {
    pub train: Vec<(u32, f32)>,
    pub eval: Vec<(u32, f32)>,
}

impl MetricsLog {
    /// Opens `path`, keeping only the lines of steps ≤ `keep_through` (None: start a new
    /// log).
    pub fn open(path: &Path, keep_through: Option<u32>) -> Result<MetricsLog> {
        let kept = match keep_through {
            Some(step) if path.exists() => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                text.lines()
                    .filter(|l| {
                        serde_json::from_str::<Value>(l)
                            .ok()
                            .and_then(|v| v.get("step").and_then(Value::as_u64))
                            .is_some_and(|s| s <= step as u64)
                    })
                    .map(|l| format!("{l}\n"))
                    .collect::<String>()
            }
            _ => String::new(),
        };
        crate::data::jsonl::write_atomic(path, kept.as_bytes())?;
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one record.
    pub fn write(&mut self, record: &Value) -> Result<()> {
        let line = format!("{record}\n");
        self.file
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Reads the curves back from the log.
    pub fn curves(&self) -> Result<Curves> {
        read_curves(&self.path)
    }
}

/// The train and eval loss curves of a metrics log.
pub fn read_curves(path: &Path) -> Result<Curves> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut c = Curves::default();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(step) = v.get("step").and_then(Value::as_u64) else {
            continue;
        };
        if let Some(l) = v.get("loss").and_then(Value::as_f64) {
            c.train.push((step as u32, l as f32));
        }
        if let Some(l) = v.get("eval_loss").and_then(Value::as_f64) {
            c.eval.push((step as u32, l as f32));
        }
    }
    Ok(c)
}
