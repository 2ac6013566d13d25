//! The share of each behaviour (execution, reflection, transition) within
//! each label, as 100 % stacked bars (paper Fig. 10). Behaviours come from
//! the keyword lexicon of [`crate::behaviour`]; special tokens are left out.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::Axis;
use super::{no_data, side_legend, Key};
use crate::behaviour::Behaviour;
use crate::style::{behaviour_colour, DrawResult, Plot, Style, GRID};

/// Per label, the number of actions of each behaviour (in [`Behaviour::ALL`] order).
#[derive(Debug, Clone, PartialEq)]
pub struct BehaviourTable {
    pub rows: Vec<(String, [usize; 3])>,
}

impl BehaviourTable {
    /// The share of behaviour `b` in row `r`; `None` for an empty row.
    pub fn share(&self, r: usize, b: usize) -> Option<f64> {
        let total: usize = self.rows[r].1.iter().sum();
        (total > 0).then(|| self.rows[r].1[b] as f64 / total as f64)
    }
}

#[derive(Debug, Clone)]
pub struct BehaviourPlot {
    pub table: BehaviourTable,
}

impl Plot for BehaviourPlot {
    fn name(&self) -> String {
        "behaviours".into()
    }

    fn size(&self) -> (u32, u32) {
        (800, 440)
    }

    fn draw<DB: DrawingBackend>(&self, area: &DrawingArea<DB, Shift>, style: &Style) -> DrawResult
    where
        DB::ErrorType: 'static,
    {
        let rows = &self.table.rows;
        let title = "Behaviours within each label";
        if rows.iter().all(|(_, counts)| counts.iter().all(|&c| c == 0)) {
            return no_data(area, style, title, "no non-special action to classify");
        }
        let (plot_area, legend_area) = area.split_horizontally(area.dim_in_pixel().0 - style.px(160.0));
        let y = Axis::linear(0.0, 1.0, 11).percent();
        let names: Vec<String> = rows.iter().map(|(label, counts)| format!("{label} (n={})", counts.iter().sum::<usize>())).collect();
        let mut chart = ChartBuilder::on(&plot_area)
            .caption(title, style.font(16.0))
            .margin(style.px(10.0))
            .x_label_area_size(style.px(40.0))
            .y_label_area_size(style.px(52.0))
            .build_cartesian_2d((0..rows.len().max(1) as i32 - 1).into_segmented(), y.coord())?;
        let formatter = |v: &SegmentValue<i32>| match v {
            SegmentValue::CenterOf(i) => names.get(*i as usize).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(GRID.mix(0.0))
            .bold_line_style(GRID)
            .y_desc("share of the label's actions")
            .label_style(style.font(12.0))
            .axis_desc_style(style.font(13.0))
            .x_label_formatter(&formatter)
            .y_label_formatter(&|v| y.label(*v))
            .draw()?;
        let inside = style.font(11.0).pos(Pos::new(HPos::Center, VPos::Center));
        for (r, (_, counts)) in rows.iter().enumerate() {
            if counts.iter().all(|&c| c == 0) {
                chart.draw_series(std::iter::once(Text::new(
                    "no actions".to_string(),
                    (SegmentValue::CenterOf(r as i32), 0.5),
                    inside.clone(),
                )))?;
                continue;
            }
            let mut bottom = 0.0;
            for (b, behaviour) in Behaviour::ALL.iter().enumerate() {
                let Some(share) = self.table.share(r, b) else { continue };
                if share <= 0.0 {
                    continue;
                }
                let top = bottom + share;
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(r as i32), bottom), (SegmentValue::Exact(r as i32 + 1), top)],
                    style.fill(behaviour_colour(*behaviour), 0.85),
                );
                bar.set_margin(0, 0, style.px(18.0), style.px(18.0));
                chart.draw_series(std::iter::once(bar))?;
                if share >= 0.06 {
                    chart.draw_series(std::iter::once(Text::new(
                        format!("{:.0}%", share * 100.0),
                        (SegmentValue::CenterOf(r as i32), bottom + share / 2.0),
                        inside.clone(),
                    )))?;
                }
                bottom = top;
            }
        }
        let entries: Vec<(String, Key)> =
            Behaviour::ALL.iter().map(|b| (b.as_str().to_string(), Key::Square(behaviour_colour(*b), 0.85))).collect();
        side_legend(&legend_area, style, 48.0, &entries)
    }
}
