//! The report on small and degenerate runs: fewer responses than
//! `--min-count`, a β search whose overlaps are all equal, one trajectory of
//! one action, no actions at all, positions no response has scored, labels
//! with no action, values that are not numbers.
//!
//! Each run is computed with whence-core's own β search, labelling and
//! position profile, written as the files `whence trace` writes (the tables'
//! columns as whence-pipeline's `actions_table` and `positions_table` name
//! them), and read back by `build_report`, so the loader, the captions and
//! the figures are the ones a user gets. (whence-pipeline itself is not a
//! dependency: its scorers pull in the tokenizers crate.)
//!
//! Every figure is checked by [`common::assert_honest`] (distinct tick
//! labels, no NaN or ∞) and snapshotted as a summary of its words and tick
//! labels, which is what these cases are about.

mod common;

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use whence_core::beta::{search_beta, BetaSearchSettings, Stage};
use whence_core::profile::{position_profile, ProfileInput};
use whence_core::{ActionProbabilities, Label, LabelCounts, Threshold};
use whence_report::figures::attribution::{CandidateBar, ProfilesPlot, SharesPlot};
use whence_report::figures::beta::BetaPlot;
use whence_report::figures::differences::DifferencesPlot;
use whence_report::figures::profile::{ProfileOptions, ProfilePlot};
use whence_report::figures::selection::{SelectionPlot, StrategyStats};
use whence_report::figures::trajectory::{ActionPoint, TrajectoryPlot};
use whence_report::load::{BetaSearchJson, PositionRow};
use whence_report::style::{render_svg, Plot};
use whence_report::{build_report, Report, ReportOptions};

/// A fresh directory under the system's temporary directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!("whence-report-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One action: p_T, p_S, p_D (`None`: the model has no token on it).
type P = [Option<f64>; 3];

struct Response {
    id: String,
    correct: Option<bool>,
    actions: Vec<P>,
}

fn response(id: &str, correct: Option<bool>, actions: Vec<P>) -> Response {
    Response { id: id.into(), correct, actions }
}

fn p(teacher: f64, student: f64, distilled: f64) -> P {
    [Some(teacher), Some(student), Some(distilled)]
}

const UNSCORED: P = [None, Some(0.5), Some(0.5)];

/// A trace: the responses, α, and β (`None`: searched as `--beta auto`).
struct Trace {
    responses: Vec<Response>,
    alpha: f64,
    beta: Option<f64>,
}

fn probabilities(action: &P) -> Option<ActionProbabilities> {
    match *action {
        [Some(teacher), Some(student), Some(distilled)] => Some(ActionProbabilities { teacher, student, distilled: Some(distilled) }),
        _ => None,
    }
}

impl Trace {
    /// Labels, β search and position profile as whence-core computes them,
    /// written as `whence trace --format jsonl` writes its outputs.
    fn write(&self, dir: &Path) {
        let alpha = Threshold::new(self.alpha).unwrap();
        let scored: Vec<Vec<ActionProbabilities>> =
            self.responses.iter().map(|r| r.actions.iter().filter_map(probabilities).collect()).collect();
        let search = self.beta.is_none().then(|| search_beta(&scored, alpha, BetaSearchSettings::new(Stage::AfterDistillation)).unwrap());
        let beta = search.as_ref().map_or_else(|| Threshold::new(self.beta.unwrap()).unwrap(), |s| s.beta);
        let labels: Vec<Vec<Label>> = self
            .responses
            .iter()
            .map(|r| r.actions.iter().map(|a| probabilities(a).map_or(Label::Unscored, |p| p.classify(alpha, beta))).collect())
            .collect();

        let mut actions = String::new();
        for (r, labels) in self.responses.iter().zip(&labels) {
            for (j, (action, label)) in r.actions.iter().zip(labels).enumerate() {
                let row = json!({
                    "id": r.id, "correct": r.correct, "index": j, "special": false,
                    "text": format!("Step {j} of {}: we compute the next value.", r.id),
                    "tokens_teacher": action[0].map(|_| 10), "tokens_student": action[1].map(|_| 10), "tokens_distilled": action[2].map(|_| 10),
                    "p_teacher": action[0], "p_student": action[1], "p_distilled": action[2], "label": label.as_str(),
                });
                actions.push_str(&format!("{row}\n"));
            }
        }
        std::fs::write(dir.join("actions.jsonl"), actions).unwrap();

        let tokens: Vec<Vec<u32>> = self.responses.iter().map(|r| vec![10; r.actions.len()]).collect();
        let inputs: Vec<ProfileInput<'_>> = self
            .responses
            .iter()
            .zip(&labels)
            .zip(&tokens)
            .map(|((r, labels), tokens)| ProfileInput { labels, correct: r.correct, new_tokens: tokens })
            .collect();
        let profile = position_profile(&inputs, &Label::AFTER_DISTILLATION, 4096);
        let mut positions = String::new();
        for row in &profile.rows {
            let mut out = json!({
                "index": row.index, "trajectories": row.trajectories,
                "mean_cumulative_tokens": row.mean_cumulative_tokens, "marker_tokens": row.marker_tokens,
            });
            for (group, fractions) in [("all", &row.all), ("correct", &row.correct), ("incorrect", &row.incorrect)] {
                out[format!("n_{group}")] = json!(fractions.n);
                for (slot, label) in profile.labels.iter().enumerate() {
                    out[format!("{}_{group}", label.as_str())] = json!((fractions.n > 0).then(|| fractions.fractions[slot]));
                }
            }
            positions.push_str(&format!("{out}\n"));
        }
        std::fs::write(dir.join("positions.jsonl"), positions).unwrap();

        let counts = LabelCounts::of(labels.iter().flatten().copied());
        let total: usize = labels.iter().map(Vec::len).sum();
        let correctness = |want: Option<bool>| self.responses.iter().filter(|r| r.correct == want).count();
        let summary = json!({
            "whence_version": "test", "command": "trace",
            "input": {"path": "records.jsonl", "format": "jsonl"},
            "alpha": self.alpha, "beta": beta, "beta_mode": if search.is_some() { "auto" } else { "fixed" },
            "beta_search": search, "trajectories": self.responses.len(), "actions": total,
            "scored_actions": total - counts.unscored, "unscored_actions": counts.unscored, "label_counts": counts,
            "correctness": {"correct": correctness(Some(true)), "incorrect": correctness(Some(false)), "unknown": correctness(None)},
            "skipped_records": 0, "skipped": [], "token_markers": profile.markers, "models": {},
        });
        std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    }

    fn report(&self, name: &str, options: &ReportOptions) -> Report {
        let scratch = Scratch::new(name);
        self.write(&scratch.0);
        build_report(&scratch.0, options).unwrap()
    }
}

/// Every figure of the report checked, and summarised with its caption.
fn figures_summary(report: &Report) -> String {
    let mut out = String::new();
    for section in &report.sections {
        for figure in &section.figures {
            common::assert_honest(&figure.name, &figure.svg);
            out.push_str(&format!("## {}\ncaption: {}\n{}\n", figure.name, figure.caption, common::summary(&figure.svg)));
        }
    }
    out
}

fn figure<'a>(report: &'a Report, name: &str) -> &'a whence_report::figures::Figure {
    report.sections.iter().flat_map(|s| &s.figures).find(|f| f.name == name).unwrap_or_else(|| panic!("no figure {name}"))
}

fn ticks(svg: &str) -> Vec<Vec<String>> {
    common::axes(svg).into_iter().map(|t| t.labels).collect()
}

#[test]
fn fewer_responses_than_min_count() {
    let trace = Trace {
        responses: vec![
            response("a", Some(true), vec![p(0.9, 0.2, 0.8), p(0.5, 0.5, 0.5), p(0.2, 0.9, 0.3), p(0.9, 0.1, 0.9)]),
            response("b", Some(false), vec![p(0.3, 0.8, 0.4), p(0.6, 0.6, 0.6), p(0.9, 0.3, 0.9)]),
            response("c", Some(true), vec![p(0.7, 0.2, 0.6), p(0.1, 0.8, 0.2)]),
        ],
        alpha: 0.1,
        beta: None,
    };
    let report = trace.report("min-count", &ReportOptions { min_count: 10, ..ReportOptions::default() });
    let profile = figure(&report, "position-profile");
    // The counts below --min-count are said to be so, in the figure and its caption.
    assert!(profile.svg.contains("n = 10 (--min-count): no position reaches it; at most 3"), "{}", common::summary(&profile.svg));
    assert!(profile.caption.contains("no position has 10 responses (the most at any is 3)"), "{}", profile.caption);
    // The count axis is in whole responses and reaches the threshold.
    let axes = ticks(&profile.svg);
    let counts = axes.iter().find(|t| t.contains(&"10".to_string())).expect("a count axis up to 10");
    assert!(counts.iter().all(|l| l.parse::<u32>().is_ok()), "{counts:?}");
    insta::assert_snapshot!("fewer_than_min_count", figures_summary(&report));
}

#[test]
fn beta_search_with_equal_overlaps() {
    // In each response half the actions are far apart in p_T − p_S (teacher
    // or student at every β) and none is common: every β tried gives the
    // same labels, so every overlap is 0.
    let spread = || vec![p(0.95, 0.05, 0.9), p(0.05, 0.95, 0.1), p(0.9, 0.1, 0.85), p(0.1, 0.9, 0.15)];
    let trace =
        Trace { responses: (0..6).map(|i| response(&format!("r{i}"), Some(i % 2 == 0), spread())).collect(), alpha: 0.05, beta: None };
    let report = trace.report("equal-overlaps", &ReportOptions { min_count: 2, ..ReportOptions::default() });
    let beta = figure(&report, "beta-search");
    let axes = ticks(&beta.svg);
    // The overlap axis (the last y axis drawn) reads in hundredths, each label once.
    let overlap = common::axes(&beta.svg).into_iter().rev().find(|t| t.axis == 'y').unwrap().labels;
    assert_eq!(overlap.first().map(String::as_str), Some("0.00"), "{axes:?}");
    assert!(overlap.len() >= 4 && overlap.iter().all(|l| l.len() == 4), "{overlap:?}");
    insta::assert_snapshot!("equal_overlaps", figures_summary(&report));
}

#[test]
fn one_trajectory_of_one_action() {
    let trace = Trace { responses: vec![response("only", None, vec![p(0.8, 0.3, 0.7)])], alpha: 0.1, beta: None };
    let report = trace.report("one-action", &ReportOptions { min_count: 1, ..ReportOptions::default() });
    // One position and one action: one tick, 0, on the index axes.
    let profile = ticks(&figure(&report, "position-profile").svg);
    assert!(profile.contains(&vec!["0".to_string()]), "{profile:?}");
    let trajectory = ticks(&figure(&report, "trajectory-only").svg);
    assert!(trajectory.contains(&vec!["0".to_string()]), "{trajectory:?}");
    insta::assert_snapshot!("one_action", figures_summary(&report));
}

#[test]
fn a_run_without_actions() {
    let trace = Trace { responses: vec![response("empty", Some(true), vec![])], alpha: 0.1, beta: Some(0.15) };
    let report = trace.report("no-actions", &ReportOptions::default());
    let summary = figures_summary(&report);
    for (name, words) in [
        ("position-profile", "no action was scored:"),
        ("probability-differences", "no action is scored by all three models:"),
        ("behaviours", "no non-special action to classify"),
    ] {
        let svg = &figure(&report, name).svg;
        assert!(svg.contains(words), "{name} does not say why it is empty:\n{}", common::summary(svg));
        assert!(common::axes(svg).is_empty(), "{name} draws empty axes:\n{}", common::summary(svg));
    }
    let trajectories = report.sections.iter().find(|s| s.id == "trajectory-figures").unwrap();
    assert!(trajectories.figures.is_empty() && trajectories.intro.contains("no trajectory to draw"), "{}", trajectories.intro);
    insta::assert_snapshot!("no_actions", summary);
}

#[test]
fn unscored_positions_and_missing_labels() {
    // Action 1 is unscored in every response (no teacher token on it), and
    // no action is student or boosted.
    let responses = (0..4)
        .map(|i| response(&format!("u{i}"), Some(i < 2), vec![p(0.9, 0.2, 0.85), UNSCORED, p(0.6, 0.6, 0.6), p(0.8, 0.1, 0.8)]))
        .collect();
    let trace = Trace { responses, alpha: 0.1, beta: Some(0.2) };
    let report = trace.report("unscored", &ReportOptions { window: 1, min_count: 2, ..ReportOptions::default() });
    let behaviours = &figure(&report, "behaviours").svg;
    assert!(behaviours.contains("student (n=0)") && behaviours.contains("no actions"), "{}", common::summary(behaviours));
    insta::assert_snapshot!("unscored_positions", figures_summary(&report));
}

#[test]
fn a_single_beta_tried() {
    // Every action shared: the common share beats the teacher's at the
    // first β and the search stops there.
    let trace = Trace {
        responses: (0..3).map(|i| response(&format!("s{i}"), Some(true), vec![p(0.7, 0.7, 0.7), p(0.4, 0.42, 0.41)])).collect(),
        alpha: 0.1,
        beta: None,
    };
    let report = trace.report("single-beta", &ReportOptions { min_count: 2, ..ReportOptions::default() });
    let beta = &figure(&report, "beta-search").svg;
    let x = common::axes(beta).into_iter().rev().find(|t| t.axis == 'x').unwrap().labels;
    assert!(x.len() >= 2 && x.iter().any(|l| l == "0.050"), "the β axis around the one β tried: {x:?}");
    insta::assert_snapshot!("single_beta", figures_summary(&report));
}

fn svg_of(plot: &impl Plot) -> String {
    let svg = render_svg(plot).unwrap();
    common::assert_honest(&plot.name(), &svg);
    whence_report::style::render_png(plot, 1.0).unwrap();
    svg
}

#[test]
fn values_that_are_not_numbers() {
    // JSON cannot hold NaN or ∞, but figures are also drawn from values
    // computed in memory; none may reach the SVG or panic plotters.
    let mut search: BetaSearchJson = serde_json::from_value(json!({
        "beta": 0.1, "settings": {"stage": "after-distillation", "steps": 2, "bins": 2}, "trajectories": 2, "stopped_early": false,
        "steps": [
            {"beta": 0.05, "overlap": 0.5, "overlap_student_common": 0.2, "overlap_common_teacher": 0.3, "mean_common": 0.2,
             "mean_teacher": 0.5, "mean_student": 0.3, "histogram_common": [1.0, 0.0], "histogram_teacher": [0.5, 0.5], "histogram_student": [0.5, 0.5]},
            {"beta": 0.1, "overlap": 0.4, "overlap_student_common": 0.2, "overlap_common_teacher": 0.2, "mean_common": 0.2,
             "mean_teacher": 0.5, "mean_student": 0.3, "histogram_common": [1.0, 0.0], "histogram_teacher": [0.5, 0.5], "histogram_student": [0.5, 0.5]},
        ],
    }))
    .unwrap();
    search.steps[0].overlap = f64::NAN;
    search.steps[1].overlap_student_common = f64::INFINITY;
    search.steps[1].histogram_teacher[0] = f64::NAN;
    let beta = svg_of(&BetaPlot { name: "beta-nan".into(), title: "β search".into(), search });
    assert!(beta.contains("O = n/a"), "{}", common::summary(&beta));

    let differences = svg_of(&DifferencesPlot {
        differences: [vec![0.1, f64::NAN, -0.2], vec![f64::INFINITY, 0.3], vec![0.0]],
        alpha: f64::NAN,
        beta: 0.1,
    });
    let trajectory = svg_of(&TrajectoryPlot {
        id: "nan".into(),
        correct: Some(false),
        actions: vec![
            ActionPoint { p: [Some(f64::NAN), Some(0.5), Some(0.4)], label: "student".into() },
            ActionPoint { p: [Some(0.9), Some(f64::NEG_INFINITY), Some(0.8)], label: "teacher".into() },
        ],
    });
    let row = |index: usize, teacher: f64| PositionRow {
        index,
        marker_tokens: None,
        n: [5, 0, 0],
        fractions: [[Some(teacher), Some(0.2), Some(0.1), Some(0.1)], [None; 4], [None; 4]],
    };
    let profile = svg_of(&ProfilePlot {
        name: "profile-nan".into(),
        title: "profile".into(),
        rows: vec![row(0, 0.6), row(1, f64::NAN), row(2, 0.5)],
        options: ProfileOptions { window: 1, min_count: 2 },
    });
    let selection = svg_of(&SelectionPlot {
        name: "selection-nan".into(),
        title: "selection".into(),
        strategies: vec![StrategyStats {
            strategy: "longest".into(),
            used: true,
            kept_teacher: vec![f64::NAN, 2.0],
            dropped_teacher: vec![1.0],
            kept_length: vec![f64::INFINITY, 3.0],
            dropped_length: vec![2.0],
        }],
    });
    let shares = svg_of(&SharesPlot {
        candidates: vec![CandidateBar { name: "x".into(), rank: 1, beta: 0.1, shares: [0.5, f64::NAN, 0.3, 0.2], margin: Some(f64::NAN) }],
    });
    assert!(shares.contains("margin n/a"), "{}", common::summary(&shares));
    let summary = [
        ("beta", &beta),
        ("differences", &differences),
        ("trajectory", &trajectory),
        ("profile", &profile),
        ("selection", &selection),
        ("shares", &shares),
    ]
    .iter()
    .map(|(name, svg)| format!("## {name}\n{}", common::summary(svg)))
    .collect::<Vec<_>>()
    .join("\n");
    insta::assert_snapshot!("not_numbers", summary);
}

#[test]
fn figures_without_data_say_so() {
    let empty_search: BetaSearchJson = serde_json::from_value(json!({
        "beta": 0.05, "settings": {"stage": "before-training", "steps": 0, "bins": 20}, "trajectories": 0, "steps": [], "stopped_early": false,
    }))
    .unwrap();
    let cases: Vec<(String, String)> = vec![
        ("beta".into(), svg_of(&BetaPlot { name: "beta-empty".into(), title: "β search".into(), search: empty_search })),
        (
            "selection".into(),
            svg_of(&SelectionPlot {
                name: "selection-empty".into(),
                title: "selection".into(),
                strategies: vec![StrategyStats {
                    strategy: "longest".into(),
                    used: true,
                    kept_teacher: vec![],
                    dropped_teacher: vec![],
                    kept_length: vec![],
                    dropped_length: vec![],
                }],
            }),
        ),
        ("shares".into(), svg_of(&SharesPlot { candidates: vec![] })),
        ("profiles".into(), svg_of(&ProfilesPlot { candidates: vec![], options: ProfileOptions { window: 5, min_count: 10 } })),
        ("trajectory".into(), svg_of(&TrajectoryPlot { id: "none".into(), correct: None, actions: vec![] })),
    ];
    let mut summary = String::new();
    for (name, svg) in &cases {
        assert!(common::axes(svg).is_empty(), "{name} draws empty axes:\n{}", common::summary(svg));
        summary.push_str(&format!("## {name}\n{}\n", common::summary(svg)));
    }
    insta::assert_snapshot!("without_data", summary);
}

#[test]
fn a_summary_with_null_for_a_number_names_the_file() {
    // What a NaN becomes in JSON: `null`. The report refuses it with the
    // file and position, rather than drawing a made-up value.
    let scratch = Scratch::new("null");
    Trace { responses: vec![response("a", Some(true), vec![p(0.9, 0.2, 0.8)])], alpha: 0.1, beta: None }.write(&scratch.0);
    let path = scratch.0.join("summary.json");
    let mut summary: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    summary["beta_search"]["steps"][0]["overlap"] = Value::Null;
    std::fs::write(&path, serde_json::to_string_pretty(&summary).unwrap()).unwrap();
    let error = whence_report::write_report(&scratch.0, &ReportOptions::default()).unwrap_err().to_string();
    assert!(error.contains("summary.json") && error.contains("null") && error.contains("line"), "{error}");
    assert!(!std::fs::exists(scratch.0.join("report")).unwrap(), "nothing is written for a refused input");
}

#[test]
fn a_demo_without_experiment_says_so() {
    let demo: whence_world::summary::DemoSummary = serde_json::from_value(json!({
        "whence_version": "test", "command": "demo", "preset": "tiny",
        "world": {"seed": 1, "pretrain_questions": 1, "train_questions": 1, "heldout_questions": 1, "student_error_rate": 0.3},
        "models": [], "accuracy": [], "sample_origins": [], "beta": 0.1, "labels": LabelCounts::default(),
        "ground_truth": {"sentences": 0, "by_origin": [], "by_family": [], "teacher_only_labelled_teacher": null, "student_only_labelled_student": null},
        "ground_truth_by_source": [], "attribution": [], "experiment": null,
    }))
    .unwrap();
    let html = whence_report::html::demo_experiment(demo.experiment.as_ref());
    assert!(html.contains("No experiment ran (<code>whence demo --experiment</code>"), "{html}");
    let html = whence_report::html::demo_overview(&demo) + &whence_report::html::demo_correctness(&demo.correctness);
    assert!(html.contains("no correctness analysis"), "{html}");
    assert!(!html.contains("NaN"), "{html}");
}
