//! The position profile (SPEC §6; the paper's Fig. 3, 4 and 7).
//!
//! For each action index j: over the trajectories whose action j is scored,
//! the fraction of each label, overall and split by correctness, with the count
//! n_j behind each fraction; and the mean cumulative number of distilled-model
//! tokens up to and including action j (over the trajectories that have an
//! action j), with markers where that mean first reaches each multiple of the
//! marker step (4096 tokens by default: the paper's 4k markers).

use serde::Serialize;

use crate::label::Label;

/// The default spacing of token markers.
pub const DEFAULT_MARKER_TOKENS: u64 = 4096;

/// One trajectory as the profile sees it.
#[derive(Debug, Clone, Copy)]
pub struct ProfileInput<'a> {
    /// Per action, in response order; `Label::Unscored` for unscored ones.
    pub labels: &'a [Label],
    pub correct: Option<bool>,
    /// Per action, the distilled-model tokens that count toward it and toward
    /// no earlier action (see `ActionScores::first_tokens`).
    pub new_tokens: &'a [u32],
}

/// Label fractions at one index over one group of trajectories.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelFractions {
    /// Trajectories of the group whose action at this index is scored.
    pub n: usize,
    /// One fraction per label of [`PositionProfile::labels`]; 0 when n = 0.
    pub fractions: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionRow {
    pub index: usize,
    /// Trajectories that have an action at this index, scored or not.
    pub trajectories: usize,
    pub mean_cumulative_tokens: f64,
    pub all: LabelFractions,
    pub correct: LabelFractions,
    pub incorrect: LabelFractions,
    /// The multiple of the marker step first reached at this index, if any
    /// (the largest, when one index passes several).
    pub marker_tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TokenMarker {
    pub tokens: u64,
    pub index: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PositionProfile {
    pub labels: Vec<Label>,
    pub marker_step: u64,
    pub rows: Vec<PositionRow>,
    pub markers: Vec<TokenMarker>,
}

struct Tally {
    n: usize,
    counts: Vec<usize>,
}

impl Tally {
    fn new(labels: usize) -> Self {
        Tally { n: 0, counts: vec![0; labels] }
    }

    fn fractions(&self) -> LabelFractions {
        let fractions = self.counts.iter().map(|&c| if self.n == 0 { 0.0 } else { c as f64 / self.n as f64 }).collect();
        LabelFractions { n: self.n, fractions }
    }
}

/// Computes the profile over `trajectories` for the given `labels` (the
/// stage's label set, in the order the fractions are reported).
pub fn position_profile(trajectories: &[ProfileInput<'_>], labels: &[Label], marker_step: u64) -> PositionProfile {
    let longest = trajectories.iter().map(|t| t.labels.len()).max().unwrap_or(0);
    let mut rows = Vec::with_capacity(longest);
    let mut cumulative: Vec<u64> = vec![0; trajectories.len()];
    let mut markers = Vec::new();
    let mut next_marker = marker_step.max(1);
    for index in 0..longest {
        let mut groups = [Tally::new(labels.len()), Tally::new(labels.len()), Tally::new(labels.len())];
        let mut present = 0usize;
        let mut token_sum = 0u64;
        for (trajectory, running) in trajectories.iter().zip(cumulative.iter_mut()) {
            let Some(&label) = trajectory.labels.get(index) else { continue };
            *running += u64::from(trajectory.new_tokens.get(index).copied().unwrap_or(0));
            present += 1;
            token_sum += *running;
            let Some(slot) = labels.iter().position(|&l| l == label) else { continue };
            let count_in = |group: &mut Tally| {
                group.n += 1;
                group.counts[slot] += 1;
            };
            count_in(&mut groups[0]);
            match trajectory.correct {
                Some(true) => count_in(&mut groups[1]),
                Some(false) => count_in(&mut groups[2]),
                None => {}
            }
        }
        let mean_cumulative_tokens = token_sum as f64 / present as f64;
        let mut marker_tokens = None;
        while marker_step > 0 && mean_cumulative_tokens >= next_marker as f64 {
            markers.push(TokenMarker { tokens: next_marker, index });
            marker_tokens = Some(next_marker);
            next_marker += marker_step;
        }
        let [all, correct, incorrect] = groups.map(|g| g.fractions());
        rows.push(PositionRow { index, trajectories: present, mean_cumulative_tokens, all, correct, incorrect, marker_tokens });
    }
    PositionProfile { labels: labels.to_vec(), marker_step, rows, markers }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Label::*;

    #[test]
    fn fractions_counts_and_correctness_split() {
        let a = [Teacher, Student, Unscored];
        let b = [Teacher, Boosted];
        let c = [Shared];
        let inputs = [
            ProfileInput { labels: &a, correct: Some(true), new_tokens: &[10, 10, 10] },
            ProfileInput { labels: &b, correct: Some(false), new_tokens: &[20, 20] },
            ProfileInput { labels: &c, correct: None, new_tokens: &[30] },
        ];
        let profile = position_profile(&inputs, &Label::AFTER_DISTILLATION, 4096);
        assert_eq!(profile.rows.len(), 3);
        let row0 = &profile.rows[0];
        assert_eq!(row0.all.n, 3);
        assert_eq!(row0.all.fractions, vec![2.0 / 3.0, 0.0, 1.0 / 3.0, 0.0]);
        assert_eq!((row0.correct.n, row0.incorrect.n), (1, 1));
        assert_eq!(row0.mean_cumulative_tokens, 20.0);
        let row1 = &profile.rows[1];
        assert_eq!(row1.trajectories, 2);
        assert_eq!(row1.all.fractions, vec![0.0, 0.5, 0.0, 0.5]);
        assert_eq!(row1.mean_cumulative_tokens, 30.0);
        // Index 2: present in one trajectory but unscored there.
        let row2 = &profile.rows[2];
        assert_eq!((row2.trajectories, row2.all.n), (1, 0));
        assert_eq!(row2.all.fractions, vec![0.0; 4]);
        assert_eq!(row2.mean_cumulative_tokens, 30.0);
    }

    #[test]
    fn markers_where_the_mean_first_reaches_each_multiple() {
        let labels = [Teacher; 4];
        let inputs = [ProfileInput { labels: &labels, correct: None, new_tokens: &[4000, 96, 9000, 1] }];
        let profile = position_profile(&inputs, &Label::AFTER_DISTILLATION, 4096);
        // Cumulative: 4000, 4096, 13096, 13097.
        assert_eq!(
            profile.markers,
            vec![TokenMarker { tokens: 4096, index: 1 }, TokenMarker { tokens: 8192, index: 2 }, TokenMarker { tokens: 12288, index: 2 }]
        );
        let marks: Vec<Option<u64>> = profile.rows.iter().map(|r| r.marker_tokens).collect();
        assert_eq!(marks, vec![None, Some(4096), Some(12288), None]);
    }
}
