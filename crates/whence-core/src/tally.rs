//! Label counts and shares.

use serde::{Deserialize, Serialize};

use crate::label::Label;

/// How many actions carry each label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LabelCounts {
    pub teacher: usize,
    pub student: usize,
    pub shared: usize,
    pub boosted: usize,
    pub common: usize,
    pub unscored: usize,
}

impl LabelCounts {
    pub fn of(labels: impl IntoIterator<Item = Label>) -> Self {
        let mut counts = LabelCounts::default();
        for label in labels {
            counts.add(label);
        }
        counts
    }

    pub fn add(&mut self, label: Label) {
        *self.slot(label) += 1;
    }

    pub fn merge(&mut self, other: &LabelCounts) {
        for label in Label::ALL {
            *self.slot(label) += other.count(label);
        }
    }

    fn slot(&mut self, label: Label) -> &mut usize {
        match label {
            Label::Teacher => &mut self.teacher,
            Label::Student => &mut self.student,
            Label::Shared => &mut self.shared,
            Label::Boosted => &mut self.boosted,
            Label::Common => &mut self.common,
            Label::Unscored => &mut self.unscored,
        }
    }

    pub fn count(&self, label: Label) -> usize {
        match label {
            Label::Teacher => self.teacher,
            Label::Student => self.student,
            Label::Shared => self.shared,
            Label::Boosted => self.boosted,
            Label::Common => self.common,
            Label::Unscored => self.unscored,
        }
    }

    pub fn total(&self) -> usize {
        self.scored() + self.unscored
    }

    pub fn scored(&self) -> usize {
        self.teacher + self.student + self.shared + self.boosted + self.common
    }

    /// The label's share of the scored actions; `None` when none is scored.
    pub fn share(&self, label: Label) -> Option<f64> {
        let scored = self.scored();
        (scored > 0).then(|| self.count(label) as f64 / scored as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_over_scored_actions() {
        let counts = LabelCounts::of([Label::Teacher, Label::Teacher, Label::Student, Label::Unscored]);
        assert_eq!(counts.total(), 4);
        assert_eq!(counts.scored(), 3);
        assert_eq!(counts.share(Label::Teacher), Some(2.0 / 3.0));
        assert_eq!(LabelCounts::default().share(Label::Teacher), None);
    }
}
