//! Every case of `tests/templates/expected.json` (rendered by Python jinja2 set up as
//! transformers sets it up) renders byte-identically; the `expected_errors.json`
//! cases fail with the template's `raise_exception` message.

use serde_json::{Map, Value};
use whence_template::{ChatTemplate, Message, TemplateError};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/templates");
const FIXED_TIME: (i32, u32, u32, u32, u32, u32) = (2026, 11, 26, 12, 0, 0);

fn load(file: &str) -> Vec<Value> {
    let path = format!("{TEMPLATES}/{file}");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The case's template with its special tokens, the messages, add_generation_prompt
/// and the remaining variables (tools, documents, enable_thinking, …) as extras.
fn prepare(case: &Value) -> (String, ChatTemplate, Vec<Message>, bool, Map<String, Value>) {
    let name = format!("{}/{}", case["template"].as_str().unwrap(), case["case"].as_str().unwrap());
    let path = format!("{TEMPLATES}/{}.jinja", case["template"].as_str().unwrap());
    let source = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut vars = case["variables"].as_object().unwrap().clone();
    let token = |v: Option<Value>| v.and_then(|v| v.as_str().map(str::to_string));
    let bos = token(vars.remove("bos_token"));
    let eos = token(vars.remove("eos_token"));
    let template =
        ChatTemplate::from_source(&source, &path, bos, eos).unwrap_or_else(|e| panic!("{name}: {e}")).with_fixed_time(FIXED_TIME);
    assert_eq!(template.source(), source);
    let messages: Vec<Message> =
        serde_json::from_value(vars.remove("messages").unwrap()).unwrap_or_else(|e| panic!("{name}: messages: {e}"));
    let add_generation_prompt = vars.remove("add_generation_prompt").unwrap().as_bool().unwrap();
    (name, template, messages, add_generation_prompt, vars)
}

#[test]
fn every_expected_case_renders_byte_identically() {
    let cases = load("expected.json");
    assert_eq!(cases.len(), 48);
    let mut failures = Vec::new();
    for case in &cases {
        let (name, template, messages, agp, extra) = prepare(case);
        let want = case["rendered"].as_str().unwrap();
        match template.render(&messages, agp, &extra) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("{name}: rendered differently\n--- want\n{want:?}\n--- got\n{got:?}")),
            Err(e) => failures.push(format!("{name}: {e}")),
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n\n"));
}

#[test]
fn expected_errors_are_raised_with_the_template_message() {
    let cases = load("expected_errors.json");
    assert_eq!(cases.len(), 2);
    for case in &cases {
        let (name, template, messages, agp, extra) = prepare(case);
        let want = case["error"].as_str().unwrap();
        match template.render(&messages, agp, &extra) {
            Err(err @ TemplateError::Render { raised: true, .. }) => {
                assert_eq!(err.raised_message(), Some(want), "{name}");
                assert!(err.to_string().ends_with(want), "{name}: {err}");
            }
            other => panic!("{name}: expected a raised exception {want:?}, got {other:?}"),
        }
    }
}

/// Case `messages` with extra fields go through `Message` unchanged (order kept).
#[test]
fn messages_round_trip_through_message() {
    for case in load("expected.json") {
        let raw = &case["variables"]["messages"];
        let messages: Vec<Message> = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(&serde_json::to_value(&messages).unwrap(), raw);
    }
}
