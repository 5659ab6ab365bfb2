//! The live loss curve, painted with egui's own shapes (axes, a few grid lines, the
//! line and its points).

use eframe::egui::{self, pos2, Align2, Color32, FontId, Pos2, Rect, Sense, Shape, Stroke, Vec2};

/// Draws `points` ([step, loss]) into a chart of `size`; the x axis runs to
/// `total_steps` (or the last step, if larger).
pub fn loss_curve(ui: &mut egui::Ui, points: &[[f64; 2]], total_steps: usize, size: Vec2) {
    let (resp, painter) = ui.allocate_painter(size, Sense::hover());
    let outer = resp.rect;
    let plot = Rect::from_min_max(
        outer.min + Vec2::new(48.0, 8.0),
        outer.max - Vec2::new(8.0, 22.0),
    );
    let visuals = ui.visuals();
    let fg = visuals.text_color();
    let grid_color = visuals.widgets.noninteractive.bg_stroke.color;
    painter.rect_filled(plot, 0.0, visuals.extreme_bg_color);
    let small = FontId::proportional(11.0);
    if points.is_empty() {
        painter.text(
            plot.center(),
            Align2::CENTER_CENTER,
            "the loss appears after the first step",
            small,
            fg,
        );
        return;
    }
    let x_max = (total_steps as f64)
        .max(points.last().map_or(1.0, |p| p[0]))
        .max(1.0);
    let (mut lo, mut hi) = points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
            (lo.min(p[1]), hi.max(p[1]))
        });
    if !(hi - lo).is_finite() || hi - lo < 1e-6 {
        lo -= 0.5;
        hi += 0.5;
    }
    let pad = 0.05 * (hi - lo);
    let (lo, hi) = ((lo - pad).max(0.0f64.min(lo)), hi + pad);
    let to_screen = |x: f64, y: f64| -> Pos2 {
        pos2(
            plot.left() + (x / x_max) as f32 * plot.width(),
            plot.bottom() - ((y - lo) / (hi - lo)) as f32 * plot.height(),
        )
    };
    for k in 0..=4 {
        let y = lo + (hi - lo) * k as f64 / 4.0;
        let p = to_screen(0.0, y);
        painter.line_segment(
            [pos2(plot.left(), p.y), pos2(plot.right(), p.y)],
            Stroke::new(1.0, grid_color),
        );
        painter.text(
            pos2(plot.left() - 4.0, p.y),
            Align2::RIGHT_CENTER,
            format!("{y:.2}"),
            small.clone(),
            fg,
        );
    }
    for k in 0..=4 {
        let x = x_max * k as f64 / 4.0;
        let p = to_screen(x, lo);
        painter.text(
            pos2(p.x, plot.bottom() + 3.0),
            Align2::CENTER_TOP,
            format!("{x:.0}"),
            small.clone(),
            fg,
        );
    }
    let line: Vec<Pos2> = points.iter().map(|p| to_screen(p[0], p[1])).collect();
    let color = Color32::from_rgb(80, 160, 255);
    painter.add(Shape::line(line.clone(), Stroke::new(2.0, color)));
    if line.len() <= 60 {
        for p in line {
            painter.circle_filled(p, 2.5, color);
        }
    }
}
