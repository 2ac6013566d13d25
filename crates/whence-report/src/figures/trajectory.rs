//! One response: p_T, p_S and p_D against action index, over background
//! bands coloured by each action's label (paper Fig. 2).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::Axis;
use super::{counted, file_safe, no_data, side_legend, Key};
use crate::style::{label_colour, DrawResult, Plot, Style, DISTILLED, GRID, LABELS, STUDENT, TEACHER, UNSCORED};

/// Opacity of the label bands.
pub const BAND_ALPHA: f64 = 0.3;

/// One action: the probabilities under teacher, student and distilled model
/// (`None` where the model has no token on it) and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionPoint {
    pub p: [Option<f64>; 3],
    pub label: String,
}

#[derive(Debug, Clone)]
pub struct TrajectoryPlot {
    pub id: String,
    pub correct: Option<bool>,
    pub actions: Vec<ActionPoint>,
}

/// `correct`, `incorrect` or `correctness unknown`.
pub fn correctness_text(correct: Option<bool>) -> &'static str {
    match correct {
        Some(true) => "correct",
        Some(false) => "incorrect",
        None => "correctness unknown",
    }
}

/// Runs of consecutive actions where `value` is known, as (index, value) points.
fn runs(values: impl Iterator<Item = Option<f64>>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut current = Vec::new();
    for (j, value) in values.enumerate() {
        match value {
            Some(v) => current.push((j as f64, v)),
            None if !current.is_empty() => out.push(std::mem::take(&mut current)),
            None => {}
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

impl Plot for TrajectoryPlot {
    fn name(&self) -> String {
        format!("trajectory-{}", file_safe(&self.id))
    }

    fn size(&self) -> (u32, u32) {
        (1000, 420)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let n = self.actions.len();
        let title = format!("Trajectory {} ({}, {})", self.id, correctness_text(self.correct), counted(n, "action"));
        if n == 0 {
            return no_data(area, style, &title, "this response has no actions to draw");
        }
        let (plot_area, legend_area) = area.split_horizontally(area.dim_in_pixel().0 - style.px(185.0));
        let (x, y) = (Axis::whole(-0.5, n as f64 - 0.5, 11), Axis::linear(0.0, 1.0, 11));
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, style.font(16.0))
            .margin(style.px(10.0))
            .x_label_area_size(style.px(42.0))
            .y_label_area_size(style.px(52.0))
            .build_cartesian_2d(x.coord(), y.coord())?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(GRID.mix(0.0))
            .bold_line_style(GRID)
            .x_desc("action index")
            .y_desc("action probability")
            .label_style(style.font(12.0))
            .axis_desc_style(style.font(13.0))
            .x_label_formatter(&|v| x.label(*v))
            .y_label_formatter(&|v| y.label(*v))
            .draw()?;
        chart.draw_series(self.actions.iter().enumerate().map(|(j, a)| {
            let j = j as f64;
            Rectangle::new([(j - 0.5, 0.0), (j + 0.5, 1.0)], style.fill(label_colour(&a.label), BAND_ALPHA))
        }))?;
        let roles = [(0, TEACHER), (1, STUDENT), (2, DISTILLED)];
        let markers = self.actions.len() <= 120;
        for (r, colour) in roles {
            for run in runs(self.actions.iter().map(|a| a.p[r].filter(|p| p.is_finite()))) {
                chart.draw_series(LineSeries::new(run.iter().copied(), style.line(colour, 1.8)))?;
                if markers || run.len() == 1 {
                    chart.draw_series(run.iter().map(|&p| Circle::new(p, style.px(2.5), style.fill(colour, 1.0))))?;
                }
            }
        }
        let mut entries: Vec<(String, Key)> = vec![
            ("p_T (teacher)".into(), Key::Line(TEACHER, false)),
            ("p_S (student)".into(), Key::Line(STUDENT, false)),
            ("p_D (distilled)".into(), Key::Line(DISTILLED, false)),
        ];
        entries.extend(LABELS.iter().map(|l| (l.to_string(), Key::Square(label_colour(l), BAND_ALPHA))));
        if self.actions.iter().any(|a| a.label == "unscored") {
            entries.push(("unscored".into(), Key::Square(UNSCORED, BAND_ALPHA)));
        }
        side_legend(&legend_area, style, 48.0, &entries)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_break_at_unknown_values() {
        let values = [Some(0.1), None, Some(0.2), Some(0.3), None, None];
        assert_eq!(runs(values.into_iter()), vec![vec![(0.0, 0.1)], vec![(2.0, 0.2), (3.0, 0.3)]]);
    }
}
