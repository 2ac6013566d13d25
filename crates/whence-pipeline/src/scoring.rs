//! Running one scorer over all records and aligning its tokens to actions.

use whence_core::{Action, ActionScores, AlignedResponse, Record, Segmenter};
use whence_io::Skipped;
use whence_score::{ScoreError, Scorer};

use crate::{PipelineError, Progress};

/// Records are handed to scorers in batches of this many (a server scorer
/// keeps up to `--max-in-flight` of a batch's requests going; a record that
/// fails the run ends it at the end of its batch).
const BATCH: usize = 64;

/// Scores `records` with [`Scorer::score_each`], advancing `progress` as
/// each record's result arrives; the results in input order.
pub fn score_with_progress(
    scorer: &mut dyn Scorer,
    records: &[&Record],
    progress: &dyn Progress,
) -> Vec<Result<whence_score::TokenLogprobs, ScoreError>> {
    let mut results: Vec<Option<Result<whence_score::TokenLogprobs, ScoreError>>> = (0..records.len()).map(|_| None).collect();
    scorer.score_each(records, &mut |index, result| {
        progress.advance(1, result.as_ref().map_or(0, |scores| scores.spans.len() as u64));
        if let Some(slot) = results.get_mut(index) {
            *slot = Some(result);
        }
    });
    results
        .into_iter()
        .map(|result| result.unwrap_or_else(|| Err(ScoreError::Failed("the scorer returned no result for a record".into()))))
        .collect()
}

/// One model's result for one record.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub scores: ActionScores,
    /// Mean log-probability over all the response's tokens (GRAPE's statistic).
    pub mean_logprob: Option<f64>,
}

/// Records cut into actions, and which of them are still in the analysis.
#[derive(Debug)]
pub struct Corpus {
    pub records: Vec<Record>,
    pub actions: Vec<Vec<Action>>,
    /// Records dropped by `--skip-invalid`, with why.
    pub skipped: Vec<Skipped>,
    active: Vec<bool>,
    /// Records skipped while reading the input, before the corpus was built.
    skipped_on_read: usize,
}

impl Corpus {
    /// `skipped_on_read`: how many records reading the input skipped, for
    /// the message when none is left.
    pub fn new(records: Vec<Record>, segmenter: &Segmenter, skipped_on_read: usize) -> Self {
        let actions = records.iter().map(|r| segmenter.segment(&r.response)).collect();
        let active = vec![true; records.len()];
        Corpus { records, actions, skipped: Vec::new(), active, skipped_on_read }
    }

    pub fn is_active(&self, index: usize) -> bool {
        self.active[index]
    }

    /// Indices of the records still in the analysis.
    pub fn active_indices(&self) -> Vec<usize> {
        (0..self.records.len()).filter(|&i| self.active[i]).collect()
    }

    /// Scores every active record with `scorer` (playing `role`). A record
    /// the scorer rejects is an error, or with `skip_invalid` is dropped and
    /// listed in `skipped`.
    pub fn score(
        &mut self,
        role: &str,
        scorer: &mut dyn Scorer,
        skip_invalid: bool,
        progress: &dyn Progress,
    ) -> Result<Vec<Option<Scored>>, PipelineError> {
        let mut results: Vec<Option<Scored>> = vec![None; self.records.len()];
        let active = self.active_indices();
        progress.start(role, active.len() as u64);
        for chunk in active.chunks(BATCH) {
            let batch: Vec<&Record> = chunk.iter().map(|&i| &self.records[i]).collect();
            let outcomes = score_with_progress(scorer, &batch, progress);
            for (&index, outcome) in chunk.iter().zip(outcomes) {
                match outcome {
                    Ok(token_logprobs) => {
                        let response = AlignedResponse::new(&self.records[index].response, &self.actions[index]);
                        let scores = response.score(&token_logprobs.spans, &token_logprobs.logprobs);
                        results[index] = Some(Scored { scores, mean_logprob: token_logprobs.mean_logprob() });
                    }
                    Err(error) => self.reject(index, role, error, skip_invalid)?,
                }
            }
        }
        scorer.release();
        progress.finish();
        Ok(results)
    }

    fn reject(&mut self, index: usize, role: &str, error: ScoreError, skip_invalid: bool) -> Result<(), PipelineError> {
        if !(skip_invalid && error.is_record_specific()) {
            return Err(PipelineError::Score { role: role.to_string(), source: error });
        }
        let record = &self.records[index];
        self.skipped.push(Skipped {
            location: record.source.to_string(),
            id: Some(record.id.clone()),
            reason: format!("{role} scorer: {error}"),
        });
        self.active[index] = false;
        Ok(())
    }

    /// Fails when nothing is left to analyse.
    pub fn ensure_some_active(&self) -> Result<(), PipelineError> {
        if self.active.iter().any(|&a| a) {
            return Ok(());
        }
        let total = self.records.len() + self.skipped_on_read;
        let reason =
            if total == 0 { "the input holds no record".to_string() } else { format!("all {total} records were skipped as invalid") };
        Err(PipelineError::NoRecords { reason })
    }
}
