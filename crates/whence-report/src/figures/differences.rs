//! Distributions of the probability differences p_T − p_D, p_T − p_S and
//! p_S − p_D over scored actions (paper Fig. 12), with ±α (all three within
//! α: shared) and ±β (on p_T − p_S: teacher or student) marked.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::Axis;
use super::{counted, finite, no_data, signed};
use crate::style::{DrawResult, Plot, Style, BOOSTED, GRID, INK, SHARED};

/// Bins over [−1, 1].
pub const BINS: usize = 40;

#[derive(Debug, Clone)]
pub struct DifferencesPlot {
    /// p_T − p_D, p_T − p_S, p_S − p_D of every scored action.
    pub differences: [Vec<f64>; 3],
    pub alpha: f64,
    pub beta: f64,
}

pub const NAMES: [&str; 3] = ["p_T − p_D", "p_T − p_S", "p_S − p_D"];

/// Fractions of `values` in [`BINS`] equal bins over [−1, 1] (1 goes to the last).
pub fn bin_fractions(values: &[f64]) -> Vec<f64> {
    let values: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    let mut counts = vec![0usize; BINS];
    for &v in &values {
        let b = (((v + 1.0) / 2.0) * BINS as f64).floor().clamp(0.0, (BINS - 1) as f64) as usize;
        counts[b] += 1;
    }
    let n = values.len().max(1) as f64;
    counts.into_iter().map(|c| c as f64 / n).collect()
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

impl Plot for DifferencesPlot {
    fn name(&self) -> String {
        "probability-differences".into()
    }

    fn size(&self) -> (u32, u32) {
        (1100, 400)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let differences = self.differences.clone().map(|d| d.into_iter().filter(|v| v.is_finite()).collect::<Vec<f64>>());
        let title = format!("Probability differences over {}", counted(differences[0].len(), "scored action"));
        if differences.iter().all(Vec::is_empty) {
            return no_data(area, style, &title, "no action is scored by all three models:\nthere are no differences to count");
        }
        let area = area.margin(style.px(6.0), 0, 0, 0).titled(&title, style.font(16.0))?;
        let (h, note_h) = (area.dim_in_pixel().1, style.px(22.0));
        let (main, foot) = area.split_vertically(h - note_h);
        let panels = main.split_evenly((1, 3));
        let binned: Vec<Vec<f64>> = differences.iter().map(|d| bin_fractions(d)).collect();
        let y_max = binned.iter().flatten().copied().fold(0.0f64, f64::max).max(0.05) * 1.1;
        let (x, y) = (Axis::linear(-1.0, 1.0, 5), Axis::linear(0.0, y_max, 6));
        for (k, panel) in panels.iter().enumerate() {
            let values = &differences[k];
            let abs: Vec<f64> = values.iter().map(|v| v.abs()).collect();
            let caption = format!("{}: mean {}, mean |Δ| {:.3}", NAMES[k], signed(mean(values), 3), mean(&abs));
            let mut chart = ChartBuilder::on(panel)
                .caption(caption, style.font(13.0))
                .margin(style.px(8.0))
                .margin_right(style.px(16.0))
                .x_label_area_size(style.px(40.0))
                .y_label_area_size(style.px(48.0))
                .build_cartesian_2d(x.coord(), y.coord())?;
            chart
                .configure_mesh()
                .light_line_style(GRID.mix(0.0))
                .bold_line_style(GRID)
                .x_desc(NAMES[k])
                .y_desc(if k == 0 { "fraction of actions" } else { "" })
                .label_style(style.font(11.0))
                .axis_desc_style(style.font(12.0))
                .x_label_formatter(&|v| x.label(*v))
                .y_label_formatter(&|v| y.label(*v))
                .draw()?;
            let width = 2.0 / BINS as f64;
            chart.draw_series(binned[k].iter().enumerate().filter(|(_, &v)| v > 0.0).map(|(b, &v)| {
                let x = -1.0 + b as f64 * width;
                Rectangle::new([(x, 0.0), (x + width, v)], style.fill(INK, 0.55))
            }))?;
            let mut marks = vec![(self.alpha, SHARED, "α")];
            if k == 1 {
                marks.push((self.beta, BOOSTED, "β"));
            }
            for (threshold, colour, _) in marks.into_iter().filter(|m| m.0.is_finite()) {
                for x in [-threshold, threshold] {
                    chart.draw_series(DashedLineSeries::new(
                        vec![(x, 0.0), (x, y_max)],
                        style.px(4.0),
                        style.px(3.0),
                        style.line(colour, 1.5),
                    ))?;
                }
            }
        }
        let shown = |x: f64| finite(x).map_or("n/a, not drawn".to_string(), |x| x.to_string());
        let (alpha, beta) = (shown(self.alpha), shown(self.beta));
        let note = if self.alpha == self.beta {
            format!("dashed: ±α = {alpha} (purple), ±β = {beta} (orange, p_T − p_S, drawn over ±α there)")
        } else {
            format!("dashed: ±α = {alpha} (purple, all three panels), ±β = {beta} (orange, p_T − p_S)")
        };
        foot.draw(&Text::new(note, (style.ipx(60.0), style.ipx(4.0)), style.font(11.5)))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_cover_minus_one_to_one() {
        let f = bin_fractions(&[-1.0, 0.0, 1.0, 0.999]);
        assert_eq!(f.len(), BINS);
        assert_eq!(f[0], 0.25);
        assert_eq!(f[BINS / 2], 0.25);
        assert_eq!(f[BINS - 1], 0.5);
    }
}
