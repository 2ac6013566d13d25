//! Tokenization of prompt + response matches transformers' on the reference
//! cases: same ids, same first response token, spans = offsets − prompt length.

use std::path::PathBuf;

use tokenizers::Tokenizer;
use whence_checkpoint::encode::encode;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures")
}

#[test]
fn ids_and_spans_match_the_reference() {
    for name in ["tiny-qwen2", "tiny-qwen3", "tiny-llama3", "tiny-mistral"] {
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
