use std::path::PathBuf;

use serde_json::json;

use super::*;

fn tpl(src: &str) -> ChatTemplate {
    ChatTemplate::from_source(src, "test.jinja", None, None).unwrap()
}

fn vars(v: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match v {
        serde_json::Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

/// Renders `src` with no messages and the given extra variables.
fn render(src: &str, extra: serde_json::Value) -> String {
    tpl(src).render(&[], false, &vars(extra)).unwrap()
}

/// A scratch directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("whence-template-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn write(&self, file: &str, text: &str) {
        std::fs::write(self.0.join(file), text).unwrap();
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---- tojson ------------------------------------------------------------------

#[test]
fn tojson_default_separators_and_key_order() {
    let x = json!({"unit": "celsius", "city": "Paris", "n": [1, 2.5, true, null], "e": {}, "l": []});
    assert_eq!(
        render("{{ x | tojson }}", json!({"x": x})),
        r#"{"unit": "celsius", "city": "Paris", "n": [1, 2.5, true, null], "e": {}, "l": []}"#
    );
}

#[test]
fn tojson_indent() {
    let x = json!({"name": "f", "parameters": {"a": [1, {"b": 2}], "e": [], "o": {}}});
    let want = "{\n    \"name\": \"f\",\n    \"parameters\": {\n        \"a\": [\n            1,\n            {\n                \"b\": 2\n            }\n        ],\n        \"e\": [],\n        \"o\": {}\n    }\n}";
    assert_eq!(render("{{ x | tojson(indent=4) }}", json!({"x": x})), want);
    // A string indent, and indent 0 (newlines, no indentation), as in Python.
    assert_eq!(render("{{ [1, 2] | tojson(indent='\t') }}", json!({})), "[\n\t1,\n\t2\n]");
    assert_eq!(render("{{ [1, 2] | tojson(indent=0) }}", json!({})), "[\n1,\n2\n]");
}

#[test]
fn tojson_separators_sort_keys_and_positional_args() {
    let x = json!({"b": 1, "a": [1, 2]});
    assert_eq!(render("{{ x | tojson(separators=(',', ':')) }}", json!({"x": x})), r#"{"b":1,"a":[1,2]}"#);
    assert_eq!(render("{{ x | tojson(sort_keys=true) }}", json!({"x": x})), r#"{"a": [1, 2], "b": 1}"#);
    // Python's signature: tojson(x, ensure_ascii, indent, separators, sort_keys).
    assert_eq!(render("{{ x | tojson(false, none, [',', '='], true) }}", json!({"x": x})), r#"{"a"=[1,2],"b"=1}"#);
    let err = tpl("{{ 1 | tojson(false, ensure_ascii=true) }}").render(&[], false, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("multiple values for argument 'ensure_ascii'"), "{err}");
    let err = tpl("{{ 1 | tojson(indnet=2) }}").render(&[], false, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("indnet"), "{err}");
}

#[test]
fn tojson_ensure_ascii_and_no_html_escaping() {
    let x = json!({"d": "Use <b>only</b> when Q & A's \"x\" / é 中 😀\n\t\u{1}"});
    assert_eq!(
        render("{{ x | tojson }}", json!({"x": x.clone()})),
        "{\"d\": \"Use <b>only</b> when Q & A's \\\"x\\\" / é 中 😀\\n\\t\\u0001\"}"
    );
    assert_eq!(
        render("{{ x | tojson(ensure_ascii=true) }}", json!({"x": x})),
        "{\"d\": \"Use <b>only</b> when Q & A's \\\"x\\\" / \\u00e9 \\u4e2d \\ud83d\\ude00\\n\\t\\u0001\"}"
    );
}

#[test]
fn tojson_scalars_and_undefined() {
    assert_eq!(
        render("{{ 'a\"b' | tojson }} {{ 0.5 | tojson }} {{ 3 | tojson }} {{ none | tojson }} {{ x | tojson }}", json!({"x": 1e20})),
        "\"a\\\"b\" 0.5 3 null 1e+20"
    );
    let err = tpl("{{ nothing | tojson }}").render(&[], false, &Default::default()).unwrap_err();
    assert!(err.to_string().contains("not JSON serializable"), "{err}");
}

// ---- environment ---------------------------------------------------------------

#[test]
fn whitespace_python_methods_and_undefined() {
    let src = "{% for m in messages %}\n  {% if m.content.startswith('a') %}\n{{ m.content.strip('\\n').split(',')[-1] }}|{{ m.extra is defined }}|{{ m.get('x', 'dflt') }}\n  {% endif %}\n{% endfor %}\n";
    let msgs = [Message::new("user", "a,b,c\n\n"), Message::new("user", "zzz")];
    let out = tpl(src).render(&msgs, false, &Default::default()).unwrap();
    assert_eq!(out, "c|False|dflt\n");
}

#[test]
fn extra_message_fields_keep_order_and_absent_ones_are_undefined() {
    let src = "{% for m in messages %}{{ m | tojson }}{{ m.tool_calls is defined }}{% endfor %}";
    let m = Message::new("assistant", "")
        .with("reasoning_content", json!("r"))
        .with("tool_calls", json!([{"function": {"name": "f", "arguments": {"z": 1, "a": 2}}}]));
    let out = tpl(src).render(&[m], false, &Default::default()).unwrap();
    assert_eq!(
        out,
        r#"{"role": "assistant", "content": "", "reasoning_content": "r", "tool_calls": [{"function": {"name": "f", "arguments": {"z": 1, "a": 2}}}]}True"#
    );
    let out = tpl(src).render(&[Message::new("user", "hi")], false, &Default::default()).unwrap();
    assert_eq!(out, r#"{"role": "user", "content": "hi"}False"#);
    // `content` in extra replaces the field in place.
    let m = Message::new("assistant", "").with("content", json!(null));
    let out = tpl("{{ messages[0] | tojson }}").render(&[m], false, &Default::default()).unwrap();
    assert_eq!(out, r#"{"role": "assistant", "content": null}"#);
}

#[test]
fn variables_special_tokens_tools_and_documents() {
    let src = "[{{ bos_token is defined }}{{ eos_token }}|{{ tools is none }}{{ documents is none }}|{{ add_generation_prompt }}|{{ enable_thinking }}]";
    let t = ChatTemplate::from_source(src, "t", None, Some("</s>".into())).unwrap();
    assert_eq!(t.render(&[], true, &Default::default()).unwrap(), "[False</s>|TrueTrue|True|]");
    let extra = vars(json!({"tools": [], "enable_thinking": false, "eos_token": "E"}));
    assert_eq!(t.render(&[], false, &extra).unwrap(), "[FalseE|FalseTrue|False|False]");
    let err = t.render(&[], false, &vars(json!({"messages": []}))).unwrap_err();
    assert_eq!(err.to_string(), "cannot render chat template \"t\": extra variable \"messages\" would replace a render argument");
}

#[test]
fn loop_controls_and_namespace() {
    let src = "{% set ns = namespace(n=0) %}{% for i in [1, 2, 3, 4] %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 4 %}{% break %}{% endif %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}";
    assert_eq!(render(src, json!({})), "4");
}

#[test]
fn generation_blocks_are_stripped_keeping_content() {
    let src = "{%- for m in messages %}\n{%- if m.role == 'assistant' %}\n{% generation %}\n{{- m.content }}\n{% endgeneration %}\n{%- else %}\n<{{ m.role }}>{{ m.content }}\n{% endif %}\n{%- endfor %}";
    let msgs = [Message::new("user", "q"), Message::new("assistant", "a")];
    let out = tpl(src).render(&msgs, false, &Default::default()).unwrap();
    assert_eq!(out, "<user>q\na\n");
    // Same output as the template with the tags removed by hand (jinja2 semantics:
    // block tags with trim_blocks/lstrip_blocks).
    let plain = "{%- for m in messages %}\n{%- if m.role == 'assistant' %}\n{% if true %}\n{{- m.content }}\n{% endif %}\n{%- else %}\n<{{ m.role }}>{{ m.content }}\n{% endif %}\n{%- endfor %}";
    assert_eq!(tpl(plain).render(&msgs, false, &Default::default()).unwrap(), out);
}

#[test]
fn raise_exception_gives_its_message() {
    let t = tpl("line one\n{{ raise_exception('Only user and assistant roles!') }}");
    let err = t.render(&[], false, &Default::default()).unwrap_err();
    assert_eq!(err.raised_message(), Some("Only user and assistant roles!"));
    assert!(matches!(&err, TemplateError::Render { line: Some(2), raised: true, .. }), "{err:?}");
    assert_eq!(err.to_string(), "exception raised by chat template \"test.jinja\" at line 2: Only user and assistant roles!");
}

#[test]
fn other_render_errors_are_not_raised() {
    let err = tpl("{{ nothing.attr }}").render(&[], false, &Default::default()).unwrap_err();
    assert!(matches!(&err, TemplateError::Render { raised: false, line: Some(1), .. }), "{err:?}");
    assert_eq!(err.raised_message(), None);
}

#[test]
fn strftime_now_uses_the_fixed_clock() {
    let t = tpl("{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%Y-%m-%dT%H:%M:%S') }}").with_fixed_time((2026, 11, 26, 12, 0, 0));
    assert_eq!(t.render(&[], false, &Default::default()).unwrap(), "26 Nov 2026|2026-11-26T12:00:00");
    // The default clock is the local time now: at least it renders a year.
    let now = tpl("{{ strftime_now('%Y') }}").render(&[], false, &Default::default()).unwrap();
    assert_eq!(now.len(), 4);
}

#[test]
fn trailing_newline_and_crlf() {
    assert_eq!(render("a\n", json!({})), "a");
    assert_eq!(render("a\n\n", json!({})), "a\n");
    assert_eq!(render("{% if true %}\r\nx\r\n{% endif %}\r\ny\r\n", json!({})), "x\ny");
    let t = tpl("a\r\n");
    assert_eq!(t.source(), "a\r\n");
}

#[test]
fn no_autoescape_even_for_html_origins() {
    let t = ChatTemplate::from_source("{{ x }}", "t.html", None, None).unwrap();
    let out = t.render(&[], false, &vars(json!({"x": "<a & 'b'>"}))).unwrap();
    assert_eq!(out, "<a & 'b'>");
}

// ---- errors ----------------------------------------------------------------------

#[test]
fn syntax_error_names_origin_and_line() {
    let err = ChatTemplate::from_source("ok\n{% if x %}\n{{ y }\n", "my/template.jinja", None, None).unwrap_err();
    match &err {
        TemplateError::Syntax { origin, line, message } => {
            assert_eq!(origin, "my/template.jinja");
            assert_eq!(*line, Some(3));
            assert!(message.starts_with("syntax error: "), "{message}");
        }
        other => panic!("not a syntax error: {other:?}"),
    }
    let text = err.to_string();
    assert!(text.starts_with("syntax error in chat template \"my/template.jinja\" at line 3: "), "{text}");
    assert!(!text.ends_with('.'), "{text}");
}

#[test]
fn missing_template_names_the_files() {
    let dir = TempDir::new("missing");
    dir.write("tokenizer_config.json", r#"{"bos_token": "<s>"}"#);
    let err = ChatTemplate::from_dir(&dir.0).unwrap_err();
    match &err {
        TemplateError::Missing { dir: d, looked_at } => {
            assert_eq!(d, &dir.0);
            assert_eq!(looked_at, &[dir.0.join("chat_template.jinja"), dir.0.join("tokenizer_config.json")]);
        }
        other => panic!("not Missing: {other:?}"),
    }
    assert_eq!(
        err.to_string(),
        format!(
            "no chat template in {:?}: looked at {:?} and {:?}",
            dir.0,
            dir.0.join("chat_template.jinja"),
            dir.0.join("tokenizer_config.json")
        )
    );
    // No files at all: still Missing.
    let empty = TempDir::new("empty");
    assert!(matches!(ChatTemplate::from_dir(&empty.0), Err(TemplateError::Missing { .. })));
    // Not a directory: Io.
    assert!(matches!(ChatTemplate::from_dir(&empty.0.join("nope")), Err(TemplateError::Io { .. })));
}

// ---- from_dir --------------------------------------------------------------------

#[test]
fn named_template_list_uses_default_and_added_token_objects() {
    let dir = TempDir::new("named");
    let config = json!({
        "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
        "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": false, "normalized": false, "rstrip": false, "single_word": false},
        "chat_template": [
            {"name": "tool_use", "template": "TOOLS"},
            {"name": "default", "template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{{ eos_token }}{% endfor %}"},
            {"name": "rag", "template": "RAG"}
        ]
    });
    dir.write("tokenizer_config.json", &config.to_string());
    let t = ChatTemplate::from_dir(&dir.0).unwrap();
    assert_eq!(t.bos_token(), Some("<s>"));
    assert_eq!(t.eos_token(), Some("</s>"));
    assert_eq!(t.origin(), dir.0.join("tokenizer_config.json").display().to_string());
    assert_eq!(t.render(&[Message::new("user", "hi")], true, &Default::default()).unwrap(), "<s>[user]hi</s>");

    // No "default" in the list.
    let config = json!({"chat_template": [{"name": "tool_use", "template": "T"}]});
    dir.write("tokenizer_config.json", &config.to_string());
    let err = ChatTemplate::from_dir(&dir.0).unwrap_err();
    assert!(matches!(err, TemplateError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("no template named \"default\" (has \"tool_use\")"), "{err}");
}

#[test]
fn chat_template_jinja_wins_over_tokenizer_config() {
    let dir = TempDir::new("jinja");
    dir.write("tokenizer_config.json", r#"{"bos_token": null, "eos_token": "<|im_end|>", "chat_template": "FROM CONFIG"}"#);
    dir.write("chat_template.jinja", "FROM FILE {{ eos_token }}{{ bos_token }}\n");
    let t = ChatTemplate::from_dir(&dir.0).unwrap();
    assert_eq!(t.bos_token(), None);
    assert_eq!(t.source(), "FROM FILE {{ eos_token }}{{ bos_token }}\n");
    assert_eq!(t.origin(), dir.0.join("chat_template.jinja").display().to_string());
    assert_eq!(t.render(&[], true, &Default::default()).unwrap(), "FROM FILE <|im_end|>");
}

#[test]
fn bad_tokenizer_config() {
    let dir = TempDir::new("bad");
    dir.write("tokenizer_config.json", r#"{"eos_token": 5, "chat_template": "x"}"#);
    let err = ChatTemplate::from_dir(&dir.0).unwrap_err();
    assert!(err.to_string().contains("\"eos_token\" must be a string or an AddedToken object, found a number"), "{err}");
    dir.write("tokenizer_config.json", "{not json");
    assert!(matches!(ChatTemplate::from_dir(&dir.0), Err(TemplateError::Config { .. })));
}

#[test]
fn python_output_of_floats_and_string_escapes() {
    // Expected strings from jinja2 3.1.6 with transformers' environment.
    assert_eq!(
        render(
            r#"{{ 1e20 }}|{{ 0.5 }}|{{ [1.5] }}|{{ '<\/s>' }}|{{ "\a\v" }}|{{ '\U0001F600' }}|{{ x }}|{{ -0.0 }}|{{ 1e-7 }}"#,
            json!({"x": 2.5e-8})
        ),
        "1e+20|0.5|[1.5]|<\\/s>|\x07\x0b|😀|2.5e-08|-0.0|1e-07"
    );
}

#[test]
fn chat_template_is_send_sync_clone() {
    fn check<T: Send + Sync + 'static>() {}
    check::<ChatTemplate>();
    check::<TemplateError>();
    let _ = tpl("x").clone();
}

#[test]
fn contrib_filters_with_jinja2_signatures() {
    // Expected strings from jinja2 3.1.6.
    let msgs = [Message::new("system", "s"), Message::new("assistant", "a"), Message::new("user", "u")];
    let src = "{{ 'Hello World foo bar'|truncate(9) }}|{{ 'Hello World foo bar'|truncate(11, true, '!') }}|{{ 'Hello World foo bar baz qux'|truncate(15, leeway=0) }}|{{ '<b>a</b>  <i>b</i>\n c'|striptags }}|{{ 123456|filesizeformat }}|{% set c = cycler('a', 'b') %}{% for m in messages %}{{ c.next() }}{% endfor %}|{% set j = joiner('|') %}{% for m in messages %}{{ j() }}{{ m.role }}{% endfor %}";
    assert_eq!(
        tpl(src).render(&msgs, false, &Default::default()).unwrap(),
        "Hello...|Hello Worl!|Hello World...|a b c|123.5 kB|aba|system|assistant|user"
    );
}
