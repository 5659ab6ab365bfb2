//! The block-grid heatmap: ‖M_IJ‖_F for each cell of one adapted matrix, from the latest
//! snapshot (see `boha::adapters::block_norms` for the math).
//!
//! BoHA and the additive control show their own b × b grid of factor blocks. LoRA and
//! HiRA have a single block, so their M = B A is cut into a g × g grid (g picked here,
//! 4 by default) to show where the update lands; a grid of 1 is the plain ‖B A‖_F.

use eframe::egui::{self, Align2, Color32, FontId, Rect, Sense, Stroke, StrokeKind, Vec2};

use boha::adapters::block_norms::block_norms;

use crate::snapshot::Snapshot;

/// Which matrix to show, and the norms last computed for it.
pub struct Heatmap {
    pub layer: usize,
    pub proj: String,
    /// Display grid for single-block adapters (LoRA, HiRA).
    pub lora_grid: usize,
    /// The norms last computed, and for what.
    cache: Option<(CacheKey, Result<Vec<f32>, String>)>,
}

/// (snapshot step, layer, projection, grid).
type CacheKey = (usize, usize, String, usize);

impl Default for Heatmap {
    fn default() -> Self {
        Heatmap {
            layer: 0,
            proj: "q".into(),
            lora_grid: 4,
            cache: None,
        }
    }
}

/// A perceptually ordered dark-blue → yellow ramp (viridis' end points and middle).
fn color(t: f32) -> Color32 {
    const STOPS: [[f32; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let t = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (t.floor() as usize).min(STOPS.len() - 2);
    let f = t - i as f32;
    let c = |k: usize| (STOPS[i][k] + (STOPS[i + 1][k] - STOPS[i][k]) * f) as u8;
    Color32::from_rgb(c(0), c(1), c(2))
}

/// A norm in at most five characters or so: 0.123, 12.3, 3.4e-5.
fn short(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else if (0.01..100.0).contains(&v) {
        format!("{v:.3}")
    } else if (100.0..10_000.0).contains(&v) {
        format!("{v:.0}")
    } else {
        format!("{v:.1e}")
    }
}

impl Heatmap {
    /// The layer/projection pickers and the grid, for `snap` (or a placeholder).
    pub fn ui(&mut self, ui: &mut egui::Ui, snap: Option<&Snapshot>) {
        let Some(snap) = snap else {
            ui.label("The block norms appear after the first training step.");
            return;
        };
        let layers = snap.layers();
        if !snap.targets.contains(&self.proj) {
            if let Some(t) = snap.targets.first() {
                self.proj = t.clone();
            }
        }
        self.layer = self.layer.min(layers.saturating_sub(1));
        let single = snap.spec.blocks == 1;
        ui.horizontal(|ui| {
            ui.label("layer");
            ui.add(egui::DragValue::new(&mut self.layer).range(0..=layers.saturating_sub(1)));
            ui.label("projection");
            egui::ComboBox::from_id_salt("heat_proj")
                .selected_text(self.proj.clone())
                .width(70.0)
                .show_ui(ui, |ui| {
                    for t in &snap.targets {
                        ui.selectable_value(&mut self.proj, t.clone(), t);
                    }
                });
            if single {
                ui.label("grid");
                egui::ComboBox::from_id_salt("heat_grid")
                    .selected_text(self.lora_grid.to_string())
                    .width(50.0)
                    .show_ui(ui, |ui| {
                        for g in [1, 2, 4, 8] {
                            ui.selectable_value(&mut self.lora_grid, g, g.to_string());
                        }
                    });
            }
        });
        let grid = if single {
            self.lora_grid
        } else {
            snap.spec.blocks
        };
        let key = (snap.step, self.layer, self.proj.clone(), grid);
        if self.cache.as_ref().is_none_or(|(k, _)| *k != key) {
            let norms = match snap.matrix(self.layer, &self.proj) {
                Some((_, _, a, b, d_out, d_in)) => {
                    block_norms(&snap.spec, a, b, *d_out, *d_in, grid).map_err(|e| e.to_string())
                }
                None => Err(format!("no adapter on layers.{}.{}", self.layer, self.proj)),
            };
            self.cache = Some((key, norms));
        }
        let norms = match &self.cache {
            Some((_, Ok(n))) => n.clone(),
            Some((_, Err(e))) => {
                ui.label(e);
                return;
            }
            None => return,
        };
        let what = if single {
            format!("||(BA)_IJ||_F on a {grid} × {grid} cut of the single block")
        } else {
            format!("||B_ij A_ij||_F, {grid} × {grid} blocks")
        };
        ui.label(format!(
            "{what}, layers.{}.{} after step {}",
            self.layer, self.proj, snap.step
        ));
        draw(ui, &norms, grid);
    }
}

/// The grid of cells, scaled to the largest norm, with a colour bar.
fn draw(ui: &mut egui::Ui, norms: &[f32], grid: usize) {
    let max = norms.iter().copied().fold(0.0f32, f32::max);
    let avail = ui.available_size();
    let side = (avail.x - 70.0).min(avail.y - 4.0).clamp(60.0, 320.0);
    let (resp, painter) = ui.allocate_painter(Vec2::new(side + 70.0, side), Sense::hover());
    let origin = resp.rect.min;
    let cell = side / grid as f32;
    let text_color = |t: f32| {
        if t > 0.6 {
            Color32::BLACK
        } else {
            Color32::WHITE
        }
    };
    for i in 0..grid {
        for j in 0..grid {
            let v = norms[i * grid + j];
            let t = if max > 0.0 { v / max } else { 0.0 };
            let r = Rect::from_min_size(
                origin + Vec2::new(j as f32 * cell, i as f32 * cell),
                Vec2::splat(cell),
            );
            painter.rect_filled(r.shrink(1.0), 2.0, color(t));
            if cell >= 34.0 {
                painter.text(
                    r.center(),
                    Align2::CENTER_CENTER,
                    short(v),
                    FontId::monospace((cell / 6.0).clamp(8.0, 12.0)),
                    text_color(t),
                );
            }
        }
    }
    // Colour bar: 0 at the bottom, the largest norm at the top.
    let bar = Rect::from_min_size(origin + Vec2::new(side + 10.0, 0.0), Vec2::new(14.0, side));
    let steps = 32;
    for k in 0..steps {
        let t0 = k as f32 / steps as f32;
        let r = Rect::from_min_max(
            egui::pos2(bar.left(), bar.bottom() - (t0 + 1.0 / steps as f32) * side),
            egui::pos2(bar.right(), bar.bottom() - t0 * side),
        );
        painter.rect_filled(r, 0.0, color(t0 + 0.5 / steps as f32));
    }
    painter.rect_stroke(
        bar,
        0.0,
        Stroke::new(1.0, Color32::GRAY),
        StrokeKind::Outside,
    );
    let small = FontId::proportional(11.0);
    let fg = ui.visuals().text_color();
    painter.text(
        bar.right_top() + Vec2::new(4.0, 0.0),
        Align2::LEFT_TOP,
        short(max),
        small.clone(),
        fg,
    );
    painter.text(
        bar.right_bottom() + Vec2::new(4.0, 0.0),
        Align2::LEFT_BOTTOM,
        "0",
        small,
        fg,
    );
}
