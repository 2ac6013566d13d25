//! The position profile: at each action index j, the fraction of each label
//! among the responses that have a scored action j, solid for correct and
//! dashed for incorrect responses (paper Fig. 3, 4), with the count n_j
//! beneath and markers where the mean response reaches 4k, 8k, … tokens.
//!
//! Smoothing: a centred moving window of `window` positions, pooled by
//! count: s_j = Σ f_k n_k / Σ n_k over |k − j| ≤ window / 2. The x axis ends
//! at the last index where at least `min_count` responses (of all) remain.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{side_legend, tokens_short, Key};
use crate::load::PositionRow;
use crate::style::{label_colour, DrawResult, Plot, Style, COMMON, GRID, INK, LABELS};

#[derive(Debug, Clone)]
pub struct ProfileOptions {
    /// Width of the moving window in positions (1: no smoothing).
    pub window: usize,
    /// Positions with fewer responses than this (in all) are cut from the end.
    pub min_count: usize,
}

#[derive(Debug, Clone)]
pub struct ProfilePlot {
    pub name: String,
    pub title: String,
    pub rows: Vec<PositionRow>,
    pub options: ProfileOptions,
}

/// The last index shown: the last with n_all ≥ `min_count`, else the last row.
pub fn last_index(rows: &[PositionRow], min_count: usize) -> usize {
    rows.iter().rev().find(|r| r.n[0] >= min_count.max(1)).map(|r| r.index).unwrap_or(rows.len().saturating_sub(1))
}

/// Whether correct and incorrect are plotted apart (some response of each
/// kind is known) rather than `all`.
pub fn split_by_correctness(rows: &[PositionRow]) -> bool {
    rows.iter().any(|r| r.n[1] > 0) && rows.iter().any(|r| r.n[2] > 0)
}

/// Label `slot`'s smoothed fraction in `group` for positions 0..=last, pooled
/// over the window by count; positions whose window holds no response are left out.
pub fn smoothed(rows: &[PositionRow], group: usize, slot: usize, window: usize, last: usize) -> Vec<(f64, f64)> {
    let half = window.max(1) / 2;
    let end = (last + 1).min(rows.len());
    let mut out = Vec::with_capacity(end);
    for j in 0..end {
        let (lo, hi) = (j.saturating_sub(half), (j + half).min(end - 1));
        let (mut sum, mut count) = (0.0, 0usize);
        for row in &rows[lo..=hi] {
            if let Some(f) = row.fractions[group][slot] {
                sum += f * row.n[group] as f64;
                count += row.n[group];
            }
        }
        if count > 0 {
            out.push((rows[j].index as f64, sum / count as f64));
        }
    }
    out
}

/// Draws a profile (fractions above, counts below) into `area`.
pub fn draw_profile<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    style: &Style,
    title: &str,
    rows: &[PositionRow],
    options: &ProfileOptions,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let last = last_index(rows, options.min_count);
    let x_max = (last as f64).max(1.0);
    let split = split_by_correctness(rows);
    let height = area.dim_in_pixel().1;
    let (top, bottom) = area.split_vertically(height * 70 / 100);

    let mut chart = ChartBuilder::on(&top)
        .caption(title, style.font(15.0))
        .margin(style.px(8.0))
        .margin_bottom(0)
        .x_label_area_size(style.px(10.0))
        .y_label_area_size(style.px(52.0))
        .build_cartesian_2d(0f64..x_max, 0f64..1.0)?;
    chart
        .configure_mesh()
        .light_line_style(GRID.mix(0.0))
        .bold_line_style(GRID)
        .y_desc("fraction of actions")
        .label_style(style.font(12.0))
        .axis_desc_style(style.font(13.0))
        .x_labels(0)
        .y_label_formatter(&|y| format!("{:.1}", y))
        .draw()?;
    // Token markers.
    let marker_text = style.font(11.0).pos(Pos::new(HPos::Left, VPos::Top));
    for row in rows.iter().filter(|r| r.index <= last) {
        if let Some(tokens) = row.marker_tokens {
            let x = row.index as f64;
            chart.draw_series(DashedLineSeries::new(vec![(x, 0.0), (x, 1.0)], style.px(3.0), style.px(3.0), style.line(COMMON, 1.0)))?;
            chart.draw_series(std::iter::once(Text::new(format!("{} tokens", tokens_short(tokens)), (x, 0.99), marker_text.clone())))?;
        }
    }
    for (slot, label) in LABELS.iter().enumerate() {
        let colour = label_colour(label);
        if split {
            chart.draw_series(LineSeries::new(smoothed(rows, 1, slot, options.window, last), style.line(colour, 2.0)))?;
            chart.draw_series(DashedLineSeries::new(
                smoothed(rows, 2, slot, options.window, last),
                style.px(6.0),
                style.px(4.0),
                style.line(colour, 2.0),
            ))?;
        } else {
            chart.draw_series(LineSeries::new(smoothed(rows, 0, slot, options.window, last), style.line(colour, 2.0)))?;
        }
    }

    let n_max = rows.iter().take(last + 1).map(|r| r.n[0]).max().unwrap_or(1).max(1) as f64;
    let mut counts = ChartBuilder::on(&bottom)
        .margin(style.px(8.0))
        .margin_top(style.px(4.0))
        .x_label_area_size(style.px(40.0))
        .y_label_area_size(style.px(52.0))
        .build_cartesian_2d(0f64..x_max, 0f64..n_max * 1.05)?;
    counts
        .configure_mesh()
        .light_line_style(GRID.mix(0.0))
        .bold_line_style(GRID)
        .x_desc("action index")
        .y_desc("responses n_j")
        .label_style(style.font(12.0))
        .axis_desc_style(style.font(13.0))
        .x_label_formatter(&|x| format!("{:.0}", x))
        .y_labels(3)
        .y_label_formatter(&|y| format!("{:.0}", y))
        .draw()?;
    let series = |group: usize| rows.iter().take(last + 1).map(move |r| (r.index as f64, r.n[group] as f64)).collect::<Vec<_>>();
    if split {
        counts.draw_series(LineSeries::new(series(1), style.line(INK, 1.5)))?;
        counts.draw_series(DashedLineSeries::new(series(2), style.px(6.0), style.px(4.0), style.line(INK, 1.5)))?;
    } else {
        counts.draw_series(LineSeries::new(series(0), style.line(INK, 1.5)))?;
    }
    Ok(())
}

/// The legend of a profile.
pub fn profile_legend(split: bool) -> Vec<(String, Key)> {
    let mut entries: Vec<(String, Key)> = LABELS.iter().map(|l| (l.to_string(), Key::Square(label_colour(l), 1.0))).collect();
    if split {
        entries.push(("correct".into(), Key::Line(INK, false)));
        entries.push(("incorrect".into(), Key::Line(INK, true)));
    } else {
        entries.push(("all responses".into(), Key::Line(INK, false)));
    }
    entries
}

impl Plot for ProfilePlot {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn size(&self) -> (u32, u32) {
        (1000, 560)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let (plot_area, legend_area) = area.split_horizontally(area.dim_in_pixel().0 - style.px(160.0));
        draw_profile(&plot_area, style, &self.title, &self.rows, &self.options)?;
        side_legend(&legend_area, style, 48.0, &profile_legend(split_by_correctness(&self.rows)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(index: usize, n: usize, teacher: f64) -> PositionRow {
        PositionRow {
            index,
            marker_tokens: None,
            n: [n, n, 0],
            fractions: [[Some(teacher), None, None, None], [Some(teacher), None, None, None], [None; 4]],
        }
    }

    #[test]
    fn smoothing_pools_by_count() {
        let rows = vec![row(0, 10, 1.0), row(1, 30, 0.0), row(2, 10, 1.0)];
        let s = smoothed(&rows, 0, 0, 3, 2);
        // j=0: (10*1 + 30*0)/40; j=1: (10+0+10)/50; j=2: (0+10)/40.
        assert_eq!(s, vec![(0.0, 0.25), (1.0, 0.4), (2.0, 0.25)]);
        assert_eq!(smoothed(&rows, 0, 0, 1, 2), vec![(0.0, 1.0), (1.0, 0.0), (2.0, 1.0)]);
        assert!(smoothed(&rows, 2, 0, 3, 2).is_empty());
    }

    #[test]
    fn the_axis_ends_where_counts_thin_out() {
        let rows = vec![row(0, 10, 1.0), row(1, 6, 0.0), row(2, 2, 1.0)];
        assert_eq!(last_index(&rows, 5), 1);
        assert_eq!(last_index(&rows, 1), 2);
        assert_eq!(last_index(&rows, 50), 2);
        assert!(!split_by_correctness(&rows));
    }
}
