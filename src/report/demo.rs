//! The table of `boha demo`'s record (the `summary.json` it writes beside its run):
//! held-out accuracy before and after, the last loss, the wall time and the peak
//! resident memory of the whole run, model fetch and driver set-up included when they
//! happened.

use serde_json::Value;

use super::markdown::Table;
use super::records::Loaded;
use crate::error::Result;

pub fn demo(l: &Loaded) -> Result<String> {
    let v = &l.value;
    let pct = |x: f64| format!("{:.0}%", 100.0 * x);
    let peak = match v.get("peak_resident_bytes").and_then(Value::as_f64) {
        Some(b) => format!("{:.2} GiB", b / (1u64 << 30) as f64),
        None => "–".into(),
    };
    let last_loss = match v.get("last_loss").and_then(Value::as_f64) {
        Some(x) => format!("{x:.3}"),
        None => "–".into(),
    };
    let mut t = Table::new([
        "training questions",
        "steps × batch",
        "held-out questions",
        "accuracy before → after",
        "last loss",
        "wall time",
        "peak resident memory",
    ]);
    t.row(vec![
        format!("{}", l.num(v, "train")?),
        format!("{} × {}", l.num(v, "steps")?, l.num(v, "batch")?),
        format!("{}", l.num(v, "test")?),
        format!(
            "{} → {}",
            pct(l.num(v, "accuracy_before")?),
            pct(l.num(v, "accuracy_after")?)
        ),
        last_loss,
        format!("{:.1} min", l.num(v, "wall_s")? / 60.0),
        peak,
    ]);
    Ok(t.render())
}
