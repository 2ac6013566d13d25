//! The demo's experiment (`whence demo --experiment`, the paper's Table 1 in
//! miniature): one row per selection strategy. Left, the held-out accuracy
//! of the students distilled on each strategy's responses: the mean with
//! ± one standard error (a thick bar), and each seed's accuracy as a ring.
//! Right, the difference from `random` in percentage points, paired by seed
//! and question: the mean with ± one standard error and, thinner and with
//! caps, its 95% bootstrap interval; a dashed line marks zero, no better
//! than random.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::Axis;
use super::{finite, no_data, side_legend, Key};
use crate::style::{DrawResult, Plot, Style, COMMON, GRID, INK, TEACHER};
use whence_world::summary::Experiment;

#[derive(Debug, Clone)]
pub struct ExperimentPlot {
    pub name: String,
    pub title: String,
    pub experiment: Experiment,
}

/// The range of `values` widened by a tenth of its width, and at least
/// `min_pad`, on each side (a point on the edge stays clear of the frame);
/// `fallback` when there is no value.
fn span(values: impl Iterator<Item = f64>, min_pad: f64, fallback: (f64, f64)) -> (f64, f64) {
    let (lo, hi) = values.filter(|v| v.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if !lo.is_finite() {
        return fallback;
    }
    let pad = ((hi - lo) * 0.1).max(min_pad);
    (lo - pad, hi + pad)
}

/// An interval from `lo` to `hi` at row `y`, with end caps `cap` high.
fn bar<DB: DrawingBackend, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    (lo, hi): (f64, f64),
    y: f64,
    cap: f64,
    line: ShapeStyle,
) -> DrawResult
where
    DB::ErrorType: 'static,
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    chart.draw_series(std::iter::once(PathElement::new(vec![(lo, y), (hi, y)], line)))?;
    for x in [lo, hi] {
        chart.draw_series(std::iter::once(PathElement::new(vec![(x, y - cap), (x, y + cap)], line)))?;
    }
    Ok(())
}

impl ExperimentPlot {
    fn names(&self) -> Vec<String> {
        self.experiment.rows.iter().map(|r| r.strategy.clone()).collect()
    }

    fn accuracy_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let rows = &self.experiment.rows;
        let n = rows.len();
        let values = rows.iter().flat_map(|r| {
            let se = finite(r.standard_error).unwrap_or(0.0);
            [r.mean - se, r.mean + se].into_iter().chain(r.accuracies.iter().copied())
        });
        let (lo, hi) = span(values, 0.005, (0.0, 1.0));
        let (x, y) = (Axis::linear(lo.max(0.0), hi.min(1.0), 6).percent(), Axis::rows(n));
        let names = self.names();
        let mut chart = ChartBuilder::on(area)
            .caption("held-out accuracy", style.font(14.0))
            .margin(style.px(8.0))
            .x_label_area_size(style.px(36.0))
            .y_label_area_size(style.px(190.0))
            .build_cartesian_2d(x.coord(), y.coord())?;
        let formatter = super::row_labels(&names);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(GRID.mix(0.0))
            .bold_line_style(GRID)
            .label_style(style.font(12.0))
            .axis_desc_style(style.font(12.0))
            .x_desc("accuracy (share of samples right)")
            .y_label_formatter(&formatter)
            .x_label_formatter(&|v| x.label(*v))
            .draw()?;
        for (i, r) in rows.iter().enumerate() {
            let row = (n - 1 - i) as f64;
            for a in r.accuracies.iter().filter_map(|a| finite(*a)) {
                chart.draw_series(std::iter::once(Circle::new((a, row - 0.22), style.px(3.5), style.line(COMMON, 1.5))))?;
            }
            let Some(mean) = finite(r.mean) else { continue };
            let se = finite(r.standard_error).unwrap_or(0.0);
            chart.draw_series(std::iter::once(PathElement::new(vec![(mean - se, row), (mean + se, row)], style.line(INK, 4.0))))?;
            chart.draw_series(std::iter::once(Circle::new((mean, row), style.px(4.5), style.fill(INK, 1.0))))?;
        }
        Ok(())
    }

    fn difference_panel<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let rows = &self.experiment.rows;
        let n = rows.len();
        // In percentage points: 0.07 → 7.
        let values = rows.iter().filter_map(|r| r.vs_random.as_ref()).flat_map(|d| {
            let se = finite(d.standard_error).unwrap_or(0.0);
            [d.mean - se, d.mean + se, d.low, d.high].map(|v| 100.0 * v)
        });
        // Zero is always in view (the difference is read against it), a
        // point or more either side of it.
        let (lo, hi) = span(values.chain([-1.0, 1.0]), 0.5, (-5.0, 5.0));
        let (x, y) = (Axis::linear(lo, hi, 6), Axis::rows(n));
        let mut chart = ChartBuilder::on(area)
            .caption("difference from random (paired)", style.font(14.0))
            .margin(style.px(8.0))
            .x_label_area_size(style.px(36.0))
            .y_label_area_size(style.px(8.0))
            .build_cartesian_2d(x.coord(), y.coord())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(GRID.mix(0.0))
            .bold_line_style(GRID)
            .label_style(style.font(12.0))
            .axis_desc_style(style.font(12.0))
            .x_desc("accuracy − random's, in percentage points")
            .y_label_formatter(&|_| String::new())
            .x_label_formatter(&|v| x.label(*v))
            .draw()?;
        chart.draw_series(DashedLineSeries::new(
            vec![(0.0, y.start()), (0.0, y.end())],
            style.px(4.0),
            style.px(3.0),
            style.line(INK, 1.0),
        ))?;
        let note = style.font(11.0).pos(Pos::new(HPos::Left, VPos::Center));
        // Clear of the zero line.
        let beside = (x.end() - x.start()) * 0.015;
        for (i, r) in rows.iter().enumerate() {
            let row = (n - 1 - i) as f64;
            let Some(d) = &r.vs_random else {
                // `random` is the baseline; another row without a difference
                // comes from a demo.json written before differences were.
                let text = if r.strategy.starts_with("random") { "the baseline" } else { "no paired difference" };
                chart.draw_series(std::iter::once(Text::new(text, (beside, row), note.clone())))?;
                continue;
            };
            let Some(mean) = finite(d.mean).map(|m| 100.0 * m) else { continue };
            if let (Some(low), Some(high)) = (finite(d.low), finite(d.high)) {
                bar(&mut chart, (100.0 * low, 100.0 * high), row, 0.1, style.line(TEACHER, 1.5))?;
            }
            let se = finite(d.standard_error).map_or(0.0, |se| 100.0 * se);
            chart.draw_series(std::iter::once(PathElement::new(vec![(mean - se, row), (mean + se, row)], style.line(INK, 4.0))))?;
            chart.draw_series(std::iter::once(Circle::new((mean, row), style.px(4.5), style.fill(INK, 1.0))))?;
        }
        Ok(())
    }
}

impl Plot for ExperimentPlot {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn size(&self) -> (u32, u32) {
        (1100, 150 + 56 * self.experiment.rows.len().max(1) as u32)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        if self.experiment.rows.is_empty() {
            return no_data(area, style, &self.title, "the experiment has no strategy:\nno accuracy to show");
        }
        let area = area.margin(style.px(6.0), 0, 0, 0).titled(&self.title, style.font(16.0))?;
        let (main, legend) = area.split_horizontally(area.dim_in_pixel().0 - style.px(190.0));
        let (left, right) = main.split_horizontally(main.dim_in_pixel().0 * 56 / 100);
        self.accuracy_panel(&left, style)?;
        self.difference_panel(&right, style)?;
        side_legend(
            &legend,
            style,
            40.0,
            &[
                ("mean".to_string(), Key::Dot(INK, true)),
                ("± standard error".to_string(), Key::Line(INK, false)),
                ("one seed".to_string(), Key::Dot(COMMON, false)),
                ("95% interval".to_string(), Key::Line(TEACHER, false)),
            ],
        )
    }
}
