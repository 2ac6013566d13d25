//! Small scanners for LaTeX-ish text: balanced braces and top-level splitting.
//!
//! Every function here works on bytes but only ever cuts at ASCII delimiters,
//! so each slice boundary is a char boundary and nothing can panic on
//! arbitrary Unicode.

/// Splits `after_open` (the text just after an opening `{`) at the matching
/// `}`: returns the braced content and the text after the closing brace.
///
/// Escaped braces (`\{`, `\}`) do not count. Returns `None` when the brace is
/// never closed.
pub(crate) fn split_braced(after_open: &str) -> Option<(&str, &str)> {
    let bytes = after_open.as_bytes();
    let mut depth = 1usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1, // skip the escaped byte
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&after_open[..i], &after_open[i + 1..]));
                }
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Splits `after_open` (the text just after an opening `[`) at the matching
/// `]`, counting nested square brackets only.
pub(crate) fn split_bracketed(after_open: &str) -> Option<(&str, &str)> {
    let bytes = after_open.as_bytes();
    let mut depth = 1usize;
    for (i, &byte) in bytes.iter().enumerate() {
        match byte {
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return Some((&after_open[..i], &after_open[i + 1..]));
                }
            }
            _ => {}
        }
    }
    None
}

fn is_opener(byte: u8) -> bool {
    matches!(byte, b'(' | b'[' | b'{')
}

fn is_closer(byte: u8) -> bool {
    matches!(byte, b')' | b']' | b'}')
}

/// Splits `text` at every occurrence of the ASCII `separator` that is not
/// nested inside brackets of any kind (`()`, `[]`, `{}`).
///
/// Bracket kinds are not matched against each other, so half-open intervals
/// such as `(3,4]` nest correctly.
pub(crate) fn split_top_level<'a>(text: &'a str, separator: &str) -> Vec<&'a str> {
    let bytes = text.as_bytes();
    let sep = separator.as_bytes();
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let byte = bytes[i];
        if depth == 0 && !sep.is_empty() && bytes[i..].starts_with(sep) {
            parts.push(&text[start..i]);
            i += sep.len();
            start = i;
            continue;
        }
        if is_opener(byte) {
            depth += 1;
        } else if is_closer(byte) {
            depth = depth.saturating_sub(1);
        }
        i += 1;
    }
    parts.push(&text[start..]);
    parts
}

/// True when the first byte of `text` opens a bracket whose matching close
/// (of any kind) is the last byte, as in `(1,2)` or `[3,4)` but not
/// `(1)+(2)`.
pub(crate) fn is_wrapped_in_brackets(text: &str) -> bool {
    let bytes = text.as_bytes();
    if bytes.len() < 2 || !is_opener(bytes[0]) || !is_closer(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut depth = 0usize;
    for (i, &byte) in bytes.iter().enumerate() {
        if is_opener(byte) {
            depth += 1;
        } else if is_closer(byte) {
            depth = depth.saturating_sub(1);
            if depth == 0 {
                return i == bytes.len() - 1;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_braced_finds_the_matching_brace() {
        assert_eq!(split_braced("a{b}c}d"), Some(("a{b}c", "d")));
        assert_eq!(split_braced(r"\{1\}}x"), Some((r"\{1\}", "x")));
        assert_eq!(split_braced("never closed{"), None);
        assert_eq!(split_braced("é}ü"), Some(("é", "ü")));
        assert_eq!(split_braced(r"\"), None);
    }

    #[test]
    fn split_bracketed_counts_square_brackets() {
        assert_eq!(split_bracketed("3]{x}"), Some(("3", "{x}")));
        assert_eq!(split_bracketed("a[b]]c"), Some(("a[b]", "c")));
        assert_eq!(split_bracketed("open"), None);
    }

    #[test]
    fn split_top_level_ignores_nested_separators() {
        assert_eq!(split_top_level("1,(2,3),4", ","), vec!["1", "(2,3)", "4"]);
        assert_eq!(split_top_level("(3,4],[5,6)", ","), vec!["(3,4]", "[5,6)"]);
        assert_eq!(split_top_level(r"a\cupb", r"\cup"), vec!["a", "b"]);
        assert_eq!(split_top_level("", ","), vec![""]);
        assert_eq!(split_top_level("))),", ","), vec![")))", ""]);
    }

    #[test]
    fn wrapped_means_one_outer_pair() {
        assert!(is_wrapped_in_brackets("(1,2)"));
        assert!(is_wrapped_in_brackets("[3,4)"));
        assert!(!is_wrapped_in_brackets("(1)+(2)"));
        assert!(!is_wrapped_in_brackets("(1"));
        assert!(!is_wrapped_in_brackets("5"));
    }
}
