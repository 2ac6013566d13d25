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
    pub strategy: String,
    pub seeds: Vec<u64>,
    /// Held-out accuracy of the model distilled with each seed.
    pub accuracies: Vec<f64>,
    pub mean: f64,
    /// Sample standard deviation over the seeds (0 for one seed).
    pub std: f64,
    /// Mean teacher-labelled actions per kept response, before training.
    pub mean_teacher_actions: f64,
    /// Mean actions per kept response.
    pub mean_actions: f64,
    /// Share of kept responses that were correct.
    pub kept_correct: f64,
}

impl ExperimentRow {
    pub fn new(
        strategy: String,
        seeds: Vec<u64>,
        accuracies: Vec<f64>,
        mean_teacher_actions: f64,
        mean_actions: f64,
        kept_correct: f64,
    ) -> Self {
        let n = accuracies.len().max(1) as f64;
        let mean = accuracies.iter().sum::<f64>() / n;
        let std = if accuracies.len() > 1 { (accuracies.iter().map(|a| (a - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
        ExperimentRow { strategy, seeds, accuracies, mean, std, mean_teacher_actions, mean_actions, kept_correct }
    }
}

/// `whence demo --experiment`: the paper's Table 1 in miniature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experiment {
    /// Teacher responses each distilled model is trained on (one per training question).
    pub training_responses: usize,
    pub heldout_questions: usize,
    pub samples_per_question: usize,
    pub rows: Vec<ExperimentRow>,
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
    fn experiment_rows_summarise_seeds() {
        let row = ExperimentRow::new("random".into(), vec![0, 1, 2], vec![0.2, 0.4, 0.6], 3.0, 6.0, 0.9);
        assert!((row.mean - 0.4).abs() < 1e-12);
        assert!((row.std - 0.2).abs() < 1e-12);
    }
}
