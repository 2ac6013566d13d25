//! Choosing one response per question for distillation (SPEC §7).
//!
//! Each candidate is summarised by its before-training label counts; a
//! strategy picks one candidate per question. Ties go to the candidate that
//! comes first in the input.

use serde::Serialize;

use crate::hash::seeded_index;

/// How a question's response is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The most `teacher` actions (the paper's method).
    TeacherCount,
    /// The highest `teacher` / scored actions.
    TeacherRatio,
    /// The most actions.
    Longest,
    /// The fewest `teacher` actions.
    MinTeacherCount,
    /// A uniformly random candidate, reproducible from the seed (the paper's "Vanilla").
    Random,
    /// The highest mean token log-probability under the student (GRAPE).
    Grape,
}

impl Strategy {
    pub const ALL: [Strategy; 6] =
        [Strategy::TeacherCount, Strategy::TeacherRatio, Strategy::Longest, Strategy::MinTeacherCount, Strategy::Random, Strategy::Grape];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::TeacherCount => "teacher-count",
            Strategy::TeacherRatio => "teacher-ratio",
            Strategy::Longest => "longest",
            Strategy::MinTeacherCount => "min-teacher-count",
            Strategy::Random => "random",
            Strategy::Grape => "grape",
        }
    }
}

impl std::fmt::Display for Strategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown strategy `{name}`; valid strategies: teacher-count, teacher-ratio, longest, min-teacher-count, random, grape")]
pub struct UnknownStrategy {
    pub name: String,
}

impl std::str::FromStr for Strategy {
    type Err = UnknownStrategy;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Strategy::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| UnknownStrategy { name: s.to_string() })
    }
}

/// What a strategy knows of one candidate response.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct CandidateCounts {
    pub actions: usize,
    pub teacher: usize,
    pub student: usize,
    pub common: usize,
    pub unscored: usize,
    /// Mean log-probability of the response's tokens under the student; `None`
    /// when the student scored no token.
    pub student_mean_logprob: Option<f64>,
}

impl CandidateCounts {
    pub fn scored(&self) -> usize {
        self.teacher + self.student + self.common
    }

    /// `teacher / scored`, 0 when nothing is scored.
    pub fn teacher_ratio(&self) -> f64 {
        if self.scored() == 0 {
            0.0
        } else {
            self.teacher as f64 / self.scored() as f64
        }
    }
}

/// The index of the kept candidate among `candidates` (non-empty), in input
/// order. `question` and `seed` drive `random`: the choice for a question
/// depends only on them, not on the other questions.
pub fn choose(strategy: Strategy, candidates: &[CandidateCounts], question: &str, seed: u64) -> usize {
    assert!(!candidates.is_empty(), "a question has at least one candidate");
    match strategy {
        Strategy::TeacherCount => first_best(candidates, |a, b| a.teacher > b.teacher),
        Strategy::MinTeacherCount => first_best(candidates, |a, b| a.teacher < b.teacher),
        Strategy::Longest => first_best(candidates, |a, b| a.actions > b.actions),
        // Compare teacher/scored exactly as fractions: t_a * s_b > t_b * s_a,
        // with 0/0 counting as 0.
        Strategy::TeacherRatio => first_best(candidates, |a, b| {
            let (ta, sa) = (a.teacher as u128, a.scored().max(1) as u128);
            let (tb, sb) = (b.teacher as u128, b.scored().max(1) as u128);
            ta * sb > tb * sa
        }),
        Strategy::Grape => first_best(candidates, |a, b| match (a.student_mean_logprob, b.student_mean_logprob) {
            (Some(x), Some(y)) => x > y,
            (Some(_), None) => true,
            _ => false,
        }),
        Strategy::Random => seeded_index(seed, question, candidates.len()),
    }
}

/// The first candidate that no later one beats.
fn first_best(candidates: &[CandidateCounts], better: impl Fn(&CandidateCounts, &CandidateCounts) -> bool) -> usize {
    let mut best = 0;
    for (i, candidate) in candidates.iter().enumerate().skip(1) {
        if better(candidate, &candidates[best]) {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(teacher: usize, student: usize, common: usize, mean: Option<f64>) -> CandidateCounts {
        CandidateCounts { actions: teacher + student + common, teacher, student, common, unscored: 0, student_mean_logprob: mean }
    }

    #[test]
    fn each_strategy_picks_its_best() {
        let c = [counts(1, 0, 9, Some(-1.0)), counts(3, 3, 0, Some(-0.5)), counts(2, 0, 0, Some(-2.0))];
        assert_eq!(choose(Strategy::TeacherCount, &c, "q", 0), 1);
        assert_eq!(choose(Strategy::TeacherRatio, &c, "q", 0), 2);
        assert_eq!(choose(Strategy::Longest, &c, "q", 0), 0);
        assert_eq!(choose(Strategy::MinTeacherCount, &c, "q", 0), 0);
        assert_eq!(choose(Strategy::Grape, &c, "q", 0), 1);
    }

    #[test]
    fn ties_go_to_the_first_candidate() {
        let c = [counts(2, 1, 1, Some(-1.0)), counts(2, 1, 1, Some(-1.0)), counts(1, 0, 3, Some(-1.0))];
        assert_eq!(choose(Strategy::TeacherCount, &c, "q", 0), 0);
        assert_eq!(choose(Strategy::Longest, &c, "q", 0), 0);
        assert_eq!(choose(Strategy::Grape, &c, "q", 0), 0);
        // min-teacher-count: candidate 2 (one teacher action) is alone at the minimum;
        // among equal minima the first wins.
        assert_eq!(choose(Strategy::MinTeacherCount, &c, "q", 0), 2);
        assert_eq!(choose(Strategy::MinTeacherCount, &c[..2], "q", 0), 0);
        // teacher-ratio: 2/4 vs 1/2 — equal fractions, exactly: the first.
        let r = [counts(1, 1, 0, None), counts(2, 1, 1, None)];
        assert_eq!(choose(Strategy::TeacherRatio, &r, "q", 0), 0);
        // Nothing scored anywhere: ratios 0/0 count as 0, the first wins.
        let none = [CandidateCounts::default(), CandidateCounts::default()];
        assert_eq!(choose(Strategy::TeacherRatio, &none, "q", 0), 0);
        assert_eq!(choose(Strategy::Grape, &none, "q", 0), 0);
    }

    #[test]
    fn grape_prefers_any_score_to_none() {
        let c = [counts(0, 0, 1, None), counts(0, 0, 1, Some(-30.0))];
        assert_eq!(choose(Strategy::Grape, &c, "q", 0), 1);
    }

    #[test]
    fn random_is_reproducible_per_seed_and_question() {
        let c = vec![CandidateCounts::default(); 8];
        let picks: Vec<usize> = (0..50).map(|i| choose(Strategy::Random, &c, &format!("q{i}"), 42)).collect();
        let again: Vec<usize> = (0..50).map(|i| choose(Strategy::Random, &c, &format!("q{i}"), 42)).collect();
        let other: Vec<usize> = (0..50).map(|i| choose(Strategy::Random, &c, &format!("q{i}"), 43)).collect();
        assert_eq!(picks, again);
        assert_ne!(picks, other);
        assert!(picks.iter().all(|&p| p < 8));
    }

    #[test]
    fn strategy_names_round_trip_and_unknown_lists_choices() {
        for strategy in Strategy::ALL {
            assert_eq!(strategy.as_str().parse::<Strategy>().unwrap(), strategy);
        }
        let message = "best".parse::<Strategy>().unwrap_err().to_string();
        assert!(message.starts_with("unknown strategy `best`; valid strategies: teacher-count"), "{message}");
    }
}
