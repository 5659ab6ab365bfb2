//! Writing a screenshot (egui's `ColorImage`) as a PNG, with the numbers a headless
//! check needs to tell a real frame from a blank one.

use std::collections::HashSet;
use std::io::BufWriter;
use std::path::Path;

use eframe::egui::ColorImage;

/// Size and colour count of a written image.
#[derive(Clone, Copy, Debug)]
pub struct ImageStats {
    pub width: usize,
    pub height: usize,
    /// Distinct RGBA values: a blank or single-colour frame has one or two.
    pub distinct_colors: usize,
}

/// Writes `img` as an 8-bit RGBA PNG at `path`.
pub fn save_png(path: &Path, img: &ColorImage) -> Result<ImageStats, String> {
    let [width, height] = img.size;
    let mut rgba = Vec::with_capacity(width * height * 4);
    let mut colors = HashSet::new();
    for p in &img.pixels {
        let c = p.to_array();
        colors.insert(c);
        rgba.extend_from_slice(&c);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut enc = png::Encoder::new(BufWriter::new(file), width as u32, height as u32);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    let mut w = enc
        .write_header()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    w.write_image_data(&rgba)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    w.finish().map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(ImageStats {
        width,
        height,
        distinct_colors: colors.len(),
    })
}
