//! The report's figures, one module per kind. Each is a [`Plot`]: data in a
//! plain struct, drawn by one function on any plotters backend, so that the
//! SVG in the HTML, the SVG file and the PNG file are the same figure.
//!
//! - [`trajectory`]: p_T, p_S, p_D of one response against action index over
//!   bands coloured by label (paper Fig. 2);
//! - [`profile`]: label fractions by action position, correct against
//!   incorrect, with the count n_j and token markers (Fig. 3, 4, 7, 13, 14);
//! - [`beta`]: the β search, histograms per β and the overlap curve (Fig. 6, 8, 9);
//! - [`differences`]: distributions of p_T − p_D, p_T − p_S, p_S − p_D (Fig. 12);
//! - [`behaviour`]: the share of each behaviour within each label (Fig. 10);
//! - [`selection`]: kept against dropped responses per selection strategy;
//! - [`attribution`]: candidate teachers side by side;
//! - [`experiment`]: the demo's experiment, accuracy per selection strategy
//!   with its standard error and the paired difference from `random`;
//! - [`axis`]: the numeric axes all of them share: tick labels with the
//!   decimals their step needs, padded flat ranges, whole-number ticks.
//!
//! A figure without data says so in words ([`no_data`]) instead of drawing
//! empty axes; values that are not finite are left out ([`finite`]).

pub mod attribution;
pub mod axis;
pub mod behaviour;
pub mod beta;
pub mod differences;
pub mod experiment;
pub mod profile;
pub mod selection;
pub mod trajectory;

use plotters::coord::Shift;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::style::{render_png, render_svg, DrawResult, Plot, Style, GRID};
use crate::ReportError;

/// A rendered figure.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File stem: the figure is written as `NAME.svg` and `NAME.png`.
    pub name: String,
    pub title: String,
    /// What the figure shows and how it was computed (shown under it).
    pub caption: String,
    pub svg: String,
    pub png: Vec<u8>,
}

/// Renders `plot` to SVG and, at `png_scale`, to PNG.
pub fn render(plot: &impl Plot, title: &str, caption: String, png_scale: f64) -> Result<Figure, ReportError> {
    Ok(Figure { name: plot.name(), title: title.to_string(), caption, svg: render_svg(plot)?, png: render_png(plot, png_scale)? })
}

/// A legend key.
#[derive(Debug, Clone, Copy)]
pub enum Key {
    /// A line, dashed or solid.
    Line(RGBColor, bool),
    /// A filled square with an opacity.
    Square(RGBColor, f64),
    /// A dot, filled or a ring.
    Dot(RGBColor, bool),
}

/// Draws a legend as a column of keys, top-left in `area`.
pub fn side_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, style: &Style, top: f64, entries: &[(String, Key)]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let x = style.ipx(6.0);
    let mut y = style.ipx(top);
    let text = style.font(12.0).pos(Pos::new(HPos::Left, VPos::Center));
    for (label, key) in entries {
        match *key {
            Key::Line(colour, false) => {
                area.draw(&PathElement::new(vec![(x, y), (x + style.ipx(24.0), y)], style.line(colour, 2.0)))?;
            }
            Key::Line(colour, true) => {
                area.draw(&DashedPathElement::new(
                    vec![(x, y), (x + style.ipx(24.0), y)],
                    style.px(5.0),
                    style.px(3.0),
                    style.line(colour, 2.0),
                ))?;
            }
            Key::Square(colour, alpha) => {
                let h = style.ipx(6.0);
                area.draw(&Rectangle::new([(x, y - h), (x + style.ipx(24.0), y + h)], style.fill(colour, alpha)))?;
            }
            Key::Dot(colour, filled) => {
                let shape = if filled { style.fill(colour, 1.0) } else { style.line(colour, 1.5) };
                area.draw(&Circle::new((x + style.ipx(12.0), y), style.px(4.0), shape))?;
            }
        }
        area.draw(&Text::new(label.clone(), (x + style.ipx(30.0), y), text.clone()))?;
        y += style.ipx(20.0);
    }
    Ok(())
}

/// Says in words why there is nothing to draw, in place of empty axes:
/// `title` at the top of `area`, `message` (one or more lines) in its middle,
/// inside a light frame.
pub fn no_data<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, style: &Style, title: &str, message: &str) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let margin = style.ipx(10.0);
    area.draw(&Rectangle::new([(margin, margin), (w - margin, h - margin)], style.line(GRID, 1.0)))?;
    if !title.is_empty() {
        let top = style.font(15.0).pos(Pos::new(HPos::Center, VPos::Top));
        area.draw(&Text::new(title.to_string(), (w / 2, margin + style.ipx(8.0)), top))?;
    }
    let lines: Vec<&str> = message.lines().collect();
    let step = style.ipx(20.0);
    let first = h / 2 - step * (lines.len() as i32 - 1) / 2;
    let centre = style.font(13.0).pos(Pos::new(HPos::Center, VPos::Center));
    for (i, line) in lines.iter().enumerate() {
        area.draw(&Text::new(line.to_string(), (w / 2, first + step * i as i32), centre.clone()))?;
    }
    Ok(())
}

/// `n` and the noun, plural unless `n` is 1: `1 action`, `3 actions`
/// (the plural is the noun with `s`, or `ies` for a final `y`).
pub fn counted(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {noun}s"),
    }
}

/// `x` with a sign and `digits` decimals, where a value that rounds to zero
/// reads `+0.000` rather than `-0.000`.
pub fn signed(x: f64, digits: usize) -> String {
    let text = format!("{x:+.digits$}");
    if text.trim_start_matches(['-', '+']).chars().all(|c| c == '0' || c == '.') {
        format!("+{}", &text[1..])
    } else {
        text
    }
}

/// `Some(x)` when `x` is a finite number: values that are NaN or infinite
/// (a summary edited by hand, a foreign tool's output) are left out of
/// figures rather than drawn at a made-up place.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// A file-name-safe form of an id: letters, digits, `-`, `_` and `.` kept,
/// anything else `_`, at most 80 characters.
/// The y-axis labels of a horizontal chart with one row per name, the first
/// name at the top (row `y = n − 1`): the name at whole `y`, nothing between.
pub fn row_labels(names: &[String]) -> impl Fn(&f64) -> String + '_ {
    let n = names.len();
    move |y: &f64| {
        let r = y.round();
        if (y - r).abs() < 1e-6 && r >= 0.0 && (r as usize) < n {
            names[n - 1 - r as usize].clone()
        } else {
            String::new()
        }
    }
}

pub fn file_safe(id: &str) -> String {
    let safe: String =
        id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' }).take(80).collect();
    if safe.is_empty() || safe.starts_with('.') {
        format!("_{safe}")
    } else {
        safe
    }
}

/// `k` for thousands: 4096 → `4k`, 6144 → `6k`, 1000 → `1k`, 500 → `500`.
pub fn tokens_short(tokens: u64) -> String {
    if tokens >= 1000 && tokens.is_multiple_of(1024) {
        format!("{}k", tokens / 1024)
    } else if tokens >= 1000 && tokens.is_multiple_of(1000) {
        format!("{}k", tokens / 1000)
    } else {
        tokens.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_safe() {
        assert_eq!(file_safe("t000001"), "t000001");
        assert_eq!(file_safe("../a b/<x>"), "_.._a_b__x_");
        assert_eq!(file_safe(""), "_");
    }

    #[test]
    fn counts_read_in_the_right_number() {
        assert_eq!(counted(1, "action"), "1 action");
        assert_eq!(counted(0, "scored action"), "0 scored actions");
        assert_eq!(counted(3, "trajectory"), "3 trajectories");
        assert_eq!(signed(-0.0001, 3), "+0.000");
        assert_eq!(signed(-0.05, 3), "-0.050");
        assert_eq!(signed(0.3, 2), "+0.30");
    }

    #[test]
    fn token_markers_read_as_k() {
        assert_eq!(tokens_short(4096), "4k");
        assert_eq!(tokens_short(8192), "8k");
        assert_eq!(tokens_short(3000), "3k");
        assert_eq!(tokens_short(500), "500");
    }
}
