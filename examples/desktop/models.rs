//! One loaded checkpoint shared by the training, chat and merge threads, so a model
//! file is read (and a GGUF dequantized) once however many of them use it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use boha::loaders::{load_checkpoint, Checkpoint};

/// A loaded checkpoint and the path it came from.
type Loaded = (PathBuf, Arc<Checkpoint>);

/// The last checkpoint asked for.
#[derive(Clone, Default)]
pub struct CheckpointCache {
    slot: Arc<Mutex<Option<Loaded>>>,
}

impl CheckpointCache {
    /// The checkpoint at `path`, loaded now unless it is the one held. The lock is held
    /// while loading, so a second thread asking for the same model waits for this load
    /// instead of starting its own.
    pub fn get(&self, path: &Path) -> boha::Result<Arc<Checkpoint>> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((p, ck)) = slot.as_ref() {
            if p == path {
                return Ok(ck.clone());
            }
        }
        *slot = None;
        let ck = Arc::new(load_checkpoint(path)?);
        *slot = Some((path.to_path_buf(), ck.clone()));
        Ok(ck)
    }
}
