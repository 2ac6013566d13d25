//! Labels and their classification rules (SPEC §4).

use serde::{Deserialize, Serialize};

/// Comparisons with α and β allow this much slack, so that a difference that
/// is exactly α or β in decimal (0.4 − 0.3) counts as equal to it despite
/// binary rounding (0.4 − 0.3 = 0.10000000000000003 in f64).
pub const BOUNDARY_TOLERANCE: f64 = 1e-12;

/// Where an action comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    /// The teacher finds the action far more likely than the student.
    Teacher,
    /// The student finds the action far more likely than the teacher.
    Student,
    /// All three models agree within α (after distillation).
    Shared,
    /// Teacher and student agree within β but not all three within α:
    /// distillation boosted it (after distillation).
    Boosted,
    /// Teacher and student agree within β (before training, and the pooled
    /// `shared` + `boosted` of the β search).
    Common,
    /// Some model has no token on the action.
    Unscored,
}

impl Label {
    pub const AFTER_DISTILLATION: [Label; 4] = [Label::Teacher, Label::Student, Label::Shared, Label::Boosted];
    pub const BEFORE_TRAINING: [Label; 3] = [Label::Teacher, Label::Student, Label::Common];
    pub const ALL: [Label; 6] = [Label::Teacher, Label::Student, Label::Shared, Label::Boosted, Label::Common, Label::Unscored];

    pub fn as_str(self) -> &'static str {
        match self {
            Label::Teacher => "teacher",
            Label::Student => "student",
            Label::Shared => "shared",
            Label::Boosted => "boosted",
            Label::Common => "common",
            Label::Unscored => "unscored",
        }
    }

    /// `shared` and `boosted` pooled as `common`, as the β search counts them.
    pub fn pooled(self) -> Label {
        match self {
            Label::Shared | Label::Boosted => Label::Common,
            other => other,
        }
    }
}

impl std::fmt::Display for Label {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A threshold on probability differences: finite, in `[0, 1]`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Threshold(f64);

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid threshold `{value}`; it must be a number from 0 to 1")]
pub struct ThresholdError {
    pub value: String,
}

impl Threshold {
    pub fn new(value: f64) -> Result<Self, ThresholdError> {
        if value.is_finite() && (0.0..=1.0).contains(&value) {
            Ok(Threshold(value))
        } else {
            Err(ThresholdError { value: value.to_string() })
        }
    }

    pub fn value(self) -> f64 {
        self.0
    }

    /// `|difference| <= self`, with [`BOUNDARY_TOLERANCE`].
    pub fn covers(self, difference: f64) -> bool {
        difference.abs() <= self.0 + BOUNDARY_TOLERANCE
    }

    /// `difference > self`, with [`BOUNDARY_TOLERANCE`].
    pub fn exceeded_by(self, difference: f64) -> bool {
        difference > self.0 + BOUNDARY_TOLERANCE
    }
}

impl std::str::FromStr for Threshold {
    type Err = ThresholdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let value: f64 = s.trim().parse().map_err(|_| ThresholdError { value: s.to_string() })?;
        Threshold::new(value).map_err(|_| ThresholdError { value: s.to_string() })
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The probabilities of one scored action under each role.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ActionProbabilities {
    pub teacher: f64,
    pub student: f64,
    /// Absent before training.
    pub distilled: Option<f64>,
}

/// Label after distillation: shared → teacher → student → boosted.
pub fn classify_after_distillation(p_teacher: f64, p_student: f64, p_distilled: f64, alpha: Threshold, beta: Threshold) -> Label {
    let student_distilled = p_student - p_distilled;
    let teacher_distilled = p_teacher - p_distilled;
    let teacher_student = p_teacher - p_student;
    if alpha.covers(student_distilled) && alpha.covers(teacher_distilled) && alpha.covers(teacher_student) {
        Label::Shared
    } else if beta.exceeded_by(teacher_student) {
        Label::Teacher
    } else if beta.exceeded_by(-teacher_student) {
        Label::Student
    } else {
        Label::Boosted
    }
}

/// Label before training: common → teacher → student.
pub fn classify_before_training(p_teacher: f64, p_student: f64, beta: Threshold) -> Label {
    let teacher_student = p_teacher - p_student;
    if beta.covers(teacher_student) {
        Label::Common
    } else if teacher_student > 0.0 {
        Label::Teacher
    } else {
        Label::Student
    }
}

impl ActionProbabilities {
    /// After distillation when the distilled probability is present, before
    /// training otherwise.
    pub fn classify(&self, alpha: Threshold, beta: Threshold) -> Label {
        match self.distilled {
            Some(p_distilled) => classify_after_distillation(self.teacher, self.student, p_distilled, alpha, beta),
            None => classify_before_training(self.teacher, self.student, beta),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(x: f64) -> Threshold {
        Threshold::new(x).unwrap()
    }

    #[test]
    fn shared_needs_all_three_differences_within_alpha_inclusive() {
        let (alpha, beta) = (t(0.1), t(0.2));
        // Every |Δ| exactly 0.1 (decimal): shared.
        assert_eq!(classify_after_distillation(0.5, 0.4, 0.4, alpha, beta), Label::Shared);
        assert_eq!(classify_after_distillation(0.4, 0.3, 0.35, alpha, beta), Label::Shared);
        // |Δ_TD| just over α: not shared; Δ_TS = 0.1 ≤ β: boosted.
        assert_eq!(classify_after_distillation(0.5, 0.4, 0.3999, alpha, beta), Label::Boosted);
        assert_eq!(classify_after_distillation(0.5, 0.45, 0.4001, alpha, beta), Label::Shared);
        assert_eq!(classify_after_distillation(0.5, 0.4, 0.3, alpha, beta), Label::Boosted);
    }

    #[test]
    fn teacher_and_student_need_more_than_beta() {
        let (alpha, beta) = (t(0.1), t(0.2));
        // Δ_TS exactly β: boosted, not teacher.
        assert_eq!(classify_after_distillation(0.7, 0.5, 0.9, alpha, beta), Label::Boosted);
        assert_eq!(classify_after_distillation(0.7001, 0.5, 0.9, alpha, beta), Label::Teacher);
        // −Δ_TS exactly β: boosted, not student.
        assert_eq!(classify_after_distillation(0.5, 0.7, 0.9, alpha, beta), Label::Boosted);
        assert_eq!(classify_after_distillation(0.5, 0.7001, 0.9, alpha, beta), Label::Student);
    }

    #[test]
    fn shared_wins_over_teacher_when_beta_is_below_alpha() {
        // Δ_TS = 0.1 > β = 0.05, but all within α: the order puts shared first.
        assert_eq!(classify_after_distillation(0.6, 0.5, 0.55, t(0.1), t(0.05)), Label::Shared);
    }

    #[test]
    fn before_training_boundaries() {
        let beta = t(0.1);
        assert_eq!(classify_before_training(0.4, 0.3, beta), Label::Common);
        assert_eq!(classify_before_training(0.3, 0.4, beta), Label::Common);
        assert_eq!(classify_before_training(0.40001, 0.3, beta), Label::Teacher);
        assert_eq!(classify_before_training(0.3, 0.40001, beta), Label::Student);
    }

    #[test]
    fn thresholds_are_validated() {
        assert!(Threshold::new(-0.1).is_err());
        assert!(Threshold::new(f64::NAN).is_err());
        assert!("1.5".parse::<Threshold>().is_err());
        let message = "abc".parse::<Threshold>().unwrap_err().to_string();
        assert_eq!(message, "invalid threshold `abc`; it must be a number from 0 to 1");
        assert_eq!("0.15".parse::<Threshold>().unwrap().value(), 0.15);
    }
}
