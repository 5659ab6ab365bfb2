//! The Results buttons: save the latest snapshot's adapter (PEFT-style directory) or
//! write the model with it merged (a plain Hugging Face directory), on a background
//! thread since merging uploads the whole model.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use boha::gpu::Gpu;
use boha::model::adapter_io::save_host;
use boha::model::export::{check_destination, write_hf_model};
use boha::model::transformer::Weights;

use crate::models::CheckpointCache;
use crate::snapshot::Snapshot;

/// The last action's outcome, for the panel.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub busy: bool,
    pub message: String,
}

/// The results worker's handle.
#[derive(Default)]
pub struct Results {
    outcome: Arc<Mutex<Outcome>>,
}

impl Results {
    /// The outcome, locked for reading.
    pub fn outcome(&self) -> MutexGuard<'_, Outcome> {
        self.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(
        &self,
        ctx: eframe::egui::Context,
        doing: String,
        job: impl FnOnce() -> boha::Result<String> + Send + 'static,
    ) {
        *self.outcome() = Outcome {
            busy: true,
            message: doing,
        };
        let outcome = self.outcome.clone();
        std::thread::spawn(move || {
            let message = match job() {
                Ok(m) => m,
                Err(e) => format!("failed: {e}"),
            };
            *outcome.lock().unwrap_or_else(|p| p.into_inner()) = Outcome {
                busy: false,
                message,
            };
            ctx.request_repaint();
        });
    }

    /// Writes `snap`'s adapter to `dir` (adapter_config.json, adapter_model.safetensors).
    pub fn save_adapter(
        &self,
        snap: Arc<Snapshot>,
        model: PathBuf,
        dir: PathBuf,
        ctx: eframe::egui::Context,
    ) {
        self.spawn(ctx, format!("saving to {} …", dir.display()), move || {
            save_host(
                &dir,
                &snap.spec,
                &model.display().to_string(),
                &snap.factors,
            )?;
            Ok(format!(
                "adapter of step {} saved to {}",
                snap.step,
                dir.display()
            ))
        });
    }

    /// Merges `snap`'s adapter into the model's weights on the device and writes the
    /// result to `out` as a Hugging Face directory.
    pub fn write_merged(
        &self,
        gpu: Arc<Gpu>,
        models: CheckpointCache,
        snap: Arc<Snapshot>,
        model: PathBuf,
        out: PathBuf,
        ctx: eframe::egui::Context,
    ) {
        self.spawn(
            ctx,
            format!("merging into {} …", out.display()),
            move || {
                merge(&gpu, &models, &snap, &model, &out)?;
                Ok(format!(
                    "model with the adapter of step {} merged written to {}",
                    snap.step,
                    out.display()
                ))
            },
        );
    }
}

fn merge(
    gpu: &Gpu,
    models: &CheckpointCache,
    snap: &Snapshot,
    model: &Path,
    out: &Path,
) -> boha::Result<()> {
    // Refused before the upload, which is the slow part.
    check_destination(out)?;
    let ck = models.get(model)?;
    let weights = Weights::upload(gpu, &ck)?;
    let adapters = snap.upload(gpu, ck.config.num_layers)?;
    write_hf_model(gpu, &weights, Some(&adapters), &ck, out, ck.precision())
}
