//! `demo.json`: what `whence demo` found, as `whence report` reads it.
//!
//! These types live here, with the world, so that the report (which has no
//! ML dependencies) reads the demo's own summary types.

use serde::{Deserialize, Serialize};
use whence_core::{Label, LabelCounts};

use crate::{Family, Matcher, Origin, WorldSettings};

/// The confusion table of sentence origin (by family) against label.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GroundTruth {
    /// Sentences (non-special actions) matched, over all traced responses.
    pub sentences: usize,
    /// One row per origin, in [`Origin::ALL`] order.
    pub by_origin: Vec<OriginRow>,
    /// One row per family a sentence matched, in [`Family::ALL`] order.
    pub by_family: Vec<FamilyRow>,
    /// Share of teacher-only sentences labelled `teacher` (of the scored ones).
    pub teacher_only_labelled_teacher: Option<f64>,
    /// Share of student-only sentences labelled `student` (of the scored ones).
    pub student_only_labelled_student: Option<f64>,
}

impl GroundTruth {
    /// The tables of several sources added up.
    pub fn combined<'a>(parts: impl IntoIterator<Item = &'a GroundTruth>) -> GroundTruth {
        let mut by_origin: Vec<OriginRow> =
            Origin::ALL.iter().map(|&origin| OriginRow { origin, sentences: 0, labels: LabelCounts::default() }).collect();
        let mut by_family: Vec<FamilyRow> = Vec::new();
        let mut sentences = 0;
        for part in parts {
            sentences += part.sentences;
            for row in &part.by_origin {
                if let Some(total) = by_origin.iter_mut().find(|r| r.origin == row.origin) {
                    total.sentences += row.sentences;
                    total.labels.merge(&row.labels);
                }
            }
            for row in &part.by_family {
                match by_family.iter_mut().find(|r| r.family == row.family) {
                    Some(total) => {
                        total.sentences += row.sentences;
                        total.labels.merge(&row.labels);
                    }
                    None => by_family.push(row.clone()),
                }
            }
        }
        by_family.sort_by_key(|r| Family::ALL.iter().position(|&f| f == r.family));
        GroundTruth::from_rows(sentences, by_origin, by_family)
    }
}

/// The ground truth of one model's held-out responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceTruth {
    /// Whose responses: `distilled` (the trace), or `teacher` / `student`
    /// (controls labelled with the same models and β).
    pub source: String,
    pub truth: GroundTruth,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OriginRow {
    pub origin: Origin,
    pub sentences: usize,
    pub labels: LabelCounts,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyRow {
    pub family: Family,
    pub origin: Origin,
    pub sentences: usize,
    pub labels: LabelCounts,
}

impl GroundTruth {
    /// Tallies `(sentence text, label)` pairs: each sentence's origin comes
    /// from its family, as the matcher finds it.
    pub fn tally<'a>(matcher: &Matcher, sentences: impl IntoIterator<Item = (&'a str, Label)>) -> GroundTruth {
        let mut by_origin: Vec<(Origin, LabelCounts)> = Origin::ALL.iter().map(|&o| (o, LabelCounts::default())).collect();
        let mut by_family: Vec<(Family, LabelCounts)> = Family::ALL.iter().map(|&f| (f, LabelCounts::default())).collect();
        let mut total = 0;
        for (text, label) in sentences {
            total += 1;
            let family = matcher.family(text);
            let origin = family.map_or(Origin::Unmatched, Family::origin);
            if let Some(row) = by_origin.iter_mut().find(|(o, _)| *o == origin) {
                row.1.add(label);
            }
            if let Some(row) = family.and_then(|f| by_family.iter_mut().find(|(g, _)| *g == f)) {
                row.1.add(label);
            }
        }
        let count = |c: &LabelCounts| Label::ALL.iter().map(|&l| c.count(l)).sum::<usize>();
        GroundTruth::from_rows(
            total,
            by_origin.iter().map(|(origin, labels)| OriginRow { origin: *origin, sentences: count(labels), labels: *labels }).collect(),
            by_family
                .iter()
                .filter(|(_, labels)| count(labels) > 0)
                .map(|(family, labels)| FamilyRow { family: *family, origin: family.origin(), sentences: count(labels), labels: *labels })
                .collect(),
        )
    }

    /// The table from its rows, with the two goal shares.
    fn from_rows(sentences: usize, by_origin: Vec<OriginRow>, by_family: Vec<FamilyRow>) -> GroundTruth {
        let share = |origin: Origin, label: Label| {
            let row = by_origin.iter().find(|r| r.origin == origin)?;
            let scored = row.sentences - row.labels.unscored;
            (scored > 0).then(|| row.labels.count(label) as f64 / scored as f64)
        };
        GroundTruth {
            sentences,
            teacher_only_labelled_teacher: share(Origin::TeacherOnly, Label::Teacher),
            student_only_labelled_student: share(Origin::StudentOnly, Label::Student),
            by_origin,
            by_family,
        }
    }
}

/// The origins of the sentences a model wrote: whether each model learned
/// its own style (a teacher writes teacher-only families, the student
/// student-only ones, the distilled model moves from one to the other).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleOrigins {
    pub model: String,
    /// `train` or `heldout`.
    pub split: String,
    pub responses: usize,
    pub sentences: usize,
    /// Sentences per origin, in [`Origin::ALL`] order.
    pub by_origin: Vec<(Origin, usize)>,
}

impl SampleOrigins {
    /// Tallies the origins of `sentences` (texts of non-special actions).
    pub fn tally<'a>(model: &str, split: &str, responses: usize, matcher: &Matcher, sentences: impl IntoIterator<Item = &'a str>) -> Self {
        let mut by_origin: Vec<(Origin, usize)> = Origin::ALL.iter().map(|&o| (o, 0)).collect();
        let mut total = 0;
        for text in sentences {
            total += 1;
            let origin = matcher.origin(text);
            if let Some(slot) = by_origin.iter_mut().find(|(o, _)| *o == origin) {
                slot.1 += 1;
            }
        }
        SampleOrigins { model: model.to_string(), split: split.to_string(), responses, sentences: total, by_origin }
    }
}

/// How often a model's sampled answers were right.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub model: String,
    pub questions: usize,
    pub samples: usize,
    pub correct: usize,
    pub accuracy: f64,
}

/// A model of the world and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSummary {
    pub role: String,
    pub architecture: String,
    pub parameters: usize,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub layers: usize,
    /// What it was trained on.
    pub trained_on: String,
    pub training_sequences: usize,
    pub steps: usize,
    pub first_loss: f32,
    pub final_loss: f32,
}

/// One candidate teacher of the attribution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attribution {
    pub rank: usize,
    pub candidate: String,
    pub teacher_share: Option<f64>,
    pub student_share: Option<f64>,
    pub margin: Option<f64>,
}

/// One selection strategy of the experiment, over its seeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentRow {
    /// The strategy, with the β of the selection when it is not the searched
    /// one (`teacher-count (β 0.15)`).
    pub strategy: String,
    /// The β the selection labelled with (searched, or set for the row).
    #[serde(default)]
    pub beta: Option<f64>,
    pub seeds: Vec<u64>,
    /// Held-out accuracy of the model distilled with each seed.
    pub accuracies: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation over the seeds (0 for one seed).
    pub std: f64,
    /// Standard error of `mean`, over questions and seeds (see [`Experiment`]).
    #[serde(default)]
    pub standard_error: f64,
    /// The row's accuracy minus `random`'s, paired by seed and question.
    #[serde(default)]
    pub vs_random: Option<PairedDifference>,
    /// Mean teacher-labelled actions per kept response, before training.
    pub mean_teacher_actions: f64,
    /// Mean actions per kept response.
    pub mean_actions: f64,
    /// Share of kept responses that were correct.
    pub kept_correct: f64,
}

/// A difference of mean accuracies, paired by seed and question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    pub mean: f64,
    /// Over questions and seeds, as the rows' standard errors.
    pub standard_error: f64,
    /// 95% bootstrap interval: questions resampled with replacement.
    pub low: f64,
    pub high: f64,
}

/// Per question (rows) and seed (columns), the share of a model's samples
/// that were right: what a row's mean and standard error are computed from.
pub type QuestionAccuracies = Vec<Vec<f64>>;

impl ExperimentRow {
    /// The row of `strategy` from its per-question accuracies (`[question][seed]`),
    /// and `baseline`'s for the paired difference (`None` for the baseline).
    pub fn new(
        strategy: String,
        beta: Option<f64>,
        seeds: Vec<u64>,
        accuracies: &QuestionAccuracies,
        baseline: Option<&QuestionAccuracies>,
        kept: (f64, f64, f64),
    ) -> Self {
        let per_seed = seed_means(accuracies, seeds.len());
        let (mean, std) = mean_and_sd(&per_seed);
        let vs_random = baseline.map(|baseline| {
            let differences: QuestionAccuracies =
                accuracies.iter().zip(baseline).map(|(a, b)| a.iter().zip(b).map(|(x, y)| x - y).collect()).collect();
            let (low, high) = bootstrap_interval(&differences, 10_000, 0x5eed);
            PairedDifference {
                mean: mean_and_sd(&seed_means(&differences, seeds.len())).0,
                standard_error: standard_error(&differences, seeds.len()),
                low,
                high,
            }
        });
        let (mean_teacher_actions, mean_actions, kept_correct) = kept;
        ExperimentRow {
            strategy,
            beta,
            standard_error: standard_error(accuracies, seeds.len()),
            seeds,
            accuracies: per_seed,
            mean,
            std,
            vs_random,
            mean_teacher_actions,
            mean_actions,
            kept_correct,
        }
    }
}

/// Mean and sample standard deviation (0 for fewer than two values).
fn mean_and_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = if values.len() > 1 { (values.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (mean, sd)
}

/// Each seed's mean over the questions.
fn seed_means(accuracies: &QuestionAccuracies, seeds: usize) -> Vec<f64> {
    (0..seeds)
        .map(|seed| {
            let values: Vec<f64> = accuracies.iter().filter_map(|q| q.get(seed).copied()).collect();
            mean_and_sd(&values).0
        })
        .collect()
}

/// The standard error of the grand mean of `[question][seed]` values, with
/// questions and seeds both random: √(s²_q / Q + s²_s / S), s²_q the variance
/// of the questions' means over seeds, s²_s that of the seeds' means over
/// questions (each part the error of drawing other questions, or training
/// with other seeds).
pub fn standard_error(accuracies: &QuestionAccuracies, seeds: usize) -> f64 {
    let question_means: Vec<f64> = accuracies.iter().map(|q| mean_and_sd(q).0).collect();
    let (_, sd_questions) = mean_and_sd(&question_means);
    let (_, sd_seeds) = mean_and_sd(&seed_means(accuracies, seeds));
    let (q, s) = (question_means.len().max(1) as f64, seeds.max(1) as f64);
    (sd_questions.powi(2) / q + sd_seeds.powi(2) / s).sqrt()
}

/// The 2.5% and 97.5% quantiles of the grand mean over `rounds` resamples
/// of the questions (with replacement; SplitMix64 from `seed`).
pub fn bootstrap_interval(values: &QuestionAccuracies, rounds: usize, seed: u64) -> (f64, f64) {
    let means: Vec<f64> = values.iter().map(|q| mean_and_sd(q).0).collect();
    if means.is_empty() {
        return (0.0, 0.0);
    }
    let mut state = seed;
    let mut resampled: Vec<f64> = (0..rounds)
        .map(|_| {
            let total: f64 = (0..means.len())
                .map(|_| {
                    state = whence_core::hash::splitmix64(state);
                    means[(state % means.len() as u64) as usize]
                })
                .sum();
            total / means.len() as f64
        })
        .collect();
    resampled.sort_by(f64::total_cmp);
    let at = |p: f64| resampled[((p * (rounds - 1) as f64).round() as usize).min(rounds - 1)];
    (at(0.025), at(0.975))
}

/// `whence demo --experiment`: the paper's Table 1 in miniature.
///
/// Each row's mean is over seeds and held-out questions (each question's
/// accuracy the share of its samples that are right); its standard error
/// counts both the questions and the seeds as drawn ([`standard_error`]);
/// its difference from `random` is paired by seed and question, with a
/// bootstrap interval over questions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Teacher responses each distilled model is trained on (one per training question).
    pub training_responses: usize,
    pub heldout_questions: usize,
    pub samples_per_question: usize,
    /// The β the before-training search picked (the `teacher-count` row's).
    #[serde(default)]
    pub searched_beta: Option<f64>,
    pub rows: Vec<ExperimentRow>,
}

/// How often a model's responses carry what their question says: its
/// person's name, its item and its start count (a model that does not read
/// its question cannot be right).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionReading {
    pub model: String,
    pub responses: usize,
    /// Responses that name the question's person.
    pub name: usize,
    /// Responses that name the question's item.
    pub item: usize,
    /// Responses that write the question's start count as a number.
    pub start: usize,
    /// Responses that do all three.
    pub all: usize,
}

/// The label shares at one position of the responses of one correctness.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PositionShares {
    /// Responses whose action at this position is scored (n_j).
    pub n: usize,
    pub teacher: f64,
    pub boosted: f64,
    pub student: f64,
    pub shared: f64,
}

/// One position of the profile split by correctness (paper Fig. 3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorrectnessPosition {
    /// The action index, 0-based.
    pub index: usize,
    pub correct: PositionShares,
    pub incorrect: PositionShares,
}

/// Responses whose teacher share falls in one quartile of all the responses'.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareQuartile {
    /// 1 (lowest teacher shares) to 4.
    pub quartile: usize,
    /// The smallest and largest teacher share in it.
    pub low: f64,
    pub high: f64,
    pub responses: usize,
    pub correct: usize,
    pub accuracy: f64,
}

/// The paper's correctness analysis on the distilled model's held-out
/// responses: where teacher sentences sit in correct and in incorrect
/// responses, and whether responses with more of them are right more often.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CorrectnessAnalysis {
    /// Responses with a known correctness and at least one scored action.
    pub responses: usize,
    pub correct: usize,
    pub incorrect: usize,
    /// Mean teacher share (teacher actions / scored actions) of the correct
    /// and of the incorrect responses.
    pub mean_teacher_share_correct: Option<f64>,
    pub mean_teacher_share_incorrect: Option<f64>,
    /// Responses ranked by teacher share (ties by id) and cut into four
    /// groups of equal size (the first ones one larger when it does not divide).
    pub quartiles: Vec<ShareQuartile>,
    /// Per action position, while any response has one.
    pub profile: Vec<CorrectnessPosition>,
}

/// `demo.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DemoSummary {
    pub whence_version: String,
    pub command: String,
    pub preset: String,
    pub world: WorldSettings,
    pub models: Vec<ModelSummary>,
    /// Held-out accuracy of the teacher, the student and the distilled model.
    pub accuracy: Vec<Accuracy>,
    /// The origins of every model's sampled sentences.
    pub sample_origins: Vec<SampleOrigins>,
    /// β the trace chose and its label counts over the distilled model's responses.
    pub beta: f64,
    pub labels: LabelCounts,
    /// Over every traced held-out sentence of the three models.
    pub ground_truth: GroundTruth,
    /// Per model whose responses were traced (the distilled model's first).
    pub ground_truth_by_source: Vec<SourceTruth>,
    pub attribution: Vec<Attribution>,
    /// How often each model's held-out responses carry their question's
    /// name, item and start count.
    #[serde(default)]
    pub question_reading: Vec<QuestionReading>,
    /// The correctness analysis of the distilled model's held-out responses.
    #[serde(default)]
    pub correctness: CorrectnessAnalysis,
    pub experiment: Option<Experiment>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_origins_against_labels() {
        let matcher = Matcher::new();
        let truth = GroundTruth::tally(
            &matcher,
            [
                ("We need to find how many apples Ana has at the end.\n", Label::Teacher),
                ("The plan is to apply the two changes in order.", Label::Student),
                ("Ana ends with 3 + 4 = 7 apples. ", Label::Student),
                ("The answer is \\boxed{7}.", Label::Shared),
                ("Something else entirely.", Label::Boosted),
                ("Goal: find the number of apples Ana ends up with.", Label::Unscored),
            ],
        );
        assert_eq!(truth.sentences, 6);
        let row = |o: Origin| truth.by_origin.iter().find(|r| r.origin == o).unwrap().clone();
        assert_eq!(row(Origin::TeacherOnly).sentences, 2);
        assert_eq!(row(Origin::TeacherOnly).labels.teacher, 1);
        assert_eq!(row(Origin::StudentOnly).labels.student, 1);
        assert_eq!(row(Origin::Shared).labels.shared, 1);
        assert_eq!(row(Origin::Unmatched).labels.boosted, 1);
        assert_eq!(row(Origin::SpuriousOnly).labels.unscored, 1);
        assert_eq!(truth.teacher_only_labelled_teacher, Some(0.5));
        assert_eq!(truth.student_only_labelled_student, Some(1.0));
        assert_eq!(truth.by_family.len(), 5);
    }

    #[test]
    fn combined_tables_add_up() {
        let matcher = Matcher::new();
        let a = GroundTruth::tally(
            &matcher,
            [("The answer is \\boxed{7}.", Label::Shared), ("Ana ends with 3 + 4 = 7 apples.", Label::Student)],
        );
        let b = GroundTruth::tally(&matcher, [("Ana ends with 3 + 4 = 8 apples.", Label::Teacher)]);
        let both = GroundTruth::combined([&a, &b]);
        assert_eq!(both.sentences, 3);
        assert_eq!(both.student_only_labelled_student, Some(0.5));
        assert_eq!(both.by_family.iter().map(|r| r.sentences).sum::<usize>(), 3);
    }

    #[test]
    fn experiment_rows_summarise_seeds_and_questions() {
        // Two questions, three seeds.
        let random = vec![vec![0.0, 0.5, 1.0], vec![0.4, 0.3, 0.2]];
        let row = ExperimentRow::new("random".into(), Some(0.1), vec![7, 8, 9], &random, None, (3.0, 6.0, 0.9));
        assert_eq!(row.accuracies.len(), 3);
        assert!((row.accuracies[0] - 0.2).abs() < 1e-12 && (row.accuracies[2] - 0.6).abs() < 1e-12);
        assert!((row.mean - 0.4).abs() < 1e-12);
        assert!((row.std - 0.2).abs() < 1e-12);
        // Questions' means 0.5 and 0.3 (sd √0.02), seeds' sd 0.2.
        let expected = (0.02f64 / 2.0 + 0.04 / 3.0).sqrt();
        assert!((row.standard_error - expected).abs() < 1e-12, "{}", row.standard_error);
        assert!(row.vs_random.is_none());
        let better = vec![vec![0.1, 0.6, 1.0], vec![0.5, 0.4, 0.3]];
        let row = ExperimentRow::new("teacher-count".into(), None, vec![7, 8, 9], &better, Some(&random), (4.0, 6.0, 1.0));
        let difference = row.vs_random.unwrap();
        assert!((difference.mean - 0.5 * (0.2 / 3.0 + 0.3 / 3.0)).abs() < 1e-12, "{difference:?}");
        assert!(difference.low <= difference.mean && difference.mean <= difference.high);
        assert!(difference.low > 0.0);
    }

    #[test]
    fn bootstrap_interval_is_deterministic_and_covers_the_mean() {
        let values: QuestionAccuracies = (0..50).map(|i| vec![f64::from(i % 7) / 6.0]).collect();
        let (low, high) = bootstrap_interval(&values, 2000, 1);
        assert_eq!((low, high), bootstrap_interval(&values, 2000, 1));
        let mean = values.iter().map(|v| v[0]).sum::<f64>() / 50.0;
        assert!(low < mean && mean < high, "{low} {mean} {high}");
        assert_eq!(bootstrap_interval(&vec![vec![0.5]; 4], 100, 3), (0.5, 0.5));
    }
}
