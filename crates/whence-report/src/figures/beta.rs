//! The β search (paper Fig. 6, 8, 9): for every β tried, the histograms of
//! the per-trajectory proportions of teacher, student and common actions;
//! below, the overlap O(β) and its two terms, with the chosen β marked.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{side_legend, Key};
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
    let y_max = [&step.histogram_teacher, &step.histogram_student, &step.histogram_common]
        .iter()
        .flat_map(|h| h.iter().copied())
        .fold(0.0f64, f64::max)
        .max(0.05)
        * 1.1;
    let title = format!("β = {:.2}{}  O = {:.3}", step.beta, if chosen { " (chosen)" } else { "" }, step.overlap);
    let mut chart = ChartBuilder::on(area)
        .caption(title, style.font(if chosen { 14.0 } else { 13.0 }))
        .margin(style.px(6.0))
        .margin_right(style.px(16.0))
        .x_label_area_size(style.px(36.0))
        .y_label_area_size(style.px(44.0))
        .build_cartesian_2d(0f64..1.0, 0f64..y_max)?;
    chart
        .configure_mesh()
        .light_line_style(GRID.mix(0.0))
        .bold_line_style(GRID)
        .label_style(style.font(10.5))
        .axis_desc_style(style.font(11.0))
        .x_labels(3)
        .y_labels(4)
        .x_desc("proportion in a trajectory")
        .x_label_formatter(&|x| format!("{:.1}", x))
        .y_label_formatter(&|y| format!("{:.2}", y))
        .draw()?;
    for (bins, colour) in [(&step.histogram_common, COMMON), (&step.histogram_student, STUDENT), (&step.histogram_teacher, TEACHER)] {
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
    if chosen {
        let (w, h) = area.dim_in_pixel();
        area.draw(&Rectangle::new([(1, 1), (w as i32 - 2, h as i32 - 2)], style.line(INK, 2.0)))?;
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
        let area = area.margin(style.px(6.0), 0, 0, 0).titled(&self.title, style.font(16.0))?;
        let (main, legend) = area.split_horizontally(area.dim_in_pixel().0 - style.px(LEGEND_W as f64));
        let (grid_area, curve_area) = main.split_vertically(style.px((self.rows() as u32 * PANEL_H) as f64));
        let (columns, rows) = (self.columns(), self.rows());
        let panels = grid_area.split_evenly((rows, columns));
        for (step, panel) in self.search.steps.iter().zip(panels.iter()) {
            histogram(panel, style, step, self.chosen(step))?;
        }

        let betas: Vec<f64> = self.search.steps.iter().map(|s| s.beta).collect();
        let (lo, hi) = (betas.first().copied().unwrap_or(0.05), betas.last().copied().unwrap_or(0.05));
        let pad = ((hi - lo) * 0.05).max(0.01);
        let o_max = self.search.steps.iter().map(|s| s.overlap).fold(0.0f64, f64::max).max(0.1) * 1.1;
        let mut chart = ChartBuilder::on(&curve_area)
            .caption("overlap O(β) and its two terms", style.font(13.0))
            .margin(style.px(8.0))
            .x_label_area_size(style.px(36.0))
            .y_label_area_size(style.px(48.0))
            .build_cartesian_2d((lo - pad)..(hi + pad), 0f64..o_max)?;
        chart
            .configure_mesh()
            .light_line_style(GRID.mix(0.0))
            .bold_line_style(GRID)
            .x_desc("β")
            .y_desc("overlap")
            .label_style(style.font(11.0))
            .axis_desc_style(style.font(12.0))
            .x_label_formatter(&|x| format!("{:.2}", x))
            .y_label_formatter(&|y| format!("{:.1}", y))
            .draw()?;
        let terms: [Term; 3] =
            [(|s| s.overlap, INK, false), (|s| s.overlap_student_common, STUDENT, true), (|s| s.overlap_common_teacher, TEACHER, true)];
        for (value, colour, dashed) in terms {
            let points: Vec<(f64, f64)> = self.search.steps.iter().map(|s| (s.beta, value(s))).collect();
            if dashed {
                chart.draw_series(DashedLineSeries::new(points.clone(), style.px(5.0), style.px(3.0), style.line(colour, 1.5)))?;
            } else {
                chart.draw_series(LineSeries::new(points.clone(), style.line(colour, 2.0)))?;
            }
            chart.draw_series(points.iter().map(|&p| Circle::new(p, style.px(3.0), style.fill(colour, 1.0))))?;
        }
        let chosen = self.search.beta;
        chart.draw_series(DashedLineSeries::new(
            vec![(chosen, 0.0), (chosen, o_max)],
            style.px(4.0),
            style.px(4.0),
            style.line(INK, 1.0),
        ))?;
        if let Some(step) = self.search.steps.iter().find(|s| self.chosen(s)) {
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
