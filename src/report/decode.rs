//! The table of a `boha bench decode --json` run: batched greedy decoding against one
//! sequence at a time, from the same run.

use super::markdown::{significant, Table, Target};
use super::records::Loaded;
use crate::error::Result;

/// A batch of B sequences decodes at least B/4 times as many tokens per second as one
/// (from B = 4 on): a decode step of one token reads every weight for a single row, so
/// the batch should pay at least a quarter of the ideal B-fold.
pub fn decode_target(batch: usize) -> Option<Target> {
    (batch >= 4).then(|| Target::AtLeast(batch as f64 / 4.0))
}

pub fn decode(l: &Loaded) -> Result<String> {
    let v = &l.value;
    let mut s = format!(
        "Greedy decoding after a {}-token prompt, median of {} steps.\n\n",
        l.num(v, "prompt_len")?,
        l.num(v, "steps")? - 1.0
    );
    let mut t = Table::new([
        "batch",
        "step ms",
        "tokens/s",
        "× batch 1 (target ≥ batch / 4)",
        "KV cache MiB",
    ]);
    for r in l.list(v, "results")? {
        let b = l.num(r, "batch")?;
        let x = l.num(r, "speedup")?;
        t.row(vec![
            format!("{b}"),
            significant(l.num(r, "step_ms")?, 3),
            significant(l.num(r, "tokens_per_s")?, 3),
            match decode_target(b as usize) {
                Some(target) => target.mark(x, 2),
                None => format!("{x:.2}"),
            },
            significant(l.num(r, "cache_bytes")? / (1u64 << 20) as f64, 3),
        ]);
    }
    s += &t.render();
    Ok(s)
}
