//! Candidate teachers side by side (`whence attribute`, paper A.4.3): the
//! label shares under each candidate with the ranking margin (teacher share
//! − student share), and each candidate's position profile (Fig. 13, 14).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::Axis;
use super::profile::{draw_profile, profile_legend, split_by_correctness, ProfileOptions};
use super::{no_data, side_legend, Key};
use crate::load::PositionRow;
use crate::style::{label_colour, DrawResult, Plot, Style, GRID, LABELS};

/// One candidate: name, rank, β, label shares (teacher, student, shared,
/// boosted) and the margin.
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateBar {
    pub name: String,
    pub rank: usize,
    pub beta: f64,
    pub shares: [f64; 4],
    pub margin: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct SharesPlot {
    /// In rank order.
    pub candidates: Vec<CandidateBar>,
}

impl Plot for SharesPlot {
    fn name(&self) -> String {
        "attribution-shares".into()
    }

    fn size(&self) -> (u32, u32) {
        (960, 130 + 50 * self.candidates.len() as u32)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let n = self.candidates.len();
        let caption = "Label shares under each candidate teacher (ranked by teacher − student share)";
        if n == 0 {
            return no_data(area, style, caption, "no candidate teacher in the attribution");
        }
        let (plot_area, legend_area) = area.split_horizontally(area.dim_in_pixel().0 - style.px(150.0));
        let names: Vec<String> = self.candidates.iter().map(|c| format!("#{} {} (β={:.2})", c.rank, c.name, c.beta)).collect();
        let (x, y) = (Axis::linear(0.0, 1.0, 11).percent(), Axis::rows(n));
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(caption, style.font(15.0))
            .margin(style.px(10.0))
            .margin_right(style.px(115.0))
            .x_label_area_size(style.px(36.0))
            .y_label_area_size(style.px(200.0))
            .build_cartesian_2d(x.coord(), y.coord())?;
        let formatter = super::row_labels(&names);
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(GRID.mix(0.0))
            .bold_line_style(GRID)
            .x_desc("share of scored actions")
            .label_style(style.font(12.0))
            .axis_desc_style(style.font(12.0))
            .y_label_formatter(&formatter)
            .x_label_formatter(&|v| x.label(*v))
            .draw()?;
        let inside = style.font(11.0).pos(Pos::new(HPos::Center, VPos::Center));
        let right = style.font(12.0).pos(Pos::new(HPos::Left, VPos::Center));
        for (i, c) in self.candidates.iter().enumerate() {
            let y = (n - 1 - i) as f64;
            let mut left = 0.0;
            for (slot, label) in LABELS.iter().enumerate() {
                let share = c.shares[slot];
                if !share.is_finite() || share <= 0.0 {
                    continue;
                }
                chart.draw_series(std::iter::once(Rectangle::new(
                    [(left, y - 0.32), (left + share, y + 0.32)],
                    style.fill(label_colour(label), 0.85),
                )))?;
                if share >= 0.06 {
                    chart.draw_series(std::iter::once(Text::new(
                        format!("{:.0}%", share * 100.0),
                        (left + share / 2.0, y),
                        inside.clone(),
                    )))?;
                }
                left += share;
            }
            let margin = c.margin.filter(|m| m.is_finite()).map_or("margin n/a".to_string(), |m| format!("margin {m:+.3}"));
            chart.draw_series(std::iter::once(Text::new(margin, (1.01, y), right.clone())))?;
        }
        let entries: Vec<(String, Key)> = LABELS.iter().map(|l| (l.to_string(), Key::Square(label_colour(l), 0.85))).collect();
        side_legend(&legend_area, style, 48.0, &entries)
    }
}

#[derive(Debug, Clone)]
pub struct ProfilesPlot {
    /// (candidate, rank, profile), in rank order.
    pub candidates: Vec<(String, usize, Vec<PositionRow>)>,
    pub options: ProfileOptions,
}

impl ProfilesPlot {
    fn columns(&self) -> usize {
        self.candidates.len().clamp(1, 3)
    }
}

impl Plot for ProfilesPlot {
    fn name(&self) -> String {
        "attribution-profiles".into()
    }

    fn size(&self) -> (u32, u32) {
        let rows = self.candidates.len().max(1).div_ceil(self.columns()) as u32;
        (self.columns() as u32 * 440 + 160, 40 + rows * 380)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let title = "Position profile under each candidate teacher";
        if self.candidates.is_empty() {
            return no_data(area, style, title, "no candidate teacher has a position profile");
        }
        let area = area.margin(style.px(6.0), 0, 0, 0).titled(title, style.font(16.0))?;
        let (main, legend) = area.split_horizontally(area.dim_in_pixel().0 - style.px(160.0));
        let rows = self.candidates.len().max(1).div_ceil(self.columns());
        let panels = main.split_evenly((rows, self.columns()));
        for ((name, rank, profile), panel) in self.candidates.iter().zip(panels.iter()) {
            draw_profile(panel, style, &format!("#{rank} {name}"), profile, &self.options)?;
        }
        let split = self.candidates.iter().any(|(_, _, rows)| split_by_correctness(rows));
        side_legend(&legend, style, 48.0, &profile_legend(split))
    }
}
