//! A test unit's progress: its items run in chunks of [`CHUNK`], and the answers of the
//! chunks done are kept in `OUT/work/partial/RUN/TASK.json`, so a test cut short (the
//! deadline, a lost machine, the end of a session) goes on from its last finished chunk
//! instead of from its first item. The file goes away once the unit's result is written.
//!
//! The answers are kept only for the inputs they came from: the file records a key (the
//! run, the task, hashes of the test file and of the adapter, the scoring settings) and
//! answers under another key are discarded.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::jsonl::write_atomic;
use crate::{Error, Result};

/// Items per chunk of a scored (loglik) test: a cut-short test loses at most this many
/// items' work.
pub const CHUNK: usize = 50;

/// Items per chunk of a test whose answers are generated `batch` at a time: slots stay
/// busy until a chunk's last records, so a chunk holds several batches (each chunk's
/// tail decodes with idle slots).
pub fn chunk_of(generated: bool, batch: usize) -> usize {
    if generated {
        CHUNK.max(4 * batch)
    } else {
        CHUNK
    }
}

/// The items a chunked test has finished.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Partial {
    /// What the answers were computed from.
    pub key: Value,
    /// One '1' (correct) or '0' per finished item, in the test file's order.
    pub correct: String,
    /// Per finished item, the gold response's log-likelihood per token, for tests that
    /// score it (GSM8K); empty for the others.
    #[serde(default)]
    pub gold_loglik: Vec<f64>,
    /// Wall-clock seconds the finished chunks took.
    pub seconds: f64,
}

impl Partial {
    /// The progress stored at `path` for `key`, holding a gold score per item exactly when
    /// `with_gold`: empty when there is none, or when it was made from other inputs or
    /// without the gold scores (`discarded` is then true).
    pub fn open(path: &Path, key: Value, with_gold: bool) -> Result<(Partial, bool)> {
        let fresh = Partial {
            key: key.clone(),
            ..Partial::default()
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((fresh, false)),
            Err(e) => return Err(Error::io(path, e)),
        };
        let saved: Partial = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "{}: not a test unit's progress: {e}",
                path.display()
            ))
        })?;
        let consistent = if with_gold {
            saved.gold_loglik.len() == saved.correct.len()
        } else {
            saved.gold_loglik.is_empty()
        };
        if saved.key != key || !consistent || saved.correct.chars().any(|c| c != '0' && c != '1') {
            return Ok((fresh, true));
        }
        Ok((saved, false))
    }

    /// Items finished.
    pub fn done(&self) -> usize {
        self.correct.len()
    }

    /// Appends a finished chunk's answers (with their gold scores, or none) and the
    /// seconds it took, and saves.
    pub fn push(
        &mut self,
        path: &Path,
        correct: &[bool],
        gold_loglik: &[f64],
        seconds: f64,
    ) -> Result<()> {
        self.correct
            .extend(correct.iter().map(|&c| if c { '1' } else { '0' }));
        self.gold_loglik.extend_from_slice(gold_loglik);
        self.seconds += seconds;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        write_atomic(path, format!("{}\n", serde_json::json!(self)).as_bytes())
    }

    /// Correct answers over items finished (0 when none).
    pub fn accuracy(&self) -> f64 {
        let right = self.correct.bytes().filter(|&c| c == b'1').count();
        if self.correct.is_empty() {
            0.0
        } else {
            right as f64 / self.correct.len() as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn generated_tests_run_in_chunks_of_several_batches() {
        assert_eq!(chunk_of(false, 64), CHUNK);
        assert_eq!(chunk_of(true, 64), 256);
        assert_eq!(chunk_of(true, 2), CHUNK);
    }

    #[test]
    fn progress_survives_a_restart_only_for_its_own_inputs() {
        let dir = std::env::temp_dir().join(format!("boha-partial-{}", std::process::id()));
        let path = dir.join("commonsense/boha/lr3e-2_s1/boolq.json");
        let key = json!({"run": "commonsense/boha/lr3e-2_s1", "test_fnv1a": "00ab"});

        let (mut p, discarded) = Partial::open(&path, key.clone(), true).unwrap();
        assert!(!discarded);
        assert_eq!(p.done(), 0);
        p.push(&path, &[true, false, true], &[-1.0, -2.0, -0.5], 2.5)
            .unwrap();
        p.push(&path, &[true], &[-0.25], 1.0).unwrap();

        let (again, discarded) = Partial::open(&path, key.clone(), true).unwrap();
        assert!(!discarded);
        assert_eq!(again.correct, "1011");
        assert_eq!(again.done(), 4);
        assert_eq!(again.seconds, 3.5);
        assert_eq!(again.accuracy(), 0.75);
        assert_eq!(again.gold_loglik, [-1.0, -2.0, -0.5, -0.25]);

        // Answers without their gold scores are not taken where scores are due.
        let (_, discarded) = Partial::open(&path, key.clone(), false).unwrap();
        assert!(discarded);
        let other = json!({"run": "commonsense/boha/lr3e-2_s1", "test_fnv1a": "00ac"});
        let (fresh, discarded) = Partial::open(&path, other, true).unwrap();
        assert!(discarded);
        assert_eq!(fresh.done(), 0);

        std::fs::write(&path, "{not json").unwrap();
        let err = Partial::open(&path, key, true).unwrap_err().to_string();
        assert!(
            err.contains("boolq.json") && err.contains("progress"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
