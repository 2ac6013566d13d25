//! `whence attribute`: which candidate teacher did a distilled model learn
//! from (paper A.4.3)? Each candidate plays the teacher in a full
//! after-distillation labelling of the same responses, with the same student.

use std::path::{Path, PathBuf};

use serde::Serialize;
use whence_core::attribute::{rank, summarise_candidate, CandidateAttribution, RANKING_STATISTIC};
use whence_core::beta::{search_beta, BetaSearch, BetaSearchSettings, Stage};
use whence_core::profile::{position_profile, PositionProfile, ProfileInput};
use whence_core::{Label, Segmenter};
use whence_io::{write_json_atomic, Column, OutputFormat, RecordSet, Skipped, Table};
use whence_score::{ModelInfo, Scorer};

use crate::correctness::settle_correctness;
use crate::scoring::Corpus;
use crate::trace::{action_probabilities, positions_table, InputSummary, MethodSettings};
use crate::{BetaChoice, PipelineError, Progress, SegmentationSummary, VERSION};

/// The paper sums the correct-minus-incorrect teacher fraction over the first
/// 400 action positions.
pub const CORRECTNESS_GAP_POSITIONS: usize = 400;

/// A candidate teacher: a name (letters, digits, `_`, `-`, `.`) and its scorer.
pub struct Candidate<'a> {
    pub name: String,
    pub scorer: &'a mut dyn Scorer,
}

/// Whether `name` can name a candidate (it is used in file names).
pub fn valid_candidate_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

#[derive(Debug, Clone, Serialize)]
pub struct CandidateResult {
    #[serde(flatten)]
    pub attribution: CandidateAttribution,
    pub rank: usize,
    pub model: ModelInfo,
    /// Σ over the first 400 positions of (teacher fraction among correct −
    /// among incorrect responses), where both groups are present; `None`
    /// when correctness is unknown.
    pub teacher_correct_minus_incorrect_first_400: Option<f64>,
    pub beta_search: Option<BetaSearch>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttributeModels {
    pub distilled: ModelInfo,
    pub student: ModelInfo,
}

/// `attribution.json`.
#[derive(Debug, Clone, Serialize)]
pub struct AttributeSummary {
    pub whence_version: &'static str,
    pub command: &'static str,
    pub input: InputSummary,
    pub alpha: f64,
    pub beta_mode: &'static str,
    pub ranking_statistic: &'static str,
    /// Candidate names, most likely teacher first.
    pub ranking: Vec<String>,
    pub trajectories: usize,
    pub candidates: Vec<CandidateResult>,
    pub skipped_records: usize,
    pub skipped: Vec<Skipped>,
    pub models: AttributeModels,
    pub segmentation: SegmentationSummary,
}

pub struct AttributeOutput {
    pub summary: AttributeSummary,
    pub profiles: Vec<(String, PositionProfile)>,
}

impl AttributeOutput {
    /// Writes `attribution.json`, `candidates.*` (one row per candidate, in
    /// rank order) and `positions-NAME.*` (each candidate's profile) into `dir`.
    pub fn write(&self, dir: &Path, format: OutputFormat) -> Result<Vec<PathBuf>, PipelineError> {
        let mut written = Vec::new();
        let path = dir.join("attribution.json");
        write_json_atomic(&path, &self.summary).map_err(PipelineError::write(&path))?;
        written.push(path);
        let path = dir.join(format!("candidates.{}", format.extension()));
        self.candidates_table().write(&path, format).map_err(PipelineError::write(&path))?;
        written.push(path);
        for (name, profile) in &self.profiles {
            let path = dir.join(format!("positions-{name}.{}", format.extension()));
            positions_table(profile).write(&path, format).map_err(PipelineError::write(&path))?;
            written.push(path);
        }
        Ok(written)
    }

    /// One row per candidate, in rank order.
    pub fn candidates_table(&self) -> Table {
        let mut ordered: Vec<&CandidateResult> = self.summary.candidates.iter().collect();
        ordered.sort_by_key(|c| c.rank);
        let float = |f: fn(&CandidateResult) -> Option<f64>| Column::Float(ordered.iter().map(|c| f(c)).collect());
        let mut table = Table::new();
        table
            .push("rank", Column::Integer(ordered.iter().map(|c| Some(c.rank as u64)).collect()))
            .push("candidate", Column::Text(ordered.iter().map(|c| Some(c.attribution.name.clone())).collect()))
            .push("beta", float(|c| Some(c.attribution.beta)))
            .push("margin", float(|c| c.attribution.margin))
            .push("teacher_share", float(|c| c.attribution.teacher_share))
            .push("student_share", float(|c| c.attribution.student_share))
            .push("shared_share", float(|c| c.attribution.shared_share))
            .push("boosted_share", float(|c| c.attribution.boosted_share))
            .push("mean_p_candidate_teacher_actions", float(|c| c.attribution.mean_p_candidate_teacher_actions))
            .push("mean_p_candidate_student_actions", float(|c| c.attribution.mean_p_candidate_student_actions))
            .push("mean_p_distilled_teacher_actions", float(|c| c.attribution.mean_p_distilled_teacher_actions))
            .push("mean_p_distilled_student_actions", float(|c| c.attribution.mean_p_distilled_student_actions))
            .push("teacher_correct_minus_incorrect_first_400", float(|c| c.teacher_correct_minus_incorrect_first_400))
            .push("unscored_actions", Column::Integer(ordered.iter().map(|c| Some(c.attribution.counts.unscored as u64)).collect()));
        table
    }
}

fn correctness_gap(profile: &PositionProfile) -> Option<f64> {
    let slot = profile.labels.iter().position(|&l| l == Label::Teacher)?;
    let mut sum = 0.0;
    let mut any = false;
    for row in profile.rows.iter().take(CORRECTNESS_GAP_POSITIONS) {
        if row.correct.n > 0 && row.incorrect.n > 0 {
            sum += row.correct.fractions[slot] - row.incorrect.fractions[slot];
            any = true;
        }
    }
    any.then_some(sum)
}

pub fn run_attribute(
    mut input: RecordSet,
    distilled: &mut dyn Scorer,
    student: &mut dyn Scorer,
    candidates: Vec<Candidate<'_>>,
    settings: &MethodSettings,
    progress: &dyn Progress,
) -> Result<AttributeOutput, PipelineError> {
    let segmenter = Segmenter::new(&settings.segmentation).map_err(|e| PipelineError::NoRecords { reason: e.to_string() })?;
    let mut records = std::mem::take(&mut input.records);
    settle_correctness(&mut records, settings.fallback);
    let mut corpus = Corpus::new(records, &segmenter, input.skipped.len());
    corpus.ensure_some_active()?;
    let models = AttributeModels { distilled: distilled.info().clone(), student: student.info().clone() };
    let distilled_scores = corpus.score("distilled", distilled, settings.skip_invalid, progress)?;
    let student_scores = corpus.score("student", student, settings.skip_invalid, progress)?;
    let mut candidate_scores = Vec::with_capacity(candidates.len());
    for candidate in candidates {
        let role = format!("candidate {}", candidate.name);
        let scores = corpus.score(&role, candidate.scorer, settings.skip_invalid, progress)?;
        candidate_scores.push((candidate.name, candidate.scorer.info().clone(), scores));
    }
    corpus.ensure_some_active()?;
    // Every candidate is judged on the same records: those all models scored.
    let kept = corpus.active_indices();

    let mut results = Vec::new();
    let mut profiles = Vec::new();
    for (name, model, scores) in &candidate_scores {
        let probabilities: Vec<Vec<_>> = kept
            .iter()
            .map(|&i| {
                action_probabilities(
                    corpus.actions[i].len(),
                    [scores[i].as_ref(), student_scores[i].as_ref(), distilled_scores[i].as_ref()],
                )
            })
            .collect();
        let (beta, beta_search) = match settings.beta {
            BetaChoice::Fixed(beta) => (beta, None),
            BetaChoice::Auto => {
                let scored: Vec<Vec<_>> = probabilities.iter().map(|t| t.iter().flatten().copied().collect()).collect();
                let search = search_beta(&scored, settings.alpha, BetaSearchSettings::new(Stage::AfterDistillation))?;
                (search.beta, Some(search))
            }
        };
        let labels: Vec<Vec<Label>> = probabilities
            .iter()
            .map(|t| t.iter().map(|p| p.map_or(Label::Unscored, |p| p.classify(settings.alpha, beta))).collect())
            .collect();
        let attribution = summarise_candidate(
            name,
            beta.value(),
            probabilities.iter().zip(&labels).flat_map(|(ps, ls)| ls.iter().copied().zip(ps.iter().map(Option::as_ref))),
        );
        let inputs: Vec<ProfileInput<'_>> = kept
            .iter()
            .zip(&labels)
            .map(|(&i, labels)| ProfileInput {
                labels,
                correct: corpus.records[i].correct,
                new_tokens: distilled_scores[i].as_ref().map_or(&[][..], |s| &s.scores.first_tokens),
            })
            .collect();
        let profile = position_profile(&inputs, &Label::AFTER_DISTILLATION, settings.marker_tokens);
        results.push(CandidateResult {
            attribution,
            rank: 0,
            model: model.clone(),
            teacher_correct_minus_incorrect_first_400: correctness_gap(&profile),
            beta_search,
        });
        profiles.push((name.clone(), profile));
    }
    let attributions: Vec<CandidateAttribution> = results.iter().map(|r| r.attribution.clone()).collect();
    let order = rank(&attributions);
    for (position, &candidate) in order.iter().enumerate() {
        results[candidate].rank = position + 1;
    }
    let mut skipped = input.skipped.clone();
    skipped.extend(corpus.skipped.iter().cloned());
    let summary = AttributeSummary {
        whence_version: VERSION,
        command: "attribute",
        input: InputSummary { path: input.path.display().to_string(), format: input.format },
        alpha: settings.alpha.value(),
        beta_mode: if matches!(settings.beta, BetaChoice::Auto) { "auto (per candidate)" } else { "fixed" },
        ranking_statistic: RANKING_STATISTIC,
        ranking: order.iter().map(|&i| results[i].attribution.name.clone()).collect(),
        trajectories: kept.len(),
        candidates: results,
        skipped_records: skipped.len(),
        skipped,
        models,
        segmentation: SegmentationSummary::from(&settings.segmentation),
    };
    Ok(AttributeOutput { summary, profiles })
}
