//! Which candidate teacher did a distilled model learn from (paper A.4.3)?
//!
//! Each candidate plays the teacher in the after-distillation labelling of
//! the same distilled responses (same student). The true teacher is the one
//! under which the most actions are teacher-originated and the fewest
//! student-originated (paper Fig. 13 vs 14): candidates are ranked by the
//! **teacher–student margin**, `share(teacher) − share(student)` over scored
//! actions, highest first (ties: the candidate given first).

use serde::Serialize;

use crate::label::{ActionProbabilities, Label};
use crate::tally::LabelCounts;

/// The statistic candidates are ranked by, as written in outputs.
pub const RANKING_STATISTIC: &str = "teacher_share - student_share (over scored actions; higher ranks first)";

/// One candidate's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CandidateAttribution {
    pub name: String,
    pub beta: f64,
    pub counts: LabelCounts,
    pub teacher_share: Option<f64>,
    pub student_share: Option<f64>,
    pub shared_share: Option<f64>,
    pub boosted_share: Option<f64>,
    /// Mean candidate probability p_T of the actions labelled teacher / student.
    pub mean_p_candidate_teacher_actions: Option<f64>,
    pub mean_p_candidate_student_actions: Option<f64>,
    /// Mean distilled probability p_D of the actions labelled teacher / student.
    pub mean_p_distilled_teacher_actions: Option<f64>,
    pub mean_p_distilled_student_actions: Option<f64>,
    /// `teacher_share − student_share`: the ranking statistic.
    pub margin: Option<f64>,
}

#[derive(Default)]
struct Mean {
    sum: f64,
    n: usize,
}

impl Mean {
    fn add(&mut self, x: f64) {
        self.sum += x;
        self.n += 1;
    }
    fn value(&self) -> Option<f64> {
        (self.n > 0).then(|| self.sum / self.n as f64)
    }
}

/// Summarises one candidate from its labelled actions (`None` probabilities
/// for unscored actions).
pub fn summarise_candidate<'a>(
    name: &str,
    beta: f64,
    actions: impl IntoIterator<Item = (Label, Option<&'a ActionProbabilities>)>,
) -> CandidateAttribution {
    let mut counts = LabelCounts::default();
    let (mut cand_t, mut cand_s, mut dist_t, mut dist_s) = (Mean::default(), Mean::default(), Mean::default(), Mean::default());
    for (label, probabilities) in actions {
        counts.add(label);
        let Some(p) = probabilities else { continue };
        let distilled = p.distilled.unwrap_or(f64::NAN);
        match label {
            Label::Teacher => {
                cand_t.add(p.teacher);
                dist_t.add(distilled);
            }
            Label::Student => {
                cand_s.add(p.teacher);
                dist_s.add(distilled);
            }
            _ => {}
        }
    }
    let teacher_share = counts.share(Label::Teacher);
    let student_share = counts.share(Label::Student);
    CandidateAttribution {
        name: name.to_string(),
        beta,
        counts,
        teacher_share,
        student_share,
        shared_share: counts.share(Label::Shared),
        boosted_share: counts.share(Label::Boosted),
        mean_p_candidate_teacher_actions: cand_t.value(),
        mean_p_candidate_student_actions: cand_s.value(),
        mean_p_distilled_teacher_actions: dist_t.value(),
        mean_p_distilled_student_actions: dist_s.value(),
        margin: teacher_share.zip(student_share).map(|(t, s)| t - s),
    }
}

/// Candidate indices from most to least likely teacher.
pub fn rank(candidates: &[CandidateAttribution]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    let key = |i: usize| candidates[i].margin.unwrap_or(f64::NEG_INFINITY);
    // A stable sort keeps the given order among equals.
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probabilities(teacher: f64, student: f64, distilled: f64) -> ActionProbabilities {
        ActionProbabilities { teacher, student, distilled: Some(distilled) }
    }

    #[test]
    fn margin_ranks_the_true_teacher_first_and_keeps_order_on_ties() {
        let p = probabilities(0.9, 0.2, 0.9);
        let a = summarise_candidate("a", 0.1, [(Label::Teacher, Some(&p)), (Label::Student, Some(&p)), (Label::Unscored, None)]);
        let b = summarise_candidate("b", 0.1, [(Label::Teacher, Some(&p)), (Label::Teacher, Some(&p))]);
        let c = summarise_candidate("c", 0.1, [(Label::Teacher, Some(&p)), (Label::Teacher, Some(&p))]);
        assert_eq!(a.margin, Some(0.0));
        assert_eq!(a.counts.unscored, 1);
        assert_eq!(b.margin, Some(1.0));
        assert_eq!(b.mean_p_candidate_teacher_actions, Some(0.9));
        assert_eq!(b.mean_p_candidate_student_actions, None);
        assert_eq!(rank(&[a, b, c]), vec![1, 2, 0]);
    }
}
