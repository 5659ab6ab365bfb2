//! The SmolLM2 study's tables (scripts/study.sh): single task at a matched budget, and
//! the continual diagnostic, from the study's record (docs/benchmarks/study_*.json,
//! written by scripts/study_report.py). Accuracies are fractions in the record and
//! percentages here; `±` is half the range over the seeds.

use serde_json::Value;

use super::markdown::Table;
use super::records::Loaded;
use crate::error::Result;

fn label(l: &Loaded, method: &str) -> String {
    l.value
        .get("labels")
        .and_then(|m| m.get(method))
        .and_then(Value::as_str)
        .unwrap_or(method)
        .to_string()
}

/// Single task: per task the base model, then each method's chosen rate, test
/// accuracy, validation loss and the validation loss of every rate tried.
pub fn single(l: &Loaded) -> Result<String> {
    let mut t = Table::new([
        "task",
        "method",
        "chosen lr",
        "test accuracy (%)",
        "val loss",
        "val loss per lr",
    ]);
    for r in l.list(&l.value, "single")? {
        let task = l.str(r, "task")?.to_string();
        let method = l.str(r, "method")?;
        if method == "base" {
            t.row(vec![
                task,
                "base model".into(),
                "–".into(),
                format!(
                    "{:.1} (n = {})",
                    100.0 * l.num(r, "accuracy")?,
                    l.num(r, "n")?
                ),
                "–".into(),
                "–".into(),
            ]);
            continue;
        }
        let name = label(l, method);
        let Some(lr) = r.get("lr").and_then(Value::as_str) else {
            t.row(vec![
                task,
                name,
                "not run".into(),
                "–".into(),
                "–".into(),
                "–".into(),
            ]);
            continue;
        };
        let per_lr = r
            .get("val_loss_per_lr")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|p| {
                // A run that never evaluated has no loss (null).
                let loss = p.get("val_loss").and_then(Value::as_f64);
                let loss = loss.map_or("–".to_string(), |v| format!("{v:.3}"));
                Ok(format!("{}: {loss}", l.str(p, "lr")?))
            })
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        let (acc, loss) = match r.get("accuracy").and_then(Value::as_f64) {
            None => ("not run".to_string(), "–".to_string()),
            Some(a) => {
                let seeds = l.num(r, "seeds")?;
                let run = l.num(r, "seeds_run")?;
                let partial = if run < seeds {
                    format!(" ({run} seed{})", if run > 1.0 { "s" } else { "" })
                } else {
                    String::new()
                };
                (
                    format!(
                        "{:.1} ± {:.1}{partial}",
                        100.0 * a,
                        100.0 * l.num(r, "accuracy_half_range")?
                    ),
                    format!(
                        "{:.3} ± {:.3}",
                        l.num(r, "val_loss")?,
                        l.num(r, "val_loss_half_range")?
                    ),
                )
            }
        };
        t.row(vec![task, name, lr.to_string(), acc, loss, per_lr]);
    }
    Ok(t.render())
}

/// Continual: each method's accuracy on both tasks after each stage, and retention
/// (first task after stage 2 minus after stage 1).
pub fn continual(l: &Loaded) -> Result<String> {
    let mut t = Table::new([
        "method",
        "choice after 1",
        "arith after 1",
        "choice after 2",
        "arith after 2",
        "retention",
    ]);
    for r in l.list(&l.value, "continual")? {
        let f1 = l.num(r, "first_after_1")?;
        let f2 = l.num(r, "first_after_2")?;
        t.row(vec![
            label(l, l.str(r, "method")?),
            format!("{:.1}", 100.0 * f1),
            format!("{:.1}", 100.0 * l.num(r, "second_after_1")?),
            format!("{:.1}", 100.0 * f2),
            format!("{:.1}", 100.0 * l.num(r, "second_after_2")?),
            format!("{:+.1}", 100.0 * (f2 - f1)),
        ]);
    }
    Ok(t.render())
}
