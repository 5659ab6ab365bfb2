//! The table of a web page run's record (`scripts/web_page_check.py --record`): the model
//! loaded through the File API, then BoHA steps in the browser, timed from the page
//! (load, seconds per step), the loss of the first and the last step, and the block
//! norms ‖B_ij A_ij‖_F of layer 0's q the heatmap showed at the end.

use serde_json::Value;

use super::markdown::Table;
use super::records::Loaded;
use crate::error::{Error, Result};

pub fn web(l: &Loaded) -> Result<String> {
    let v = &l.value;
    let steps = l.num(v, "steps")?;
    let losses: Vec<f64> = l
        .list(v, "losses")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let (Some(first), Some(last)) = (losses.first(), losses.last()) else {
        return Err(Error::Invalid(format!("{}: no losses", l.name)));
    };
    let norms: Vec<f64> = l
        .list(v, "block_norms_layer0_q")?
        .iter()
        .filter_map(Value::as_f64)
        .collect();
    let lo = norms.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = norms.iter().cloned().fold(0.0, f64::max);
    let model = l.str(v, "model")?;
    let mut t = Table::new([
        "model",
        "steps × tokens",
        "lr",
        "load",
        "per step",
        "loss first → last",
        "block norms (layer 0, q)",
    ]);
    t.row(vec![
        model.to_string(),
        format!("{steps} × {}", l.num(v, "tokens_per_row")?),
        format!("{}", l.num(v, "lr")?),
        format!("{:.1} s", l.num(v, "load_s")?),
        format!("{:.1} s", l.num(v, "train_s")? / steps),
        format!("{first:.2} → {last:.2}"),
        format!("{} blocks, {lo:.2}–{hi:.2}", norms.len()),
    ]);
    Ok(t.render())
}
