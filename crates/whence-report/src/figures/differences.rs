//! Distributions of the probability differences p_T − p_D, p_T − p_S and
//! p_S − p_D over scored actions (paper Fig. 12), with ±α (all three within
//! α: shared) and ±β (on p_T − p_S: teacher or student) marked.

use plotters::coord::Shift;
use plotters::prelude::*;

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
    let mut counts = vec![0usize; BINS];
    for &v in values {
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
        let title = format!("Probability differences over {} scored actions", self.differences[0].len());
        let area = area.margin(style.px(6.0), 0, 0, 0).titled(&title, style.font(16.0))?;
        let (h, note_h) = (area.dim_in_pixel().1, style.px(22.0));
        let (main, foot) = area.split_vertically(h - note_h);
        let panels = main.split_evenly((1, 3));
        let binned: Vec<Vec<f64>> = self.differences.iter().map(|d| bin_fractions(d)).collect();
        let y_max = binned.iter().flatten().copied().fold(0.0f64, f64::max).max(0.05) * 1.1;
        for (k, panel) in panels.iter().enumerate() {
            let values = &self.differences[k];
            let abs: Vec<f64> = values.iter().map(|v| v.abs()).collect();
            let caption = format!("{}: mean {:+.3}, mean |Δ| {:.3}", NAMES[k], mean(values), mean(&abs));
            let mut chart = ChartBuilder::on(panel)
                .caption(caption, style.font(13.0))
                .margin(style.px(8.0))
                .margin_right(style.px(16.0))
                .x_label_area_size(style.px(40.0))
                .y_label_area_size(style.px(48.0))
                .build_cartesian_2d(-1f64..1.0, 0f64..y_max)?;
            chart
                .configure_mesh()
                .light_line_style(GRID.mix(0.0))
                .bold_line_style(GRID)
                .x_desc(NAMES[k])
                .y_desc(if k == 0 { "fraction of actions" } else { "" })
                .label_style(style.font(11.0))
                .axis_desc_style(style.font(12.0))
                .x_labels(5)
                .x_label_formatter(&|x| format!("{:.1}", x))
                .y_label_formatter(&|y| format!("{:.2}", y))
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
            for (threshold, colour, _) in marks {
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
        let note = if self.alpha == self.beta {
            format!("dashed: ±α = {} (purple), ±β = {} (orange, p_T − p_S, drawn over ±α there)", self.alpha, self.beta)
        } else {
            format!("dashed: ±α = {} (purple, all three panels), ±β = {} (orange, p_T − p_S)", self.alpha, self.beta)
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
