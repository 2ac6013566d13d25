//! Ranks and top tokens of a row of logits, for answers in vLLM's
//! `prompt_logprobs` shape (the actual token's log-probability and rank,
//! and the k most likely tokens).

use crate::kernels::row_logsumexp;

/// One scored position.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionLogprobs {
    /// The actual token's log-probability.
    pub logprob: f32,
    /// 1 + the number of tokens with a strictly higher logit (vLLM's rank).
    pub rank: u32,
    /// The most likely tokens, most likely first (ties: lower id first).
    pub top: Vec<(u32, f32)>,
}

/// Every scored position of a prompt, and the most likely next token.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PromptLogprobs {
    pub positions: Vec<PositionLogprobs>,
    pub next: Option<(u32, f32)>,
}

impl PositionLogprobs {
    /// From a row of logits and the actual token.
    pub fn of(logits: &[f32], target: u32, top: usize) -> Self {
        let (max, log_sum) = row_logsumexp(logits);
        let chosen = logits[target as usize];
        if top > 1 {
            let rank = 1 + logits.iter().filter(|&&x| x > chosen).count() as u32;
            let top = top_logits(logits, top).into_iter().map(|(id, x)| (id, x - max - log_sum)).collect();
            return PositionLogprobs { logprob: chosen - max - log_sum, rank, top };
        }
        // One pass for the rank and the most likely token (the first id at
        // the maximum), the common case (vLLM's prompt_logprobs 0 or 1).
        let (mut greater, mut best) = (0u32, None);
        for (id, &x) in logits.iter().enumerate() {
            greater += u32::from(x > chosen);
            if best.is_none() && x == max {
                best = Some(id as u32);
            }
        }
        let top = match (top, best) {
            (1, Some(id)) => vec![(id, max - max - log_sum)],
            _ => Vec::new(),
        };
        PositionLogprobs { logprob: chosen - max - log_sum, rank: 1 + greater, top }
    }
}

/// The `k` most likely tokens of a row of logits with their log-probabilities.
pub fn top_tokens(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let (max, log_sum) = row_logsumexp(logits);
    top_logits(logits, k).into_iter().map(|(id, x)| (id, x - max - log_sum)).collect()
}

/// The `k` largest logits with their ids, largest first, lower id first on ties.
fn top_logits(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    if k == 0 {
        return best;
    }
    for (id, &x) in logits.iter().enumerate() {
        if best.len() == k && best.last().is_some_and(|&(_, worst)| x <= worst) {
            continue;
        }
        let at = best.partition_point(|&(_, y)| y >= x);
        best.insert(at, (id as u32, x));
        best.truncate(k);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_and_top_follow_the_logits() {
        let logits = [0.5f32, 2.0, -1.0, 2.0, 1.0];
        let position = PositionLogprobs::of(&logits, 4, 3);
        assert_eq!(position.rank, 3);
        let ids: Vec<u32> = position.top.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, vec![1, 3, 4]);
        let log_z = logits.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
        assert!((position.logprob as f64 - (1.0 - log_z)).abs() < 1e-6);
        assert!((position.top[0].1 as f64 - (2.0 - log_z)).abs() < 1e-6);
        assert_eq!(PositionLogprobs::of(&logits, 1, 0).rank, 1);
        // The one-pass path (top ≤ 1) agrees with the general one.
        for target in 0..5 {
            let one = PositionLogprobs::of(&logits, target, 1);
            let general = PositionLogprobs::of(&logits, target, 2);
            assert_eq!((one.logprob, one.rank), (general.logprob, general.rank));
            assert_eq!(one.top[0], general.top[0]);
        }
        assert_eq!(top_tokens(&logits, 1)[0].0, 1);
        assert!(top_tokens(&logits, 0).is_empty());
        assert_eq!(top_tokens(&logits, 9).len(), 5);
    }
}
