//! The β search (paper Fig. 6, 8, 9): for every β tried, the histograms of
//! the per-trajectory proportions of teacher, student and common actions;
//! below, the overlap O(β) and its two terms, with the chosen β marked.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::{Axis, AxisCoord};
use super::{finite, no_data, side_legend, Key};
use crate::load::{BetaSearchJson, BetaStepJson};
use crate::style::{DrawResult, Plot, Style, COMMON, GRID, INK, STUDENT, TEACHER};

#[derive(Debug, Clone)]
pub struct BetaPlot {
    pub name: String,
    pub title: String,
    pub search: BetaSearchJson,
}

/// One curve of the overlap panel: its value, colour and whether dashed.
type Term = (fn(&BetaStepJson) -> f64, RGBColor, bool);

const PANEL_W: u32 = 250;
const PANEL_H: u32 = 200;
const CURVE_H: u32 = 240;
const LEGEND_W: u32 = 250;

impl BetaPlot {
    fn columns(&self) -> usize {
        self.search.steps.len().clamp(1, 5)
    }

    fn rows(&self) -> usize {
        self.search.steps.len().max(1).div_ceil(self.columns())
    }

    fn chosen(&self, step: &BetaStepJson) -> bool {
        (step.beta - self.search.beta).abs() < 1e-9
    }
}

fn histogram<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, style: &Style, step: &BetaStepJson, chosen: bool) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let clean = |bins: &[f64]| bins.iter().map(|&v| finite(v).unwrap_or(0.0).max(0.0)).collect::<Vec<f64>>();
    let histograms = [clean(&step.histogram_common), clean(&step.histogram_student), clean(&step.histogram_teacher)];
    let title = format!("β = {}{}  O = {}", number(step.beta, 2), if chosen { " (chosen)" } else { "" }, number(step.overlap, 3));
    let caption_font = style.font(if chosen { 14.0 } else { 13.0 });
    if histograms.iter().all(|h| h.iter().all(|&v| v == 0.0)) {
        no_data(area, style, "", &format!("{title}\nno histogram: no trajectory was counted"))?;
    } else {
        let y_max = histograms.iter().flatten().copied().fold(0.0f64, f64::max).max(0.05) * 1.1;
        let (x, y) = (Axis::linear(0.0, 1.0, 3), Axis::linear(0.0, y_max, 4));
        let mut chart = ChartBuilder::on(area)
            .caption(title, caption_font)
            .margin(style.px(6.0))
            .margin_right(style.px(16.0))
            .x_label_area_size(style.px(36.0))
            .y_label_area_size(style.px(44.0))
            .build_cartesian_2d(x.coord(), y.coord())?;
        chart
            .configure_mesh()
            .light_line_style(GRID.mix(0.0))
            .bold_line_style(GRID)
            .label_style(style.font(10.5))
            .axis_desc_style(style.font(11.0))
            .x_desc("proportion in a trajectory")
            .x_label_formatter(&|v| x.label(*v))
            .y_label_formatter(&|v| y.label(*v))
            .draw()?;
        draw_histograms(&mut chart, style, &histograms)?;
    }
    if chosen {
        let (w, h) = area.dim_in_pixel();
        area.draw(&Rectangle::new([(1, 1), (w as i32 - 2, h as i32 - 2)], style.line(INK, 2.0)))?;
    }
    Ok(())
}

/// `x` with `digits` decimals, or `n/a` when it is not a finite number.
fn number(x: f64, digits: usize) -> String {
    finite(x).map_or("n/a".to_string(), |x| format!("{x:.digits$}"))
}

fn draw_histograms<DB: DrawingBackend>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<AxisCoord, AxisCoord>>,
    style: &Style,
    histograms: &[Vec<f64>; 3],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    for (bins, colour) in histograms.iter().zip([COMMON, STUDENT, TEACHER]) {
        let width = 1.0 / bins.len().max(1) as f64;
        chart.draw_series(
            bins.iter()
                .enumerate()
                .filter(|(_, &v)| v > 0.0)
                .map(|(b, &v)| Rectangle::new([(b as f64 * width, 0.0), ((b + 1) as f64 * width, v)], style.fill(colour, 0.35))),
        )?;
        // The histogram's outline as a step line.
        let mut outline = vec![(0.0, 0.0)];
        for (b, &v) in bins.iter().enumerate() {
            outline.push((b as f64 * width, v));
            outline.push(((b + 1) as f64 * width, v));
        }
        outline.push((1.0, 0.0));
        chart.draw_series(LineSeries::new(outline, style.line(colour, 1.4)))?;
    }
    Ok(())
}

impl Plot for BetaPlot {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn size(&self) -> (u32, u32) {
        let w = self.columns() as u32 * PANEL_W + LEGEND_W;
        (w.max(760), 50 + self.rows() as u32 * PANEL_H + CURVE_H)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        if self.search.steps.is_empty() {
            return no_data(area, style, &self.title, "no β was tried: the search table is empty");
        }
        let area = area.margin(style.px(6.0), 0, 0, 0).titled(&self.title, style.font(16.0))?;
        let (main, legend) = area.split_horizontally(area.dim_in_pixel().0 - style.px(LEGEND_W as f64));
        let (grid_area, curve_area) = main.split_vertically(style.px((self.rows() as u32 * PANEL_H) as f64));
        let (columns, rows) = (self.columns(), self.rows());
        let panels = grid_area.split_evenly((rows, columns));
        for (step, panel) in self.search.steps.iter().zip(panels.iter()) {
            histogram(panel, style, step, self.chosen(step))?;
        }

        let terms: [Term; 3] =
            [(|s| s.overlap, INK, false), (|s| s.overlap_student_common, STUDENT, true), (|s| s.overlap_common_teacher, TEACHER, true)];
        let betas: Vec<f64> = self.search.steps.iter().filter_map(|s| finite(s.beta)).collect();
        let lo = betas.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = betas.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        // One β tried (or none finite): a padded range around it.
        let (lo, hi) = if lo.is_finite() { (lo, hi) } else { (0.05, 0.05) };
        let pad = ((hi - lo) * 0.05).max(0.01);
        let top = self.search.steps.iter().flat_map(|s| terms.iter().map(|t| t.0(s))).filter_map(finite).fold(0.0f64, f64::max);
        let o_max = top.max(0.1) * 1.1;
        let (x, y) = (Axis::linear(lo - pad, hi + pad, 8), Axis::linear(0.0, o_max, 6));
        let mut chart = ChartBuilder::on(&curve_area)
            .caption("overlap O(β) and its two terms", style.font(13.0))
            .margin(style.px(8.0))
            .x_label_area_size(style.px(36.0))
            .y_label_area_size(style.px(48.0))
            .build_cartesian_2d(x.coord(), y.coord())?;
        chart
            .configure_mesh()
            .light_line_style(GRID.mix(0.0))
            .bold_line_style(GRID)
            .x_desc("β")
            .y_desc("overlap")
            .label_style(style.font(11.0))
            .axis_desc_style(style.font(12.0))
            .x_label_formatter(&|v| x.label(*v))
            .y_label_formatter(&|v| y.label(*v))
            .draw()?;
        for (value, colour, dashed) in terms {
            let points: Vec<(f64, f64)> = self.search.steps.iter().filter_map(|s| Some((finite(s.beta)?, finite(value(s))?))).collect();
            if dashed {
                chart.draw_series(DashedLineSeries::new(points.clone(), style.px(5.0), style.px(3.0), style.line(colour, 1.5)))?;
            } else {
                chart.draw_series(LineSeries::new(points.clone(), style.line(colour, 2.0)))?;
            }
            chart.draw_series(points.iter().map(|&p| Circle::new(p, style.px(3.0), style.fill(colour, 1.0))))?;
        }
        if let Some(chosen) = finite(self.search.beta) {
            chart.draw_series(DashedLineSeries::new(
                vec![(chosen, 0.0), (chosen, o_max)],
                style.px(4.0),
                style.px(4.0),
                style.line(INK, 1.0),
            ))?;
        }
        if let Some(step) = self.search.steps.iter().find(|s| self.chosen(s) && s.overlap.is_finite()) {
            chart.draw_series(std::iter::once(Circle::new(
                (step.beta, step.overlap),
                style.px(7.0),
                ShapeStyle { color: INK.to_rgba(), filled: false, stroke_width: style.px(2.0) },
            )))?;
            // At the top of the dashed line, on the side of the plot's
            // middle: above every curve (the highest point is at o_max / 1.1).
            let horizontal = if step.beta > (lo + hi) / 2.0 { HPos::Right } else { HPos::Left };
            let x = step.beta + if matches!(horizontal, HPos::Right) { -pad * 0.3 } else { pad * 0.3 };
            let (vertical, y) = (VPos::Top, o_max * 0.99);
            chart.draw_series(std::iter::once(Text::new(
                format!("chosen β = {:.2}", step.beta),
                (x, y),
                style.font(12.0).pos(Pos::new(horizontal, vertical)),
            )))?;
        }

        let common = if self.search.settings.stage == "before-training" { "common" } else { "common (shared+boosted)" };
        let entries: Vec<(String, Key)> = vec![
            ("teacher".into(), Key::Square(TEACHER, 0.6)),
            ("student".into(), Key::Square(STUDENT, 0.6)),
            (common.into(), Key::Square(COMMON, 0.6)),
            ("O(β)".into(), Key::Line(INK, false)),
            ("overlap(student, common)".into(), Key::Line(STUDENT, true)),
            ("overlap(common, teacher)".into(), Key::Line(TEACHER, true)),
        ];
        side_legend(&legend, style, 20.0, &entries)
    }
}
