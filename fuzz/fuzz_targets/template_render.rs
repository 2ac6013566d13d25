//! The chat-template renderer on hostile templates and messages: input
//! `TEMPLATE\0EXTRA\0MESSAGE\0MESSAGE…`. TEMPLATE is compiled with
//! `ChatTemplate::from_source`; EXTRA, when it is a JSON object, is passed
//! as the extra variables; each MESSAGE is `ROLE:CONTENT` (or CONTENT alone,
//! the roles then taking turns). Renders with and without the generation
//! prompt must end (libFuzzer's -timeout) and stay small (-rss_limit_mb).
#![no_main]

use libfuzzer_sys::fuzz_target;
use whence_fuzz::text;
use whence_template::{ChatTemplate, Message};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.split(|&b| b == 0);
    let source = text(parts.next().unwrap_or(b""));
    let extra = parts
        .next()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes).ok())
        .unwrap_or_default();
    let roles = ["system", "user", "assistant", "tool"];
    let messages: Vec<Message> = parts
        .take(16)
        .enumerate()
        .map(|(i, bytes)| {
            let item = text(bytes);
            match item.split_once(':') {
                Some((role, content)) if role.len() <= 12 => Message::new(role, content),
                _ => Message::new(roles[i % roles.len()], item),
            }
        })
        .collect();
    let Ok(template) =
        ChatTemplate::from_source(&source, "fuzz.jinja", Some("<s>".into()), Some("</s>".into())).map(|t| t.with_fixed_time((2025, 1, 2, 3, 4, 5)))
    else {
        return;
    };
    for generation in [false, true] {
        let _ = template.render(&messages, generation, &extra);
    }
});
