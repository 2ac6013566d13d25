//! Sampling settings and the token sampler, shared by every generation
//! backend (in-process checkpoints, `whence serve`) so that the same seed
//! and settings draw the same tokens from the same logits everywhere.
//!
//! - [`Temperature`], [`TopP`], [`TopK`]: validated settings;
//!   [`SamplingParams`] holds them.
//! - [`TokenSampler`]: one sequence's sampler — its own random stream
//!   (ChaCha8, seeded from a `u64`), drawing one token from a row of logits.
//! - [`request_seed`] and [`choice_seed`]: the streams of a run. Sample `k`
//!   of a question draws from `choice_seed(request_seed(seed, question_id),
//!   k)`, so a sample's random numbers do not depend on which other samples
//!   or questions are drawn, nor on the order they run in. (The logits it
//!   draws from can differ in the last bits with the number of samples
//!   decoded in one batch, so the same `--samples` is part of what makes a
//!   run reproducible.)
//!
//! The order of the filters is that of vLLM and `transformers`: logits are
//! divided by the temperature, then cut to the `top_k` largest, then to the
//! smallest set of most likely tokens whose probability reaches `top_p`, and
//! renormalised. Temperature 0 is greedy (the most likely token; ties go to
//! the smallest id). All arithmetic after the logits is in f64, in a fixed
//! order, so a draw depends only on the logits, the settings and the stream.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A setting out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{setting} `{value}` {expected}")]
pub struct SamplingError {
    pub setting: &'static str,
    pub value: String,
    pub expected: &'static str,
}

/// The softmax temperature: finite and ≥ 0; 0 is greedy decoding.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, serde::Serialize)]
#[serde(transparent)]
pub struct Temperature(f64);

impl Temperature {
    pub const GREEDY: Temperature = Temperature(0.0);

    pub fn new(value: f64) -> Result<Self, SamplingError> {
        if value.is_finite() && value >= 0.0 {
            Ok(Temperature(value))
        } else {
            Err(SamplingError { setting: "temperature", value: value.to_string(), expected: "must be a finite number ≥ 0 (0: greedy)" })
        }
    }

    pub fn value(self) -> f64 {
        self.0
    }

    pub fn is_greedy(self) -> bool {
        self.0 == 0.0
    }
}

/// Nucleus sampling's probability mass, in (0, 1]; 1 keeps every token.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, serde::Serialize)]
#[serde(transparent)]
pub struct TopP(f64);

impl TopP {
    pub const ALL: TopP = TopP(1.0);

    pub fn new(value: f64) -> Result<Self, SamplingError> {
        if value > 0.0 && value <= 1.0 {
            Ok(TopP(value))
        } else {
            Err(SamplingError { setting: "top_p", value: value.to_string(), expected: "must be in (0, 1] (1: no nucleus cut)" })
        }
    }

    pub fn value(self) -> f64 {
        self.0
    }
}

/// How many of the most likely tokens are kept; `None` keeps all (written
/// `0` or `-1` on the command line and by servers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct TopK(Option<usize>);

impl TopK {
    pub const ALL: TopK = TopK(None);

    /// `k` ≥ 1 keeps the `k` most likely tokens; 0 or −1 keeps all.
    pub fn new(value: i64) -> Result<Self, SamplingError> {
        match value {
            0 | -1 => Ok(TopK(None)),
            k if k >= 1 => Ok(TopK(Some(k as usize))),
            other => {
                Err(SamplingError { setting: "top_k", value: other.to_string(), expected: "must be ≥ 1, or 0 or -1 to keep every token" })
            }
        }
    }

    pub fn value(self) -> Option<usize> {
        self.0
    }
}

macro_rules! parse_as {
    ($type:ty, $number:ty, $setting:literal, $expected:literal) => {
        impl std::str::FromStr for $type {
            type Err = SamplingError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let value: $number =
                    s.trim().parse().map_err(|_| SamplingError { setting: $setting, value: s.to_string(), expected: $expected })?;
                <$type>::new(value)
            }
        }
    };
}
parse_as!(Temperature, f64, "temperature", "is not a number");
parse_as!(TopP, f64, "top_p", "is not a number");
parse_as!(TopK, i64, "top_k", "is not an integer");

/// How tokens are drawn from a model's logits.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct SamplingParams {
    pub temperature: Temperature,
    pub top_p: TopP,
    pub top_k: TopK,
}

impl Default for SamplingParams {
    /// Plain sampling from the model's distribution (temperature 1, no cuts).
    fn default() -> Self {
        SamplingParams { temperature: Temperature(1.0), top_p: TopP::ALL, top_k: TopK::ALL }
    }
}

impl SamplingParams {
    pub fn greedy() -> Self {
        SamplingParams { temperature: Temperature::GREEDY, ..Default::default() }
    }

    /// The distribution tokens are drawn from: `(token, probability)` of
    /// every token that can be drawn, most likely first (ties: smaller id
    /// first), probabilities summing to 1. Greedy settings give one token.
    /// What [`TokenSampler::sample`] draws from, spelled out (for tests and
    /// for explaining a setting); the sampler itself avoids the full sort
    /// when no cut applies.
    pub fn distribution(&self, logits: &[f32]) -> Vec<(u32, f64)> {
        if logits.is_empty() {
            return Vec::new();
        }
        if self.temperature.is_greedy() {
            return vec![(argmax(logits), 1.0)];
        }
        let mut kept = scaled_sorted(logits, self.temperature.value());
        self.cut(&mut kept);
        let max = kept[0].0;
        let weights: Vec<f64> = kept.iter().map(|&(z, _)| (z - max).exp()).collect();
        let total: f64 = weights.iter().sum();
        kept.iter().zip(weights).map(|(&(_, token), w)| (token, w / total)).collect()
    }

    /// Applies top-k then top-p to `(scaled logit, token)` sorted most likely first.
    fn cut(&self, kept: &mut Vec<(f64, u32)>) {
        if let Some(k) = self.top_k.value() {
            kept.truncate(k.max(1));
        }
        if self.top_p.value() < 1.0 {
            let max = kept[0].0;
            let weights: Vec<f64> = kept.iter().map(|&(z, _)| (z - max).exp()).collect();
            let total: f64 = weights.iter().sum();
            // Keep token j while the mass of the tokens before it is below p.
            let mut before = 0.0;
            let mut keep = 0;
            for w in &weights {
                if before / total >= self.top_p.value() {
                    break;
                }
                before += w;
                keep += 1;
            }
            kept.truncate(keep.max(1));
        }
    }
}

/// A logit as a number to sort by: NaN counts as −∞.
fn finite_or_low(x: f32) -> f64 {
    if x.is_nan() {
        f64::NEG_INFINITY
    } else {
        f64::from(x)
    }
}

/// The most likely token; ties go to the smallest id, NaN never wins.
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut best_value = f64::NEG_INFINITY;
    for (i, &x) in logits.iter().enumerate() {
        let x = finite_or_low(x);
        if x > best_value {
            best = i;
            best_value = x;
        }
    }
    best as u32
}

/// `(logit / temperature, token)` of every token, most likely first (ties:
/// smaller id first).
fn scaled_sorted(logits: &[f32], temperature: f64) -> Vec<(f64, u32)> {
    let mut scaled: Vec<(f64, u32)> = logits.iter().enumerate().map(|(i, &x)| (finite_or_low(x) / temperature, i as u32)).collect();
    scaled.sort_unstable_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scaled
}

/// The log-probability of `token` under the softmax of `logits` at
/// temperature 1, without any cut (what `--logprobs` files and vLLM's
/// `logprobs` report), in f64.
pub fn raw_logprob(logits: &[f32], token: u32) -> f64 {
    let max = logits.iter().map(|&x| finite_or_low(x)).fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|&x| (finite_or_low(x) - max).exp()).sum();
    finite_or_low(logits[token as usize]) - max - sum.ln()
}

/// The stream seed of one question's samples: `seed` mixed with the
/// question id (FNV-1a 64 through SplitMix64), cut to 63 bits so that it
/// travels as a non-negative integer in a server request's `seed` (which
/// `whence serve` then expands with [`choice_seed`] exactly as in-process
/// generation does).
pub fn request_seed(seed: u64, question_id: &str) -> u64 {
    splitmix64(seed ^ splitmix64(fnv1a64(question_id.as_bytes()))) >> 1
}

/// The stream of choice (sample) `index` of a request seeded with `request_seed`.
pub fn choice_seed(request_seed: u64, index: usize) -> u64 {
    splitmix64(request_seed ^ splitmix64(0x5eed_0000_0000_0000 ^ index as u64))
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The earliest occurrence of any non-empty stop string in `text`: its byte
/// position and the string (the first listed, of those found there). The
/// one rule of where a stop string cuts a sample, for every backend.
pub fn first_stop<'s>(text: &str, stop: &'s [String]) -> Option<(usize, &'s str)> {
    let mut best: Option<(usize, &str)> = None;
    for s in stop.iter().filter(|s| !s.is_empty()) {
        if let Some(at) = text.find(s.as_str()) {
            if best.is_none_or(|(b, _)| at < b) {
                best = Some((at, s.as_str()));
            }
        }
    }
    best
}

/// One sequence's sampler: the settings and its own random stream.
#[derive(Debug, Clone)]
pub struct TokenSampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
}

impl TokenSampler {
    pub fn new(params: SamplingParams, stream_seed: u64) -> Self {
        TokenSampler { params, rng: ChaCha8Rng::seed_from_u64(stream_seed) }
    }

    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// A uniform number in [0, 1) with 53 random bits.
    fn uniform(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Draws the next token from a row of logits. Greedy settings draw no
    /// random number, so greedy decoding leaves the stream untouched.
    pub fn sample(&mut self, logits: &[f32]) -> u32 {
        assert!(!logits.is_empty(), "sampling from an empty vocabulary");
        let params = self.params;
        if params.temperature.is_greedy() {
            return argmax(logits);
        }
        let u = self.uniform();
        let temperature = params.temperature.value();
        if params.top_k.value().is_none() && params.top_p.value() >= 1.0 {
            // No cut: walk the whole softmax in id order, no sort needed.
            let max = logits.iter().map(|&x| finite_or_low(x) / temperature).fold(f64::NEG_INFINITY, f64::max);
            let total: f64 = logits.iter().map(|&x| (finite_or_low(x) / temperature - max).exp()).sum();
            let target = u * total;
            let mut cumulative = 0.0;
            let mut last = 0;
            for (i, &x) in logits.iter().enumerate() {
                let w = (finite_or_low(x) / temperature - max).exp();
                if w > 0.0 {
                    cumulative += w;
                    last = i;
                    if cumulative > target {
                        return i as u32;
                    }
                }
            }
            return last as u32;
        }
        let distribution = params.distribution(logits);
        let mut cumulative = 0.0;
        for &(token, p) in &distribution {
            cumulative += p;
            if cumulative > u {
                return token;
            }
        }
        distribution.last().map_or(0, |&(token, _)| token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_p: f64, top_k: i64) -> SamplingParams {
        SamplingParams {
            temperature: Temperature::new(temperature).unwrap(),
            top_p: TopP::new(top_p).unwrap(),
            top_k: TopK::new(top_k).unwrap(),
        }
    }

    /// Logits whose softmax at temperature 1 is exactly `probabilities`.
    fn logits_of(probabilities: &[f64]) -> Vec<f32> {
        probabilities.iter().map(|&p| p.ln() as f32).collect()
    }

    #[test]
    fn settings_are_validated_with_the_bad_value_quoted() {
        assert!(Temperature::new(-0.1).unwrap_err().to_string().contains("`-0.1`"));
        assert!(Temperature::new(f64::NAN).is_err());
        assert!("abc".parse::<Temperature>().unwrap_err().to_string().contains("temperature `abc` is not a number"));
        assert!(TopP::new(0.0).is_err() && TopP::new(1.5).is_err() && TopP::new(1.0).is_ok());
        assert_eq!(TopK::new(0).unwrap(), TopK::ALL);
        assert_eq!(TopK::new(-1).unwrap(), TopK::ALL);
        assert!(TopK::new(-2).unwrap_err().to_string().contains("top_k `-2`"));
        assert_eq!("5".parse::<TopK>().unwrap().value(), Some(5));
    }

    #[test]
    fn the_distribution_of_a_hand_made_example() {
        // p = 0.5, 0.25, 0.15, 0.1 for tokens 2, 0, 3, 1.
        let logits = logits_of(&[0.25, 0.1, 0.5, 0.15]);
        let close = |got: &[(u32, f64)], want: &[(u32, f64)]| {
            assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
            for (g, w) in got.iter().zip(want) {
                assert_eq!(g.0, w.0, "{got:?} vs {want:?}");
                assert!((g.1 - w.1).abs() < 1e-6, "{got:?} vs {want:?}");
            }
        };
        close(&params(1.0, 1.0, 0).distribution(&logits), &[(2, 0.5), (0, 0.25), (3, 0.15), (1, 0.1)]);
        // top-k 2: the two most likely, renormalised.
        close(&params(1.0, 1.0, 2).distribution(&logits), &[(2, 0.5 / 0.75), (0, 0.25 / 0.75)]);
        // top-p 0.5: token 2 alone reaches it; 0.6 needs token 0 too; 0.75 exactly is reached by two.
        close(&params(1.0, 0.5, 0).distribution(&logits), &[(2, 1.0)]);
        close(&params(1.0, 0.6, 0).distribution(&logits), &[(2, 0.5 / 0.75), (0, 0.25 / 0.75)]);
        close(&params(1.0, 0.9, 0).distribution(&logits), &[(2, 0.5 / 0.9), (0, 0.25 / 0.9), (3, 0.15 / 0.9)]);
        // Temperature 2 flattens: p ∝ sqrt(p).
        let roots: Vec<f64> = [0.5f64, 0.25, 0.15, 0.1].iter().map(|p| p.sqrt()).collect();
        let sum: f64 = roots.iter().sum();
        close(
            &params(2.0, 1.0, 0).distribution(&logits),
            &[(2, roots[0] / sum), (0, roots[1] / sum), (3, roots[2] / sum), (1, roots[3] / sum)],
        );
        // top-k before top-p: k 3 renormalises to 0.5/0.9, …; p 0.6 then keeps two.
        close(&params(1.0, 0.6, 3).distribution(&logits), &[(2, 0.5 / 0.75), (0, 0.25 / 0.75)]);
        // Greedy: the argmax; ties to the smallest id; NaN never wins.
        close(&params(0.0, 1.0, 0).distribution(&logits), &[(2, 1.0)]);
        assert_eq!(argmax(&[1.0, 3.0, 3.0, f32::NAN]), 1);
        assert_eq!(argmax(&[f32::NAN, f32::NEG_INFINITY, -1.0]), 2);
    }

    #[test]
    fn draws_follow_the_distribution() {
        let logits = logits_of(&[0.25, 0.1, 0.5, 0.15]);
        for (settings, want) in [
            (params(1.0, 1.0, 0), vec![0.25, 0.1, 0.5, 0.15]),
            (params(1.0, 1.0, 2), vec![0.25 / 0.75, 0.0, 0.5 / 0.75, 0.0]),
            (params(1.0, 0.9, 0), vec![0.25 / 0.9, 0.0, 0.5 / 0.9, 0.15 / 0.9]),
            (params(0.5, 1.0, 0), {
                let sq = [0.0625, 0.01, 0.25, 0.0225];
                let s: f64 = sq.iter().sum();
                sq.iter().map(|x| x / s).collect()
            }),
        ] {
            let mut sampler = TokenSampler::new(settings, 7);
            let n = 40_000;
            let mut counts = [0usize; 4];
            for _ in 0..n {
                counts[sampler.sample(&logits) as usize] += 1;
            }
            for (token, (&count, &p)) in counts.iter().zip(&want).enumerate() {
                let got = count as f64 / n as f64;
                // 5 standard errors at most.
                let tolerance = 5.0 * (p * (1.0 - p) / n as f64).sqrt() + 1e-9;
                assert!((got - p).abs() <= tolerance, "{settings:?}: token {token} drawn {got}, expected {p}");
            }
        }
    }

    #[test]
    fn greedy_draws_no_random_numbers_and_streams_are_reproducible() {
        let logits = logits_of(&[0.25, 0.1, 0.5, 0.15]);
        let mut greedy = TokenSampler::new(SamplingParams::greedy(), 1);
        assert!((0..10).all(|_| greedy.sample(&logits) == 2));
        let draw = |seed| {
            let mut s = TokenSampler::new(SamplingParams::default(), seed);
            (0..64).map(|_| s.sample(&logits)).collect::<Vec<_>>()
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
        let q = request_seed(0, "q1");
        assert_ne!(q, request_seed(0, "q2"));
        assert_ne!(q, request_seed(1, "q1"));
        assert_ne!(choice_seed(q, 0), choice_seed(q, 1));
    }

    #[test]
    fn the_earliest_stop_string_wins() {
        let stop: Vec<String> = vec!["END".into(), "STOP".into(), "".into()];
        assert_eq!(first_stop("abc STOP def END", &stop), Some((4, "STOP")));
        assert_eq!(first_stop("abc", &stop), None);
        let same: Vec<String> = vec!["bc".into(), "b".into()];
        assert_eq!(first_stop("abc", &same), Some((1, "bc")));
    }

    #[test]
    fn raw_logprob_is_the_plain_log_softmax() {
        let logits = logits_of(&[0.25, 0.1, 0.5, 0.15]);
        assert!((raw_logprob(&logits, 2) - 0.5f64.ln()).abs() < 1e-6);
        assert!((raw_logprob(&logits, 1) - 0.1f64.ln()).abs() < 1e-6);
    }

    proptest::proptest! {
        #[test]
        fn every_draw_is_in_the_distribution(
            logits in proptest::collection::vec(-20f32..20.0, 1..64),
            temperature in 0.0f64..3.0,
            top_p in 0.01f64..1.0,
            top_k in -1i64..10,
            seed: u64,
        ) {
            let settings = params(temperature, top_p, top_k);
            let distribution = settings.distribution(&logits);
            let total: f64 = distribution.iter().map(|d| d.1).sum();
            proptest::prop_assert!((total - 1.0).abs() < 1e-9);
            let mut sampler = TokenSampler::new(settings, seed);
            for _ in 0..8 {
                let token = sampler.sample(&logits);
                proptest::prop_assert!(distribution.iter().any(|&(t, p)| t == token && p > 0.0), "{} not in {:?}", token, distribution);
            }
        }
    }
}
