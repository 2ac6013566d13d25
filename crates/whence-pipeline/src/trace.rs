//! `whence trace`: label every action of distilled-model responses.

use std::path::{Path, PathBuf};

use serde::Serialize;
use whence_core::beta::{search_beta, BetaSearch, BetaSearchSettings, Stage};
use whence_core::profile::{position_profile, PositionProfile, ProfileInput, TokenMarker};
use whence_core::{ActionProbabilities, Label, LabelCounts, Role, Segmenter, SegmenterConfig, Threshold};
use whence_grade::Fallback;
use whence_io::{write_json_atomic, Column, OutputFormat, RecordSet, Skipped, Table};
use whence_score::{ModelInfo, Scorer};

use crate::correctness::{settle_correctness, CorrectnessCounts};
use crate::scoring::{Corpus, Scored};
use crate::{BetaChoice, PipelineError, Progress, SegmentationSummary, VERSION};

/// What `trace` and `attribute` need besides the records and the scorers:
/// the method's settings, one type for both.
#[derive(Debug, Clone)]
pub struct MethodSettings {
    pub alpha: Threshold,
    /// `Auto`: β is searched (by `attribute`, for each candidate on its own
    /// labelling).
    pub beta: BetaChoice,
    pub segmentation: SegmenterConfig,
    /// Spacing of the token markers of the position profile.
    pub marker_tokens: u64,
    pub skip_invalid: bool,
    pub fallback: Fallback,
}

/// The three scorers of a trace.
pub struct TraceScorers<'a> {
    pub teacher: &'a mut dyn Scorer,
    pub student: &'a mut dyn Scorer,
    pub distilled: &'a mut dyn Scorer,
}

#[derive(Debug, Clone, Serialize)]
pub struct InputSummary {
    pub path: String,
    pub format: whence_io::InputFormat,
}

/// `summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct TraceSummary {
    pub whence_version: &'static str,
    pub command: &'static str,
    pub input: InputSummary,
    pub alpha: f64,
    pub beta: f64,
    /// `auto` (chosen by the search) or `fixed`.
    pub beta_mode: &'static str,
    pub beta_search: Option<BetaSearch>,
    pub trajectories: usize,
    pub actions: usize,
    pub scored_actions: usize,
    pub unscored_actions: usize,
    pub label_counts: LabelCounts,
    pub correctness: CorrectnessCounts,
    pub skipped_records: usize,
    pub skipped: Vec<Skipped>,
    pub token_markers: Vec<TokenMarker>,
    pub models: ModelsSummary,
    pub segmentation: SegmentationSummary,
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelsSummary {
    pub teacher: ModelInfo,
    pub student: ModelInfo,
    pub distilled: ModelInfo,
}

/// Everything `trace` writes, computed.
#[derive(Debug, Clone)]
pub struct TraceOutput {
    pub actions: Table,
    pub trajectories: Table,
    pub positions: Table,
    pub profile: PositionProfile,
    pub summary: TraceSummary,
}

impl TraceOutput {
    /// Writes `actions`, `trajectories`, `positions` (in `format`) and
    /// `summary.json` into `dir`; returns the paths written.
    pub fn write(&self, dir: &Path, format: OutputFormat) -> Result<Vec<PathBuf>, PipelineError> {
        let mut written = Vec::new();
        for (name, table) in [("actions", &self.actions), ("trajectories", &self.trajectories), ("positions", &self.positions)] {
            let path = dir.join(format!("{name}.{}", format.extension()));
            table.write(&path, format).map_err(PipelineError::write(&path))?;
            written.push(path);
        }
        let path = dir.join("summary.json");
        write_json_atomic(&path, &self.summary).map_err(PipelineError::write(&path))?;
        written.push(path);
        Ok(written)
    }
}

/// One trajectory's per-action results, for the tables.
struct Traced {
    record: usize,
    probabilities: Vec<Option<ActionProbabilities>>,
    labels: Vec<Label>,
}

/// Runs the trace: correctness, segmentation, scoring model by model,
/// alignment, β, labels, tables and summary.
pub fn run_trace(
    mut input: RecordSet,
    scorers: TraceScorers<'_>,
    settings: &MethodSettings,
    progress: &dyn Progress,
) -> Result<TraceOutput, PipelineError> {
    let segmenter = Segmenter::new(&settings.segmentation).map_err(|e| PipelineError::NoRecords { reason: e.to_string() })?;
    let mut records = std::mem::take(&mut input.records);
    let correctness = settle_correctness(&mut records, settings.fallback);
    let mut corpus = Corpus::new(records, &segmenter, input.skipped.len());
    corpus.ensure_some_active()?;

    let models = ModelsSummary {
        teacher: scorers.teacher.info().clone(),
        student: scorers.student.info().clone(),
        distilled: scorers.distilled.info().clone(),
    };
    let teacher = corpus.score("teacher", scorers.teacher, settings.skip_invalid, progress)?;
    let student = corpus.score("student", scorers.student, settings.skip_invalid, progress)?;
    let distilled = corpus.score("distilled", scorers.distilled, settings.skip_invalid, progress)?;
    corpus.ensure_some_active()?;
    let kept = corpus.active_indices();

    let mut traced: Vec<Traced> = kept
        .iter()
        .map(|&i| {
            let probabilities =
                action_probabilities(corpus.actions[i].len(), [teacher[i].as_ref(), student[i].as_ref(), distilled[i].as_ref()]);
            Traced { record: i, probabilities, labels: Vec::new() }
        })
        .collect();

    let (beta, beta_search) = match settings.beta {
        BetaChoice::Fixed(beta) => (beta, None),
        BetaChoice::Auto => {
            let scored: Vec<Vec<ActionProbabilities>> =
                traced.iter().map(|t| t.probabilities.iter().flatten().copied().collect()).collect();
            let search = search_beta(&scored, settings.alpha, BetaSearchSettings::new(Stage::AfterDistillation))?;
            (search.beta, Some(search))
        }
    };
    for trajectory in &mut traced {
        trajectory.labels =
            trajectory.probabilities.iter().map(|p| p.map_or(Label::Unscored, |p| p.classify(settings.alpha, beta))).collect();
    }

    let profile = {
        let inputs: Vec<ProfileInput<'_>> = traced
            .iter()
            .map(|t| ProfileInput {
                labels: &t.labels,
                correct: corpus.records[t.record].correct,
                new_tokens: distilled[t.record].as_ref().map_or(&[][..], |s| &s.scores.first_tokens),
            })
            .collect();
        position_profile(&inputs, &Label::AFTER_DISTILLATION, settings.marker_tokens)
    };

    let roles = [&teacher, &student, &distilled];
    let actions = actions_table(&corpus, &traced, roles);
    let trajectories = trajectories_table(&corpus, &traced, roles);
    let positions = positions_table(&profile);
    let mut label_counts = LabelCounts::default();
    for trajectory in &traced {
        label_counts.merge(&LabelCounts::of(trajectory.labels.iter().copied()));
    }
    let mut skipped = input.skipped.clone();
    skipped.extend(corpus.skipped.iter().cloned());
    let summary = TraceSummary {
        whence_version: VERSION,
        command: "trace",
        input: InputSummary { path: input.path.display().to_string(), format: input.format },
        alpha: settings.alpha.value(),
        beta: beta.value(),
        beta_mode: if beta_search.is_some() { "auto" } else { "fixed" },
        beta_search,
        trajectories: traced.len(),
        actions: label_counts.total(),
        scored_actions: label_counts.scored(),
        unscored_actions: label_counts.unscored,
        label_counts,
        correctness: recount(&corpus, &kept, correctness),
        skipped_records: skipped.len(),
        skipped,
        token_markers: profile.markers.clone(),
        models,
        segmentation: SegmentationSummary::from(&settings.segmentation),
    };
    Ok(TraceOutput { actions, trajectories, positions, profile, summary })
}

/// Correctness counts over the records that stayed in the analysis.
fn recount(corpus: &Corpus, kept: &[usize], all: CorrectnessCounts) -> CorrectnessCounts {
    let mut counts = CorrectnessCounts { graded_from_answer: all.graded_from_answer, ..Default::default() };
    for &i in kept {
        match corpus.records[i].correct {
            Some(true) => counts.correct += 1,
            Some(false) => counts.incorrect += 1,
            None => counts.unknown += 1,
        }
    }
    counts
}

/// Per action, the three probabilities when every model scored it.
pub(crate) fn action_probabilities(actions: usize, roles: [Option<&Scored>; 3]) -> Vec<Option<ActionProbabilities>> {
    (0..actions)
        .map(|a| {
            let [t, s, d] = roles.map(|r| r.and_then(|r| r.scores.probability(a)));
            Some(ActionProbabilities { teacher: t?, student: s?, distilled: Some(d?) })
        })
        .collect()
}

type RoleResults<'a> = [&'a Vec<Option<Scored>>; 3];

fn actions_table(corpus: &Corpus, traced: &[Traced], roles: RoleResults<'_>) -> Table {
    let rows: usize = traced.iter().map(|t| t.labels.len()).sum();
    let mut id = Vec::with_capacity(rows);
    let mut question = Vec::with_capacity(rows);
    let mut correct = Vec::with_capacity(rows);
    let mut index = Vec::with_capacity(rows);
    let mut start = Vec::with_capacity(rows);
    let mut end = Vec::with_capacity(rows);
    let mut special = Vec::with_capacity(rows);
    let mut text = Vec::with_capacity(rows);
    let mut tokens: [Vec<Option<u64>>; 3] = Default::default();
    let mut logprob: [Vec<Option<f64>>; 3] = Default::default();
    let mut probability: [Vec<Option<f64>>; 3] = Default::default();
    let mut label = Vec::with_capacity(rows);
    for trajectory in traced {
        let record = &corpus.records[trajectory.record];
        for (a, action) in corpus.actions[trajectory.record].iter().enumerate() {
            id.push(Some(record.id.clone()));
            question.push(Some(record.question_id.clone()));
            correct.push(record.correct);
            index.push(Some(a as u64));
            start.push(Some(action.span.start as u64));
            end.push(Some(action.span.end as u64));
            special.push(Some(action.special));
            text.push(Some(record.response[action.span.start..action.span.end].to_string()));
            for (r, results) in roles.iter().enumerate() {
                let scored = results[trajectory.record].as_ref();
                tokens[r].push(scored.map(|s| u64::from(s.scores.tokens[a])));
                let mean = scored.and_then(|s| s.scores.logprob[a]);
                logprob[r].push(mean);
                probability[r].push(mean.map(f64::exp));
            }
            label.push(Some(trajectory.labels[a].as_str().to_string()));
        }
    }
    let mut table = Table::new();
    table
        .push("id", Column::Text(id))
        .push("question_id", Column::Text(question))
        .push("correct", Column::Boolean(correct))
        .push("index", Column::Integer(index))
        .push("start", Column::Integer(start))
        .push("end", Column::Integer(end))
        .push("special", Column::Boolean(special))
        .push("text", Column::Text(text));
    let [tokens_t, tokens_s, tokens_d] = tokens;
    let [logprob_t, logprob_s, logprob_d] = logprob;
    let [p_t, p_s, p_d] = probability;
    for (role, (tokens, (logprob, p))) in Role::ALL
        .iter()
        .zip([tokens_t, tokens_s, tokens_d].into_iter().zip([logprob_t, logprob_s, logprob_d].into_iter().zip([p_t, p_s, p_d])))
    {
        table
            .push(format!("tokens_{role}"), Column::Integer(tokens))
            .push(format!("logprob_{role}"), Column::Float(logprob))
            .push(format!("p_{role}"), Column::Float(p));
    }
    table.push("label", Column::Text(label));
    table
}

fn trajectories_table(corpus: &Corpus, traced: &[Traced], roles: RoleResults<'_>) -> Table {
    let n = traced.len();
    let mut id = Vec::with_capacity(n);
    let mut question = Vec::with_capacity(n);
    let mut correct = Vec::with_capacity(n);
    let mut actions = Vec::with_capacity(n);
    let mut scored = Vec::with_capacity(n);
    let mut unscored = Vec::with_capacity(n);
    let mut counts: [Vec<Option<u64>>; 4] = Default::default();
    let mut shares: [Vec<Option<f64>>; 4] = Default::default();
    let mut tokens: [Vec<Option<u64>>; 3] = Default::default();
    let mut mean_logprob: [Vec<Option<f64>>; 3] = Default::default();
    for trajectory in traced {
        let record = &corpus.records[trajectory.record];
        let tally = LabelCounts::of(trajectory.labels.iter().copied());
        id.push(Some(record.id.clone()));
        question.push(Some(record.question_id.clone()));
        correct.push(record.correct);
        actions.push(Some(tally.total() as u64));
        scored.push(Some(tally.scored() as u64));
        unscored.push(Some(tally.unscored as u64));
        for (slot, label) in Label::AFTER_DISTILLATION.iter().enumerate() {
            counts[slot].push(Some(tally.count(*label) as u64));
            shares[slot].push(tally.share(*label));
        }
        for (r, results) in roles.iter().enumerate() {
            let result = results[trajectory.record].as_ref();
            tokens[r].push(result.map(|s| s.scores.first_tokens.iter().map(|&t| u64::from(t)).sum()));
            mean_logprob[r].push(result.and_then(|s| s.mean_logprob));
        }
    }
    let mut table = Table::new();
    table
        .push("id", Column::Text(id))
        .push("question_id", Column::Text(question))
        .push("correct", Column::Boolean(correct))
        .push("actions", Column::Integer(actions))
        .push("scored_actions", Column::Integer(scored))
        .push("unscored_actions", Column::Integer(unscored));
    for (label, column) in Label::AFTER_DISTILLATION.iter().zip(counts) {
        table.push(format!("count_{label}"), Column::Integer(column));
    }
    for (label, column) in Label::AFTER_DISTILLATION.iter().zip(shares) {
        table.push(format!("share_{label}"), Column::Float(column));
    }
    for (role, column) in Role::ALL.iter().zip(tokens) {
        table.push(format!("tokens_{role}"), Column::Integer(column));
    }
    for (role, column) in Role::ALL.iter().zip(mean_logprob) {
        table.push(format!("mean_logprob_{role}"), Column::Float(column));
    }
    table
}

/// The position profile as a table: one row per action index.
pub fn positions_table(profile: &PositionProfile) -> Table {
    let rows = &profile.rows;
    let mut table = Table::new();
    table
        .push("index", Column::Integer(rows.iter().map(|r| Some(r.index as u64)).collect()))
        .push("trajectories", Column::Integer(rows.iter().map(|r| Some(r.trajectories as u64)).collect()))
        .push("mean_cumulative_tokens", Column::Float(rows.iter().map(|r| Some(r.mean_cumulative_tokens)).collect()))
        .push("marker_tokens", Column::Integer(rows.iter().map(|r| r.marker_tokens).collect()));
    type Pick = fn(&whence_core::profile::PositionRow) -> &whence_core::profile::LabelFractions;
    let groups: [(&str, Pick); 3] = [("all", |r| &r.all), ("correct", |r| &r.correct), ("incorrect", |r| &r.incorrect)];
    for (group, pick) in groups {
        table.push(format!("n_{group}"), Column::Integer(rows.iter().map(|r| Some(pick(r).n as u64)).collect()));
        for (slot, label) in profile.labels.iter().enumerate() {
            let column = rows
                .iter()
                .map(|r| {
                    let fractions = pick(r);
                    (fractions.n > 0).then(|| fractions.fractions[slot])
                })
                .collect();
            table.push(format!("{label}_{group}"), Column::Float(column));
        }
    }
    table
}
