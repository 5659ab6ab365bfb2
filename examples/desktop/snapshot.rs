//! The adapter as it stood after some training step: its factors copied to the host,
//! which the heatmap, the chat and the save buttons read while training goes on.

use std::collections::BTreeMap;

use boha::adapters::layer::AdaptedLinear;
use boha::adapters::AdapterSpec;
use boha::gpu::Gpu;
use boha::model::adapter_io::HostFactors;
use boha::model::transformer::Adapters;

/// Factors of every adapted matrix after `step`.
pub struct Snapshot {
    pub step: usize,
    pub spec: AdapterSpec,
    pub targets: Vec<String>,
    /// (layer, projection, A, B, d_out, d_in), as `Adapters::download` gives them.
    pub factors: Vec<HostFactors>,
}

impl Snapshot {
    /// Copies the adapters' factors off the device.
    pub fn take(gpu: &Gpu, step: usize, adapters: &Adapters) -> boha::Result<Snapshot> {
        Ok(Snapshot {
            step,
            spec: adapters.spec,
            targets: adapters.targets.clone(),
            factors: adapters.download(gpu)?,
        })
    }

    /// The factors of one matrix.
    pub fn matrix(&self, layer: usize, proj: &str) -> Option<&HostFactors> {
        self.factors.iter().find(|f| f.0 == layer && f.1 == proj)
    }

    /// Layers that hold adapters.
    pub fn layers(&self) -> usize {
        self.factors.iter().map(|f| f.0 + 1).max().unwrap_or(0)
    }

    /// Uploads the factors as adapters for a model with `num_layers` layers.
    pub fn upload(&self, gpu: &Gpu, num_layers: usize) -> boha::Result<Adapters> {
        let mut layers: Vec<BTreeMap<String, AdaptedLinear>> =
            (0..num_layers).map(|_| BTreeMap::new()).collect();
        for (l, t, a, b, d_out, d_in) in &self.factors {
            let slot = layers.get_mut(*l).ok_or_else(|| {
                boha::Error::Invalid(format!(
                    "the adapter has layer {l}, the model {num_layers} layers"
                ))
            })?;
            let name = format!("layers.{l}.{t}");
            let ad = AdaptedLinear::from_host(gpu, self.spec, &name, *d_out, *d_in, a, b)?;
            slot.insert(t.clone(), ad);
        }
        Ok(Adapters {
            spec: self.spec,
            targets: self.targets.clone(),
            layers,
        })
    }
}

/// "BoHA b = 4, r_b = 2" and the like.
pub fn describe(spec: &AdapterSpec) -> String {
    spec.method.kind().label(spec)
}
