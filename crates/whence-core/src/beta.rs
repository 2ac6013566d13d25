//! Choosing β from the data (SPEC §5, the paper's Algorithm 1).
//!
//! For β_k = k/20, k = 1..K, every scored action is labelled (teacher, student,
//! common — after distillation `shared` and `boosted` pooled as common); each
//! trajectory gives the proportions of the three labels among its scored
//! actions; the three lists are histogrammed over `[0, 1]` in B bins and the
//! overlap `O = overlap(student, common) + overlap(common, teacher)` is
//! computed, with `overlap(h1, h2) = Σ min(h1[b], h2[b])`. The β with the
//! smallest O wins (the first one on ties); the search stops after the first
//! β at which the mean common proportion exceeds the mean teacher proportion.

use serde::Serialize;

use crate::label::{ActionProbabilities, Label, Threshold};

/// Which labelling the search runs: before training (teacher and student
/// only, K = 20) or after distillation (three models, K = 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    BeforeTraining,
    AfterDistillation,
}

impl Stage {
    /// K, the number of β values tried: 0.05 … 1.0 before training,
    /// 0.05 … 0.20 after distillation (the paper's test-time range).
    pub fn default_steps(self) -> usize {
        match self {
            Stage::BeforeTraining => 20,
            Stage::AfterDistillation => 4,
        }
    }
}

/// The search's knobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct BetaSearchSettings {
    pub stage: Stage,
    /// K: β_k = k/20 for k = 1..=K.
    pub steps: usize,
    /// B: histogram bins over `[0, 1]`.
    pub bins: usize,
}

impl BetaSearchSettings {
    pub fn new(stage: Stage) -> Self {
        BetaSearchSettings { stage, steps: stage.default_steps(), bins: 20 }
    }
}

/// One row of the search table: what β_k gave.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct BetaStep {
    pub beta: f64,
    pub overlap: f64,
    pub overlap_student_common: f64,
    pub overlap_common_teacher: f64,
    pub mean_common: f64,
    pub mean_teacher: f64,
    pub mean_student: f64,
    /// Histograms of the per-trajectory proportions, each summing to 1.
    pub histogram_common: Vec<f64>,
    pub histogram_teacher: Vec<f64>,
    pub histogram_student: Vec<f64>,
}

/// The chosen β and the whole table that led to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BetaSearch {
    pub beta: Threshold,
    pub settings: BetaSearchSettings,
    /// Trajectories with at least one scored action: the ones searched over.
    pub trajectories: usize,
    pub steps: Vec<BetaStep>,
    /// Whether the stopping rule (mean common > mean teacher) ended the search.
    pub stopped_early: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BetaSearchError {
    #[error("cannot choose β: no trajectory has a scored action")]
    NoScoredActions,
    #[error("invalid β search settings: steps = {steps} must be 1 to 20 and bins = {bins} at least 1")]
    InvalidSettings { steps: usize, bins: usize },
}

/// β_k = k/20.
pub fn beta_of_step(k: usize) -> f64 {
    k as f64 / 20.0
}

/// Runs the search over `trajectories`, each the probabilities of its scored
/// actions. Trajectories with no scored action are left out.
pub fn search_beta(
    trajectories: &[Vec<ActionProbabilities>],
    alpha: Threshold,
    settings: BetaSearchSettings,
) -> Result<BetaSearch, BetaSearchError> {
    if settings.steps == 0 || settings.steps > 20 || settings.bins == 0 {
        return Err(BetaSearchError::InvalidSettings { steps: settings.steps, bins: settings.bins });
    }
    let searched: Vec<&Vec<ActionProbabilities>> = trajectories.iter().filter(|t| !t.is_empty()).collect();
    if searched.is_empty() {
        return Err(BetaSearchError::NoScoredActions);
    }
    let mut steps = Vec::new();
    let mut best: Option<(f64, f64)> = None;
    let mut stopped_early = false;
    for k in 1..=settings.steps {
        let beta = Threshold::new(beta_of_step(k)).expect("k/20 is within [0, 1] for k <= 20");
        let step = evaluate(&searched, alpha, beta, settings);
        if best.is_none_or(|(overlap, _)| step.overlap < overlap) {
            best = Some((step.overlap, step.beta));
        }
        let stop = step.mean_common > step.mean_teacher;
        steps.push(step);
        if stop {
            stopped_early = k < settings.steps;
            break;
        }
    }
    let (_, beta) = best.expect("at least one step ran");
    Ok(BetaSearch {
        beta: Threshold::new(beta).expect("a tried β is valid"), settings, trajectories: searched.len(), steps, stopped_early
    })
}

/// Per-trajectory label counts: (common, teacher, student, scored).
fn count_labels(actions: &[ActionProbabilities], alpha: Threshold, beta: Threshold) -> [usize; 4] {
    let mut counts = [0usize; 4];
    for action in actions {
        match action.classify(alpha, beta).pooled() {
            Label::Common => counts[0] += 1,
            Label::Teacher => counts[1] += 1,
            Label::Student => counts[2] += 1,
            _ => {}
        }
        counts[3] += 1;
    }
    counts
}

fn evaluate(trajectories: &[&Vec<ActionProbabilities>], alpha: Threshold, beta: Threshold, settings: BetaSearchSettings) -> BetaStep {
    let bins = settings.bins;
    let mut histograms = vec![vec![0usize; bins]; 3];
    let mut proportion_sums = [0f64; 3];
    for actions in trajectories {
        let counts = count_labels(actions, alpha, beta);
        let scored = counts[3];
        for which in 0..3 {
            // Integer arithmetic: a proportion of exactly b/B falls in bin b,
            // and 1.0 falls in the last bin.
            let bin = (counts[which] * bins / scored).min(bins - 1);
            histograms[which][bin] += 1;
            proportion_sums[which] += counts[which] as f64 / scored as f64;
        }
    }
    let total = trajectories.len() as f64;
    let normalised: Vec<Vec<f64>> = histograms.iter().map(|h| h.iter().map(|&c| c as f64 / total).collect()).collect();
    let overlap_student_common = overlap(&normalised[2], &normalised[0]);
    let overlap_common_teacher = overlap(&normalised[0], &normalised[1]);
    let mut normalised = normalised.into_iter();
    BetaStep {
        beta: beta.value(),
        overlap: overlap_student_common + overlap_common_teacher,
        overlap_student_common,
        overlap_common_teacher,
        mean_common: proportion_sums[0] / total,
        mean_teacher: proportion_sums[1] / total,
        mean_student: proportion_sums[2] / total,
        histogram_common: normalised.next().unwrap_or_default(),
        histogram_teacher: normalised.next().unwrap_or_default(),
        histogram_student: normalised.next().unwrap_or_default(),
    }
}

/// `Σ_b min(h1[b], h2[b])`.
pub fn overlap(first: &[f64], second: &[f64]) -> f64 {
    first.iter().zip(second).map(|(a, b)| a.min(*b)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn before(teacher: f64, student: f64) -> ActionProbabilities {
        ActionProbabilities { teacher, student, distilled: None }
    }

    fn alpha() -> Threshold {
        Threshold::new(0.1).unwrap()
    }

    #[test]
    fn histograms_put_exact_bin_edges_in_the_upper_bin_and_one_in_the_last() {
        // One trajectory, all actions teacher at every β up to 0.5.
        let trajectory = vec![before(0.9, 0.3), before(0.8, 0.2)];
        let settings = BetaSearchSettings { stage: Stage::BeforeTraining, steps: 1, bins: 4 };
        let search = search_beta(&[trajectory], alpha(), settings).unwrap();
        let step = &search.steps[0];
        assert_eq!(step.histogram_teacher, vec![0.0, 0.0, 0.0, 1.0]);
        assert_eq!(step.histogram_common, vec![1.0, 0.0, 0.0, 0.0]);
        // 1 / 4 of a trajectory's actions is exactly the edge of bin 1.
        let trajectory = vec![before(0.9, 0.3), before(0.5, 0.5), before(0.5, 0.5), before(0.5, 0.5)];
        let search = search_beta(&[trajectory], alpha(), settings).unwrap();
        assert_eq!(search.steps[0].histogram_teacher, vec![0.0, 1.0, 0.0, 0.0]);
        assert_eq!(search.steps[0].histogram_common, vec![0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn stops_after_the_first_beta_where_common_outweighs_teacher() {
        // Δ_TS = 0.12 in every action of t1, 0.3 in t2.
        // β = 0.05, 0.10: all teacher (mean teacher 1, common 0): continue.
        // β = 0.15: t1 common, t2 teacher: means 0.5 / 0.5: not greater, continue.
        // β = 0.30: both common: stop here, K = 20 not reached.
        let t1 = vec![before(0.62, 0.5); 3];
        let t2 = vec![before(0.8, 0.5); 2];
        let search = search_beta(&[t1, t2], alpha(), BetaSearchSettings::new(Stage::BeforeTraining)).unwrap();
        let betas: Vec<f64> = search.steps.iter().map(|s| s.beta).collect();
        assert_eq!(betas, vec![0.05, 0.1, 0.15, 0.2, 0.25, 0.3]);
        assert!(search.stopped_early);
        let last = search.steps.last().unwrap();
        assert_eq!((last.mean_common, last.mean_teacher), (1.0, 0.0));
        // Overlaps: β ≤ 0.10: teacher hist at 1.0, common at 0, student at 0
        // → O(S,C) = 1, O(C,T) = 0, O = 1. β = 0.15 … 0.25: common {0, 1},
        // teacher {1, 0}, student {0, 0} → O(S,C) = 0.5, O(C,T) = 1, O = 1.5.
        // β = 0.30: common at 1, teacher at 0 → O = 0 + 0 = 0.
        let overlaps: Vec<f64> = search.steps.iter().map(|s| s.overlap).collect();
        assert_eq!(overlaps, vec![1.0, 1.0, 1.5, 1.5, 1.5, 0.0]);
        assert_eq!(search.beta.value(), 0.3);
    }

    #[test]
    fn ties_keep_the_smaller_beta() {
        let t1 = vec![before(0.9, 0.1)];
        let settings = BetaSearchSettings { stage: Stage::BeforeTraining, steps: 3, bins: 20 };
        let search = search_beta(&[t1], alpha(), settings).unwrap();
        assert_eq!(search.steps.len(), 3);
        assert!(!search.stopped_early);
        assert_eq!(search.beta.value(), 0.05);
    }

    #[test]
    fn after_distillation_pools_shared_and_boosted() {
        // Shared (all within α) and boosted (Δ_TS ≤ β, far from distilled) are both common.
        let shared = ActionProbabilities { teacher: 0.5, student: 0.5, distilled: Some(0.5) };
        let boosted = ActionProbabilities { teacher: 0.3, student: 0.3, distilled: Some(0.9) };
        let search = search_beta(&[vec![shared, boosted]], alpha(), BetaSearchSettings::new(Stage::AfterDistillation)).unwrap();
        assert_eq!(search.steps[0].mean_common, 1.0);
        assert_eq!(search.steps.len(), 1);
        assert!(search.stopped_early);
    }

    #[test]
    fn empty_trajectories_are_left_out_and_none_scored_is_an_error() {
        assert_eq!(
            search_beta(&[vec![], vec![]], alpha(), BetaSearchSettings::new(Stage::BeforeTraining)),
            Err(BetaSearchError::NoScoredActions)
        );
        let search = search_beta(&[vec![], vec![before(0.9, 0.1)]], alpha(), BetaSearchSettings::new(Stage::BeforeTraining)).unwrap();
        assert_eq!(search.trajectories, 1);
    }
}
