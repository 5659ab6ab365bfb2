//! The table of an anchor record: another framework's training step at the shape of
//! `boha bench step`, measured on the same kind of host (scripts/pytorch_anchor.py
//! writes the PyTorch + PEFT one), so boha's step table can be read against it.

use serde_json::Value;

use super::markdown::{significant, Table};
use super::records::Loaded;
use crate::error::Result;

pub fn anchor(l: &Loaded) -> Result<String> {
    let v = &l.value;
    let model = l.str(v, "model")?;
    let model = model.rsplit('/').next().unwrap_or(model);
    let mut s = format!("`{model}`");
    if let Some(m) = v.get("method").and_then(Value::as_str) {
        s += &format!(", {m}");
        if let (Some(r), Some(a)) = (
            v.get("rank").and_then(Value::as_f64),
            v.get("alpha").and_then(Value::as_f64),
        ) {
            s += &format!(" r = {r}, alpha = {a}");
        }
        if let Some(n) = v.get("adapted_matrices").and_then(Value::as_f64) {
            s += &format!(" on {n} matrices");
        }
    }
    if let Some(d) = v.get("dtype").and_then(Value::as_str) {
        s += &format!(", {d}");
    }
    s += ".\n\n";
    let device = l
        .record()
        .map_or_else(|| "–".to_string(), |r| r.device.name);
    let peak = match v.get("peak_rss_bytes").and_then(Value::as_f64) {
        Some(b) => format!("{:.2}", b / (1u64 << 30) as f64),
        None => "–".into(),
    };
    let mut t = Table::new([
        "framework",
        "device",
        "threads",
        "tokens per step",
        "step ms",
        "tokens/s",
        "peak RSS GiB",
    ]);
    t.row(vec![
        l.str(v, "framework")?.to_string(),
        device,
        format!("{}", l.num(v, "threads")?),
        format!("{}", l.num(v, "tokens_per_step")?),
        significant(l.num(v, "step_ms")?, 3),
        format!("{:.1}", l.num(v, "tokens_per_s")?),
        peak,
    ]);
    s += &t.render();
    Ok(s)
}
