//! `tojson` as transformers defines it: Python's `json.dumps` with the keyword
//! arguments `ensure_ascii`, `indent`, `separators` and `sort_keys`, written over
//! minijinja values.

use std::fmt::Write as _;

use minijinja::value::{from_args, Kwargs, Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{Error, ErrorKind};

/// The options of Python's `json.dumps` that transformers' `tojson` exposes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DumpOptions {
    /// Escape everything outside printable ASCII as `\uXXXX`.
    pub ensure_ascii: bool,
    /// The indentation of one level; `None` writes everything on one line.
    pub indent: Option<String>,
    /// Written between two items of a list or a dict.
    pub item_separator: String,
    /// Written between a key and its value.
    pub key_separator: String,
    /// Sort dict keys (otherwise insertion order).
    pub sort_keys: bool,
}

impl Default for DumpOptions {
    /// `json.dumps(x)` defaults, but with `ensure_ascii=False` as transformers sets it.
    fn default() -> Self {
        DumpOptions::new(false, None, None, false)
    }
}

impl DumpOptions {
    /// Python's defaults: separators `(", ", ": ")` without indent, `(",", ": ")` with one.
    pub fn new(ensure_ascii: bool, indent: Option<String>, separators: Option<(String, String)>, sort_keys: bool) -> Self {
        let (item_separator, key_separator) = separators.unwrap_or_else(|| {
            let item = if indent.is_some() { "," } else { ", " };
            (item.to_string(), ": ".to_string())
        });
        DumpOptions { ensure_ascii, indent, item_separator, key_separator, sort_keys }
    }
}

/// The `tojson` filter: `tojson(x, ensure_ascii=False, indent=None, separators=None,
/// sort_keys=False)`, positionally or by keyword, as in transformers.
pub(crate) fn tojson_filter(args: Rest<ValueOrKwargs>) -> Result<Value, Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    let args = args.into_values();
    let (positional, kwargs): (&[Value], Kwargs) = from_args(&args)?;
    let Some((value, rest)) = positional.split_first() else {
        return Err(Error::new(ErrorKind::MissingArgument, "tojson needs a value"));
    };
    if rest.len() > NAMES.len() {
        return Err(Error::new(
            ErrorKind::TooManyArguments,
            format!("tojson takes at most {} arguments after the value, got {}", NAMES.len(), rest.len()),
        ));
    }
    let mut params: [Option<Value>; 4] = Default::default();
    for (slot, arg) in params.iter_mut().zip(rest) {
        *slot = Some(arg.clone());
    }
    for (slot, name) in params.iter_mut().zip(NAMES) {
        if kwargs.has(name) {
            if slot.is_some() {
                return Err(Error::new(ErrorKind::TooManyArguments, format!("tojson got multiple values for argument '{name}'")));
            }
            *slot = Some(kwargs.get::<Value>(name)?);
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = params;

    let is_set = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_none() && !v.is_undefined());
    let ensure_ascii = ensure_ascii.is_some_and(|v| v.is_true());
    let sort_keys = sort_keys.is_some_and(|v| v.is_true());
    let indent = if is_set(&indent) { Some(indent_string(indent.as_ref().unwrap())?) } else { None };
    let separators = if is_set(&separators) { Some(separator_pair(separators.as_ref().unwrap())?) } else { None };
    let opts = DumpOptions::new(ensure_ascii, indent, separators, sort_keys);
    Ok(Value::from(dumps(value, &opts)?))
}

/// Python: an int `n` indents by `n` spaces (none when `n <= 0`), a string by itself.
fn indent_string(v: &Value) -> Result<String, Error> {
    match v.kind() {
        ValueKind::String => Ok(v.as_str().unwrap_or_default().to_string()),
        ValueKind::Bool => Ok(if v.is_true() { " ".into() } else { String::new() }),
        ValueKind::Number if v.is_integer() => {
            let n = i64::try_from(v.clone()).unwrap_or(0);
            Ok(" ".repeat(n.clamp(0, 1 << 16) as usize))
        }
        _ => Err(Error::new(ErrorKind::InvalidOperation, format!("tojson: indent must be an integer or a string, not {v:?}"))),
    }
}

/// Python: `item_separator, key_separator = separators`.
fn separator_pair(v: &Value) -> Result<(String, String), Error> {
    let bad = || Error::new(ErrorKind::InvalidOperation, format!("tojson: separators must be a pair of strings, not {v:?}"));
    if !matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable) {
        return Err(bad());
    }
    let items: Vec<Value> = v.try_iter().map_err(|_| bad())?.collect();
    match items.as_slice() {
        [a, b] => match (a.as_str(), b.as_str()) {
            (Some(a), Some(b)) => Ok((a.to_string(), b.to_string())),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// `json.dumps(value, **opts)`.
pub(crate) fn dumps(value: &Value, opts: &DumpOptions) -> Result<String, Error> {
    let mut out = String::new();
    write_value(&mut out, value, opts, 0)?;
    Ok(out)
}

fn not_serializable(value: &Value) -> Error {
    let kind = match value.kind() {
        ValueKind::Undefined => "Undefined".to_string(),
        ValueKind::Bytes => "bytes".to_string(),
        other => other.to_string(),
    };
    Error::new(ErrorKind::InvalidOperation, format!("tojson: object of type {kind} is not JSON serializable"))
}

fn write_value(out: &mut String, value: &Value, opts: &DumpOptions, level: usize) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => write_number(out, value),
        ValueKind::String => write_string(out, value.as_str().unwrap_or_default(), opts.ensure_ascii),
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            write_container(out, opts, level, '[', ']', &items, |out, item, level| write_value(out, item, opts, level))?;
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((key, item));
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            write_container(out, opts, level, '{', '}', &entries, |out, (key, item), level| {
                let key = key_string(key)?;
                write_string(out, &key, opts.ensure_ascii);
                out.push_str(&opts.key_separator);
                write_value(out, item, opts, level)
            })?;
        }
        _ => return Err(not_serializable(value)),
    }
    Ok(())
}

/// Python's `_iterencode_list` / `_iterencode_dict` layout.
fn write_container<T>(
    out: &mut String,
    opts: &DumpOptions,
    level: usize,
    open: char,
    close: char,
    items: &[T],
    mut write_item: impl FnMut(&mut String, &T, usize) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(open);
    if items.is_empty() {
        out.push(close);
        return Ok(());
    }
    let inner = level + 1;
    let newline_indent = opts.indent.as_ref().map(|ind| format!("\n{}", ind.repeat(inner)));
    if let Some(nl) = &newline_indent {
        out.push_str(nl);
    }
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(&opts.item_separator);
            if let Some(nl) = &newline_indent {
                out.push_str(nl);
            }
        }
        write_item(out, item, inner)?;
    }
    if let Some(ind) = &opts.indent {
        out.push('\n');
        out.push_str(&ind.repeat(level));
    }
    out.push(close);
    Ok(())
}

/// Dict keys as Python converts them: str as is, numbers and constants written out.
fn key_string(key: &Value) -> Result<String, Error> {
    match key.kind() {
        ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
        ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.to_string()),
        ValueKind::None => Ok("null".to_string()),
        ValueKind::Number => {
            let mut s = String::new();
            write_number(&mut s, key);
            Ok(s)
        }
        other => Err(Error::new(ErrorKind::InvalidOperation, format!("tojson: keys must be str, int, float, bool or None, not {other}"))),
    }
}

fn write_number(out: &mut String, value: &Value) {
    if value.is_integer() {
        let _ = write!(out, "{value}");
        return;
    }
    match f64::try_from(value.clone()) {
        Ok(f) if f.is_nan() => out.push_str("NaN"),
        Ok(f) if f.is_infinite() => out.push_str(if f > 0.0 { "Infinity" } else { "-Infinity" }),
        Ok(f) => out.push_str(&py_float_repr(f)),
        Err(_) => {
            let _ = write!(out, "{value}");
        }
    }
}

/// Python's `repr(float)` for finite values: the shortest round-trip digits, in
/// positional notation when the decimal exponent is in `-4..16`, else as `1.5e+16`.
pub(crate) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "nan".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let sign = if f.is_sign_negative() { "-" } else { "" };
    if f == 0.0 {
        return format!("{sign}0.0");
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, like Python's repr.
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').expect("LowerExp always writes an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    let decpt = exp + 1;
    let body = if decpt > -4 && decpt <= 16 {
        if decpt <= 0 {
            format!("0.{}{}", "0".repeat((-decpt) as usize), digits)
        } else if decpt >= n {
            format!("{}{}.0", digits, "0".repeat((decpt - n) as usize))
        } else {
            let (a, b) = digits.split_at(decpt as usize);
            format!("{a}.{b}")
        }
    } else {
        let m = if n == 1 { digits.clone() } else { format!("{}.{}", &digits[..1], &digits[1..]) };
        format!("{m}e{}{:02}", if exp < 0 { '-' } else { '+' }, exp.abs())
    };
    format!("{sign}{body}")
}

/// A JSON string as Python writes it: `"` and `\` escaped, `\n \r \t \b \f` by
/// name, other control characters as `\u00XX`; with `ensure_ascii` also everything
/// outside `' '..='~'` as `\uXXXX` (surrogate pairs above U+FFFF).
pub(crate) fn write_string(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && !(' '..='~').contains(&c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        let cases = [
            (0.5, "0.5"),
            (1.0, "1.0"),
            (-0.0, "-0.0"),
            (0.1, "0.1"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (1234567890123456.0, "1234567890123456.0"),
            (12345678901234567.0, "1.2345678901234568e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.25e-7, "1.25e-07"),
            (-2.5, "-2.5"),
            (1e300, "1e+300"),
            (123.456, "123.456"),
            (100.0, "100.0"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float_repr(f), want, "repr({f:e})");
        }
    }

    #[test]
    fn string_escapes() {
        let mut s = String::new();
        write_string(&mut s, "a\"b\\c\n\t\u{1}\u{7f}/<>&'é😀", false);
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\t\\u0001\u{7f}/<>&'é😀\"");
        let mut s = String::new();
        write_string(&mut s, "\u{7f}é中😀", true);
        assert_eq!(s, "\"\\u007f\\u00e9\\u4e2d\\ud83d\\ude00\"");
    }
}
