//! Equivalence of two answers: same canonical string, same words, same
//! structure (tuples, intervals, sets, unions, matrices) with equivalent
//! elements, or the same numeric value.

use std::cell::Cell;
use std::sync::LazyLock;

use regex::Regex;

use crate::expr::{same_value, Expr};
use crate::latex::{is_wrapped_in_brackets, split_top_level};
use crate::normalize::normalize;

/// How deeply structures may nest (a set of tuples of matrices…).
const MAX_NESTING: usize = 6;
/// Lists longer than this are compared in order rather than as sets.
const MAX_UNORDERED_ITEMS: usize = 32;
/// How many element comparisons one top-level comparison may make.
const COMPARISON_BUDGET: usize = 20_000;
/// Matrix environments compared entry-wise (`vmatrix` is a determinant).
const MATRIX_ENVIRONMENTS: [&str; 4] = ["matrix", "pmatrix", "bmatrix", "Bmatrix"];

/// True when `candidate` and `reference` are the same answer.
pub(crate) fn answers_match(candidate: &str, reference: &str) -> bool {
    let budget = Cell::new(COMPARISON_BUDGET);
    equivalent(candidate, reference, 0, &budget)
}

fn equivalent(left: &str, right: &str, nesting: usize, budget: &Cell<usize>) -> bool {
    let remaining = budget.get();
    if remaining == 0 {
        return false;
    }
    budget.set(remaining - 1);
    let (left, right) = (normalize(left), normalize(right));
    if left.is_empty() || right.is_empty() {
        return false;
    }
    if left == right || same_words(&left, &right) {
        return true;
    }
    if nesting >= MAX_NESTING {
        return false;
    }
    match compare_shapes(&Shape::of(&left), &Shape::of(&right), nesting, budget) {
        Some(verdict) => verdict,
        None => same_number(&left, &right),
    }
}

/// Word answers (`Evelyn`, `east`) compare without regard to case.
fn same_words(left: &str, right: &str) -> bool {
    let is_word = |text: &str| {
        text.chars().all(|c| c.is_alphabetic() || "()-".contains(c)) && text.chars().filter(|c| c.is_alphabetic()).count() >= 2
    };
    is_word(left) && is_word(right) && left.to_lowercase() == right.to_lowercase()
}

static INTEGER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^-?[0-9]+$").expect("valid regex"));

/// Same numeric value (or, with variables, the same function). Two different
/// integer literals are never equal, however large.
fn same_number(left: &str, right: &str) -> bool {
    if INTEGER.is_match(left) && INTEGER.is_match(right) {
        return false; // canonical integers that differ as strings differ
    }
    match (Expr::parse(left), Expr::parse(right)) {
        (Some(left), Some(right)) => same_value(&left, &right),
        _ => false,
    }
}

/// The structure of a normalised answer.
#[derive(Debug, PartialEq)]
enum Shape<'a> {
    /// `\begin{pmatrix}…\end{pmatrix}`: rows of cells.
    Matrix(Vec<Vec<&'a str>>),
    /// Tuples, points and intervals: `(1,2)`, `[3,4)`. Order and brackets matter.
    Bracketed { open: u8, close: u8, items: Vec<&'a str> },
    /// `A\cup B`: order does not matter.
    Union(Vec<&'a str>),
    /// `\{…\}`, a bare comma list, or `a\pm b`: order does not matter.
    Set(Vec<String>),
    /// Anything else: one answer.
    Single(&'a str),
}

impl<'a> Shape<'a> {
    fn of(text: &'a str) -> Shape<'a> {
        if let Some(rows) = matrix_rows(text) {
            return Shape::Matrix(rows);
        }
        let union = split_top_level(text, r"\cup");
        if union.len() > 1 {
            return Shape::Union(union);
        }
        if let Some(inside) = set_contents(text) {
            return Shape::Set(with_plus_minus_expanded(split_top_level(inside, ",")));
        }
        let bytes = text.as_bytes();
        if is_wrapped_in_brackets(text) && matches!(bytes[0], b'(' | b'[') && matches!(bytes[bytes.len() - 1], b')' | b']') {
            let items = split_top_level(&text[1..text.len() - 1], ",");
            if items.len() > 1 {
                return Shape::Bracketed { open: bytes[0], close: bytes[bytes.len() - 1], items };
            }
        }
        let list = split_top_level(text, ",");
        if list.len() > 1 {
            return Shape::Set(with_plus_minus_expanded(list));
        }
        if split_top_level(text, r"\pm").len() == 2 {
            return Shape::Set(with_plus_minus_expanded(vec![text]));
        }
        Shape::Single(text)
    }
}

/// The content of `\{…\}` when the braces wrap the whole text.
fn set_contents(text: &str) -> Option<&str> {
    let inside = text.strip_prefix(r"\{")?.strip_suffix(r"\}")?;
    is_wrapped_in_brackets(&text[1..]).then_some(inside)
}

/// `a\pm b` stands for the two answers `a+b` and `a-b`.
fn with_plus_minus_expanded(items: Vec<&str>) -> Vec<String> {
    let mut expanded = Vec::with_capacity(items.len());
    for item in items {
        match split_top_level(item, r"\pm").as_slice() {
            [before, after] => {
                expanded.push(format!("{before}+{after}"));
                expanded.push(format!("{before}-{after}"));
            }
            _ => expanded.push(item.to_string()),
        }
    }
    expanded
}

/// Rows and cells of a matrix environment spanning the whole text.
fn matrix_rows(text: &str) -> Option<Vec<Vec<&str>>> {
    let after_begin = text.strip_prefix(r"\begin{")?;
    let (environment, body_and_end) = after_begin.split_once('}')?;
    if !MATRIX_ENVIRONMENTS.contains(&environment) {
        return None;
    }
    let body = body_and_end.strip_suffix(&format!(r"\end{{{environment}}}"))?;
    let mut rows: Vec<Vec<&str>> = split_top_level(body, r"\\").into_iter().map(|row| split_top_level(row, "&")).collect();
    if rows.last().is_some_and(|row| row.iter().all(|cell| cell.trim().is_empty())) {
        rows.pop(); // a trailing `\\`
    }
    Some(rows)
}

/// Compares two shapes; `None` when neither has structure, so the caller
/// compares values instead.
fn compare_shapes(left: &Shape, right: &Shape, nesting: usize, budget: &Cell<usize>) -> Option<bool> {
    let same = |a: &str, b: &str| equivalent(a, b, nesting + 1, budget);
    let verdict = match (left, right) {
        (Shape::Single(_), Shape::Single(_)) => return None,
        (Shape::Matrix(a), Shape::Matrix(b)) => a.len() == b.len() && a.iter().zip(b).all(|(row_a, row_b)| in_order(row_a, row_b, same)),
        (Shape::Matrix(rows), Shape::Bracketed { open: b'(', close: b')', items })
        | (Shape::Bracketed { open: b'(', close: b')', items }, Shape::Matrix(rows)) => {
            vector_entries(rows).is_some_and(|entries| in_order(&entries, items, same))
        }
        (Shape::Bracketed { open: open_a, close: close_a, items: a }, Shape::Bracketed { open: open_b, close: close_b, items: b }) => {
            open_a == open_b && close_a == close_b && in_order(a, b, same)
        }
        (Shape::Union(a), Shape::Union(b)) => in_any_order(a, b, same),
        (Shape::Set(a), Shape::Set(b)) => in_any_order(a, b, same),
        (Shape::Set(items), Shape::Single(single)) | (Shape::Single(single), Shape::Set(items)) => {
            items.len() == 1 && same(&items[0], single)
        }
        _ => false,
    };
    Some(verdict)
}

/// The entries of a one-column or one-row matrix.
fn vector_entries<'a>(rows: &[Vec<&'a str>]) -> Option<Vec<&'a str>> {
    if rows.iter().all(|row| row.len() == 1) {
        return Some(rows.iter().map(|row| row[0]).collect());
    }
    (rows.len() == 1).then(|| rows[0].clone())
}

fn in_order<A: AsRef<str>, B: AsRef<str>>(a: &[A], b: &[B], same: impl Fn(&str, &str) -> bool) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x.as_ref(), y.as_ref()))
}

/// Multiset equality under `same`, matching greedily.
fn in_any_order<A: AsRef<str>, B: AsRef<str>>(a: &[A], b: &[B], same: impl Fn(&str, &str) -> bool) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > MAX_UNORDERED_ITEMS {
        return in_order(a, b, same);
    }
    let mut used = vec![false; b.len()];
    a.iter().all(|x| {
        let partner = (0..b.len()).find(|&j| !used[j] && same(x.as_ref(), b[j].as_ref()));
        partner.inspect(|&j| used[j] = true).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_match(pairs: &[(&str, &str)]) {
        for (candidate, reference) in pairs {
            assert!(answers_match(candidate, reference), "{candidate:?} should match {reference:?}");
            assert!(answers_match(reference, candidate), "{reference:?} should match {candidate:?}");
        }
    }

    fn assert_differ(pairs: &[(&str, &str)]) {
        for (candidate, reference) in pairs {
            assert!(!answers_match(candidate, reference), "{candidate:?} should not match {reference:?}");
            assert!(!answers_match(reference, candidate), "{reference:?} should not match {candidate:?}");
        }
    }

    #[test]
    fn numbers_match_by_value() {
        assert_match(&[
            ("0.5", r"\frac{1}{2}"),
            ("1/2", r"\frac{1}{2}"),
            ("0.5", "1/2"),
            ("70", "70.0"),
            ("50", r"50\%"),
            ("-1", "-1.000"),
            (".0000672", "0.0000672"),
            ("6.17", r"6.17\%"),
            ("1.25", r"\frac{5}{4}"),
            (r"1\frac{4}{5}", r"\frac{9}{5}"),
            (r"137 \frac{1}{2}", "137.5"),
        ]);
        assert_differ(&[("0.5", "0.6"), ("188743314", "188743315"), ("1000000", "1000001"), ("6.17", "6.18"), (r"\frac{1}{3}", "0.33")]);
    }

    #[test]
    fn fractions_in_every_spelling() {
        assert_match(&[
            (r"\frac43", r"\frac{4}{3}"),
            ("4/3", r"\frac{4}{3}"),
            (r"\dfrac{4}{3}", r"\tfrac43"),
            (r"-\frac{1} { 4027}", r"-\dfrac{1}{4027}"),
            (r"\frac{-5}{12}", r"-\frac{5}{12}"),
            (r"\frac 59", r"\frac{5}{9}"),
        ]);
        assert_differ(&[(r"\frac{1}{4027}", r"-\frac{1}{4027}"), (r"\frac{4}{3}", r"\frac{3}{4}")]);
    }

    #[test]
    fn roots_and_pi() {
        assert_match(&[
            (r"\sqrt{2}", r"\sqrt2"),
            (r"11\sqrt2", r"11\sqrt{2}"),
            (r"3\sqrt{13}", r"\sqrt{117}"),
            (r"\frac{\sqrt{3}}{3}", r"\frac{1}{\sqrt{3}}"),
            (r"\frac{\pi}{2}", r"\pi/2"),
            (r"288\pi", r"288 \pi"),
            (r"2\pi", "2π"),
            (r"-\frac{\pi}{6}", r"-\frac{1}{6}\pi"),
        ]);
        assert_differ(&[(r"\sqrt{2}", r"\sqrt{3}"), (r"\pi", "3.14")]);
    }

    #[test]
    fn degrees_percent_and_units() {
        assert_match(&[
            (r"90^\circ", "90"),
            (r"45^{\circ}", "45"),
            ("30°", "30"),
            (r"\frac{270}7\text{ degrees}", r"\frac{270}{7}"),
            (r"864 \mbox{ inches}^2", "864"),
            (r"5.4 \text{ cents}", "5.4"),
            (r"\$18.90", "18.90"),
            ("27 miles", "27"),
            (r"10,\!080", "10080"),
            (r"11,\! 111,\! 111,\! 100", "11111111100"),
            ("58,500", "58500"),
        ]);
        assert_differ(&[(r"90^\circ", "91")]);
    }

    #[test]
    fn assignments_and_wrappers() {
        assert_match(&[("x=5", "5"), ("k = 3", "3"), ("$5$", "5"), (r"\boxed{5}", "5"), ("5.", "5"), ("y = 2x + 3", "2x+3")]);
    }

    #[test]
    fn tuples_and_intervals_keep_order_and_brackets() {
        assert_match(&[
            (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"),
            (r"(3, 1.5707963)", r"\left( 3, \frac{\pi}{2} \right)"),
            ("(6,31,-1)", "(6, 31, -1)"),
            ("(3,4]", r"\left(3, 4\right]"),
            (r"(-\infty, 0]", r"(-\infty,0]"),
            (r"\left[ \frac{\pi^2}{8}, \frac{5 \pi^2}{4} \right]", r"[\pi^2/8, 5\pi^2/4]"),
            (r"\left(\frac{3}{5},\frac{8}{3}\right]", "(0.6, 8/3]"),
        ]);
        assert_differ(&[("(3,4]", "(3,4)"), ("[3,4]", "(3,4]"), ("(1,2)", "(2,1)"), ("(1,2)", "(1,2,3)"), ("(1,2)", "1,2")]);
    }

    #[test]
    fn lists_and_sets_ignore_order() {
        assert_match(&[
            ("1,-2", "-2, 1"),
            ("3, 5, 7", "7,3,5"),
            (r"\{1,2\}", "2,1"),
            (r"\{5\}", "5"),
            (r"1 \pm \sqrt{19}", r"1-\sqrt{19}, 1+\sqrt{19}"),
            (r"\{1\pm\sqrt{5},-2\}", r"-2, 1+\sqrt5, 1-\sqrt5"),
            (r"1 \text{ or } 2", "2, 1"),
            (r"(0,9) \cup (9,36)", r"(9,36)\cup(0,9)"),
        ]);
        assert_differ(&[("1,-2", "1,2"), ("1,2", "1,2,3"), ("1,1,2", "1,2,2"), (r"(0,9)\cup(9,36)", r"(0,9)\cup[9,36)")]);
    }

    #[test]
    fn matrices_compare_entry_wise() {
        assert_match(&[
            (r"\begin{pmatrix} -1/3 \\ 2/3 \\ 5/3 \end{pmatrix}", r"\begin{pmatrix}-\frac{1}{3}\\\frac{2}{3}\\\frac53\end{pmatrix}"),
            (r"\begin{pmatrix} -1 & 0 \\ 0 & -1 \end{pmatrix}", r"\begin{bmatrix}-1&0\\0&-1\end{bmatrix}"),
            (r"\begin{pmatrix} -2 \\ -14 \\ -7 \end{pmatrix}", "(-2,-14,-7)"),
            (r"\begin{pmatrix} 1 \\ 2 \\ \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}"),
        ]);
        assert_differ(&[
            (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}"),
            (r"\begin{pmatrix} 1 & 2 \end{pmatrix}", r"\begin{pmatrix} 1 \\ 2 \\ 3 \end{pmatrix}"),
            (r"\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}", r"\begin{pmatrix} 1 & 0 \\ 0 & 2 \end{pmatrix}"),
        ]);
    }

    #[test]
    fn words_ignore_case() {
        assert_match(&[(r"\text{Evelyn}", "Evelyn"), (r"\text{east}", "East"), (r"\text{ellipse}", r"\textbf{Ellipse}")]);
        assert_differ(&[(r"\text{Evelyn}", "Navin"), ("east", "seat")]);
    }

    #[test]
    fn expressions_with_variables() {
        assert_match(&[
            ("p - q", "p-q"),
            ("2k+2", "2(k+1)"),
            ("(a+5)(b+2)", "(b+2)(a+5)"),
            ("x^5 - x^4 + x^3 - x^2 + x - 1", "x^5-x^4+x^3-x^2+x-1"),
            (r"\cot x", r"\frac{\cos x}{\sin x}"),
            ("6r^2-4r-24", "2(3r^2-2r-12)"),
        ]);
        assert_differ(&[("2k+2", "2k"), ("p-q", "q-p"), ("x", "y")]);
    }

    #[test]
    fn bases_and_other_strings_compare_as_strings() {
        assert_match(&[("52_8", "52_{8}"), ("4210_{5}", "4210_5"), (r"6 - 5i", "6-5i")]);
        assert_differ(&[("52_8", "52"), ("52_8", "52_9")]);
    }

    #[test]
    fn empty_answers_never_match() {
        assert_differ(&[("", ""), ("", "0"), ("$$", "$$"), (r"\text{}", "")]);
    }

    #[test]
    fn shape_detection() {
        assert_eq!(Shape::of("5"), Shape::Single("5"));
        assert_eq!(Shape::of("(5)"), Shape::Single("(5)"));
        assert_eq!(Shape::of("(1,2]"), Shape::Bracketed { open: b'(', close: b']', items: vec!["1", "2"] });
        assert_eq!(Shape::of("1,2"), Shape::Set(vec!["1".into(), "2".into()]));
        assert_eq!(Shape::of(r"1\pm2"), Shape::Set(vec!["1+2".into(), "1-2".into()]));
        assert_eq!(Shape::of(r"(1,2)\cup(3,4)"), Shape::Union(vec!["(1,2)", "(3,4)"]));
        assert_eq!(Shape::of(r"\begin{pmatrix}1&2\\3&4\end{pmatrix}"), Shape::Matrix(vec![vec!["1", "2"], vec!["3", "4"]]));
    }
}
