//! Scoring a text: the logits of every position and the mean negative log-likelihood of
//! each next token, NLL_t = logsumexp(z_t) − z_t[x_{t+1}] over t < T − 1, and
//! perplexity = exp(mean NLL).

use std::path::Path;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::model::kv_cache::{Model, Session};

/// Logits and next-token likelihoods of one sequence.
pub struct Score {
    pub tokens: Vec<u32>,
    /// [T, V]
    pub logits: Vec<f32>,
    pub vocab: usize,
    /// NLL of tokens[t + 1] given tokens[..=t], t < T − 1.
    pub nll: Vec<f64>,
}

impl Score {
    pub fn mean_nll(&self) -> f64 {
        self.nll.iter().sum::<f64>() / self.nll.len().max(1) as f64
    }

    pub fn perplexity(&self) -> f64 {
        self.mean_nll().exp()
    }
}

/// Runs `tokens` (at least 2) through the model in one prefill and scores them.
pub fn score(gpu: &Gpu, model: &Model, tokens: &[u32]) -> Result<Score> {
    if tokens.len() < 2 {
        return Err(Error::Invalid(format!(
            "scoring needs at least 2 tokens, the text has {}",
            tokens.len()
        )));
    }
    let v = model.weights.config.vocab_size;
    let mut s = Session::new(gpu, model, tokens.len())?;
    let logits = s.forward(gpu, tokens, true)?;
    let nll = (0..tokens.len() - 1)
        .map(|t| {
            let z = &logits[t * v..(t + 1) * v];
            let m = z.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
            let lse = m + z.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            lse - z[tokens[t + 1] as usize] as f64
        })
        .collect();
    Ok(Score {
        tokens: tokens.to_vec(),
        logits,
        vocab: v,
        nll,
    })
}

/// Writes a safetensors file with `tokens` (I64 \[T\]) and `logits` (F32 \[T, V\]).
pub fn dump_logits(path: &Path, s: &Score) -> Result<()> {
    use safetensors::tensor::TensorView;
    use safetensors::Dtype;
    let t = s.tokens.len();
    let tok: Vec<u8> = s
        .tokens
        .iter()
        .flat_map(|&x| (x as i64).to_le_bytes())
        .collect();
    let lg: Vec<u8> = s.logits.iter().flat_map(|x| x.to_le_bytes()).collect();
    let bad = |e: safetensors::SafeTensorError| Error::Invalid(format!("writing logits: {e}"));
    let views = vec![
        (
            "tokens".to_string(),
            TensorView::new(Dtype::I64, vec![t], &tok).map_err(bad)?,
        ),
        (
            "logits".to_string(),
            TensorView::new(Dtype::F32, vec![t, s.vocab], &lg).map_err(bad)?,
        ),
    ];
    let bytes = safetensors::tensor::serialize(views, None).map_err(bad)?;
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}
