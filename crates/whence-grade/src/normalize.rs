//! The normaliser: rewrites an answer into the canonical string that
//! comparison works on. Each rule is one small function; [`normalize`] runs
//! them in order.

use std::sync::LazyLock;

use regex::Regex;

use crate::latex::{split_braced, split_bracketed};

/// The rules, in the order they run.
const STEPS: &[fn(&str) -> String] = &[
    remove_currency_and_percent,
    remove_math_delimiters,
    unwrap_boxed,
    replace_unicode_symbols,
    remove_sizing_commands,
    unify_command_spellings,
    remove_spacing_commands,
    remove_degree_marks,
    replace_text_commands,
    remove_unit_words,
    collapse_whitespace,
    strip_trailing_punctuation,
    strip_variable_assignment,
    brace_shorthand_arguments,
    unbrace_single_char_scripts,
    join_thousands_separators,
    canonical_decimal,
];

/// How many times the rules may run over an answer. One rule can uncover
/// work for an earlier one (`\text{\text{5}}`), so they run until nothing
/// changes; real answers settle in one or two rounds.
const MAX_ROUNDS: usize = 4;

/// Rewrites `answer` into the canonical string form used for comparison.
///
/// See the crate documentation for the list of rules. They run until the
/// text stops changing (at most four rounds), so normalising a
/// normalised answer leaves it as it is.
pub fn normalize(answer: &str) -> String {
    let mut current = answer.trim().to_string();
    for _ in 0..MAX_ROUNDS {
        let next = STEPS.iter().fold(current.clone(), |text, step| step(&text));
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("valid regex")
}

/// `\$`, `\%` and `%` carry no value: `\$18.90` → `18.90`, `50\%` → `50`.
fn remove_currency_and_percent(text: &str) -> String {
    text.replace(r"\$", "").replace(r"\%", "").replace('%', "")
}

/// `$…$`, `\(…\)` and `\[…\]` wrappers (a `\\` row break stays whole).
fn remove_math_delimiters(text: &str) -> String {
    static DELIMITER: LazyLock<Regex> = LazyLock::new(|| regex(r"\\\\|\\[()\[\]]|\$"));
    keep_row_breaks(&DELIMITER, text, "").trim().to_string()
}

/// Replaces every match of `pattern` by `replacement`, except `\\` (a row
/// break, which patterns list first so that its second backslash is not
/// read as the start of a command).
fn keep_row_breaks(pattern: &Regex, text: &str, replacement: &str) -> String {
    pattern
        .replace_all(text, |found: &regex::Captures| match &found[0] {
            r"\\" => r"\\".to_string(),
            _ => replacement.to_string(),
        })
        .into_owned()
}

/// An answer that is itself `\boxed{…}` or `\fbox{…}` is its content.
fn unwrap_boxed(text: &str) -> String {
    let mut current = text.trim();
    loop {
        let inside = [r"\boxed{", r"\fbox{"].iter().find_map(|opening| current.strip_prefix(opening)).and_then(split_braced);
        match inside {
            Some((content, after)) if after.trim().is_empty() => current = content.trim(),
            _ => return current.to_string(),
        }
    }
}

/// Unicode math symbols become their LaTeX commands.
fn replace_unicode_symbols(text: &str) -> String {
    const SYMBOLS: [(char, &str); 11] = [
        ('−', "-"),
        ('–', "-"),
        ('π', r"\pi "),
        ('√', r"\sqrt "),
        ('×', r"\times "),
        ('·', r"\cdot "),
        ('÷', r"\div "),
        ('∞', r"\infty "),
        ('≤', r"\le "),
        ('≥', r"\ge "),
        ('∪', r"\cup "),
    ];
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match SYMBOLS.iter().find(|(symbol, _)| *symbol == c) {
            Some((_, command)) => out.push_str(command),
            None => out.push(c),
        }
    }
    out
}

/// Rewrites command names: `rename` gets each name without its backslash
/// and returns the replacement text, or `None` to keep the command.
fn rename_commands(text: &str, rename: impl Fn(&str) -> Option<&'static str>) -> String {
    static COMMAND: LazyLock<Regex> = LazyLock::new(|| regex(r"\\\\|\\[a-zA-Z]+"));
    COMMAND
        .replace_all(text, |found: &regex::Captures| {
            let command = &found[0];
            match command.strip_prefix('\\').and_then(&rename) {
                Some(replacement) if command != r"\\" => replacement.to_string(),
                _ => command.to_string(),
            }
        })
        .into_owned()
}

/// `\left(` → `(`, `\right]` → `]`, and the `\big…` family.
fn remove_sizing_commands(text: &str) -> String {
    rename_commands(text, |name| match name {
        "left" | "right" | "middle" | "big" | "Big" | "bigg" | "Bigg" | "bigl" | "bigr" | "Bigl" | "Bigr" | "biggl" | "biggr" | "Biggl"
        | "Biggr" => Some(""),
        _ => None,
    })
}

/// One spelling per command: `\dfrac`/`\tfrac`/`\cfrac` → `\frac`,
/// `\leq` → `\le`, `\geq` → `\ge`, `\varnothing` → `\emptyset`; style
/// commands such as `\displaystyle` disappear.
fn unify_command_spellings(text: &str) -> String {
    rename_commands(text, |name| match name {
        "dfrac" | "tfrac" | "cfrac" => Some(r"\frac"),
        "leq" => Some(r"\le"),
        "geq" => Some(r"\ge"),
        "varnothing" => Some(r"\emptyset"),
        "displaystyle" | "textstyle" => Some(""),
        _ => None,
    })
}

/// Spacing commands (`\!`, `\,`, `\;`, `\:`, `\ `, `\quad`, `~`) become plain
/// spaces, so `10,\!080` → `10,080` once whitespace goes.
fn remove_spacing_commands(text: &str) -> String {
    static SPACING: LazyLock<Regex> = LazyLock::new(|| regex(r"\\\\|\\(?:[!,;:> ]|qquad|quad)|~"));
    keep_row_breaks(&SPACING, text, " ")
}

/// Degree marks: `^\circ`, `^{\circ}`, `°`, `\degree`.
fn remove_degree_marks(text: &str) -> String {
    static DEGREES: LazyLock<Regex> = LazyLock::new(|| regex(r"\^\s*\{?\s*\\circ\s*\}?|°"));
    let without_marks = DEGREES.replace_all(text, "");
    rename_commands(&without_marks, |name| matches!(name, "circ" | "degree").then_some(""))
}

/// Commands whose argument is text rather than math.
static TEXT_COMMAND: LazyLock<Regex> = LazyLock::new(|| regex(r"\\(?:text|textbf|textit|textrm|texttt|textnormal|mbox|mathrm)\s*\{"));

/// A piece of an answer: math, or the argument of a text command.
enum Piece<'a> {
    Math(&'a str),
    Text(&'a str),
}

fn split_text_commands(text: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(command) = TEXT_COMMAND.find(rest) {
        let Some((content, after)) = split_braced(&rest[command.end()..]) else {
            break;
        };
        pieces.push(Piece::Math(&rest[..command.start()]));
        pieces.push(Piece::Text(content));
        rest = after;
    }
    pieces.push(Piece::Math(rest));
    pieces
}

/// `\text{…}`, `\mbox{…}` and friends. An answer that is only text keeps its
/// words (`\text{Evelyn}` → `Evelyn`). Inside math, connector words become
/// commas (`1 \text{ or } 2` → `1,2`), unit words go away together with a
/// power after them (`864 \mbox{ inches}^2` → `864`), and anything else is
/// unwrapped.
fn replace_text_commands(text: &str) -> String {
    let pieces = split_text_commands(text);
    let only_text = pieces.iter().all(|piece| match piece {
        Piece::Math(math) => math.chars().all(|c| c.is_whitespace() || ".,;:".contains(c)),
        Piece::Text(_) => true,
    });
    let mut out = String::with_capacity(text.len());
    let mut after_unit = false;
    for piece in pieces {
        match piece {
            Piece::Text(words) if only_text => out.push_str(words),
            Piece::Text(words) => {
                let words = words.trim();
                after_unit = false;
                if is_connector(words) {
                    out.push(',');
                } else if words.chars().count() > 1 && words.chars().all(|c| c.is_alphabetic() || c == ' ') {
                    after_unit = true;
                } else {
                    out.push_str(words);
                }
            }
            Piece::Math(math) => {
                let math = if after_unit { without_leading_power(math) } else { math };
                out.push_str(math);
            }
        }
    }
    out.trim().to_string()
}

fn is_connector(words: &str) -> bool {
    matches!(words, "and" | "or" | "," | "and/or")
}

/// `^2` or `^{3}` at the start of `text` (the power of a unit) is dropped.
fn without_leading_power(text: &str) -> &str {
    static POWER: LazyLock<Regex> = LazyLock::new(|| regex(r"^\s*\^\s*(?:[0-9]|\{\s*[0-9]\s*\})"));
    match POWER.find(text) {
        Some(power) => &text[power.end()..],
        None => text,
    }
}

/// Measurement words that may follow a number without `\text{}`.
const UNIT_WORDS: &[&str] = &[
    "degree", "degrees", "unit", "units", "square", "sq", "cubic", "cm", "mm", "km", "meter", "meters", "metre", "metres", "mile", "miles",
    "feet", "foot", "ft", "inch", "inches", "yard", "yards", "mph", "hour", "hours", "minute", "minutes", "seconds", "day", "days", "week",
    "weeks", "year", "years", "dollar", "dollars", "cent", "cents", "gram", "grams", "kg", "pound", "pounds", "liter", "liters",
];

/// Unit words written without `\text{}` after a value: `27 miles` → `27`,
/// `15 cm^2` → `15`.
fn remove_unit_words(text: &str) -> String {
    let mut current = text.trim_end();
    while let Some((before, last_word)) = current.rsplit_once(char::is_whitespace) {
        let word = last_word.trim_end_matches('.');
        let word = word.split('^').next().unwrap_or(word);
        let is_unit = UNIT_WORDS.iter().any(|unit| unit.eq_ignore_ascii_case(word));
        if !is_unit || before.trim().is_empty() {
            break;
        }
        current = before.trim_end();
    }
    current.to_string()
}

/// Whitespace goes, except one space between a command name and a letter
/// after it (`\pi r`, `\cot x`), which would otherwise merge.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !c.is_whitespace() {
            out.push(c);
            continue;
        }
        while chars.next_if(|next| next.is_whitespace()).is_some() {}
        let next_is_letter = chars.peek().is_some_and(char::is_ascii_alphabetic);
        if next_is_letter && ends_with_command_name(&out) {
            out.push(' ');
        }
    }
    out
}

fn ends_with_command_name(text: &str) -> bool {
    let without_letters = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    without_letters.len() < text.len() && without_letters.ends_with('\\') && !without_letters.ends_with(r"\\")
}

/// A trailing `.`, `,`, `;` or `\\` after the answer.
fn strip_trailing_punctuation(text: &str) -> String {
    let mut current = text;
    loop {
        let trimmed = current.trim_end_matches(['.', ',', ';']);
        let trimmed = trimmed.strip_suffix(r"\\").unwrap_or(trimmed);
        if trimmed.len() == current.len() {
            return trimmed.to_string();
        }
        current = trimmed;
    }
}

/// A leading single-variable assignment: `x=5` → `5`, `k_1=3` → `3`,
/// `\theta=\pi` → `\pi`, `x\in[-2,7]` → `[-2,7]`.
fn strip_variable_assignment(text: &str) -> String {
    static ASSIGNMENT: LazyLock<Regex> =
        LazyLock::new(|| regex(r"^(?:[a-zA-Z](?:_\{?[a-zA-Z0-9]+\}?)?|\\[a-zA-Z]+)(?:=|\\in\b|\\approx\b)"));
    match ASSIGNMENT.find(text) {
        Some(assignment) if !text[assignment.end()..].contains('=') && assignment.end() < text.len() => {
            text[assignment.end()..].to_string()
        }
        _ => text.to_string(),
    }
}

/// Commands whose arguments may be written without braces, and how many.
const SHORTHAND_COMMANDS: [(&str, usize); 3] = [(r"\frac", 2), (r"\binom", 2), (r"\sqrt", 1)];

/// Braces around every argument: `\frac43` → `\frac{4}{3}`,
/// `\frac{270}7` → `\frac{270}{7}`, `\sqrt2` → `\sqrt{2}`,
/// `\frac\pi2` → `\frac{\pi}{2}`.
fn brace_shorthand_arguments(text: &str) -> String {
    let mut occurrences: Vec<(usize, &str, usize)> =
        SHORTHAND_COMMANDS.iter().flat_map(|&(name, count)| text.match_indices(name).map(move |(at, _)| (at, name, count))).collect();
    // Right to left, so each rewrite leaves the positions before it valid.
    occurrences.sort_unstable_by_key(|&(at, _, _)| std::cmp::Reverse(at));
    let mut out = text.to_string();
    for (at, name, count) in occurrences {
        let start = at + name.len();
        if let Some((consumed, braced)) = braced_arguments(&out[start..], name, count) {
            if out[start..start + consumed] != braced {
                out.replace_range(start..start + consumed, &braced);
            }
        }
    }
    out
}

/// Reads `count` arguments of a command (plus the optional `[n]` of `\sqrt`)
/// and returns how many bytes they took and their fully braced form.
fn braced_arguments(after_name: &str, name: &str, count: usize) -> Option<(usize, String)> {
    if after_name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None; // a longer command name such as `\sqrtsign`
    }
    let mut rest = after_name;
    let mut braced = String::new();
    if name == r"\sqrt" {
        if let Some((index, after)) = rest.strip_prefix('[').and_then(split_bracketed) {
            braced.push_str(&format!("[{index}]"));
            rest = after;
        }
    }
    for _ in 0..count {
        let (argument, after) = next_argument(rest)?;
        braced.push('{');
        braced.push_str(argument);
        braced.push('}');
        rest = after;
    }
    Some((after_name.len() - rest.len(), braced))
}

/// One command argument: a braced group, a command name, or a single
/// letter or digit.
fn next_argument(text: &str) -> Option<(&str, &str)> {
    let text = text.strip_prefix(' ').unwrap_or(text);
    if let Some(inside) = text.strip_prefix('{') {
        return split_braced(inside);
    }
    if let Some(name) = text.strip_prefix('\\') {
        let letters = name.len() - name.trim_start_matches(|c: char| c.is_ascii_alphabetic()).len();
        if letters == 0 {
            return None;
        }
        let (command, rest) = text.split_at(1 + letters);
        // The space that only separated the command name from a letter goes with it.
        return Some((command, rest.strip_prefix(' ').unwrap_or(rest)));
    }
    let first = text.chars().next().filter(|c| c.is_ascii_alphanumeric())?;
    Some(text.split_at(first.len_utf8()))
}

/// `^{2}` → `^2` and `_{5}` → `_5`: single-character scripts lose braces.
fn unbrace_single_char_scripts(text: &str) -> String {
    static SCRIPT: LazyLock<Regex> = LazyLock::new(|| regex(r"([\^_])\{([^{}\\])\}"));
    SCRIPT.replace_all(text, "$1$2").into_owned()
}

/// Thousands separators in a number: `10,080` → `10080`, `11,111,111,100`.
fn join_thousands_separators(text: &str) -> String {
    static GROUPED: LazyLock<Regex> = LazyLock::new(|| regex(r"^[-+]?[0-9]{1,3}(?:,[0-9]{3})+(?:\.[0-9]+)?$"));
    if GROUPED.is_match(text) {
        text.replace(',', "")
    } else {
        text.to_string()
    }
}

/// Plain decimals in one spelling: `70.0` → `70`, `.35` → `0.35`,
/// `007` → `7`, `+3` → `3`, `-0` → `0`.
fn canonical_decimal(text: &str) -> String {
    static DECIMAL: LazyLock<Regex> = LazyLock::new(|| regex(r"^([-+]?)([0-9]*)(?:\.([0-9]*))?$"));
    let Some(parts) = DECIMAL.captures(text) else {
        return text.to_string();
    };
    let integer = parts[2].trim_start_matches('0');
    let fraction = parts.get(3).map_or("", |m| m.as_str()).trim_end_matches('0');
    if parts[2].is_empty() && parts.get(3).is_none_or(|m| m.as_str().is_empty()) {
        return text.to_string(); // no digits at all
    }
    let integer = if integer.is_empty() { "0" } else { integer };
    let is_zero = integer == "0" && fraction.is_empty();
    let sign = if &parts[1] == "-" && !is_zero { "-" } else { "" };
    if fraction.is_empty() {
        format!("{sign}{integer}")
    } else {
        format!("{sign}{integer}.{fraction}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_normalizes(cases: &[(&str, &str)]) {
        for (input, expected) in cases {
            assert_eq!(normalize(input), *expected, "normalize({input:?})");
        }
    }

    #[test]
    fn whitespace_goes() {
        assert_normalizes(&[(" 1 + 2 ", "1+2"), ("(6, 31, -1)", "(6,31,-1)"), ("-\\frac{1} { 4027}", r"-\frac{1}{4027}")]);
    }

    #[test]
    fn space_between_command_and_letter_stays() {
        assert_normalizes(&[(r"\cot x", r"\cot x"), (r"288 \pi", r"288\pi"), (r"\pi  r^2", r"\pi r^2")]);
    }

    #[test]
    fn left_right_and_sizes_go() {
        assert_normalizes(&[
            (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
            (r"\left[ \frac{\pi^2}{8}, \frac{5 \pi^2}{4} \right]", r"[\frac{\pi^2}{8},\frac{5\pi^2}{4}]"),
            (r"\Big( 1 \Big)", "(1)"),
            (r"\left\{1,2\right\}", r"\{1,2\}"),
        ]);
    }

    #[test]
    fn fraction_spellings_unify() {
        assert_normalizes(&[(r"\dfrac{17}{50}", r"\frac{17}{50}"), (r"\tfrac12", r"\frac{1}{2}"), (r"\cfrac{a}{b}", r"\frac{a}{b}")]);
    }

    #[test]
    fn shorthand_arguments_get_braces() {
        assert_normalizes(&[
            (r"\frac43", r"\frac{4}{3}"),
            (r"\frac 59", r"\frac{5}{9}"),
            (r"\frac{270}7", r"\frac{270}{7}"),
            (r"\frac9{19}", r"\frac{9}{19}"),
            (r"\frac\pi2", r"\frac{\pi}{2}"),
            (r"11\sqrt2", r"11\sqrt{2}"),
            (r"\sqrt[3]2", r"\sqrt[3]{2}"),
            (r"\frac{\sqrt3}2", r"\frac{\sqrt{3}}{2}"),
            (r"\frac", r"\frac"),
            (r"\sqrtx", r"\sqrtx"),
        ]);
    }

    #[test]
    fn degrees_go() {
        assert_normalizes(&[("90^\\circ", "90"), ("90^{\\circ}", "90"), ("90°", "90"), ("90 ^ { \\circ }", "90"), ("45\\degree", "45")]);
    }

    #[test]
    fn percent_and_currency_go() {
        assert_normalizes(&[("50\\%", "50"), ("50%", "50"), ("\\$18.90", "18.9"), ("\\$32,\\!348", "32348")]);
    }

    #[test]
    fn text_units_go_and_text_answers_stay() {
        assert_normalizes(&[
            (r"\text{Evelyn}", "Evelyn"),
            (r"\text{Evelyn}.", "Evelyn"),
            (r"\text{(C)}", "(C)"),
            (r"\text{infinitely many}", "infinitelymany"),
            (r"\frac{270}7\text{ degrees}", r"\frac{270}{7}"),
            (r"864 \mbox{ inches}^2", "864"),
            (r"15\mbox{ cm}^2", "15"),
            (r"5.4 \text{ cents}", "5.4"),
            (r"1 \text{ or } 2", "1,2"),
            (r"3\mathrm{cm}", "3"),
            (r"5 \text{ and } 6", "5,6"),
        ]);
    }

    #[test]
    fn bare_unit_words_go() {
        assert_normalizes(&[("27 miles", "27"), ("15 cm^2", "15"), ("6 square units", "6"), ("miles", "miles"), ("p - q", "p-q")]);
    }

    #[test]
    fn spacing_commands_and_thousands_separators_go() {
        assert_normalizes(&[
            (r"10,\!080", "10080"),
            (r"11,\! 111,\! 111,\! 100", "11111111100"),
            ("58,500", "58500"),
            (r"1\,000", "1000"),
            ("1,-2", "1,-2"),
            ("3, 5, 7", "3,5,7"),
            (r"a\quad b", "ab"),
        ]);
    }

    #[test]
    fn trailing_punctuation_goes() {
        assert_normalizes(&[("5.", "5"), ("5,", "5"), (r"7 \\", "7"), ("x.", "x")]);
    }

    #[test]
    fn math_delimiters_and_boxes_go() {
        assert_normalizes(&[
            ("$5$", "5"),
            (r"\(\frac12\)", r"\frac{1}{2}"),
            (r"\[ 3 \]", "3"),
            (r"\boxed{\boxed{4}}", "4"),
            (r"$\boxed{7}$", "7"),
        ]);
    }

    #[test]
    fn variable_assignments_go() {
        assert_normalizes(&[
            ("x=5", "5"),
            ("k = 3", "3"),
            ("a_1=2", "2"),
            ("x_{10} = 2", "2"),
            (r"\theta = \frac{\pi}{2}", r"\frac{\pi}{2}"),
            (r"x \in [-2,7]", "[-2,7]"),
            ("y = 2x + 3", "2x+3"),
            ("5x - 7y + 11z + 4 = 0", "5x-7y+11z+4=0"),
            ("x=y=1", "x=y=1"),
            ("x=", "x="),
        ]);
    }

    #[test]
    fn scripts_lose_single_char_braces() {
        assert_normalizes(&[("4210_{5}", "4210_5"), ("x^{2}", "x^2"), ("2^{10}", "2^{10}")]);
    }

    #[test]
    fn decimals_take_one_spelling() {
        assert_normalizes(&[
            ("70.0", "70"),
            (".0000672", "0.0000672"),
            ("007", "7"),
            ("+3", "3"),
            ("-0.0", "0"),
            ("3.50", "3.5"),
            (".", ""),
            ("-", "-"),
        ]);
    }

    #[test]
    fn unicode_symbols_become_commands() {
        assert_normalizes(&[("2π", r"2\pi"), ("√2", r"\sqrt{2}"), ("−3", "-3"), ("∞", r"\infty")]);
    }

    #[test]
    fn nested_and_repeated_commands_settle() {
        assert_normalizes(&[
            (r"\text{\text{5}}", "5"),
            (r"\dfrac\tfrac", r"\frac\frac"),
            (r"\dfrac{\dfrac12}3", r"\frac{\frac{1}{2}}{3}"),
            (r"\left(\left(1\right)\right)", "((1))"),
            (r"\begin{pmatrix}1\\ 2\end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
            (r"\\\left(", r"\\("),
        ]);
    }

    #[test]
    fn normalizing_is_idempotent_on_examples() {
        for input in [r"\left( 3, \frac{\pi}{2} \right)", r"10,\!080", r"\frac{270}7\text{ degrees}", "x=5", r"\text{Evelyn}", "70.0"] {
            let once = normalize(input);
            assert_eq!(normalize(&once), once, "{input:?}");
        }
    }
}
