//! Snapshots of the figures drawn from fixed data, so that a change in a
//! figure shows in review. The SVG is normalised: numbers are rounded to one
//! decimal (so that a last-digit change in text measurement or float
//! formatting does not flood the diff) and trailing whitespace is removed.
//! Tick labels are checked before that rounding (see `common::assert_honest`).

mod common;

use whence_report::behaviour::Behaviour;
use whence_report::figures::attribution::{CandidateBar, SharesPlot};
use whence_report::figures::behaviour::{BehaviourPlot, BehaviourTable};
use whence_report::figures::beta::BetaPlot;
use whence_report::figures::differences::DifferencesPlot;
use whence_report::figures::profile::{ProfileOptions, ProfilePlot};
use whence_report::figures::selection::{SelectionPlot, StrategyStats};
use whence_report::figures::trajectory::{ActionPoint, TrajectoryPlot};
use whence_report::load::{BetaSearchJson, BetaSettingsJson, BetaStepJson, PositionRow};
use whence_report::style::{render_png, render_svg, Plot};

fn normalise(svg: &str) -> String {
    let mut out = String::with_capacity(svg.len());
    let mut number = String::new();
    let flush = |number: &mut String, out: &mut String| {
        if number.contains('.') {
            match number.parse::<f64>() {
                Ok(x) => out.push_str(&format!("{x:.1}")),
                Err(_) => out.push_str(number),
            }
        } else {
            out.push_str(number);
        }
        number.clear();
    };
    let chars: Vec<char> = svg.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let decimal_point = c == '.' && !number.is_empty() && chars.get(i + 1).is_some_and(char::is_ascii_digit);
        if c.is_ascii_digit() || decimal_point {
            number.push(c);
        } else {
            flush(&mut number, &mut out);
            out.push(c);
        }
    }
    flush(&mut number, &mut out);
    out.lines().map(str::trim_end).collect::<Vec<_>>().join("\n")
}

fn check(plot: &impl Plot) -> String {
    let svg = render_svg(plot).unwrap();
    // Distinct tick labels on every axis, no NaN: see tests/common.
    common::assert_honest(&plot.name(), &svg);
    let png = render_png(plot, 1.0).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"));
    normalise(&svg)
}

fn action(p: [Option<f64>; 3], label: &str) -> ActionPoint {
    ActionPoint { p, label: label.into() }
}

#[test]
fn trajectory_figure() {
    let plot = TrajectoryPlot {
        id: "t<1>".into(),
        correct: Some(true),
        actions: vec![
            action([Some(0.9), Some(0.9), Some(0.95)], "shared"),
            action([Some(0.8), Some(0.2), Some(0.7)], "teacher"),
            action([Some(0.1), Some(0.6), Some(0.5)], "student"),
            action([None, Some(0.3), Some(0.4)], "unscored"),
            action([Some(0.4), Some(0.45), Some(0.9)], "boosted"),
            action([Some(0.7), Some(0.1), Some(0.6)], "teacher"),
        ],
    };
    let svg = check(&plot);
    // The id is escaped in the title.
    assert!(svg.contains("t&lt;1&gt;") && !svg.contains("t<1>"));
    insta::assert_snapshot!("trajectory", svg);
}

fn position(index: usize, n: [usize; 3], teacher: [f64; 3], marker: Option<u64>) -> PositionRow {
    let rest = |t: f64| [Some(t), Some((1.0 - t) * 0.2), Some((1.0 - t) * 0.5), Some((1.0 - t) * 0.3)];
    PositionRow { index, marker_tokens: marker, n, fractions: [rest(teacher[0]), rest(teacher[1]), rest(teacher[2])] }
}

#[test]
fn position_profile_figure() {
    let rows: Vec<PositionRow> = (0..12)
        .map(|j| {
            let n = 20usize.saturating_sub(j);
            let t = 0.2 + 0.03 * j as f64;
            position(j, [n, n / 2, n - n / 2], [t, t + 0.1, t - 0.1], (j == 6).then_some(4096))
        })
        .collect();
    let plot = ProfilePlot {
        name: "position-profile".into(),
        title: "profile".into(),
        rows,
        options: ProfileOptions { window: 3, min_count: 10 },
    };
    insta::assert_snapshot!("position_profile", check(&plot));
}

fn step(beta: f64, overlap: f64) -> BetaStepJson {
    BetaStepJson {
        beta,
        overlap,
        overlap_student_common: overlap * 0.4,
        overlap_common_teacher: overlap * 0.6,
        mean_common: 0.3,
        mean_teacher: 0.4,
        mean_student: 0.3,
        histogram_common: vec![0.0, 0.5, 0.5, 0.0],
        histogram_teacher: vec![0.0, 0.0, 0.25, 0.75],
        histogram_student: vec![0.5, 0.5, 0.0, 0.0],
    }
}

#[test]
fn beta_search_figure() {
    let plot = BetaPlot {
        name: "beta-search".into(),
        title: "β search".into(),
        search: BetaSearchJson {
            beta: 0.1,
            settings: BetaSettingsJson { stage: "after-distillation".into(), steps: 3, bins: 4 },
            trajectories: 4,
            steps: vec![step(0.05, 0.9), step(0.1, 0.5), step(0.15, 0.7)],
            stopped_early: false,
        },
    };
    insta::assert_snapshot!("beta_search", check(&plot));
}

#[test]
fn differences_figure() {
    let plot = DifferencesPlot {
        differences: [vec![-0.5, 0.0, 0.05, 0.3], vec![0.6, -0.2, 0.0, 0.15], vec![-0.9, 0.2, 0.2, 1.0]],
        alpha: 0.1,
        beta: 0.15,
    };
    insta::assert_snapshot!("differences", check(&plot));
}

#[test]
fn behaviour_figure() {
    assert_eq!(Behaviour::ALL.len(), 3);
    let plot = BehaviourPlot {
        table: BehaviourTable {
            rows: vec![
                ("teacher".into(), [6, 3, 1]),
                ("student".into(), [8, 1, 1]),
                ("shared".into(), [10, 0, 0]),
                ("boosted".into(), [0, 0, 0]),
            ],
        },
    };
    insta::assert_snapshot!("behaviours", check(&plot));
}

#[test]
fn selection_figure() {
    let stats = |name: &str, used: bool, shift: f64| StrategyStats {
        strategy: name.into(),
        used,
        kept_teacher: vec![4.0 + shift, 6.0 + shift, 5.0],
        dropped_teacher: vec![1.0, 2.0, 3.0, 2.0],
        kept_length: vec![20.0, 25.0 + shift],
        dropped_length: vec![12.0, 18.0, 15.0],
    };
    let plot = SelectionPlot {
        name: "selection".into(),
        title: "selection".into(),
        strategies: vec![stats("teacher-count", true, 2.0), stats("longest", false, 0.0)],
    };
    insta::assert_snapshot!("selection", check(&plot));
}

#[test]
fn attribution_figure() {
    let plot = SharesPlot {
        candidates: vec![
            CandidateBar { name: "r1".into(), rank: 1, beta: 0.1, shares: [0.4, 0.1, 0.3, 0.2], margin: Some(0.3) },
            CandidateBar { name: "oss".into(), rank: 2, beta: 0.15, shares: [0.1, 0.3, 0.4, 0.2], margin: Some(-0.2) },
        ],
    };
    insta::assert_snapshot!("attribution_shares", check(&plot));
}
