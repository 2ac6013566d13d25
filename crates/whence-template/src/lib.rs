//! Hugging Face chat templates, rendered in-process byte for byte as
//! `transformers`' `apply_chat_template(messages, tokenize=False,
//! add_generation_prompt=…)` renders them with Python `jinja2`.
//!
//! ```
//! use whence_template::{ChatTemplate, Message};
//!
//! let src = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}\n{% endfor %}\
//!            {% if add_generation_prompt %}<|assistant|>{% endif %}";
//! let t = ChatTemplate::from_source(src, "example", None, Some("</s>".into())).unwrap();
//! let out = t.render(&[Message::new("user", "Hi")], true, &Default::default()).unwrap();
//! assert_eq!(out, "<|user|>Hi\n<|assistant|>");
//! ```
//!
//! # The environment
//!
//! transformers compiles a chat template in
//! `ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
//! extensions=[AssistantTracker, jinja2.ext.loopcontrols])` and renders it with
//! `messages`, `tools`, `documents`, `add_generation_prompt`, the tokenizer's
//! special tokens and any extra keyword arguments. The minijinja environment here
//! is set up to match:
//!
//! * **Whitespace:** `trim_blocks` and `lstrip_blocks` on, `keep_trailing_newline`
//!   off (one trailing newline of the template source is dropped), `{%- -%}`,
//!   `{{- -}}`, `{#- -#}` honoured. Line endings of the source (`\r\n`, `\r`) are
//!   normalised to `\n` first, as jinja2's lexer does.
//! * **Undefined:** lenient, like jinja2's default `Undefined`: a missing variable
//!   or attribute prints as nothing, is falsy, iterates as empty and is not
//!   `defined`; an attribute *of* an undefined value is an error, as in jinja2.
//! * **Python methods** on strings, dicts and lists (`.startswith`, `.endswith`,
//!   `.split`, `.strip(chars)`, `.lstrip`, `.rstrip`, `.get`, `.items`, `.keys`,
//!   `.values`, `.upper`, `.replace`, …) through
//!   `minijinja_contrib::pycompat::unknown_method_callback`.
//! * **`tojson`** is transformers' own filter, `json.dumps(x, ensure_ascii=False,
//!   indent=None, separators=None, sort_keys=False)`, *not* minijinja's (which
//!   writes compact JSON and HTML-escapes `<`, `>`, `&`, `'`): separators `", "` and
//!   `": "` (`","` and `": "` with an `indent`), dict keys in insertion order unless
//!   `sort_keys`, no HTML escaping, non-ASCII written raw unless `ensure_ascii`,
//!   floats written as Python's `repr`, `NaN`/`Infinity` for non-finite floats.
//!   The four options may be given by keyword or positionally, in that order.
//! * **Globals:** `raise_exception(message)` fails the render with
//!   [`TemplateError::Render`] carrying `message` (`raised: true`);
//!   `strftime_now(format)` formats the local time now (see
//!   [`ChatTemplate::with_fixed_time`]) like Python's `datetime.strftime`.
//! * **Tags:** `{% break %}`/`{% continue %}` (loopcontrols); `{% generation %}` …
//!   `{% endgeneration %}` (transformers' assistant-mask extension) renders its
//!   body unchanged: the tags are rewritten to `{% if true %}` … `{% endif %}`
//!   before compiling, keeping their whitespace-control marks. `namespace(…)` and
//!   `{% set ns.attr = … %}`, macros, loops with `loop.*`, slicing with negative
//!   steps, `is defined/none/string/mapping/iterable/false` are minijinja
//!   built-ins.
//! * **Maps keep insertion order** (minijinja's `preserve_order`, fed from
//!   `serde_json` maps with `preserve_order`), so `|items`, `for k in dict` and
//!   `tojson` see the keys in the order the caller gave them, like Python dicts.
//! * **No auto-escaping**, whatever the template's name.
//! * **Source preprocessing** (line numbers unchanged): `\r\n`/`\r` become `\n`
//!   as in jinja2's lexer; in string literals inside tags, the escapes that Python's
//!   `unicode-escape` reads differently from minijinja are rewritten (`\/` stays
//!   `\/`, `\a`, `\v`, `\UXXXXXXXX`); `{% generation %}` as above.
//!   [`ChatTemplate::source`] still returns the text as given.
//!
//! # Variables
//!
//! [`ChatTemplate::render`] passes `messages` (each a map of `role`, `content`,
//! then the message's [`extra`](Message::extra) fields in order), `add_generation_prompt`,
//! `tools` and `documents` (`none` unless given in `extra`), `bos_token` and
//! `eos_token` when the template has them, and every `extra` variable
//! (`enable_thinking`, `date_string`, `tools`, …; these may override the special
//! tokens, `tools` and `documents`). A special token that is `None` is left
//! *undefined*, as transformers' `special_tokens_map` leaves out unset tokens.
//! A key absent from a message stays undefined (`message.tool_calls is defined`
//! is false); a JSON `null` is `none`.
//!
//! # Known differences from jinja2
//!
//! These do not occur in the vendored real templates (`tests/templates/`), which
//! render byte-identically, but a template relying on them may differ:
//!
//! * Printed values follow Python's `str()` (minijinja 3 already writes `None`,
//!   `True`, `['a', 1]`, `{'k': 'v'}`, `(1, 2)` that way; floats printed by
//!   `{{ … }}` are written as Python's `repr`, e.g. `1e+20`), but floats *inside*
//!   a printed list or dict, or joined with `~` or `|string`, keep minijinja's
//!   positional form (`100000000000000000000.0` for `1e+20`).
//! * String literal escapes are made Python's for `\/`, `\a`, `\v` and
//!   `\UXXXXXXXX` (see the preprocessing above); `\N{…}` and octal escapes above
//!   `\377` are not.
//! * Where jinja2 would raise for `tojson` of an iterator (e.g. `x|reverse|tojson`)
//!   this writes a JSON list; `tojson` of an undefined value fails in both.
//! * Sandbox checks of `ImmutableSandboxedEnvironment` (e.g. against
//!   `list.append`) have no counterpart: minijinja has no mutating methods.
//! * `strftime_now` goes through chrono per specifier, mimicking glibc in the C
//!   locale (unknown specifiers written as they are, `E`/`O` modifiers ignored,
//!   `%z`/`%Z` empty, `%f` six digits); `%s` counts from UTC, not the local zone.
//! * jinja2 filters that minijinja lacks: `center`, `wordcount`, `wordwrap`,
//!   `urlize`, `xmlattr`, `pprint`, `forceescape`, `random` (an unknown filter is a
//!   render error, never silent). `truncate`, `striptags`, `filesizeformat`,
//!   `cycler` and `joiner` come from minijinja-contrib with jinja2's signatures;
//!   `cycler` has only `.next()`.
//! * Python string methods come from minijinja-contrib's `pycompat`, which differs
//!   in corners (e.g. `'w0rld'.title()` is `W0rld`, Python's `W0Rld`).
//! * Only `bos_token` and `eos_token` are passed; transformers also passes the
//!   tokenizer's other special tokens (`unk_token`, `pad_token`, …), which a
//!   template could read. [`ChatTemplate::from_dir`] reads them from
//!   `tokenizer_config.json` only, not from `special_tokens_map.json`.

mod clock;
mod compat;
mod json;
mod source;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Value;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::clock::Clock;

/// The most steps (minijinja's fuel, about one per instruction) one render
/// may take: a real template renders a conversation of a thousand turns in
/// well under a hundredth of this; a template that loops without end (or
/// nearly: nested `range(100000)`s) fails within about a second instead of
/// hanging.
pub const RENDER_FUEL: u64 = 20_000_000;

/// The largest rendering, in bytes, besides [`RENDER_BYTES_PER_INPUT_BYTE`]
/// per byte of the messages and extra variables: a template that writes
/// far more than it was given fails instead of filling memory.
pub const RENDER_BASE_BYTES: usize = 16 << 20;
/// See [`RENDER_BASE_BYTES`].
pub const RENDER_BYTES_PER_INPUT_BYTE: usize = 16;

/// The file a checkpoint's template is read from first.
pub const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";
/// The file read for `chat_template` (if there is no [`CHAT_TEMPLATE_FILE`]) and
/// for the special tokens.
pub const TOKENIZER_CONFIG_FILE: &str = "tokenizer_config.json";

/// One chat message: `role`, `content`, and any further fields (e.g.
/// `reasoning_content`, `tool_calls`, `tool_call_id`) in [`extra`](Self::extra).
///
/// Serialises as one flat JSON object, as Hugging Face messages are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
    /// Further fields, in order. A `role` or `content` key here replaces the field
    /// above (e.g. `content` as `null` or as a list of parts).
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Message {
    /// A message with no extra fields.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into(), extra: serde_json::Map::new() }
    }

    /// Adds (or replaces) an extra field.
    pub fn with(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.extra.insert(key.into(), value);
        self
    }

    fn to_value(&self) -> Value {
        let mut fields: Vec<(String, Value)> =
            vec![("role".into(), Value::from(self.role.as_str())), ("content".into(), Value::from(self.content.as_str()))];
        for (key, value) in &self.extra {
            let value = json_to_value(value);
            match fields.iter_mut().find(|(k, _)| k == key) {
                Some(slot) => slot.1 = value,
                None => fields.push((key.clone(), value)),
            }
        }
        Value::from_pairs(fields)
    }
}

/// What can go wrong finding, compiling or rendering a chat template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A checkpoint directory has no chat template.
    #[error("no chat template in {dir:?}: looked at {}", quoted_paths(looked_at))]
    Missing { dir: PathBuf, looked_at: Vec<PathBuf> },
    /// The template does not compile.
    #[error("syntax error in chat template {origin:?}{}: {message}", at_line(*line))]
    Syntax { origin: String, line: Option<usize>, message: String },
    /// Rendering failed. With `raised`, the template called `raise_exception` and
    /// `message` is exactly its argument.
    #[error("{} chat template {origin:?}{}: {message}",
            if *raised { "exception raised by" } else { "cannot render" }, at_line(*line))]
    Render { origin: String, line: Option<usize>, message: String, raised: bool },
    /// A file of the checkpoint could not be read.
    #[error("cannot read {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `tokenizer_config.json` is not what transformers expects (bad JSON, a
    /// special token or `chat_template` of the wrong type, no `default` template).
    #[error("bad {path:?}: {message}")]
    Config { path: PathBuf, message: String },
}

impl TemplateError {
    /// The message given to `raise_exception`, if that is what failed the render.
    pub fn raised_message(&self) -> Option<&str> {
        match self {
            TemplateError::Render { message, raised: true, .. } => Some(message),
            _ => None,
        }
    }
}

fn at_line(line: Option<usize>) -> String {
    line.map(|l| format!(" at line {l}")).unwrap_or_default()
}

fn quoted_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| format!("{p:?}")).collect::<Vec<_>>().join(" and ")
}

/// The marker attached to errors made by `raise_exception`.
#[derive(Debug)]
struct RaisedException(String);

impl fmt::Display for RaisedException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RaisedException {}

fn raise_exception(message: Value) -> Result<Value, minijinja::Error> {
    let message = message.to_string();
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(RaisedException(message)))
}

/// A chat template with the special tokens it is rendered with.
#[derive(Clone)]
pub struct ChatTemplate {
    origin: String,
    source: String,
    bos_token: Option<String>,
    eos_token: Option<String>,
    env: Environment<'static>,
}

impl fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("source_len", &self.source.len())
            .finish()
    }
}

impl ChatTemplate {
    /// From a checkpoint directory: `chat_template.jinja` if present, else
    /// `tokenizer_config.json`'s `chat_template` (a string, or a list of
    /// `{name, template}` of which the one named `"default"` is used), with
    /// `bos_token`/`eos_token` from `tokenizer_config.json` (strings, or AddedToken
    /// objects `{"content": …}`). No template: [`TemplateError::Missing`] naming
    /// the files looked at.
    pub fn from_dir(dir: &Path) -> Result<Self, TemplateError> {
        let jinja_path = dir.join(CHAT_TEMPLATE_FILE);
        let config_path = dir.join(TOKENIZER_CONFIG_FILE);
        if !dir.is_dir() {
            return Err(TemplateError::Io {
                path: dir.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a directory"),
            });
        }
        let config = if config_path.is_file() { Some(read_config(&config_path)?) } else { None };
        let bad = |message: String| TemplateError::Config { path: config_path.clone(), message };
        let (bos_token, eos_token) = match &config {
            Some(c) => (special_token(c, "bos_token").map_err(bad)?, special_token(c, "eos_token").map_err(bad)?),
            None => (None, None),
        };
        if jinja_path.is_file() {
            let source = read_text(&jinja_path)?;
            let origin = jinja_path.display().to_string();
            return Self::from_source(&source, &origin, bos_token, eos_token);
        }
        let template = match &config {
            Some(c) => config_template(c).map_err(bad)?,
            None => None,
        };
        match template {
            Some(source) => {
                let origin = config_path.display().to_string();
                Self::from_source(&source, &origin, bos_token, eos_token)
            }
            None => Err(TemplateError::Missing { dir: dir.to_path_buf(), looked_at: vec![jinja_path, config_path] }),
        }
    }

    /// From template source text (e.g. `--template FILE`), with the special tokens
    /// given. Syntax errors name `origin` and the line.
    pub fn from_source(source: &str, origin: &str, bos_token: Option<String>, eos_token: Option<String>) -> Result<Self, TemplateError> {
        let prepared = source::prepare(source).into_owned();
        let syntax_error =
            |e: minijinja::Error| TemplateError::Syntax { origin: origin.to_string(), line: e.line(), message: describe(&e) };
        let mut env = Environment::new();
        let syntax =
            SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).keep_trailing_newline(false).build().map_err(syntax_error)?;
        env.set_syntax(syntax);
        env.set_fuel(Some(RENDER_FUEL));
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_formatter(python_formatter);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        compat::add_to_environment(&mut env);
        env.add_filter("tojson", json::tojson_filter);
        env.add_function("raise_exception", raise_exception);
        set_clock(&mut env, Clock::Local);
        env.add_template_owned(origin.to_string(), prepared).map_err(syntax_error)?;
        Ok(ChatTemplate { origin: origin.to_string(), source: source.to_string(), bos_token, eos_token, env })
    }

    /// Renders `messages` with `add_generation_prompt`, plus `extra` variables
    /// (e.g. `enable_thinking`, `tools`, `date_string`) as JSON values. See the
    /// crate docs for the variables passed.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, TemplateError> {
        let mut ctx: BTreeMap<String, Value> = BTreeMap::new();
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        if let Some(bos) = &self.bos_token {
            ctx.insert("bos_token".into(), Value::from(bos.as_str()));
        }
        if let Some(eos) = &self.eos_token {
            ctx.insert("eos_token".into(), Value::from(eos.as_str()));
        }
        for (key, value) in extra {
            if key == "messages" || key == "add_generation_prompt" {
                return Err(TemplateError::Render {
                    origin: self.origin.clone(),
                    line: None,
                    message: format!("extra variable {key:?} would replace a render argument"),
                    raised: false,
                });
            }
            ctx.insert(key.clone(), json_to_value(value));
        }
        ctx.insert("messages".into(), messages.iter().map(Message::to_value).collect::<Vec<_>>().into());
        ctx.insert("add_generation_prompt".into(), Value::from(add_generation_prompt));
        let render_error = |e: minijinja::Error| {
            let raised = raised_message(&e);
            TemplateError::Render {
                origin: self.origin.clone(),
                line: e.line(),
                raised: raised.is_some(),
                message: raised.unwrap_or_else(|| describe(&e)),
            }
        };
        let input_bytes = messages.iter().map(|m| m.role.len() + m.content.len() + json_size(&m.extra)).sum::<usize>() + json_size(extra);
        let limit = RENDER_BASE_BYTES.saturating_add(input_bytes.saturating_mul(RENDER_BYTES_PER_INPUT_BYTE));
        let template = self.env.get_template(&self.origin).map_err(render_error)?;
        let mut out = CappedOutput { bytes: Vec::new(), limit, exceeded: false };
        match template.render_captured_to(Value::from_pairs(ctx), &mut out) {
            Ok(_) => String::from_utf8(out.bytes).map_err(|e| TemplateError::Render {
                origin: self.origin.clone(),
                line: None,
                message: format!("the rendering is not UTF-8: {e}"),
                raised: false,
            }),
            Err(_) if out.exceeded => Err(TemplateError::Render {
                origin: self.origin.clone(),
                line: None,
                message: format!(
                    "the rendering is longer than {limit} bytes ({RENDER_BASE_BYTES} plus {RENDER_BYTES_PER_INPUT_BYTE} per byte of \
                     the {input_bytes} bytes of messages and variables given); hint: a loop in the template writes without end"
                ),
                raised: false,
            }),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(TemplateError::Render {
                origin: self.origin.clone(),
                line: e.line(),
                message: format!(
                    "the render took more than {RENDER_FUEL} steps; hint: a loop in the template does not end (or nearly: nested \
                     `range`s)"
                ),
                raised: false,
            }),
            Err(e) => Err(render_error(e)),
        }
    }

    /// Fixes the clock used by `strftime_now` (tests) to `(year, month, day, hour,
    /// minute, second)`, a naive local time; the default is the local time at each
    /// call.
    ///
    /// # Panics
    ///
    /// If that is not a valid date and time.
    pub fn with_fixed_time(mut self, time: (i32, u32, u32, u32, u32, u32)) -> Self {
        let clock = Clock::fixed(time).unwrap_or_else(|| panic!("with_fixed_time: {time:?} is not a valid date and time"));
        set_clock(&mut self.env, clock);
        self
    }

    /// Where the template came from (a file path, or the name given to
    /// [`from_source`](Self::from_source)).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The template text, exactly as read or given (before newline normalisation
    /// and the `{% generation %}` rewrite), for fingerprinting.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `bos_token` the template is rendered with.
    pub fn bos_token(&self) -> Option<&str> {
        self.bos_token.as_deref()
    }

    /// The `eos_token` the template is rendered with.
    pub fn eos_token(&self) -> Option<&str> {
        self.eos_token.as_deref()
    }
}

/// Bytes a JSON value takes written compactly (what bounds a rendering).
fn json_size(value: &impl Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// A rendering's bytes, refused past `limit`.
struct CappedOutput {
    bytes: Vec<u8>,
    limit: usize,
    exceeded: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            self.exceeded = true;
            return Err(std::io::Error::other("the rendering is too long"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Output like jinja2's `str()`: minijinja's formatting (Python-like already for
/// `None`, `True`, lists, dicts), except floats, which are written as Python's
/// `repr` (`1e+20`, not `100000000000000000000.0`).
fn python_formatter(out: &mut minijinja::Output, state: &mut minijinja::State, value: &Value) -> Result<(), minijinja::Error> {
    if value.is_number() && !value.is_integer() {
        if let Ok(f) = f64::try_from(value.clone()) {
            out.write_str(&json::py_float_repr(f))?;
            return Ok(());
        }
    }
    minijinja::escape_formatter(out, state, value)
}

fn set_clock(env: &mut Environment<'static>, clock: Clock) {
    env.add_function("strftime_now", move |format: &str| clock.strftime_now(format));
}

/// A minijinja error as one line: its kind and detail.
fn describe(e: &minijinja::Error) -> String {
    let mut message = match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    };
    // Errors inside macro calls etc. carry the original error as their source.
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(inner) = s.downcast_ref::<minijinja::Error>() {
            message.push_str(": ");
            message.push_str(&describe_one(inner));
        }
        source = s.source();
    }
    message
}

fn describe_one(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

/// The message of a `raise_exception` call anywhere in the error chain.
fn raised_message(e: &minijinja::Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if let Some(raised) = s.downcast_ref::<RaisedException>() {
            return Some(raised.0.clone());
        }
        source = s.source();
    }
    None
}

/// A JSON value as a minijinja value; objects keep their key order.
fn json_to_value(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::from(()),
        J::Bool(b) => Value::from(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => items.iter().map(json_to_value).collect::<Vec<_>>().into(),
        J::Object(map) => Value::from_pairs(map.iter().map(|(k, v)| (k.as_str(), json_to_value(v)))),
    }
}

fn read_text(path: &Path) -> Result<String, TemplateError> {
    std::fs::read_to_string(path).map_err(|source| TemplateError::Io { path: path.to_path_buf(), source })
}

fn read_config(path: &Path) -> Result<serde_json::Map<String, serde_json::Value>, TemplateError> {
    let text = read_text(path)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| TemplateError::Config { path: path.to_path_buf(), message: format!("not valid JSON: {e}") })?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        other => {
            Err(TemplateError::Config { path: path.to_path_buf(), message: format!("expected a JSON object, found {}", json_kind(&other)) })
        }
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "a list",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A special token of tokenizer_config.json: a string, an AddedToken object
/// (`{"content": …, "__type": "AddedToken", …}`), or null/absent.
fn special_token(config: &serde_json::Map<String, serde_json::Value>, key: &str) -> Result<Option<String>, String> {
    match config.get(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Object(obj)) => match obj.get("content") {
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(format!("{key:?} is an object without a string \"content\"")),
        },
        Some(other) => Err(format!("{key:?} must be a string or an AddedToken object, found {}", json_kind(other))),
    }
}

/// `chat_template` of tokenizer_config.json: a string, or a list of `{name,
/// template}` of which transformers uses the one named `"default"`.
fn config_template(config: &serde_json::Map<String, serde_json::Value>) -> Result<Option<String>, String> {
    match config.get("chat_template") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
        Some(serde_json::Value::Array(items)) => {
            let mut names = Vec::new();
            for item in items {
                let name = item.get("name").and_then(|n| n.as_str());
                let template = item.get("template").and_then(|t| t.as_str());
                match (name, template) {
                    (Some("default"), Some(t)) => return Ok(Some(t.to_string())),
                    (Some(n), Some(_)) => names.push(format!("{n:?}")),
                    _ => return Err("\"chat_template\" list entries must be {\"name\": …, \"template\": …} strings".to_string()),
                }
            }
            Err(format!(
                "\"chat_template\" has no template named \"default\" (has {})",
                if names.is_empty() { "none".to_string() } else { names.join(", ") }
            ))
        }
        Some(other) => Err(format!("\"chat_template\" must be a string or a list of named templates, found {}", json_kind(other))),
    }
}

#[cfg(test)]
mod tests;
