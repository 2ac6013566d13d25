//! Colours, fonts and rendering of figures to SVG and PNG.
//!
//! Colours are the Okabe–Ito palette (safe for the common colour-vision
//! deficiencies), the same for a label in every figure and in the HTML:
//! teacher = bluish green, student = blue, shared = reddish purple,
//! boosted = orange; `common` (shared + boosted, before training and in the
//! β search) is grey. Line roles follow their label: p_T in the teacher's
//! colour, p_S in the student's, p_D in vermillion.
//!
//! Text is measured and, for PNG, rasterised with `ab_glyph` and DejaVu Sans
//! embedded in the binary (the `dejavu` crate), so figures need no system
//! fonts and look the same everywhere. SVG text names the `sans-serif` family
//! and is drawn by the viewer.

use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontFamily, FontStyle, RGBColor};

use crate::ReportError;

pub const TEACHER: RGBColor = RGBColor(0x00, 0x9E, 0x73);
pub const STUDENT: RGBColor = RGBColor(0x00, 0x72, 0xB2);
pub const SHARED: RGBColor = RGBColor(0xCC, 0x79, 0xA7);
pub const BOOSTED: RGBColor = RGBColor(0xE6, 0x9F, 0x00);
pub const COMMON: RGBColor = RGBColor(0x99, 0x99, 0x99);
pub const UNSCORED: RGBColor = RGBColor(0xDD, 0xDD, 0xDD);
pub const DISTILLED: RGBColor = RGBColor(0xD5, 0x5E, 0x00);
pub const SKY: RGBColor = RGBColor(0x56, 0xB4, 0xE9);
pub const YELLOW: RGBColor = RGBColor(0xF0, 0xE4, 0x42);
pub const INK: RGBColor = RGBColor(0x22, 0x22, 0x22);
pub const GRID: RGBColor = RGBColor(0xE4, 0xE4, 0xE4);

/// The four labels after distillation, in the order of every figure.
pub const LABELS: [&str; 4] = ["teacher", "student", "shared", "boosted"];

/// A label's colour by name (`common` and `unscored` included).
pub fn label_colour(label: &str) -> RGBColor {
    match label {
        "teacher" => TEACHER,
        "student" => STUDENT,
        "shared" => SHARED,
        "boosted" => BOOSTED,
        "common" => COMMON,
        _ => UNSCORED,
    }
}

/// `#rrggbb`, for the HTML.
pub fn hex(colour: RGBColor) -> String {
    format!("#{:02x}{:02x}{:02x}", colour.0, colour.1, colour.2)
}

/// Behaviour colours: execution sky blue, reflection vermillion, transition yellow.
pub fn behaviour_colour(behaviour: crate::behaviour::Behaviour) -> RGBColor {
    match behaviour {
        crate::behaviour::Behaviour::Execution => SKY,
        crate::behaviour::Behaviour::Reflection => DISTILLED,
        crate::behaviour::Behaviour::Transition => YELLOW,
    }
}

/// All text is this much larger than the nominal sizes in the figure code.
pub const FONT_SCALE: f64 = 1.3;

/// Sizes at a scale: figures are laid out at scale 1 for SVG and drawn at a
/// larger scale for PNG.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub scale: f64,
}

impl Style {
    pub fn px(&self, size: f64) -> u32 {
        (size * self.scale).round().max(1.0) as u32
    }

    pub fn ipx(&self, size: f64) -> i32 {
        (size * self.scale).round() as i32
    }

    /// Text of nominal `size`, enlarged by [`FONT_SCALE`] so that a figure
    /// stays readable when shrunk to a paper's column.
    pub fn font(&self, size: f64) -> TextStyle<'static> {
        TextStyle::from(FontDesc::new(FontFamily::SansSerif, size * FONT_SCALE * self.scale, FontStyle::Normal)).color(&INK)
    }

    pub fn line(&self, colour: RGBColor, width: f64) -> ShapeStyle {
        ShapeStyle { color: colour.to_rgba(), filled: false, stroke_width: self.px(width) }
    }

    pub fn fill(&self, colour: RGBColor, alpha: f64) -> ShapeStyle {
        ShapeStyle { color: colour.mix(alpha), filled: true, stroke_width: 0 }
    }
}

/// A figure: drawn by the same code at any scale and on any backend.
pub trait Plot {
    /// The file stem, e.g. `position-profile`.
    fn name(&self) -> String;
    /// Width and height at scale 1, in pixels.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static;
}

pub type DrawResult = Result<(), Box<dyn std::error::Error>>;

fn register_fonts() {
    static FONTS: Once = Once::new();
    FONTS.call_once(|| {
        // DejaVu Sans is a valid TrueType font; registration cannot fail.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
}

fn draw_error(plot: &impl Plot, error: impl std::fmt::Display) -> ReportError {
    ReportError::Draw { figure: plot.name(), message: error.to_string() }
}

/// The figure as an SVG document.
pub fn render_svg(plot: &impl Plot) -> Result<String, ReportError> {
    register_fonts();
    let mut svg = String::new();
    {
        let area = SVGBackend::with_string(&mut svg, plot.size()).into_drawing_area();
        area.fill(&WHITE).map_err(|e| draw_error(plot, e))?;
        plot.draw(&area, &Style { scale: 1.0 }).map_err(|e| draw_error(plot, e))?;
        area.present().map_err(|e| draw_error(plot, e))?;
    }
    Ok(svg)
}

/// The figure as a PNG image at `scale` (2 gives 2× the SVG's pixel size).
pub fn render_png(plot: &impl Plot, scale: f64) -> Result<Vec<u8>, ReportError> {
    register_fonts();
    let (w, h) = plot.size();
    let (w, h) = ((w as f64 * scale).round() as u32, (h as f64 * scale).round() as u32);
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    {
        let area = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
        plot.draw(&area, &Style { scale }).map_err(|e| draw_error(plot, e))?;
        area.present().map_err(|e| draw_error(plot, e))?;
    }
    let mut png = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut png, w, h);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Balanced);
        let mut writer = encoder.write_header().map_err(|e| draw_error(plot, e))?;
        writer.write_image_data(&pixels).map_err(|e| draw_error(plot, e))?;
        writer.finish().map_err(|e| draw_error(plot, e))?;
    }
    Ok(png)
}
