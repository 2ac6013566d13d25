//! Numeric axes whose tick labels can be told apart.
//!
//! Plotters chooses round tick positions (1, 2, 5 × 10^k apart) for a range;
//! the labels of those ticks are written here with as many decimals as the
//! step needs, no more and no fewer, so that a tiny range (all overlaps of a
//! β search equal) reads `0.00 0.02 0.04 …` rather than `0.0 0.0 0.0 0.1 …`.
//! An empty range (a flat series, one β tried) is padded around its value;
//! a range that is not finite falls back to `0..1`. Count and index axes
//! ([`Axis::whole`]) keep only whole-number ticks.

use std::ops::Range;

use plotters::coord::ranged1d::{BoldPoints, DefaultFormatting, KeyPointHint, Ranged};
use plotters::coord::types::RangedCoordf64;

/// How a tick value is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Plain,
    /// `0.25` as `25%`.
    Percent,
}

/// One numeric axis: its range, its ticks and how their labels are written.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    range: Range<f64>,
    ticks: Vec<f64>,
    decimals: usize,
    unit: Unit,
}

/// The most decimals a label gets.
const MAX_DECIMALS: usize = 9;

/// `lo..hi` made drawable: finite, in order, and not empty. An empty range
/// is widened to the round numbers around its value (0.15 → 0.05..0.25,
/// 3 → 2..4, 0 → −1..1).
pub fn padded(lo: f64, hi: f64) -> Range<f64> {
    if !lo.is_finite() || !hi.is_finite() {
        return 0.0..1.0;
    }
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    let width = hi - lo;
    let centre = (lo + hi) / 2.0;
    if width > centre.abs() * 1e-9 && width > f64::MIN_POSITIVE * 1e6 {
        return lo..hi;
    }
    let half = if centre == 0.0 { 1.0 } else { 10f64.powf(centre.abs().log10().floor()) };
    (centre - half)..(centre + half)
}

/// The fewest decimals (up to [`MAX_DECIMALS`]) at which every tick is
/// written exactly; failing that, the fewest at which their labels differ.
fn decimals_for(ticks: &[f64], scale: f64) -> usize {
    let step = ticks.windows(2).map(|w| (w[1] - w[0]).abs()).filter(|s| *s > 0.0).fold(f64::INFINITY, f64::min);
    let tolerance = if step.is_finite() { step * 1e-6 } else { ticks.iter().map(|t| t.abs()).fold(0.0, f64::max) * 1e-9 };
    let exact = (0..=MAX_DECIMALS).find(|&d| {
        let power = 10f64.powi(d as i32);
        ticks.iter().all(|t| ((t * scale * power).round() / power - t * scale).abs() <= tolerance * scale.abs().max(1e-300))
    });
    exact.unwrap_or_else(|| {
        (0..=MAX_DECIMALS + 3)
            .find(|&d| {
                let labels: Vec<String> = ticks.iter().map(|t| format!("{:.*}", d, t * scale)).collect();
                labels.iter().enumerate().all(|(i, l)| !labels[..i].contains(l))
            })
            .unwrap_or(MAX_DECIMALS + 3)
    })
}

impl Axis {
    /// `lo..hi` (padded when empty, see [`padded`]) with at most `count`
    /// ticks where plotters puts them.
    pub fn linear(lo: f64, hi: f64, count: usize) -> Axis {
        let range = padded(lo, hi);
        let ticks = RangedCoordf64::from(range.clone()).key_points(BoldPoints(count));
        let decimals = decimals_for(&ticks, 1.0);
        Axis { range, ticks, decimals, unit: Unit::Plain }
    }

    /// Like [`Axis::linear`], with ticks at whole numbers only: for counts
    /// and action indices, where 0.5 of a response means nothing.
    pub fn whole(lo: f64, hi: f64, count: usize) -> Axis {
        let mut axis = Axis::linear(lo, hi, count);
        let whole: Vec<f64> = axis.ticks.iter().copied().filter(|t| (t - t.round()).abs() < 1e-9).map(f64::round).collect();
        if !whole.is_empty() {
            axis.ticks = whole;
            axis.decimals = 0;
        }
        axis
    }

    /// Ticks at 0, 1, …, `rows − 1` over `−0.5..rows − 0.5`: one per row of
    /// a chart whose rows are named (the labels come from the chart).
    pub fn rows(rows: usize) -> Axis {
        let rows = rows.max(1);
        Axis { range: -0.5..(rows as f64 - 0.5), ticks: (0..rows).map(|r| r as f64).collect(), decimals: 0, unit: Unit::Plain }
    }

    /// Labels as percentages: 0.25 → `25%`.
    pub fn percent(mut self) -> Axis {
        self.unit = Unit::Percent;
        self.decimals = decimals_for(&self.ticks, 100.0);
        self
    }

    /// No ticks or grid lines along this axis (a panel whose twin below
    /// carries them).
    pub fn without_ticks(mut self) -> Axis {
        self.ticks.clear();
        self
    }

    pub fn range(&self) -> Range<f64> {
        self.range.clone()
    }

    pub fn start(&self) -> f64 {
        self.range.start
    }

    pub fn end(&self) -> f64 {
        self.range.end
    }

    pub fn ticks(&self) -> &[f64] {
        &self.ticks
    }

    /// The label of the tick at `value`.
    pub fn label(&self, value: f64) -> String {
        let (value, suffix) = match self.unit {
            Unit::Plain => (value, ""),
            Unit::Percent => (value * 100.0, "%"),
        };
        let text = format!("{:.*}{suffix}", self.decimals, value);
        // −0.0 rounds to "-0.00": a tick at zero reads 0.
        if text.starts_with('-') && text[1..].chars().all(|c| c == '0' || c == '.' || c == '%') {
            text[1..].to_string()
        } else {
            text
        }
    }

    /// Every tick's label, in order.
    pub fn labels(&self) -> Vec<String> {
        self.ticks.iter().map(|&t| self.label(t)).collect()
    }

    /// The plotters coordinate: this range with exactly these ticks.
    pub fn coord(&self) -> AxisCoord {
        AxisCoord { inner: RangedCoordf64::from(self.range.clone()), ticks: self.ticks.clone() }
    }
}

/// An [`Axis`] as a plotters coordinate: plotters' own `f64` mapping, with
/// the axis's ticks as the bold key points and no light ones. (Plotters'
/// `WithKeyPoints` does the same but leaves the mesh without a formatter.)
#[derive(Clone)]
pub struct AxisCoord {
    inner: RangedCoordf64,
    ticks: Vec<f64>,
}

impl Ranged for AxisCoord {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.inner.range()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distinct(labels: &[String]) -> bool {
        labels.iter().enumerate().all(|(i, l)| !labels[..i].contains(l))
    }

    #[test]
    fn tiny_ranges_get_enough_decimals() {
        // The overlap axis of a β search whose overlaps are all 0: 0..0.11.
        let axis = Axis::linear(0.0, 0.11, 11);
        let labels = axis.labels();
        assert!(distinct(&labels), "{labels:?}");
        assert_eq!(labels.first().map(String::as_str), Some("0.00"));
        assert!(labels.contains(&"0.10".to_string()), "{labels:?}");
        // A wide range keeps whole numbers.
        assert_eq!(Axis::linear(0.0, 50.0, 6).labels(), ["0", "10", "20", "30", "40", "50"]);
    }

    #[test]
    fn labels_are_distinct_over_many_ranges() {
        for hi in [1e-7, 3e-4, 0.011, 0.055, 0.11, 0.165, 0.2, 0.99, 1.0, 1.05, 2.5, 7.0, 10.5, 333.0, 12345.0] {
            for lo in [0.0, hi * 0.5, hi * 0.999, -hi] {
                for count in [2, 3, 4, 5, 11] {
                    for axis in [Axis::linear(lo, hi, count), Axis::whole(lo, hi, count), Axis::linear(lo, hi, count).percent()] {
                        let labels = axis.labels();
                        assert!(distinct(&labels), "{lo}..{hi} ({count} ticks): {labels:?}");
                        assert!(labels.iter().all(|l| l.len() <= 14), "{lo}..{hi}: {labels:?}");
                        let slack = (axis.end() - axis.start()) * 1e-9;
                        assert!(
                            axis.ticks().iter().all(|t| *t >= axis.start() - slack && *t <= axis.end() + slack),
                            "{lo}..{hi}: {:?} outside {:?}",
                            axis.ticks(),
                            axis.range()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn flat_and_broken_ranges_are_padded() {
        let around = padded(0.15, 0.15);
        assert!((around.start - 0.05).abs() < 1e-12 && (around.end - 0.25).abs() < 1e-12, "{around:?}");
        assert_eq!(padded(3.0, 3.0), 2.0..4.0);
        assert_eq!(padded(0.0, 0.0), -1.0..1.0);
        assert_eq!(padded(f64::NAN, 1.0), 0.0..1.0);
        assert_eq!(padded(0.0, f64::INFINITY), 0.0..1.0);
        assert_eq!(padded(2.0, 1.0), 1.0..2.0);
        let axis = Axis::linear(0.05, 0.05, 5);
        assert!(axis.labels().len() >= 2 && distinct(&axis.labels()), "{:?}", axis.labels());
    }

    #[test]
    fn whole_axes_have_whole_ticks() {
        // One position: 0..1 would otherwise read 0, 0.1, …
        assert_eq!(Axis::whole(0.0, 1.0, 11).labels(), ["0", "1"]);
        // Counts of one to three responses.
        for n in 1..40 {
            let axis = Axis::whole(0.0, n as f64 * 1.05, 3);
            assert!(axis.ticks().iter().all(|t| t.fract() == 0.0) && distinct(&axis.labels()), "{n}: {:?}", axis.labels());
            assert!(axis.ticks().len() >= 2, "{n}: {:?}", axis.labels());
        }
        assert_eq!(Axis::whole(-0.5, 0.5, 11).labels(), ["0"]);
        assert_eq!(Axis::rows(3).labels(), ["0", "1", "2"]);
    }

    #[test]
    fn percent_and_negative_zero() {
        assert_eq!(Axis::linear(0.0, 1.0, 6).percent().labels(), ["0%", "20%", "40%", "60%", "80%", "100%"]);
        let axis = Axis::linear(-1.0, 1.0, 5);
        assert_eq!(axis.labels(), ["-1.0", "-0.5", "0.0", "0.5", "1.0"]);
        assert_eq!(axis.label(-0.0), "0.0");
    }
}
