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

use super::axis::Axis;
use super::{counted, no_data, side_legend, tokens_short, Key};
use crate::load::PositionRow;
use crate::style::{label_colour, DrawResult, Plot, Style, COMMON, GRID, INK, LABELS};
use whence_world::summary::{CorrectnessPosition, PositionShares};

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

/// How much of a profile is shown, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extent {
    /// Positions 0..=`last`: the last with at least `min_count` responses.
    Cut { last: usize },
    /// No position has `min_count` responses: every position with a
    /// response is shown (0..=`last`), and the most at any is `most`.
    Thin { last: usize, most: usize },
    /// No position has a scored response.
    Empty,
}

/// Where the profile's x axis ends: see [`Extent`].
pub fn extent(rows: &[PositionRow], min_count: usize) -> Extent {
    if let Some(row) = rows.iter().rev().find(|r| r.n[0] >= min_count.max(1)) {
        return Extent::Cut { last: row.index };
    }
    match rows.iter().rev().find(|r| r.n[0] > 0) {
        Some(row) => Extent::Thin { last: row.index, most: rows.iter().map(|r| r.n[0]).max().unwrap_or(0) },
        None => Extent::Empty,
    }
}

/// The last index shown (0 when nothing is).
pub fn last_index(rows: &[PositionRow], min_count: usize) -> usize {
    match extent(rows, min_count) {
        Extent::Cut { last } | Extent::Thin { last, .. } => last,
        Extent::Empty => 0,
    }
}

/// One sentence for a caption: where the axis ends and why.
pub fn extent_note(rows: &[PositionRow], min_count: usize) -> String {
    match extent(rows, min_count) {
        Extent::Cut { last } => format!("the axis ends at index {last}, the last with at least {}", counted(min_count, "response")),
        Extent::Thin { most, .. } => format!(
            "no position has {min_count} responses (the most at any is {most}), so every position is shown and fractions rest on very few responses; the lower panel marks n = {min_count} (--min-count)"
        ),
        Extent::Empty => "no action was scored, so there is no profile to draw".to_string(),
    }
}

/// `points` (sorted by x) split where consecutive x are more than one
/// position apart: a position without responses is a gap, not a line.
pub fn runs(points: Vec<(f64, f64)>) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    for point in points {
        match out.last_mut() {
            Some(run) if run.last().is_some_and(|last| point.0 - last.0 <= 1.0 + 1e-9) => run.push(point),
            _ => out.push(vec![point]),
        }
    }
    out
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
            if let Some(f) = row.fractions[group][slot].filter(|f| f.is_finite()) {
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
    let (last, thin) = match extent(rows, options.min_count) {
        Extent::Cut { last } => (last, false),
        Extent::Thin { last, .. } => (last, true),
        Extent::Empty => return no_data(area, style, title, "no action was scored:\nno position has a label fraction to show"),
    };
    // One position: a window around it, with its one tick.
    let (x_lo, x_hi) = if last == 0 { (-0.5, 0.5) } else { (0.0, last as f64) };
    let x = Axis::whole(x_lo, x_hi, 11);
    let split = split_by_correctness(rows);
    let height = area.dim_in_pixel().1;
    let (top, bottom) = area.split_vertically(height * 70 / 100);

    let fraction = Axis::linear(0.0, 1.0, 11);
    let x_top = x.clone().without_ticks();
    let mut chart = ChartBuilder::on(&top)
        .caption(title, style.font(15.0))
        .margin(style.px(8.0))
        .margin_bottom(0)
        .x_label_area_size(style.px(10.0))
        .y_label_area_size(style.px(52.0))
        .build_cartesian_2d(x_top.coord(), fraction.coord())?;
    chart
        .configure_mesh()
        .light_line_style(GRID.mix(0.0))
        .bold_line_style(GRID)
        .y_desc("fraction of actions")
        .label_style(style.font(12.0))
        .axis_desc_style(style.font(13.0))
        .y_label_formatter(&|v| fraction.label(*v))
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
    let groups: &[(usize, bool)] = if split { &[(1, false), (2, true)] } else { &[(0, false)] };
    for (slot, label) in LABELS.iter().enumerate() {
        let colour = label_colour(label);
        for &(group, dashed) in groups {
            for run in runs(smoothed(rows, group, slot, options.window, last)) {
                if dashed {
                    chart.draw_series(DashedLineSeries::new(run.clone(), style.px(6.0), style.px(4.0), style.line(colour, 2.0)))?;
                } else {
                    chart.draw_series(LineSeries::new(run.clone(), style.line(colour, 2.0)))?;
                }
                if run.len() == 1 {
                    let dot = if dashed { style.line(colour, 2.0) } else { style.fill(colour, 1.0) };
                    chart.draw_series(run.iter().map(|&p| Circle::new(p, style.px(3.5), dot)))?;
                }
            }
        }
    }

    let n_max = rows.iter().take(last + 1).map(|r| r.n[0]).max().unwrap_or(1).max(1);
    // The threshold is drawn when it means something: when it cut the axis
    // or when no position reaches it.
    let threshold = (options.min_count > 1).then_some(options.min_count);
    let top_count = n_max.max(threshold.unwrap_or(0)) as f64 * 1.05;
    let count = Axis::whole(0.0, top_count, 3);
    let mut counts = ChartBuilder::on(&bottom)
        .margin(style.px(8.0))
        .margin_top(style.px(4.0))
        .x_label_area_size(style.px(40.0))
        .y_label_area_size(style.px(52.0))
        .build_cartesian_2d(x.coord(), count.coord())?;
    counts
        .configure_mesh()
        .light_line_style(GRID.mix(0.0))
        .bold_line_style(GRID)
        .x_desc("action index")
        .y_desc("responses n_j")
        .label_style(style.font(12.0))
        .axis_desc_style(style.font(13.0))
        .x_label_formatter(&|v| x.label(*v))
        .y_label_formatter(&|v| count.label(*v))
        .draw()?;
    if let Some(threshold) = threshold {
        let t = threshold as f64;
        counts.draw_series(DashedLineSeries::new(
            vec![(x.start(), t), (x.end(), t)],
            style.px(3.0),
            style.px(3.0),
            style.line(COMMON, 1.0),
        ))?;
        let note = if thin {
            format!("n = {threshold} (--min-count): no position reaches it; at most {n_max}")
        } else {
            format!("n = {threshold} (--min-count)")
        };
        // Above the line, or below it when it is the top of the panel.
        let anchor = Pos::new(HPos::Right, if thin { VPos::Top } else { VPos::Bottom });
        // Clear of the dashed line by a twenty-fifth of the panel.
        let clear = top_count / 25.0 * if thin { -1.0 } else { 1.0 };
        counts.draw_series(std::iter::once(Text::new(note, (x.end(), t + clear), style.font(11.0).pos(anchor))))?;
    }
    let series = |group: usize| rows.iter().take(last + 1).map(move |r| (r.index as f64, r.n[group] as f64)).collect::<Vec<_>>();
    for &(group, dashed) in groups {
        let points = series(group);
        if dashed {
            counts.draw_series(DashedLineSeries::new(points.clone(), style.px(6.0), style.px(4.0), style.line(INK, 1.5)))?;
        } else {
            counts.draw_series(LineSeries::new(points.clone(), style.line(INK, 1.5)))?;
        }
        if points.len() == 1 {
            counts.draw_series(points.iter().map(|&p| Circle::new(p, style.px(3.0), style.fill(INK, 1.0))))?;
        }
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
        if extent(&self.rows, self.options.min_count) == Extent::Empty {
            return draw_profile(area, style, &self.title, &self.rows, &self.options);
        }
        let (plot_area, legend_area) = area.split_horizontally(area.dim_in_pixel().0 - style.px(160.0));
        draw_profile(&plot_area, style, &self.title, &self.rows, &self.options)?;
        side_legend(&legend_area, style, 48.0, &profile_legend(split_by_correctness(&self.rows)))
    }
}

/// The rows of a profile split by correctness as `demo.json` holds it
/// (paper Fig. 3), in the form the positions table gives: one row per index
/// from 0 to the last (an index missing from `positions` has no response),
/// `all` the two groups pooled by count, and a group's fractions `None` where
/// it has no response.
pub fn rows_of_correctness(positions: &[CorrectnessPosition]) -> Vec<PositionRow> {
    let last = positions.iter().map(|p| p.index).max();
    let mut rows: Vec<PositionRow> = (0..last.map_or(0, |l| l + 1))
        .map(|index| PositionRow { index, marker_tokens: None, n: [0; 3], fractions: [[None; 4]; 3] })
        .collect();
    // In the order of LABELS: teacher, student, shared, boosted.
    let shares = |s: &PositionShares| [s.teacher, s.student, s.shared, s.boosted];
    for p in positions {
        let row = &mut rows[p.index];
        let (c, i) = (&p.correct, &p.incorrect);
        row.n = [c.n + i.n, c.n, i.n];
        for (slot, (fc, fi)) in shares(c).into_iter().zip(shares(i)).enumerate() {
            row.fractions[1][slot] = (c.n > 0).then_some(fc);
            row.fractions[2][slot] = (i.n > 0).then_some(fi);
            row.fractions[0][slot] = (c.n + i.n > 0).then(|| (fc * c.n as f64 + fi * i.n as f64) / (c.n + i.n) as f64);
        }
    }
    rows
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
        let rows = vec![row(0, 10, 1.0), row(1, 6, 0.0), row(2, 2, 1.0), row(3, 0, 0.0)];
        assert_eq!(last_index(&rows, 5), 1);
        assert_eq!(extent(&rows, 5), Extent::Cut { last: 1 });
        assert_eq!(last_index(&rows, 1), 2);
        // Fewer responses than --min-count everywhere: all of it, said so.
        assert_eq!(extent(&rows, 50), Extent::Thin { last: 2, most: 10 });
        assert!(extent_note(&rows, 50).contains("no position has 50 responses (the most at any is 10)"));
        assert_eq!(extent(&[row(0, 0, 0.0)], 10), Extent::Empty);
        assert_eq!(extent(&[], 10), Extent::Empty);
        assert!(!split_by_correctness(&rows));
    }

    #[test]
    fn runs_break_at_positions_without_responses() {
        let points = vec![(0.0, 0.1), (1.0, 0.2), (3.0, 0.3), (5.0, 0.4), (6.0, 0.5)];
        assert_eq!(runs(points), vec![vec![(0.0, 0.1), (1.0, 0.2)], vec![(3.0, 0.3)], vec![(5.0, 0.4), (6.0, 0.5)]]);
        assert!(runs(vec![]).is_empty());
    }

    #[test]
    fn a_correctness_profile_becomes_dense_rows() {
        let shares = |n: usize, teacher: f64| PositionShares { n, teacher, boosted: 0.1, student: 0.9 - teacher, shared: 0.0 };
        let positions = vec![
            CorrectnessPosition { index: 0, correct: shares(3, 0.6), incorrect: shares(1, 0.2) },
            CorrectnessPosition { index: 2, correct: shares(0, 0.0), incorrect: shares(2, 0.4) },
        ];
        let rows = rows_of_correctness(&positions);
        assert_eq!(rows.iter().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(rows[0].n, [4, 3, 1]);
        assert_eq!(rows[0].fractions[1][0], Some(0.6));
        assert_eq!(rows[0].fractions[2][1], Some(0.7));
        assert!((rows[0].fractions[0][0].unwrap() - 0.5).abs() < 1e-12);
        // No response at index 1; no correct one at index 2.
        assert_eq!((rows[1].n, rows[1].fractions), ([0; 3], [[None; 4]; 3]));
        assert_eq!(rows[2].fractions[1], [None; 4]);
        assert_eq!(rows[2].fractions[0][3], Some(0.1));
        assert!(split_by_correctness(&rows));
        assert!(rows_of_correctness(&[]).is_empty());
    }

    #[test]
    fn fractions_that_are_not_numbers_are_left_out() {
        let mut rows = vec![row(0, 10, 1.0), row(1, 10, 0.0)];
        rows[1].fractions[0][0] = Some(f64::NAN);
        assert_eq!(smoothed(&rows, 0, 0, 1, 1), vec![(0.0, 1.0)]);
    }
}
