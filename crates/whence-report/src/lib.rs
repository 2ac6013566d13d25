//! `whence report`: the figures and the HTML report of a `whence` run.
//!
//! Reads what `whence trace`, `select` and `attribute` wrote (SPEC §9), draws
//! the paper's figures with plotters, and writes `report/index.html` — one
//! self-contained file (inline SVG, CSS and a little JavaScript, no network)
//! — plus every figure as SVG and PNG under `report/figures/`.
//!
//! - [`load`]: finding and reading a run's outputs (Parquet or JSONL);
//! - [`figures`]: one module per figure kind, all drawn by the same code to
//!   SVG and PNG ([`style`]: palette, fonts, rendering);
//! - [`behaviour`]: the keyword lexicon for execution / reflection / transition;
//! - [`html`]: the page: escaping, the embedded data, the trajectory browser.
//!
//! Model output is untrusted: every text reaches the page either escaped as
//! HTML or as JSON with `<`, `>` and `&` escaped, and is put into the DOM by
//! the script only through `textContent`; a Content-Security-Policy allows
//! only the page's own script (by hash) and no network access.

pub mod behaviour;
mod error;
pub mod figures;
pub mod html;
pub mod load;
pub mod style;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use whence_core::select::choose;
use whence_core::{CandidateCounts, Strategy};

pub use error::ReportError;
use figures::attribution::{CandidateBar, ProfilesPlot, SharesPlot};
use figures::behaviour::{BehaviourPlot, BehaviourTable};
use figures::beta::BetaPlot;
use figures::differences::DifferencesPlot;
use figures::experiment::ExperimentPlot;
use figures::profile::{ProfileOptions, ProfilePlot};
use figures::selection::{SelectionPlot, StrategyStats};
use figures::trajectory::{ActionPoint, TrajectoryPlot};
use figures::{file_safe, render, Figure};
use load::{ActionRow, AttributeRun, Run, SelectRun, TraceRun};
use whence_world::summary::DemoSummary;

/// How the report is made.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Output directory; default `DIR/report` (or `report/` beside a file).
    pub out: Option<PathBuf>,
    /// Width of the position profile's moving window, in positions.
    pub window: usize,
    /// The position profile's x axis ends where fewer responses remain.
    pub min_count: usize,
    /// Trajectories drawn as figure files (paper Fig. 2); default the first.
    pub trajectories: Vec<String>,
    /// Bytes of per-trajectory data (texts, probabilities) embedded in the
    /// page for the trajectory browser; trajectories past it are left out.
    pub embed_limit: usize,
    /// PNG size relative to the SVG's.
    pub png_scale: f64,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions { out: None, window: 5, min_count: 10, trajectories: Vec::new(), embed_limit: 20_000_000, png_scale: 2.0 }
    }
}

/// One trajectory of a trace, its actions in order.
#[derive(Debug, Clone)]
pub struct Trajectory<'a> {
    pub id: &'a str,
    pub correct: Option<bool>,
    pub actions: &'a [ActionRow],
}

/// The trace's actions grouped by trajectory (rows of one response are
/// contiguous and in order in `actions.*`).
pub fn trajectories(actions: &[ActionRow]) -> Vec<Trajectory<'_>> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=actions.len() {
        if i == actions.len() || actions[i].id != actions[start].id || actions[i].index == 0 {
            if start < i {
                out.push(Trajectory { id: &actions[start].id, correct: actions[start].correct, actions: &actions[start..i] });
            }
            start = i;
        }
    }
    out
}

/// A section of the report: a title, figures and HTML around them.
#[derive(Debug, Clone)]
pub struct Section {
    pub id: String,
    pub title: String,
    /// Escaped HTML before the figures.
    pub intro: String,
    pub figures: Vec<Figure>,
    /// Escaped HTML after the figures.
    pub outro: String,
}

/// A report, computed and ready to write.
#[derive(Debug, Clone)]
pub struct Report {
    pub title: String,
    pub sections: Vec<Section>,
    /// The trajectory browser's data (JSON), when the run has actions.
    pub browser: Option<html::BrowserData>,
}

/// What [`write_report`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub dir: PathBuf,
    pub index: PathBuf,
    pub files: Vec<PathBuf>,
    pub index_bytes: usize,
    pub trajectories_embedded: usize,
    pub trajectories_total: usize,
}

fn trajectory_plot(t: &Trajectory<'_>) -> TrajectoryPlot {
    TrajectoryPlot {
        id: t.id.to_string(),
        correct: t.correct,
        actions: t.actions.iter().map(|a| ActionPoint { p: [a.p_teacher, a.p_student, a.p_distilled], label: a.label.clone() }).collect(),
    }
}

/// `text` with its first letter in upper case.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| first.to_uppercase().chain(chars).collect())
}

/// Behaviour counts per label over a trace's non-special actions.
pub fn behaviour_table(actions: &[ActionRow]) -> BehaviourTable {
    let mut rows: Vec<(String, [usize; 3])> = style::LABELS.iter().map(|l| (l.to_string(), [0; 3])).collect();
    for action in actions {
        let Some(behaviour) = behaviour::classify(&action.text, action.special) else { continue };
        if let Some(row) = rows.iter_mut().find(|(l, _)| *l == action.label) {
            let slot = behaviour::Behaviour::ALL.iter().position(|b| *b == behaviour).expect("one of ALL");
            row.1[slot] += 1;
        }
    }
    BehaviourTable { rows }
}

fn trace_sections(run: &TraceRun, options: &ReportOptions) -> Result<(Vec<Section>, html::BrowserData), ReportError> {
    let s = &run.summary;
    let mut sections = vec![Section {
        id: "trace-overview".into(),
        title: "Trace: overview".into(),
        intro: html::trace_overview(s),
        figures: vec![],
        outro: String::new(),
    }];

    let profile = ProfilePlot {
        name: "position-profile".into(),
        title: format!("Label fractions by action position (window {}, n ≥ {})", options.window, options.min_count),
        rows: run.positions.clone(),
        options: ProfileOptions { window: options.window, min_count: options.min_count },
    };
    let split = figures::profile::split_by_correctness(&run.positions);
    let caption = if figures::profile::extent(&run.positions, options.min_count) == figures::profile::Extent::Empty {
        format!("{}.", capitalised(&figures::profile::extent_note(&run.positions, options.min_count)))
    } else {
        format!(
        "At each action index j, the fraction of each label among the responses whose action j is scored; {}. Smoothed with a centred moving window of {} positions, pooled by count (Σ f·n / Σ n). The lower panel shows n_j, the responses behind each point; {}. Dotted lines mark where the mean response reaches each multiple of the marker spacing in distilled-model tokens.",
        if split { "solid lines are correct responses, dashed incorrect ones" } else { "all responses (correctness is not known for both groups)" },
        options.window,
        figures::profile::extent_note(&run.positions, options.min_count)
    )
    };
    sections.push(Section {
        id: "profile".into(),
        title: "Position profile".into(),
        intro: String::new(),
        figures: vec![render(&profile, "Position profile (paper Fig. 3, 4)", caption, options.png_scale)?],
        outro: String::new(),
    });

    let mut beta_figures = Vec::new();
    let beta_intro = match &s.beta_search {
        Some(search) => {
            let plot = BetaPlot { name: "beta-search".into(), title: "β search after distillation".into(), search: search.clone() };
            let caption = format!(
                "For each β tried, the histograms ({} bins) of the per-trajectory proportions of teacher, student and common (shared + boosted) actions over {}; the chosen β = {} minimises the overlap O(β){}.",
                search.settings.bins,
                figures::counted(search.trajectories, "trajectory"),
                search.beta,
                if search.stopped_early { "; the search stopped early when the mean common proportion exceeded the mean teacher proportion" } else { "" }
            );
            beta_figures.push(render(&plot, "β search (paper Fig. 8, 9)", caption, options.png_scale)?);
            String::new()
        }
        None => format!("<p>β was fixed at {} (no search ran).</p>", s.beta),
    };
    sections.push(Section { id: "beta".into(), title: "β search".into(), intro: beta_intro, figures: beta_figures, outro: String::new() });

    let mut differences: [Vec<f64>; 3] = Default::default();
    for a in &run.actions {
        if let (Some(t), Some(st), Some(d)) = (a.p_teacher, a.p_student, a.p_distilled) {
            differences[0].push(t - d);
            differences[1].push(t - st);
            differences[2].push(st - d);
        }
    }
    let plot = DifferencesPlot { differences, alpha: s.alpha, beta: s.beta };
    sections.push(Section {
        id: "differences".into(),
        title: "Probability differences".into(),
        intro: String::new(),
        figures: vec![render(
            &plot,
            "Distributions of probability differences (paper Fig. 12)",
            format!(
                "Histograms ({} bins over [−1, 1]) of the differences between the models' action probabilities over all scored actions.",
                figures::differences::BINS
            ),
            options.png_scale,
        )?],
        outro: String::new(),
    });

    let table = behaviour_table(&run.actions);
    sections.push(Section {
        id: "behaviours".into(),
        title: "Behaviours".into(),
        intro: html::behaviour_intro(),
        figures: vec![render(
            &BehaviourPlot { table: table.clone() },
            "Behaviour categories within each label (paper Fig. 10)",
            "Each non-special action is classified by the keyword lexicon below (transition phrases first, then reflection, else execution); bars show the share of each behaviour among the label's actions, n the number of actions.".into(),
            options.png_scale,
        )?],
        outro: html::behaviour_table(&table),
    });

    let all = trajectories(&run.actions);
    let ids: Vec<String> = if options.trajectories.is_empty() {
        all.first().map(|t| t.id.to_string()).into_iter().collect()
    } else {
        options.trajectories.clone()
    };
    let by_id: HashMap<&str, &Trajectory<'_>> = all.iter().map(|t| (t.id, t)).collect();
    let mut trajectory_figures = Vec::new();
    for id in &ids {
        let t = by_id.get(id.as_str()).ok_or_else(|| ReportError::UnknownTrajectory { id: id.clone(), path: run.dir.clone() })?;
        trajectory_figures.push(render(
            &trajectory_plot(t),
            &format!("Trajectory {id} (paper Fig. 2)"),
            "Probability of each action under the teacher (p_T), the student (p_S) and the distilled model (p_D), the geometric mean of its token probabilities; background bands show each action's label. Gaps are actions a model has no token on.".into(),
            options.png_scale,
        )?);
    }
    sections.push(Section {
        id: "trajectory-figures".into(),
        title: "Trajectory figures".into(),
        intro: if all.is_empty() {
            "<p>The trace has no actions, so there is no trajectory to draw.</p>".into()
        } else {
            "<p>Figure files for chosen trajectories (<code>--trajectory ID</code>, default the first). Every trajectory can be browsed below.</p>".into()
        },
        figures: trajectory_figures,
        outro: String::new(),
    });
    let browser = html::browser_data(&all, options.embed_limit);
    Ok((sections, browser))
}

/// Per strategy, the teacher counts and lengths of the responses it keeps
/// and drops, and how many questions' choices agree with the run's.
pub fn strategy_stats(run: &SelectRun) -> (Vec<StrategyStats>, usize) {
    let s = &run.summary;
    let seed = s.seed.unwrap_or(0);
    let mut agree = 0;
    let stats = Strategy::ALL
        .iter()
        .map(|&strategy| {
            let used = strategy.as_str() == s.strategy;
            let mut stats = StrategyStats {
                strategy: strategy.as_str().to_string(),
                used,
                kept_teacher: vec![],
                dropped_teacher: vec![],
                kept_length: vec![],
                dropped_length: vec![],
            };
            for q in &s.per_question {
                if q.candidates.is_empty() {
                    continue;
                }
                let counts: Vec<CandidateCounts> = q
                    .candidates
                    .iter()
                    .map(|c| CandidateCounts {
                        actions: c.actions,
                        teacher: c.teacher,
                        student: c.student,
                        common: c.common,
                        unscored: c.unscored,
                        student_mean_logprob: c.student_mean_logprob,
                    })
                    .collect();
                let kept = choose(strategy, &counts, &q.question_id, seed);
                if used && q.candidates[kept].id == q.kept {
                    agree += 1;
                }
                for (i, c) in q.candidates.iter().enumerate() {
                    let (teacher, length) = if i == kept {
                        (&mut stats.kept_teacher, &mut stats.kept_length)
                    } else {
                        (&mut stats.dropped_teacher, &mut stats.dropped_length)
                    };
                    teacher.push(c.teacher as f64);
                    length.push(c.actions as f64);
                }
            }
            stats
        })
        .collect();
    (stats, agree)
}

fn select_sections(run: &SelectRun, n: usize, options: &ReportOptions) -> Result<Vec<Section>, ReportError> {
    let s = &run.summary;
    let suffix = if n > 1 { format!("-{}", file_safe(&run.path.file_name().unwrap_or_default().to_string_lossy())) } else { String::new() };
    let mut figs = Vec::new();
    if let Some(search) = &s.beta_search {
        let plot =
            BetaPlot { name: format!("select-beta-search{suffix}"), title: "β search before training".into(), search: search.clone() };
        let caption = format!(
            "Before training, actions are teacher, student or common by p_T − p_S alone. For each β tried, the histograms of the per-response proportions over {}; the chosen β = {} minimises the overlap.",
            figures::counted(search.trajectories, "response"),
            search.beta
        );
        figs.push(render(&plot, "β search for selection (paper Fig. 6)", caption, options.png_scale)?);
    }
    let (stats, agree) = strategy_stats(run);
    let plot = SelectionPlot {
        name: format!("selection{suffix}"),
        title: "Kept against dropped responses per strategy".into(),
        strategies: stats.clone(),
    };
    figs.push(render(
        &plot,
        "Selection strategies: kept against dropped responses",
        format!(
            "For each strategy, the responses it keeps (one per question) against those it drops, from the candidates' counts in the summary (β = {}); `random` is drawn with seed {}. Box: quartiles; line: median; whiskers: minimum and maximum; dot: mean.",
            s.beta,
            s.seed.unwrap_or(0)
        ),
        options.png_scale,
    )?);
    Ok(vec![Section {
        id: format!("select{suffix}"),
        title: format!("Selection: {}", run.path.display()),
        intro: html::select_overview(s, &run.path, agree),
        figures: figs,
        outro: html::strategy_table(&stats),
    }])
}

fn attribute_sections(run: &AttributeRun, options: &ReportOptions) -> Result<Vec<Section>, ReportError> {
    let s = &run.summary;
    let mut ordered: Vec<_> = s.candidates.iter().collect();
    ordered.sort_by_key(|c| c.rank);
    let bars = SharesPlot {
        candidates: ordered
            .iter()
            .map(|c| CandidateBar {
                name: c.name.clone(),
                rank: c.rank,
                beta: c.beta,
                shares: [c.teacher_share, c.student_share, c.shared_share, c.boosted_share].map(|x| x.unwrap_or(0.0)),
                margin: c.margin,
            })
            .collect(),
    };
    let profiles = ProfilesPlot {
        candidates: ordered
            .iter()
            .filter_map(|c| run.profiles.iter().find(|(n, _)| *n == c.name).map(|(n, rows)| (n.clone(), c.rank, rows.clone())))
            .collect(),
        options: ProfileOptions { window: options.window, min_count: options.min_count },
    };
    let mut figs = vec![
        render(
            &bars,
            "Candidate teachers: label shares",
            format!(
                "Each candidate plays the teacher in a full labelling of the same {} responses; ranked by {}.",
                s.trajectories, s.ranking_statistic
            ),
            options.png_scale,
        )?,
        render(
            &profiles,
            "Candidate teachers: position profiles (paper Fig. 13, 14)",
            format!(
                "Each candidate's position profile, smoothed over {} positions, axis cut at n ≥ {}{}.",
                options.window,
                options.min_count,
                match run.profiles.first() {
                    Some((_, rows))
                        if !matches!(figures::profile::extent(rows, options.min_count), figures::profile::Extent::Cut { .. }) =>
                        format!("; {}", figures::profile::extent_note(rows, options.min_count)),
                    _ => String::new(),
                }
            ),
            options.png_scale,
        )?,
    ];
    for c in &ordered {
        if let Some(search) = &c.beta_search {
            let plot = BetaPlot {
                name: format!("beta-search-{}", file_safe(&c.name)),
                title: format!("β search with candidate {}", c.name),
                search: search.clone(),
            };
            figs.push(render(
                &plot,
                &format!("β search: candidate {}", c.name),
                format!("The β search with {} as the teacher.", c.name),
                options.png_scale,
            )?);
        }
    }
    Ok(vec![Section {
        id: "attribute".into(),
        title: "Attribution: candidate teachers".into(),
        intro: html::attribute_overview(s),
        figures: figs,
        outro: String::new(),
    }])
}

/// The sections of `demo.json`: the world against its ground truth, the
/// correctness analysis with its position profile (paper Fig. 3), and the
/// experiment with its figure.
fn demo_sections(demo: &DemoSummary, options: &ReportOptions) -> Result<Vec<Section>, ReportError> {
    let mut sections = vec![Section {
        id: "demo".into(),
        title: "Demo: the distillation world against its ground truth".into(),
        intro: html::demo_overview(demo),
        figures: Vec::new(),
        outro: String::new(),
    }];

    let c = &demo.correctness;
    let rows = figures::profile::rows_of_correctness(&c.profile);
    let mut correctness_figures = Vec::new();
    if !rows.is_empty() {
        let split = figures::profile::split_by_correctness(&rows);
        let profile = ProfilePlot {
            name: "demo-correctness-profile".into(),
            title: format!(
                "{} (window {}, n ≥ {})",
                if split { "Correct (solid) against incorrect (dashed) responses" } else { "All responses" },
                options.window,
                options.min_count
            ),
            rows: rows.clone(),
            options: ProfileOptions { window: options.window, min_count: options.min_count },
        };
        let caption = if figures::profile::extent(&rows, options.min_count) == figures::profile::Extent::Empty {
            format!("{}.", capitalised(&figures::profile::extent_note(&rows, options.min_count)))
        } else {
            let groups = if split {
                format!("solid lines are the {} correct responses, dashed the {} incorrect ones; where the solid teacher (green) line runs above the dashed one, correct responses carry more teacher sentences at that point", c.correct, c.incorrect)
            } else {
                "all responses in one line (only one of correct and incorrect has responses, so there is nothing to compare)".to_string()
            };
            format!(
                "The distilled model's held-out responses, from demo.json's correctness analysis. At each action index j, the fraction of each label among the responses whose action j is scored; {groups}. Smoothed with a centred moving window of {} positions, pooled by count. The lower panel shows n_j{}, the responses behind each point; {}.",
                options.window,
                if split { " per group (solid correct, dashed incorrect)" } else { "" },
                figures::profile::extent_note(&rows, options.min_count)
            )
        };
        correctness_figures.push(render(
            &profile,
            "Label fractions by position, correct against incorrect (paper Fig. 3)",
            caption,
            options.png_scale,
        )?);
    }
    sections.push(Section {
        id: "demo-correctness".into(),
        title: "Demo: teacher sentences and correctness".into(),
        intro: html::demo_correctness(c),
        figures: correctness_figures,
        outro: String::new(),
    });

    let mut experiment_figures = Vec::new();
    if let Some(e) = demo.experiment.as_ref().filter(|e| !e.rows.is_empty()) {
        let plot = ExperimentPlot {
            name: "demo-experiment".into(),
            title: "Held-out accuracy per selection strategy".into(),
            experiment: e.clone(),
        };
        experiment_figures.push(render(
            &plot,
            "Experiment: accuracy per selection strategy (paper Table 1)",
            "Left: each strategy's mean held-out accuracy (dot) ± one standard error (thick bar), and each seed's accuracy (rings). Right: the paired difference from random in percentage points (accuracy − random's, by seed and question; the clearer comparison, since the questions and seeds the rows share cancel): the mean (dot), ± one standard error (thick bar) and the 95% bootstrap interval over questions (thin green bar with caps). An interval clear of the dashed zero line is a difference that the questions drawn are unlikely to explain.".into(),
            options.png_scale,
        )?);
    }
    sections.push(Section {
        id: "demo-experiment".into(),
        title: "Demo: the selection experiment".into(),
        intro: html::demo_experiment(demo.experiment.as_ref()),
        figures: experiment_figures,
        outro: String::new(),
    });
    Ok(sections)
}

/// Computes the report of everything found at `input`.
pub fn build_report(input: &Path, options: &ReportOptions) -> Result<Report, ReportError> {
    let run: Run = load::discover(input)?;
    let mut sections = Vec::new();
    let mut browser = None;
    if let Some(demo) = &run.demo {
        sections.extend(demo_sections(demo, options)?);
    }
    if let Some(trace) = &run.trace {
        let (s, b) = trace_sections(trace, options)?;
        sections.extend(s);
        browser = Some(b);
    }
    for select in &run.selects {
        sections.extend(select_sections(select, run.selects.len(), options)?);
    }
    if let Some(attribute) = &run.attribute {
        sections.extend(attribute_sections(attribute, options)?);
    }
    Ok(Report { title: format!("whence report: {}", input.display()), sections, browser })
}

/// Builds the report of `input` and writes it: `index.html` and
/// `figures/NAME.svg` and `.png`, each atomically.
pub fn write_report(input: &Path, options: &ReportOptions) -> Result<Written, ReportError> {
    let report = build_report(input, options)?;
    let dir = options.out.clone().unwrap_or_else(|| load::default_report_dir(input));
    let mut files = Vec::new();
    let figures_dir = dir.join("figures");
    for figure in report.sections.iter().flat_map(|s| &s.figures) {
        let svg = figures_dir.join(format!("{}.svg", figure.name));
        whence_io::write_atomic(&svg, |w| std::io::Write::write_all(w, figure.svg.as_bytes())).map_err(ReportError::write(&svg))?;
        let png = figures_dir.join(format!("{}.png", figure.name));
        whence_io::write_atomic(&png, |w| std::io::Write::write_all(w, &figure.png)).map_err(ReportError::write(&png))?;
        files.extend([svg, png]);
    }
    let page = html::page(&report);
    let index = dir.join("index.html");
    whence_io::write_atomic(&index, |w| std::io::Write::write_all(w, page.as_bytes())).map_err(ReportError::write(&index))?;
    files.push(index.clone());
    let (embedded, total) = report.browser.as_ref().map_or((0, 0), |b| (b.embedded, b.total));
    Ok(Written { dir, index, files, index_bytes: page.len(), trajectories_embedded: embedded, trajectories_total: total })
}
