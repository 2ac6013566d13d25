//! Tokenization of prompt + response matches transformers' on the reference
//! cases: same ids, same first response token, spans = offsets − prompt length.

use std::path::PathBuf;

use tokenizers::Tokenizer;
use whence_encode::encode;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures")
}

#[test]
fn ids_and_spans_match_the_reference() {
    for name in ["tiny-qwen2", "tiny-qwen3", "tiny-llama3", "tiny-mistral", "tiny-llama2"] {
        let tokenizer = Tokenizer::from_file(fixtures().join(name).join("tokenizer.json")).unwrap();
        let expected: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fixtures().join(format!("expected/{name}.json"))).unwrap()).unwrap();
        for case in expected["cases"].as_array().unwrap() {
            let prompt = case["prompt_text"].as_str().unwrap();
            let response = case["response"].as_str().unwrap();
            let raw = case["kind"] == "raw";
            let encoded = encode(&tokenizer, prompt, response, raw).unwrap();
            let ids: Vec<u32> = case["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(encoded.ids, ids, "{name}/{}", case["name"]);
            assert_eq!(encoded.first_scored as u64, case["first_response_token"].as_u64().unwrap(), "{name}/{}", case["name"]);
            let prompt_len = case["prompt_byte_len"].as_u64().unwrap() as usize;
            for (span, offset) in encoded.spans.iter().zip(&case["offsets"].as_array().unwrap()[encoded.first_scored..]) {
                let (start, end) = (offset[0].as_u64().unwrap() as usize, offset[1].as_u64().unwrap() as usize);
                assert_eq!((span.start, span.end), (start.saturating_sub(prompt_len), end - prompt_len));
            }
        }
    }
}

/// Real R1-distill traces through a byte-level BPE tokenizer: the scored
/// tokens' spans cover the response exactly (in order, on char boundaries,
/// overlapping only where byte-level pieces share a character), and every
/// action gets at least one token.
#[test]
fn spans_on_real_traces_cover_every_action() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/trajectories/thought_anchors.jsonl");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipping: {} not found", path.display());
        return;
    };
    let tokenizer = Tokenizer::from_file(fixtures().join("tiny-qwen2/tokenizer.json")).unwrap();
    let mut checked = 0;
    for line in text.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let prompt = format!("{}\n<think>\n", record["question"].as_str().unwrap());
        let response = record["response"].as_str().unwrap();
        let encoded = encode(&tokenizer, &prompt, response, false).unwrap();
        let mut covered = 0;
        for span in &encoded.spans {
            assert!(response.is_char_boundary(span.start) && response.is_char_boundary(span.end), "{span}");
            assert!(span.end <= response.len());
            // Either the next piece, or another piece of the same character.
            assert!(span.start == covered || span.end == covered, "gap or disorder at {span} (covered {covered})");
            covered = covered.max(span.end);
        }
        assert_eq!(covered, response.len(), "the response is not covered");
        let actions = whence_core::segment::segment(response);
        let logprobs = vec![-1.0; encoded.spans.len()];
        let scores = whence_core::AlignedResponse::new(response, &actions).score(&encoded.spans, &logprobs);
        assert!(scores.tokens.iter().all(|&n| n > 0), "an action got no token");
        checked += actions.len();
    }
    assert!(checked > 1000, "only {checked} actions checked");
}
