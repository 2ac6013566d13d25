//! The binary layout of one cached value (see the crate docs).

use whence_core::ByteSpan;
use whence_score::TokenLogprobs;

/// The layout version written in the first byte of every value.
pub const FORMAT_VERSION: u8 = 1;

/// The version byte and the token count.
const HEADER_BYTES: usize = 1 + 8;

/// Two u64 offsets and one f64 per token.
const TOKEN_BYTES: usize = 8 + 8 + 8;

/// The value stored for `scores`, or why it cannot be stored (as many spans
/// as log-probabilities are needed: the layout has one count).
pub fn encode(scores: &TokenLogprobs) -> Result<Vec<u8>, String> {
    let count = scores.spans.len();
    if scores.logprobs.len() != count {
        return Err(format!("{} log-probabilities for {} spans; there must be one per span", scores.logprobs.len(), count));
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + TOKEN_BYTES * count);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&(count as u64).to_le_bytes());
    for span in &scores.spans {
        out.extend_from_slice(&(span.start as u64).to_le_bytes());
        out.extend_from_slice(&(span.end as u64).to_le_bytes());
    }
    for logprob in &scores.logprobs {
        out.extend_from_slice(&logprob.to_bits().to_le_bytes());
    }
    Ok(out)
}

/// The scores a stored value holds, or what is wrong with it.
pub fn decode(value: &[u8]) -> Result<TokenLogprobs, String> {
    let Some((&version, rest)) = value.split_first() else {
        return Err("the stored value is empty".into());
    };
    if version != FORMAT_VERSION {
        return Err(format!("the stored value has format version `{version}`; this whence reads version {FORMAT_VERSION}"));
    }
    let Some((count_bytes, body)) = rest.split_first_chunk::<8>() else {
        return Err(format!("the stored value is {} bytes long, shorter than its {HEADER_BYTES}-byte header", value.len()));
    };
    let count = u64::from_le_bytes(*count_bytes);
    let needed = count.checked_mul(TOKEN_BYTES as u64).and_then(|bytes| bytes.checked_add(HEADER_BYTES as u64));
    if needed != Some(value.len() as u64) {
        let needed = needed.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string());
        return Err(format!("the stored value is {} bytes long but its token count `{count}` needs {needed} bytes", value.len()));
    }
    // `needed` equals the value's length, so the count fits in a usize.
    let count = count as usize;
    let (span_bytes, logprob_bytes) = body.split_at(16 * count);
    let offset = |bytes: &[u8]| -> Result<usize, String> {
        let offset = u64::from_le_bytes(bytes.try_into().expect("8-byte chunk"));
        usize::try_from(offset).map_err(|_| format!("the stored byte offset `{offset}` does not fit in this platform's usize"))
    };
    let spans = span_bytes
        .chunks_exact(16)
        .map(|pair| Ok(ByteSpan { start: offset(&pair[..8])?, end: offset(&pair[8..])? }))
        .collect::<Result<Vec<_>, String>>()?;
    let logprobs =
        logprob_bytes.chunks_exact(8).map(|bits| f64::from_bits(u64::from_le_bytes(bits.try_into().expect("8-byte chunk")))).collect();
    Ok(TokenLogprobs { spans, logprobs })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scores(tokens: &[(usize, usize, f64)]) -> TokenLogprobs {
        TokenLogprobs {
            spans: tokens.iter().map(|&(start, end, _)| ByteSpan { start, end }).collect(),
            logprobs: tokens.iter().map(|&(_, _, logprob)| logprob).collect(),
        }
    }

    fn bits(scores: &TokenLogprobs) -> Vec<u64> {
        scores.logprobs.iter().map(|lp| lp.to_bits()).collect()
    }

    #[test]
    fn layout_is_the_documented_one() {
        let value = encode(&scores(&[(0, 0, -0.0), (0, 3, -1.5)])).unwrap();
        let mut expected = vec![1u8];
        expected.extend(2u64.to_le_bytes());
        for offset in [0u64, 0, 0, 3] {
            expected.extend(offset.to_le_bytes());
        }
        expected.extend((-0.0f64).to_bits().to_le_bytes());
        expected.extend((-1.5f64).to_bits().to_le_bytes());
        assert_eq!(value, expected);
    }

    #[test]
    fn round_trips_bit_exactly() {
        let special = [-0.0, 0.0, -f64::MIN_POSITIVE / 4.0, -5e-324, -1e-300, -f64::MAX, -1.0 / 3.0, f64::NAN, f64::NEG_INFINITY];
        let mut tokens: Vec<(usize, usize, f64)> = special.iter().enumerate().map(|(i, &lp)| (i, i + 1, lp)).collect();
        tokens.extend((0..10_000).map(|i| (i * 3, i * 3 + 3, -(i as f64) * 1.000_000_1e-3)));
        tokens.push((usize::MAX, usize::MAX, -2.0));
        tokens.push((7, 2, -2.0)); // kept as given, even reversed
        let original = scores(&tokens);
        let decoded = decode(&encode(&original).unwrap()).unwrap();
        assert_eq!(decoded.spans, original.spans);
        assert_eq!(bits(&decoded), bits(&original));
    }

    #[test]
    fn empty_scores_round_trip() {
        let value = encode(&TokenLogprobs::default()).unwrap();
        assert_eq!(value.len(), HEADER_BYTES);
        assert_eq!(decode(&value).unwrap(), TokenLogprobs::default());
    }

    #[test]
    fn mismatched_lengths_are_not_stored() {
        let mut bad = scores(&[(0, 1, -1.0)]);
        bad.logprobs.push(-2.0);
        assert_eq!(encode(&bad).unwrap_err(), "2 log-probabilities for 1 spans; there must be one per span");
    }

    #[test]
    fn every_truncation_and_extension_is_rejected() {
        let value = encode(&scores(&[(0, 1, -1.0), (1, 2, -2.0), (2, 4, -0.5)])).unwrap();
        for len in 0..value.len() {
            assert!(decode(&value[..len]).is_err(), "accepted a value cut to {len} bytes");
        }
        let mut longer = value.clone();
        longer.push(0);
        assert!(decode(&longer).unwrap_err().contains("needs 81 bytes"));
    }

    #[test]
    fn bad_headers_are_described() {
        assert_eq!(decode(&[]).unwrap_err(), "the stored value is empty");
        assert_eq!(
            decode(&[2, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            "the stored value has format version `2`; this whence reads version 1"
        );
        assert_eq!(decode(&[1, 0, 0]).unwrap_err(), "the stored value is 3 bytes long, shorter than its 9-byte header");
        let mut huge = vec![1u8];
        huge.extend(u64::MAX.to_le_bytes());
        assert_eq!(
            decode(&huge).unwrap_err(),
            format!("the stored value is 9 bytes long but its token count `{}` needs more than 2^64 bytes", u64::MAX)
        );
    }
}
