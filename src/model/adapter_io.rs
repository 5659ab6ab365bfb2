//! Adapter files ↔ a model's [`Adapters`]: attach a saved adapter to the weights it was
//! trained on (checking that it fits them), and save trained adapters back.
//!
//! An adapter fits a model when every tensor's layer exists and its (d_out, d_in) are
//! the shape of that projection in the model; anything else is an "adapter made for
//! another model" error naming the adapter directory.

use std::collections::BTreeMap;
use std::path::Path;

use crate::adapters::files::{load_adapter, save_adapter, LayerFactors, LoadedAdapter};
use crate::adapters::layer::AdaptedLinear;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::transformer::{Adapters, Weights};

/// The host copy of one adapted matrix: (layer, projection, A, B, d_out, d_in).
pub type HostFactors = (usize, String, Vec<f32>, Vec<f32>, usize, usize);

impl Adapters {
    /// Uploads `loaded` (from `dir`, named in errors) onto `weights`.
    pub fn from_loaded(
        gpu: &Gpu,
        weights: &Weights,
        loaded: &LoadedAdapter,
        dir: &Path,
    ) -> Result<Adapters> {
        let mismatch = |m: String| {
            Error::Invalid(format!(
                "{}: adapter does not fit this model: {m}",
                dir.display()
            ))
        };
        let n_layers = weights.layers.len();
        let mut layers: Vec<BTreeMap<String, AdaptedLinear>> =
            (0..n_layers).map(|_| BTreeMap::new()).collect();
        for t in &loaded.tensors {
            if t.layer >= n_layers {
                return Err(mismatch(format!(
                    "layer {} of {}, the model has {n_layers} layers",
                    t.layer, t.target
                )));
            }
            let w = weights.layers[t.layer].projection(&t.target)?;
            let (d_out, d_in) = (w.shape()[0], w.shape()[1]);
            if (d_out, d_in) != (t.d_out, t.d_in) {
                return Err(mismatch(format!(
                    "layers.{}.{} is {}×{} in the adapter, {d_out}×{d_in} in the model",
                    t.layer, t.target, t.d_out, t.d_in
                )));
            }
            let name = format!("layers.{}.{}", t.layer, t.target);
            let ad = AdaptedLinear::from_host(gpu, loaded.spec, &name, d_out, d_in, &t.a, &t.b)
                .map_err(|e| mismatch(e.to_string()))?;
            layers[t.layer].insert(t.target.clone(), ad);
        }
        // The executor expects a target on every layer (it plans one backward per
        // projection kind); an adapter file may leave layers out only if it leaves the
        // projection out everywhere.
        for (l, map) in layers.iter().enumerate() {
            for t in &loaded.targets {
                if !map.contains_key(t) {
                    return Err(mismatch(format!("target {t} has no tensors for layer {l}")));
                }
            }
        }
        Ok(Adapters {
            spec: loaded.spec,
            targets: loaded.targets.clone(),
            layers,
        })
    }

    /// Reads the adapter in `dir` and uploads it onto `weights`.
    pub fn load(gpu: &Gpu, weights: &Weights, dir: &Path) -> Result<Adapters> {
        let loaded = load_adapter(dir)?;
        Adapters::from_loaded(gpu, weights, &loaded, dir)
    }

    /// Every adapted matrix's factors, downloaded, in (layer, canonical projection) order.
    pub fn download(&self, gpu: &Gpu) -> Result<Vec<HostFactors>> {
        let mut out = Vec::new();
        for (l, map) in self.layers.iter().enumerate() {
            for t in &self.targets {
                if let Some(ad) = map.get(t) {
                    out.push((
                        l,
                        t.clone(),
                        gpu.download(&ad.a)?,
                        gpu.download(&ad.b)?,
                        ad.d_out,
                        ad.d_in,
                    ));
                }
            }
        }
        Ok(out)
    }

    /// [`Adapters::download`] without blocking (the browser).
    pub async fn download_async(&self, gpu: &Gpu) -> Result<Vec<HostFactors>> {
        let mut out = Vec::new();
        for (l, map) in self.layers.iter().enumerate() {
            for t in &self.targets {
                if let Some(ad) = map.get(t) {
                    let a = gpu.download_async(&ad.a).await?;
                    let b = gpu.download_async(&ad.b).await?;
                    out.push((l, t.clone(), a, b, ad.d_out, ad.d_in));
                }
            }
        }
        Ok(out)
    }

    /// The adapter files [`Adapters::save`] writes, in memory: the safetensors bytes and
    /// the config JSON (see [`crate::adapters::files::adapter_files`]).
    pub async fn files_async(&self, gpu: &Gpu, base_model: &str) -> Result<(Vec<u8>, String)> {
        let host = self.download_async(gpu).await?;
        let factors: Vec<LayerFactors<'_>> = host
            .iter()
            .map(|(l, t, a, b, o, i)| (*l, t.as_str(), a.as_slice(), b.as_slice(), *o, *i))
            .collect();
        crate::adapters::files::adapter_files(&self.spec, base_model, &factors)
    }

    /// Saves the adapters to `dir` (atomically; see [`crate::adapters::files`]), with
    /// `base_model` recorded as `base_model_name_or_path`.
    pub fn save(&self, gpu: &Gpu, dir: &Path, base_model: &str) -> Result<()> {
        let host = self.download(gpu)?;
        save_host(dir, &self.spec, base_model, &host)
    }
}

/// Saves downloaded factors (see [`Adapters::download`]).
pub fn save_host(
    dir: &Path,
    spec: &crate::adapters::AdapterSpec,
    base_model: &str,
    host: &[HostFactors],
) -> Result<()> {
    let factors: Vec<LayerFactors<'_>> = host
        .iter()
        .map(|(l, t, a, b, o, i)| (*l, t.as_str(), a.as_slice(), b.as_slice(), *o, *i))
        .collect();
    save_adapter(dir, spec, base_model, &factors)
}
