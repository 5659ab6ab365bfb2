//! The adapter flags `finetune` and `graph` share: the kind, its sizes and the adapted
//! projections.

use clap::Args;

use boha::adapters::{AdapterSpec, Method};
use boha::Result;

#[derive(Args, Debug, Clone)]
pub struct AdapterChoice {
    /// boha, hira, lora, additive, abba or loha.
    #[arg(long, default_value = "boha")]
    pub method: String,
    /// Grid size b (boha and additive; default 4).
    #[arg(long)]
    pub blocks: Option<usize>,
    /// The LoRA-equivalent rank r = b·r_b (give this or --block-rank).
    #[arg(long)]
    pub rank: Option<usize>,
    /// The rank of each block's factor, r_b.
    #[arg(long)]
    pub block_rank: Option<usize>,
    /// Scale numerator: s = alpha / r_b (LoRA: alpha / r, default 2r).
    #[arg(long)]
    pub alpha: Option<f32>,
    /// Projections to adapt: comma-separated of q,k,v,o,gate,up,down, or `all`.
    #[arg(long, default_value = "all")]
    pub targets: String,
}

impl AdapterChoice {
    /// The adapter spec these flags describe.
    pub fn spec(&self) -> Result<AdapterSpec> {
        AdapterSpec::from_options(
            Method::parse(&self.method)?,
            self.blocks,
            self.rank,
            self.block_rank,
            self.alpha,
        )
    }
}
