//! Training checkpoints: one safetensors file holding every adapter factor, AdamW's two
//! moments for each, and the run's state (step, data position, the settings it was
//! started with) as JSON in the header's metadata.
//!
//! ```text
//! layers.{i}.{proj}.A   layers.{i}.{proj}.A.m   layers.{i}.{proj}.A.v     (F32)
//! layers.{i}.{proj}.B   layers.{i}.{proj}.B.m   layers.{i}.{proj}.B.v
//! __metadata__: {"boha_train_state": "<TrainState as JSON>"}
//! ```
//!
//! The file is written to a temporary sibling, synced and renamed over the old one, so a
//! run killed at any moment leaves either the previous checkpoint or the new one. f32
//! values round-trip exactly, so a resumed run continues bit for bit.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::data::batch::DataPosition;
use crate::data::jsonl::write_atomic;
use crate::gpu::Gpu;
use crate::graph::Trainer;
use crate::{Error, Result};

/// The metadata key holding the [`TrainState`].
const STATE_KEY: &str = "boha_train_state";

/// Where a run stands, saved with each checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps taken.
    pub step: u32,
    /// The position of the next micro-batch.
    pub data: DataPosition,
    /// Loss tokens trained on so far.
    pub tokens: u64,
    /// The settings that determine the run's trajectory (see `run::Fingerprint`).
    pub fingerprint: serde_json::Value,
}

fn bad(path: &Path, m: impl std::fmt::Display) -> Error {
    Error::Invalid(format!("{}: {m}", path.display()))
}

/// Writes the trainer's parameters and optimizer state with `state` to `path`.
pub fn save(gpu: &Gpu, trainer: &Trainer, state: &TrainState, path: &Path) -> Result<()> {
    let params = trainer.parameters();
    let moments = trainer.optimizer_states();
    let mut named: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for ((name, t), st) in params.iter().zip(moments) {
        let shape = t.shape().to_vec();
        named.push((name.clone(), shape.clone(), gpu.download(t)?));
        named.push((format!("{name}.m"), shape.clone(), gpu.download(&st.m)?));
        named.push((format!("{name}.v"), shape, gpu.download(&st.v)?));
    }
    if let Some((name, _, _)) = named
        .iter()
        .find(|(_, _, v)| v.iter().any(|x| !x.is_finite()))
    {
        return Err(bad(
            path,
            format!("not writing a checkpoint: {name} holds NaN or Inf"),
        ));
    }
    let views: Vec<(String, TensorView<'_>)> = named
        .iter()
        .map(|(n, s, v)| {
            TensorView::new(Dtype::F32, s.clone(), bytemuck::cast_slice(v))
                .map(|tv| (n.clone(), tv))
                .map_err(|e| bad(path, e))
        })
        .collect::<Result<_>>()?;
    let meta: HashMap<String, String> = [(
        STATE_KEY.to_string(),
        serde_json::to_string(state).map_err(|e| bad(path, e))?,
    )]
    .into();
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| bad(path, e))?;
    write_atomic(path, &bytes)
}

/// Reads only the state of the checkpoint at `path`.
pub fn read_state(path: &Path) -> Result<TrainState> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    state_of(path, &bytes)
}

fn state_of(path: &Path, bytes: &[u8]) -> Result<TrainState> {
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| bad(path, format!("not a checkpoint: {e}")))?;
    let text = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get(STATE_KEY))
        .ok_or_else(|| bad(path, "not a boha training checkpoint (no train state)"))?;
    serde_json::from_str(text).map_err(|e| bad(path, format!("bad train state: {e}")))
}

/// Loads the checkpoint at `path` into `trainer` (which must have the same adapters)
/// and returns its state; the trainer's step count is set from it.
pub fn load(gpu: &Gpu, trainer: &mut Trainer, path: &Path) -> Result<TrainState> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let state = state_of(path, &bytes)?;
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(path, e))?;
    let get = |name: &str, shape: &[usize]| -> Result<Vec<f32>> {
        let t = st
            .tensor(name)
            .map_err(|_| bad(path, format!("missing tensor {name} (another adapter?)")))?;
        if t.dtype() != Dtype::F32 || t.shape() != shape {
            return Err(bad(
                path,
                format!(
                    "{name} is {:?} {:?}, the run needs F32 {shape:?}",
                    t.dtype(),
                    t.shape()
                ),
            ));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    };
    let params: Vec<(String, crate::gpu::Tensor)> = trainer
        .parameters()
        .into_iter()
        .map(|(n, t)| (n, t.clone()))
        .collect();
    let expected = params.len() * 3;
    if st.len() != expected {
        return Err(bad(
            path,
            format!(
                "{} tensors, this run's adapters need {expected} (another adapter?)",
                st.len()
            ),
        ));
    }
    for ((name, t), m) in params.iter().zip(trainer.optimizer_states()) {
        let shape = t.shape().to_vec();
        gpu.write(t, &get(name, &shape)?)?;
        gpu.write(&m.m, &get(&format!("{name}.m"), &shape)?)?;
        gpu.write(&m.v, &get(&format!("{name}.v"), &shape)?)?;
    }
    trainer.set_steps(state.step);
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A resumed run compares its settings with the saved ones for equality, so every
    /// f32 rate must survive the checkpoint's JSON round trip exactly (3e-2 once read
    /// back 3 ulps off and the run refused its own checkpoint).
    #[test]
    fn saved_settings_read_back_exactly() {
        let path = Path::new("checkpoint.safetensors");
        let decades = (0..40).map(|i| 1e-5f32 * 1.37f32.powi(i));
        for lr in [3e-2f32, 9e-2].into_iter().chain(decades) {
            let state = TrainState {
                step: 6,
                data: DataPosition {
                    epoch: 0,
                    index: 24,
                },
                tokens: 166,
                fingerprint: serde_json::json!({ "lr": lr, "scale": lr * 7.0 }),
            };
            let meta: HashMap<String, String> = [(
                STATE_KEY.to_string(),
                serde_json::to_string(&state).unwrap(),
            )]
            .into();
            let no_tensors: Vec<(String, TensorView<'_>)> = Vec::new();
            let bytes = safetensors::serialize(no_tensors, Some(meta)).unwrap();
            assert_eq!(state_of(path, &bytes).unwrap(), state, "lr {lr}");
        }
    }
}
