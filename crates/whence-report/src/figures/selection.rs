//! Data selection (`whence select`): for every strategy, the teacher-action
//! counts and the lengths (in actions) of the responses it would keep
//! against those it would drop, as box plots (box: quartiles, line: median,
//! whiskers: minimum and maximum, dot: mean).

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::Axis;
use super::{no_data, side_legend, Key};
use crate::style::{DrawResult, Plot, Style, GRID, INK};

#[derive(Debug, Clone, PartialEq)]
pub struct StrategyStats {
    pub strategy: String,
    /// The strategy the run used.
    pub used: bool,
    pub kept_teacher: Vec<f64>,
    pub dropped_teacher: Vec<f64>,
    pub kept_length: Vec<f64>,
    pub dropped_length: Vec<f64>,
}

#[derive(Debug, Clone)]
pub struct SelectionPlot {
    pub name: String,
    pub title: String,
    pub strategies: Vec<StrategyStats>,
}

/// Minimum, first quartile, median, third quartile, maximum and mean
/// (quartiles by linear interpolation) of the finite values; `None` when
/// there is none.
pub fn five_numbers(values: &[f64]) -> Option<[f64; 6]> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| {
        let h = p * (sorted.len() - 1) as f64;
        let (lo, hi) = (h.floor() as usize, h.ceil() as usize);
        sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
    };
    let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
    Some([sorted[0], q(0.25), q(0.5), q(0.75), sorted[sorted.len() - 1], mean])
}

const KEPT: RGBColor = RGBColor(0x44, 0x44, 0x44);
const DROPPED: RGBColor = RGBColor(0xBB, 0xBB, 0xBB);

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    style: &Style,
    title: &str,
    strategies: &[StrategyStats],
    pick: fn(&StrategyStats) -> (&Vec<f64>, &Vec<f64>),
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let n = strategies.len();
    let x_max = strategies.iter().flat_map(|s| {
        let (a, b) = pick(s);
        a.iter().chain(b.iter()).copied()
    });
    let x_max = x_max.filter(|v| v.is_finite()).fold(1.0f64, f64::max) * 1.05;
    let (x, y) = (Axis::whole(0.0, x_max, 8), Axis::rows(n));
    let names: Vec<String> =
        strategies.iter().map(|s| if s.used { format!("{} (used)", s.strategy) } else { s.strategy.clone() }).collect();
    let mut chart = ChartBuilder::on(area)
        .caption(title, style.font(14.0))
        .margin(style.px(8.0))
        .x_label_area_size(style.px(36.0))
        .y_label_area_size(style.px(185.0))
        .build_cartesian_2d(x.coord(), y.coord())?;
    let formatter = super::row_labels(&names);
    chart
        .configure_mesh()
        .disable_y_mesh()
        .light_line_style(GRID.mix(0.0))
        .bold_line_style(GRID)
        .label_style(style.font(12.0))
        .axis_desc_style(style.font(12.0))
        .x_desc(title)
        .y_label_formatter(&formatter)
        .x_label_formatter(&|v| x.label(*v))
        .draw()?;
    for (i, s) in strategies.iter().enumerate() {
        let centre = (n - 1 - i) as f64;
        let (kept, dropped) = pick(s);
        for (values, offset, colour) in [(kept, 0.18, KEPT), (dropped, -0.18, DROPPED)] {
            let Some([min, q1, median, q3, max, mean]) = five_numbers(values) else { continue };
            let y = centre + offset;
            let h = 0.13;
            chart.draw_series(std::iter::once(PathElement::new(vec![(min, y), (max, y)], style.line(INK, 1.0))))?;
            for x in [min, max] {
                chart.draw_series(std::iter::once(PathElement::new(vec![(x, y - h / 2.0), (x, y + h / 2.0)], style.line(INK, 1.0))))?;
            }
            chart.draw_series(std::iter::once(Rectangle::new([(q1, y - h), (q3, y + h)], style.fill(colour, 1.0))))?;
            chart.draw_series(std::iter::once(Rectangle::new([(q1, y - h), (q3, y + h)], style.line(INK, 1.0))))?;
            let median_colour = if colour == KEPT { RGBColor(255, 255, 255) } else { INK };
            chart.draw_series(std::iter::once(PathElement::new(vec![(median, y - h), (median, y + h)], style.line(median_colour, 2.5))))?;
            chart.draw_series(std::iter::once(Circle::new((mean, y), style.px(3.0), style.fill(RGBColor(255, 255, 255), 1.0))))?;
            chart.draw_series(std::iter::once(Circle::new((mean, y), style.px(3.0), style.line(INK, 1.0))))?;
        }
    }
    Ok(())
}

impl Plot for SelectionPlot {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn size(&self) -> (u32, u32) {
        (1100, 130 + 60 * self.strategies.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let values = |s: &StrategyStats| [&s.kept_teacher, &s.dropped_teacher, &s.kept_length, &s.dropped_length].map(|v| v.len());
        if self.strategies.iter().all(|s| values(s).iter().all(|&n| n == 0)) {
            return no_data(area, style, &self.title, "no question has candidates:\nno strategy kept or dropped a response");
        }
        let area = area.margin(style.px(6.0), 0, 0, 0).titled(&self.title, style.font(16.0))?;
        let (main, legend) = area.split_horizontally(area.dim_in_pixel().0 - style.px(130.0));
        let panels = main.split_evenly((1, 2));
        panel(&panels[0], style, "teacher actions per response", &self.strategies, |s| (&s.kept_teacher, &s.dropped_teacher))?;
        panel(&panels[1], style, "actions per response (length)", &self.strategies, |s| (&s.kept_length, &s.dropped_length))?;
        side_legend(
            &legend,
            style,
            40.0,
            &[("kept".to_string(), Key::Square(KEPT, 1.0)), ("dropped".to_string(), Key::Square(DROPPED, 1.0))],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_interpolate() {
        assert_eq!(five_numbers(&[4.0, 1.0, 3.0, 2.0, 5.0]), Some([1.0, 2.0, 3.0, 4.0, 5.0, 3.0]));
        assert_eq!(five_numbers(&[1.0, 2.0]), Some([1.0, 1.25, 1.5, 1.75, 2.0, 1.5]));
        assert_eq!(five_numbers(&[]), None);
        assert_eq!(five_numbers(&[f64::NAN, f64::INFINITY]), None);
        assert_eq!(five_numbers(&[2.0, f64::NAN]), Some([2.0; 6]));
    }
}
