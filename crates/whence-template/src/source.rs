//! Source preprocessing for what jinja2 (as transformers sets it up) does and
//! minijinja does not: newline normalisation, Python string-literal escapes, and
//! the `{% generation %}` tag.

use std::borrow::Cow;

/// The source minijinja compiles: [`normalize_newlines`], then [`rewrite_tags`].
pub(crate) fn prepare(src: &str) -> Cow<'_, str> {
    match normalize_newlines(src) {
        Cow::Borrowed(s) => rewrite_tags(s),
        Cow::Owned(s) => Cow::Owned(rewrite_tags(&s).into_owned()),
    }
}

/// jinja2's lexer turns every `\r\n` and lone `\r` in template data and string
/// literals into `\n` (`newline_sequence`); doing it on the whole source is the
/// same, since newlines elsewhere (inside tags, comments) do not reach the output.
/// Line numbers do not change for `\r\n` files.
pub(crate) fn normalize_newlines(src: &str) -> Cow<'_, str> {
    if !src.contains('\r') {
        return Cow::Borrowed(src);
    }
    Cow::Owned(src.replace("\r\n", "\n").replace('\r', "\n"))
}

/// Rewrites, inside `{{ … }}` and `{% … %}` only (not in template data, comments
/// or `{% raw %}` blocks), and without changing line numbers:
///
/// * transformers' `{% generation %}` … `{% endgeneration %}` (the
///   `AssistantTracker` extension, which only records offsets and renders its body
///   unchanged) to `{% if true %}` … `{% endif %}`. The whitespace-control marks
///   (`-`, `+`) are kept, so `trim_blocks`/`lstrip_blocks` act on the tags exactly
///   as jinja2 does;
/// * escapes in string literals that Python's `unicode-escape` (jinja2) reads
///   differently from minijinja: `\/` stays a backslash and a slash, `\a` and `\v`
///   are BEL and VT, `\UXXXXXXXX` is that character.
pub(crate) fn rewrite_tags(src: &str) -> Cow<'_, str> {
    let bytes = src.as_bytes();
    let mut out = String::new();
    let mut copied = 0;
    let mut i = 0;
    while i + 1 < bytes.len() {
        if bytes[i] != b'{' {
            i += 1;
            continue;
        }
        match bytes[i + 1] {
            b'#' => match src[i + 2..].find("#}") {
                Some(p) => i = i + 2 + p + 2,
                None => break,
            },
            open @ (b'{' | b'%') => {
                let close = if open == b'{' { "}}" } else { "%}" };
                let Some(end) = find_close(src, i + 2, close) else {
                    break;
                };
                if open == b'%' {
                    let (start, stop) = keyword_range(src, i + 2, end);
                    match &src[start..stop] {
                        word @ ("generation" | "endgeneration") => {
                            out.push_str(&src[copied..start]);
                            out.push_str(if word == "generation" { "if true" } else { "endif" });
                            copied = stop;
                            i = end + 2;
                            continue;
                        }
                        "raw" => {
                            i = skip_raw(src, end + 2).unwrap_or(bytes.len());
                            continue;
                        }
                        _ => {}
                    }
                }
                copied = fix_string_escapes(src, i + 2, end, copied, &mut out);
                i = end + 2;
            }
            _ => i += 1,
        }
    }
    if copied == 0 {
        return Cow::Borrowed(src);
    }
    out.push_str(&src[copied..]);
    Cow::Owned(out)
}

/// Rewrites the escapes of the string literals in `src[from..end]`; `copied` is
/// how far `src` has been copied to `out`. Returns the new `copied`.
fn fix_string_escapes(src: &str, from: usize, end: usize, mut copied: usize, out: &mut String) -> usize {
    let bytes = src.as_bytes();
    let mut j = from;
    while j < end {
        let q = bytes[j];
        if q != b'\'' && q != b'"' {
            j += 1;
            continue;
        }
        j += 1;
        while j < end && bytes[j] != q {
            if bytes[j] != b'\\' || j + 1 >= end {
                j += 1;
                continue;
            }
            let replacement: Option<(Cow<'static, str>, usize)> = match bytes[j + 1] {
                b'/' => Some((Cow::Borrowed("\\\\/"), 2)),
                b'a' => Some((Cow::Borrowed("\\x07"), 2)),
                b'v' => Some((Cow::Borrowed("\\x0b"), 2)),
                b'U' => src
                    .get(j + 2..j + 10)
                    .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .and_then(char::from_u32)
                    .filter(|c| !matches!(c, '\\' | '\'' | '"'))
                    .map(|c| (Cow::Owned(c.to_string()), 10)),
                _ => None,
            };
            match replacement {
                Some((text, len)) => {
                    out.push_str(&src[copied..j]);
                    out.push_str(&text);
                    j += len;
                    copied = j;
                }
                None => j += 2,
            }
        }
        j += 1;
    }
    copied
}

/// Position of `close` at or after `from`, skipping string literals.
fn find_close(src: &str, from: usize, close: &str) -> Option<usize> {
    let bytes = src.as_bytes();
    let mut j = from;
    while j < bytes.len() {
        match bytes[j] {
            q @ (b'\'' | b'"') => {
                j += 1;
                while j < bytes.len() && bytes[j] != q {
                    j += if bytes[j] == b'\\' { 2 } else { 1 };
                }
                j += 1;
            }
            // Bytes, not `src[j..]`: `j` steps byte by byte, into multi-byte chars too.
            _ if bytes[j..].starts_with(close.as_bytes()) => return Some(j),
            _ => j += 1,
        }
    }
    None
}

/// The byte range of a tag's content between `{%` (ending at `from`) and `%}` (at
/// `end`), without the whitespace-control marks and the surrounding whitespace.
fn keyword_range(src: &str, from: usize, end: usize) -> (usize, usize) {
    let bytes = src.as_bytes();
    let mut start = from;
    let mut stop = end;
    if start < stop && matches!(bytes[start], b'-' | b'+') {
        start += 1;
    }
    if stop > start && matches!(bytes[stop - 1], b'-' | b'+') {
        stop -= 1;
    }
    while start < stop && bytes[start].is_ascii_whitespace() {
        start += 1;
    }
    while stop > start && bytes[stop - 1].is_ascii_whitespace() {
        stop -= 1;
    }
    (start, stop)
}

/// The position just after the `{% endraw %}` that closes a raw block whose
/// opening tag ends at `from`.
fn skip_raw(src: &str, from: usize) -> Option<usize> {
    let mut j = from;
    while let Some(p) = src[j..].find("{%") {
        let open = j + p;
        let end = src[open + 2..].find("%}")? + open + 2;
        let (s, e) = keyword_range(src, open + 2, end);
        if &src[s..e] == "endraw" {
            return Some(end + 2);
        }
        j = open + 2;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the `template_render` fuzz target: a tag holding a non-ASCII
    /// character outside a string literal panicked (a slice inside the char).
    #[test]
    fn tags_with_non_ascii_characters_outside_strings_are_kept() {
        for src in ["{{ é }}", "{% if x %}{{ messages | tojson(in\u{fffd}\u{fffd}dent=2) }}{% endif %}", "{{ 'ü\\/' ~ ü }}"] {
            assert_eq!(rewrite_tags(src), src.replace(r"\/", r"\\/"));
        }
        assert_eq!(rewrite_tags("{% generation %}ä{{ ö }}{% endgeneration %}"), "{% if true %}ä{{ ö }}{% endif %}");
    }

    #[test]
    fn generation_tags_become_if_true() {
        let src = "{%- for m in messages %}{% generation %}{{ m }}{%- endgeneration -%}\n{% endfor %}";
        assert_eq!(rewrite_tags(src), "{%- for m in messages %}{% if true %}{{ m }}{%- endif -%}\n{% endfor %}");
    }

    #[test]
    fn generation_in_strings_comments_and_raw_is_kept() {
        let src = "{# {% generation %} #}{{ '{% generation %}' }}{% set x = '%}' %}\
                   {% raw %}{% generation %}{% endraw %}{%+ generation %}x{% endgeneration +%}";
        assert_eq!(
            rewrite_tags(src),
            "{# {% generation %} #}{{ '{% generation %}' }}{% set x = '%}' %}\
             {% raw %}{% generation %}{% endraw %}{%+ if true %}x{% endif +%}"
        );
    }

    #[test]
    fn string_escapes_only_inside_literals_in_tags() {
        let src = r#"a\/b {{ '<\/s>' ~ "\a\v" }}{% set x = '\U0001F600\n\\/' %}{# '\/' #}{% raw %}{{ '\/' }}{% endraw %}"#;
        assert_eq!(
            rewrite_tags(src),
            "a\\/b {{ '<\\\\/s>' ~ \"\\x07\\x0b\" }}{% set x = '\u{1F600}\\n\\\\/' %}{# '\\/' #}{% raw %}{{ '\\/' }}{% endraw %}"
        );
        let untouched = "{{ 'a\\nb' }} {{ x }}";
        assert!(matches!(rewrite_tags(untouched), Cow::Borrowed(_)));
    }

    #[test]
    fn newlines() {
        assert_eq!(normalize_newlines("a\r\nb\rc\n"), "a\nb\nc\n");
        assert!(matches!(normalize_newlines("a\nb"), Cow::Borrowed(_)));
        assert_eq!(prepare("{% generation %}\r\n"), "{% if true %}\n");
    }
}
