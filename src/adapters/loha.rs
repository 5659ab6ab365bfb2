//! LoHa (PEFT's): ΔW = s·(B1A1) ⊙ (B2A2) with s = alpha / h, h = r/2 per pair
//! (see [`super::pair`] for how it runs and is stored). Initialised as PEFT does:
//! B1, A1, B2 Kaiming-uniform (a = √5, bound 1/√fan_in), A2 = 0, so ΔW = 0 at step 0.

use super::kind::{AdapterFormat, AdapterKind, HostW0, Kernels};
use super::{formats, pair};
use super::{AdapterSpec, Update};
use crate::error::Result;
use crate::rng::Rng;
use crate::shaders::{Shader, KIND_PAIR};

pub struct Loha;

impl AdapterKind for Loha {
    fn name(&self) -> &'static str {
        "loha"
    }
    fn label(&self, spec: &AdapterSpec) -> String {
        format!("LoHa r = {} per pair", pair::half(spec))
    }
    /// s = alpha / h, or 1 (PEFT's default alpha = r).
    fn scale(&self, block_rank: usize, alpha: Option<f32>) -> f32 {
        alpha.map_or(1.0, |a| a / (block_rank / 2).max(1) as f32)
    }
    fn init(
        &self,
        spec: &AdapterSpec,
        d_out: usize,
        d_in: usize,
        seed: u64,
        _w0: HostW0<'_>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let h = pair::half(spec);
        let mut rng = Rng::new(seed);
        let (bh, bi) = (1.0 / (h as f64).sqrt(), 1.0 / (d_in as f64).sqrt());
        // A = [A1; A2]: A1 [h, d_in] ~ U(±1/√d_in), A2 = 0.
        let mut a: Vec<f32> = (0..h * d_in).map(|_| rng.range(-bi, bi) as f32).collect();
        a.resize(2 * h * d_in, 0.0);
        // B = [B1 | B2], both [d_out, h] ~ U(±1/√h).
        let b = (0..d_out * 2 * h)
            .map(|_| rng.range(-bh, bh) as f32)
            .collect();
        Ok((a, b))
    }
    fn groups(&self) -> usize {
        2
    }
    fn snippet(&self) -> Shader {
        KIND_PAIR
    }
    fn update(&self) -> Update {
        Update::Additive
    }
    fn kernels(&self) -> &'static dyn Kernels {
        &pair::Pair
    }
    fn format(&self) -> &'static dyn AdapterFormat {
        &formats::Loha
    }
}
