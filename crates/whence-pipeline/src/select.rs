//! `whence select`: keep one teacher response per question (SPEC §7).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use whence_core::beta::{search_beta, BetaSearch, BetaSearchSettings, Stage};
use whence_core::select::choose;
use whence_core::{ActionProbabilities, CandidateCounts, Label, Record, Segmenter, SegmenterConfig, Strategy, Threshold};
use whence_io::{write_json_atomic, RecordSet, Skipped};
use whence_score::{ModelInfo, Scorer};

use crate::scoring::Corpus;
use crate::trace::InputSummary;
use crate::{BetaChoice, PipelineError, Progress, SegmentationSummary, VERSION};

#[derive(Debug, Clone)]
pub struct SelectSettings {
    pub strategy: Strategy,
    pub seed: u64,
    pub beta: BetaChoice,
    pub segmentation: SegmenterConfig,
    pub skip_invalid: bool,
}

/// One candidate of a question, as the summary lists it.
#[derive(Debug, Clone, Serialize)]
pub struct CandidateSummary {
    pub id: String,
    pub actions: usize,
    pub teacher: usize,
    pub student: usize,
    pub common: usize,
    pub unscored: usize,
    pub teacher_ratio: f64,
    pub student_mean_logprob: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct QuestionSummary {
    pub question_id: String,
    pub kept: String,
    pub candidates: Vec<CandidateSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SelectModels {
    pub teacher: ModelInfo,
    pub student: ModelInfo,
}

/// `FILE.summary.json`.
#[derive(Debug, Clone, Serialize)]
pub struct SelectSummary {
    pub whence_version: &'static str,
    pub command: &'static str,
    pub input: InputSummary,
    pub strategy: Strategy,
    /// The seed, for `random`.
    pub seed: Option<u64>,
    pub beta: f64,
    pub beta_mode: &'static str,
    pub beta_search: Option<BetaSearch>,
    pub records: usize,
    pub questions: usize,
    pub kept: usize,
    pub skipped_records: usize,
    pub skipped: Vec<Skipped>,
    pub models: SelectModels,
    pub segmentation: SegmentationSummary,
    pub per_question: Vec<QuestionSummary>,
}

pub struct SelectOutput {
    input: RecordSet,
    kept: Vec<usize>,
    pub summary: SelectSummary,
}

impl SelectOutput {
    /// The summary's path for an output `path`: `path` + `.summary.json`.
    pub fn summary_path(path: &Path) -> PathBuf {
        let mut name = path.as_os_str().to_os_string();
        name.push(".summary.json");
        PathBuf::from(name)
    }

    /// The input, less records dropped as invalid.
    pub fn input(&self) -> &RecordSet {
        &self.input
    }

    /// Indices into [`SelectOutput::input`]'s records of the kept ones, in
    /// input order.
    pub fn kept_indices(&self) -> Vec<usize> {
        let mut kept = self.kept.clone();
        kept.sort_unstable();
        kept
    }

    /// The kept records, one per question, in input order.
    pub fn kept_records(&self) -> impl Iterator<Item = &Record> {
        let mut kept = self.kept.clone();
        kept.sort_unstable();
        kept.into_iter().map(|i| &self.input.records[i])
    }

    /// Writes the kept records to `path` (in the input's format) and the
    /// summary beside it; returns both paths.
    pub fn write(&self, path: &Path) -> Result<[PathBuf; 2], PipelineError> {
        self.input.write_subset(&self.kept, path).map_err(PipelineError::write(path))?;
        let summary = SelectOutput::summary_path(path);
        write_json_atomic(&summary, &self.summary).map_err(PipelineError::write(&summary))?;
        Ok([path.to_path_buf(), summary])
    }
}

pub fn run_select(
    mut input: RecordSet,
    teacher: &mut dyn Scorer,
    student: &mut dyn Scorer,
    settings: &SelectSettings,
    progress: &dyn Progress,
) -> Result<SelectOutput, PipelineError> {
    let segmenter = Segmenter::new(&settings.segmentation).map_err(|e| PipelineError::NoRecords { reason: e.to_string() })?;
    let records = std::mem::take(&mut input.records);
    let mut corpus = Corpus::new(records, &segmenter, input.skipped.len());
    corpus.ensure_some_active()?;
    let models = SelectModels { teacher: teacher.info().clone(), student: student.info().clone() };
    let teacher_scores = corpus.score("teacher", teacher, settings.skip_invalid, progress)?;
    let student_scores = corpus.score("student", student, settings.skip_invalid, progress)?;
    corpus.ensure_some_active()?;
    let kept_records = corpus.active_indices();

    let probabilities: Vec<Vec<Option<ActionProbabilities>>> = kept_records
        .iter()
        .map(|&i| {
            let (t, s) = (teacher_scores[i].as_ref(), student_scores[i].as_ref());
            (0..corpus.actions[i].len())
                .map(|a| {
                    let teacher = t.and_then(|t| t.scores.probability(a))?;
                    let student = s.and_then(|s| s.scores.probability(a))?;
                    Some(ActionProbabilities { teacher, student, distilled: None })
                })
                .collect()
        })
        .collect();
    let (beta, beta_search) = match settings.beta {
        BetaChoice::Fixed(beta) => (beta, None),
        BetaChoice::Auto => {
            let scored: Vec<Vec<ActionProbabilities>> = probabilities.iter().map(|t| t.iter().flatten().copied().collect()).collect();
            // α plays no part before training.
            let alpha = Threshold::new(0.0).expect("0 is a valid threshold");
            let search = search_beta(&scored, alpha, BetaSearchSettings::new(Stage::BeforeTraining))?;
            (search.beta, Some(search))
        }
    };
    let alpha = Threshold::new(0.0).expect("0 is a valid threshold");
    let counts: Vec<CandidateCounts> = kept_records
        .iter()
        .zip(&probabilities)
        .map(|(&i, actions)| {
            let mut counts = CandidateCounts { actions: actions.len(), ..Default::default() };
            for action in actions {
                match action.map_or(Label::Unscored, |p| p.classify(alpha, beta)) {
                    Label::Teacher => counts.teacher += 1,
                    Label::Student => counts.student += 1,
                    Label::Unscored => counts.unscored += 1,
                    _ => counts.common += 1,
                }
            }
            counts.student_mean_logprob = student_scores[i].as_ref().and_then(|s| s.mean_logprob);
            counts
        })
        .collect();

    // Questions in order of first appearance; candidates in input order.
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<usize>> = HashMap::new();
    for (position, &i) in kept_records.iter().enumerate() {
        let question = corpus.records[i].question_id.as_str();
        groups
            .entry(question)
            .or_insert_with(|| {
                order.push(question);
                Vec::new()
            })
            .push(position);
    }
    let mut kept = Vec::with_capacity(order.len());
    let mut per_question = Vec::with_capacity(order.len());
    for question in &order {
        let members = &groups[question];
        let candidates: Vec<CandidateCounts> = members.iter().map(|&p| counts[p]).collect();
        let chosen = members[choose(settings.strategy, &candidates, question, settings.seed)];
        kept.push(kept_records[chosen]);
        per_question.push(QuestionSummary {
            question_id: question.to_string(),
            kept: corpus.records[kept_records[chosen]].id.clone(),
            candidates: members
                .iter()
                .map(|&p| {
                    let c = counts[p];
                    CandidateSummary {
                        id: corpus.records[kept_records[p]].id.clone(),
                        actions: c.actions,
                        teacher: c.teacher,
                        student: c.student,
                        common: c.common,
                        unscored: c.unscored,
                        teacher_ratio: c.teacher_ratio(),
                        student_mean_logprob: c.student_mean_logprob,
                    }
                })
                .collect(),
        });
    }
    let mut skipped = input.skipped.clone();
    skipped.extend(corpus.skipped.iter().cloned());
    let summary = SelectSummary {
        whence_version: VERSION,
        command: "select",
        input: InputSummary { path: input.path.display().to_string(), format: input.format },
        strategy: settings.strategy,
        seed: (settings.strategy == Strategy::Random).then_some(settings.seed),
        beta: beta.value(),
        beta_mode: if beta_search.is_some() { "auto" } else { "fixed" },
        beta_search,
        records: kept_records.len(),
        questions: order.len(),
        kept: kept.len(),
        skipped_records: skipped.len(),
        skipped,
        models,
        segmentation: SegmentationSummary::from(&settings.segmentation),
        per_question,
    };
    input.records = std::mem::take(&mut corpus.records);
    Ok(SelectOutput { input, kept, summary })
}
