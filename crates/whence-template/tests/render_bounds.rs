//! A render is bounded in steps and in output (found by the `template_render`
//! fuzz target: a template of nested `range`s rendered for hours), while real
//! templates keep rendering long conversations.

use std::time::{Duration, Instant};

use whence_template::{ChatTemplate, Message, TemplateError, RENDER_BASE_BYTES, RENDER_FUEL};

const TEMPLATES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/templates");

fn render(source: &str, messages: &[Message]) -> Result<String, TemplateError> {
    ChatTemplate::from_source(source, "hostile.jinja", None, None).unwrap().render(messages, true, &Default::default())
}

fn render_message(result: Result<String, TemplateError>) -> String {
    match result {
        Err(TemplateError::Render { message, raised: false, origin, .. }) => {
            assert_eq!(origin, "hostile.jinja");
            message
        }
        other => panic!("expected a render error, got {other:?}"),
    }
}

#[test]
fn a_loop_that_nearly_never_ends_runs_out_of_steps() {
    let started = Instant::now();
    let message = render_message(render(
        "{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}{% endfor %}{% endfor %}{% endfor %}",
        &[],
    ));
    assert!(message.contains(&format!("more than {RENDER_FUEL} steps")), "{message}");
    assert!(message.contains("hint:"), "{message}");
    // Debug builds are slow; the point is minutes or hours become seconds.
    assert!(started.elapsed() < Duration::from_secs(60), "took {:?}", started.elapsed());
}

#[test]
fn a_template_that_writes_without_end_is_cut_at_its_output_bound() {
    let message = render_message(render("{% for a in range(100000) %}{{ 'x' * 100000 }}{% endfor %}", &[Message::new("user", "hi")]));
    assert!(message.contains("the rendering is longer than"), "{message}");
    // 16 MiB plus 16 bytes per byte given: role "user" and content "hi" (6),
    // `extra` `{}` (2) and `{}` of the message's extra fields (2).
    assert!(message.contains(&format!("{} bytes", RENDER_BASE_BYTES + 16 * 10)), "{message}");
}

#[test]
fn the_output_bound_grows_with_the_input() {
    // A rendering several times the base bound is fine when the input is that large.
    let content = "y".repeat(2 * RENDER_BASE_BYTES);
    let out = render("{% for m in messages %}{{ m.content }}{{ m.content }}{% endfor %}", &[Message::new("user", content)]).unwrap();
    assert_eq!(out.len(), 4 * RENDER_BASE_BYTES);
}

#[test]
fn real_templates_render_a_thousand_turns_within_the_bounds() {
    for name in ["qwen3.jinja", "llama-3.1-instruct.jinja", "deepseek-r1-distill-qwen.jinja", "qwen2.5-instruct.jinja"] {
        let source = std::fs::read_to_string(format!("{TEMPLATES}/{name}")).unwrap();
        let mut messages = vec![Message::new("system", "You are a careful assistant.")];
        for turn in 0..500 {
            messages.push(Message::new("user", format!("Question {turn}: what is {turn} + {turn}?")));
            messages.push(Message::new("assistant", format!("<think>\nAdd them.</think>\n{}", 2 * turn)));
        }
        let template = ChatTemplate::from_source(&source, name, Some("<s>".into()), Some("</s>".into())).unwrap();
        let out = template.render(&messages, true, &Default::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(out.contains("Question 499: what is 499 + 499?"), "{name}");
    }
}
