//! Adapters on a frozen linear layer W0 (d_out × d_in, PyTorch `Linear.weight` layout).
//!
//! Every kind keeps its parameters in one layout, a b × b grid of low-rank factors:
//!
//! ```text
//! A: [b, b, r_b, q]     B: [b, b, p, r_b]     p = d_out / b, q = d_in / b
//! ```
//!
//! | kind       | grid b | W'                          | s (default)                 |
//! |------------|--------|-----------------------------|-----------------------------|
//! | `boha`     | b      | W0 ⊙ (1 + s·M), M_ij = B_ij A_ij | 1, or alpha / r_b      |
//! | `hira`     | 1      | W0 ⊙ (1 + s·BA)             | 1, or alpha / r             |
//! | `lora`     | 1      | W0 + s·BA                   | alpha / r (alpha = 2r)      |
//! | `additive` | b      | W0 + s·M, M_ij = B_ij A_ij  | 1, or alpha / r_b           |
//! | `abba`     | 1      | W0 + s·(B1A1) ⊙ (B2A2)      | 1, or alpha (ABBA's √α₁·√α₂) |
//! | `loha`     | 1      | W0 + s·(B1A1) ⊙ (B2A2)      | 1, or alpha / (r/2) (PEFT)  |
//!
//! The pair kinds keep B = [B1 | B2] and A = [A1; A2], each pair of rank r/2.
//! Trainable parameters per matrix: b²·r_b·(p + q) = (b·r_b)(d_out + d_in), the same as
//! LoRA of rank r = b·r_b ("matched budget"; ABBA r/2 per pair ↔ LoRA r).
//!
//! What each kind does is behind one interface ([`kind`]: the kind, its GPU kernels and
//! its file format), registered in [`Method::kind`].
//!
//! Dimensions that b does not divide are refused with an error naming the layer, its
//! shape and the grid sizes that would work (no uneven-block scheme: a silent remainder
//! block would change the parameter count and the method).

pub mod abba;
pub mod block_norms;
mod bottleneck;
pub mod files;
mod formats;
pub mod fused;
pub(crate) mod fused_kernels;
pub mod grad;
pub mod init;
pub mod khatri_rao;
pub mod kind;
mod kinds;
pub mod layer;
mod loha;
pub mod merge;
pub mod pair;
pub mod reference;

use crate::error::{Error, Result};

pub use kind::Method;

/// How M enters the adapted weight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Update {
    /// W' = W0 ⊙ (1 + s·M)  (BoHA, HiRA)
    Hadamard,
    /// W' = W0 + s·M  (LoRA, the additive control, ABBA, LoHa)
    Additive,
}

/// One adapter's hyper-parameters: kind, grid, per-block rank and scale.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdapterSpec {
    pub method: Method,
    /// Grid size b (1 for LoRA and HiRA).
    pub blocks: usize,
    /// Per-block rank r_b (the rank r for LoRA and HiRA).
    pub block_rank: usize,
    /// The scale s.
    pub scale: f32,
}

impl AdapterSpec {
    /// A spec with these fields (unchecked: [`AdapterSpec::check_shape`] checks it
    /// against a layer).
    pub const fn new(method: Method, blocks: usize, block_rank: usize, scale: f32) -> Self {
        AdapterSpec {
            method,
            blocks,
            block_rank,
            scale,
        }
    }

    /// Builds a spec from command-line style options. `rank` is the LoRA-equivalent rank
    /// r = b·r_b; give either `rank` or `block_rank`. `alpha` sets s = alpha / r_b
    /// (LoRA: alpha / r, default alpha = 2r as is common; HiRA/BoHA/additive: s = 1).
    pub fn from_options(
        method: Method,
        blocks: Option<usize>,
        rank: Option<usize>,
        block_rank: Option<usize>,
        alpha: Option<f32>,
    ) -> Result<AdapterSpec> {
        let kind = method.kind();
        let b = if kind.has_grid() {
            blocks.unwrap_or(4)
        } else {
            if let Some(b) = blocks.filter(|&b| b != 1) {
                return Err(Error::Invalid(format!(
                    "{} has no block grid (--blocks {b} given; use boha or additive)",
                    method.name()
                )));
            }
            1
        };
        if b == 0 {
            return Err(Error::Invalid("--blocks must be at least 1".into()));
        }
        let r_b = match (rank, block_rank) {
            (Some(_), Some(_)) => {
                return Err(Error::Invalid(
                    "give either --rank or --block-rank, not both".into(),
                ))
            }
            (Some(r), None) => {
                if r == 0 || r % b != 0 {
                    return Err(Error::Invalid(format!(
                        "--rank {r} is not a positive multiple of --blocks {b} (r_b = r / b)"
                    )));
                }
                r / b
            }
            (None, Some(rb)) => rb,
            (None, None) => 8usize.div_ceil(b).max(1),
        };
        if r_b == 0 {
            return Err(Error::Invalid(
                "the per-block rank must be at least 1".into(),
            ));
        }
        let multiple = kind.groups();
        if !r_b.is_multiple_of(multiple) {
            return Err(Error::Invalid(format!(
                "{} needs a rank that is a multiple of {multiple} (its factor pairs share it), \
                 got {r_b}",
                method.name()
            )));
        }
        let scale = kind.scale(r_b, alpha);
        Ok(AdapterSpec {
            method,
            blocks: b,
            block_rank: r_b,
            scale,
        })
    }

    /// Hadamard (BoHA, HiRA) or additive (the others) update.
    pub fn update(&self) -> Update {
        self.method.kind().update()
    }

    /// The LoRA-equivalent rank r = b·r_b.
    pub fn rank(&self) -> usize {
        self.blocks * self.block_rank
    }

    /// Trainable parameters on a d_out × d_in matrix: (b·r_b)(d_out + d_in).
    pub fn param_count(&self, d_out: usize, d_in: usize) -> usize {
        self.rank() * (d_out + d_in)
    }

    /// Checks that b divides both dimensions of `layer`; the error names the layer, its
    /// shape and the grid sizes that would work.
    pub fn check_shape(&self, layer: &str, d_out: usize, d_in: usize) -> Result<()> {
        let b = self.blocks;
        if d_out.is_multiple_of(b) && d_in.is_multiple_of(b) {
            return Ok(());
        }
        let works: Vec<String> = (1..=d_out.min(d_in).min(64))
            .filter(|g| d_out.is_multiple_of(*g) && d_in.is_multiple_of(*g))
            .map(|g| g.to_string())
            .collect();
        Err(Error::shape(
            layer,
            format!(
                "{d_out}×{d_in} cannot be cut into a {b}×{b} grid; block counts that divide both: {}",
                works.join(", ")
            ),
        ))
    }

    /// Block shape (p, q) = (d_out / b, d_in / b).
    pub fn block_shape(&self, d_out: usize, d_in: usize) -> (usize, usize) {
        (d_out / self.blocks, d_in / self.blocks)
    }

    /// Shape of A: [b, b, r_b, q].
    pub fn a_shape(&self, d_in: usize) -> [usize; 4] {
        let b = self.blocks;
        [b, b, self.block_rank, d_in / b]
    }

    /// Shape of B: [b, b, p, r_b].
    pub fn b_shape(&self, d_out: usize) -> [usize; 4] {
        let b = self.blocks;
        [b, b, d_out / b, self.block_rank]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matched_budget_and_options() {
        let s = AdapterSpec::from_options(Method::Boha, Some(4), Some(32), None, None).unwrap();
        assert_eq!((s.blocks, s.block_rank, s.scale), (4, 8, 1.0));
        let l = AdapterSpec::from_options(Method::Lora, None, Some(32), None, Some(64.0)).unwrap();
        assert_eq!((l.blocks, l.block_rank, l.scale), (1, 32, 2.0));
        assert_eq!(s.param_count(576, 1536), l.param_count(576, 1536));
        assert!(AdapterSpec::from_options(Method::Boha, Some(4), Some(30), None, None).is_err());
        assert!(AdapterSpec::from_options(Method::Hira, Some(2), Some(8), None, None).is_err());
        let a =
            AdapterSpec::from_options(Method::Additive, Some(2), None, Some(3), Some(6.0)).unwrap();
        assert_eq!((a.blocks, a.block_rank, a.scale), (2, 3, 2.0));
    }

    #[test]
    fn undivisible_shape_names_layer_and_working_grids() {
        let s = AdapterSpec::from_options(Method::Boha, Some(4), None, Some(2), None).unwrap();
        let e = s
            .check_shape("layers.0.q_proj", 90, 60)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("layers.0.q_proj") && e.contains("90×60") && e.contains("1, 2, 3, 5, 6"),
            "{e}"
        );
        assert!(s.check_shape("x", 96, 80).is_ok());
    }
}
