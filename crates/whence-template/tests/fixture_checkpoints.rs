//! The fixture checkpoints' templates (`tests/reference/fixtures/tiny-*`), loaded
//! with `ChatTemplate::from_dir`, render every `"chat"` case's messages to the
//! `prompt_text` that `apply_chat_template(messages, tokenize=False,
//! add_generation_prompt=True)` gave (`tests/reference/fixtures/expected/*.json`).

use serde_json::Value;
use whence_template::{ChatTemplate, Message};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/reference/fixtures");

#[test]
fn fixture_chat_prompts_render_like_transformers() {
    let mut checked = 0;
    for name in ["tiny-llama3", "tiny-mistral", "tiny-qwen2", "tiny-qwen3"] {
        let dir = format!("{FIXTURES}/{name}");
        let template = ChatTemplate::from_dir(dir.as_ref()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let path = format!("{FIXTURES}/expected/{name}.json");
        let expected: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        // The special tokens recorded by the generator agree with tokenizer_config.json.
        let tok = &expected["tokenizer"];
        assert_eq!(template.bos_token(), tok["bos_token"].as_str(), "{name}");
        assert_eq!(template.eos_token(), tok["eos_token"].as_str(), "{name}");
        for case in expected["cases"].as_array().unwrap() {
            if case["kind"] != "chat" {
                continue;
            }
            let messages: Vec<Message> = serde_json::from_value(case["messages"].clone()).unwrap();
            let got = template.render(&messages, true, &Default::default()).unwrap_or_else(|e| panic!("{name}/{}: {e}", case["name"]));
            assert_eq!(got, case["prompt_text"].as_str().unwrap(), "{name}/{}", case["name"]);
            checked += 1;
        }
    }
    assert!(checked >= 8, "only {checked} chat cases");
}
