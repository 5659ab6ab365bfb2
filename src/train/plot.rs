//! The loss curve as a PNG (plotters, bitmap backend). Text uses DejaVu Sans Mono,
//! compiled into the binary, so plotting needs no system fonts.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

use super::metrics::Curves;
use crate::{Error, Result};

static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is a fixed, known-good file: failing to parse it is a build defect.
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            log::warn!("the bundled plot font did not load; plots will have no text");
        }
    });
}

/// Draws the training loss (and the eval loss, when there is one) against the step into
/// `path` (PNG, 960×540), written through a temporary file and a rename.
pub fn plot_loss(path: &Path, curves: &Curves, title: &str) -> Result<()> {
    plot_series(
        path,
        title,
        &[
            ("train".to_string(), curves.train.clone()),
            ("eval".to_string(), curves.eval.clone()),
        ],
    )
}

/// Colours of the series, in order.
const COLOURS: [RGBColor; 6] = [
    BLUE,
    RED,
    RGBColor(0, 150, 0),
    RGBColor(200, 120, 0),
    MAGENTA,
    BLACK,
];

/// Series of (step, loss) points with fewer than this many get a dot on each point
/// (an eval loss measured a few times).
const DOTTED_BELOW: usize = 30;

/// Draws named loss series against the step into `path` (PNG, 960×540), one colour
/// each, written through a temporary file and a rename. Empty series are left out.
pub fn plot_series(path: &Path, title: &str, series: &[(String, Vec<(u32, f32)>)]) -> Result<()> {
    register_font();
    if series.iter().all(|(_, s)| s.is_empty()) {
        return Err(Error::Invalid(format!(
            "{}: no losses to plot",
            path.display()
        )));
    }
    let tmp = path.with_file_name(format!(".loss-{}.tmp.png", std::process::id()));
    let result = draw(&tmp, series, title)
        .and_then(|_| std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e)));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn draw(path: &Path, series: &[(String, Vec<(u32, f32)>)], title: &str) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| Error::Invalid(format!("{}: {e}", path.display()));
    let all = series.iter().flat_map(|(_, s)| s.iter());
    let max_step = all.clone().map(|p| p.0).max().unwrap_or(1).max(1);
    let (lo, hi) = all
        .map(|p| p.1)
        .filter(|v| v.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) };
    let pad = ((hi - lo) * 0.05).max(1e-3);
    let root = BitMapBackend::new(path, (960, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0u32..max_step, (lo - pad).max(0.0)..hi + pad)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc("loss")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, (name, points)) in series.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour));
        if points.len() < DOTTED_BELOW {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                .map_err(|e| err(&e))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
