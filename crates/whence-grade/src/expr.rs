//! A tiny evaluator for the arithmetic found in normalised answers, so that
//! `0.5`, `\frac{1}{2}` and `1/2` compare equal, and `2(k+1)` equals `2k+2`.
//!
//! It understands numbers, `+ - * /`, `\cdot`, `\times`, `\div`, `^`,
//! `\frac{a}{b}`, `\sqrt{x}`, `\sqrt[n]{x}`, `\pi`, a few functions (`\sin`,
//! `\cos`, `\tan`, `\cot`, `\sec`, `\csc`, `\ln`), parentheses, implicit
//! multiplication (`3\sqrt{13}`, `2\pi`, `(a+5)(b+2)`), mixed numbers
//! (`1\frac{4}{5}` = 9/5) and single-letter variables. Two letters in a row
//! (`ab`, `east`) are taken for a word, not a product, and do not parse.
//! Anything else does not parse either, and the caller falls back to string
//! comparison.

use std::collections::BTreeSet;

/// Longer inputs are not evaluated: answers are short, and this bounds the
/// recursion depth.
const MAX_TOKENS: usize = 256;
/// Relative tolerance for numeric equality.
const RELATIVE_TOLERANCE: f64 = 1e-6;
/// Relative tolerance for expressions with variables: they are exact
/// formulas, so only rounding differences are forgiven.
const VARIABLE_TOLERANCE: f64 = 1e-9;
/// Absolute tolerance, only to absorb rounding noise around zero.
const ABSOLUTE_TOLERANCE: f64 = 1e-12;
/// How many variable assignments expressions with variables are compared at.
const SAMPLE_POINTS: u32 = 3;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number { value: f64, is_integer: bool },
    Letter(char),
    Command(String),
    Symbol(char),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Function {
    Sqrt,
    Sin,
    Cos,
    Tan,
    Cot,
    Sec,
    Csc,
    Ln,
}

impl Function {
    fn named(name: &str) -> Option<Function> {
        Some(match name {
            "sin" => Function::Sin,
            "cos" => Function::Cos,
            "tan" => Function::Tan,
            "cot" => Function::Cot,
            "sec" => Function::Sec,
            "csc" => Function::Csc,
            "ln" => Function::Ln,
            _ => return None,
        })
    }

    fn apply(self, x: f64) -> f64 {
        match self {
            Function::Sqrt => x.sqrt(),
            Function::Sin => x.sin(),
            Function::Cos => x.cos(),
            Function::Tan => x.tan(),
            Function::Cot => 1.0 / x.tan(),
            Function::Sec => 1.0 / x.cos(),
            Function::Csc => 1.0 / x.sin(),
            Function::Ln => x.ln(),
        }
    }
}

/// A parsed arithmetic expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Expr {
    Number(f64),
    Variable(char),
    Neg(Box<Expr>),
    Binary(Op, Box<Expr>, Box<Expr>),
    Apply(Function, Box<Expr>),
    Root { index: Box<Expr>, radicand: Box<Expr> },
}

impl Expr {
    /// Parses a normalised answer; `None` when it is not plain arithmetic.
    pub(crate) fn parse(text: &str) -> Option<Expr> {
        let tokens = tokenize(text)?;
        let mut parser = Parser { tokens, at: 0 };
        let expr = parser.sum()?;
        (parser.at == parser.tokens.len()).then_some(expr)
    }

    fn variables(&self, found: &mut BTreeSet<char>) {
        match self {
            Expr::Number(_) => {}
            Expr::Variable(name) => {
                found.insert(*name);
            }
            Expr::Neg(inner) | Expr::Apply(_, inner) => inner.variables(found),
            Expr::Binary(_, left, right) | Expr::Root { index: left, radicand: right } => {
                left.variables(found);
                right.variables(found);
            }
        }
    }

    fn value(&self, variable: &dyn Fn(char) -> f64) -> f64 {
        match self {
            Expr::Number(value) => *value,
            Expr::Variable(name) => variable(*name),
            Expr::Neg(inner) => -inner.value(variable),
            Expr::Apply(function, inner) => function.apply(inner.value(variable)),
            Expr::Root { index, radicand } => nth_root(radicand.value(variable), index.value(variable)),
            Expr::Binary(op, left, right) => {
                let (x, y) = (left.value(variable), right.value(variable));
                match op {
                    Op::Add => x + y,
                    Op::Sub => x - y,
                    Op::Mul => x * y,
                    Op::Div => x / y,
                    Op::Pow => x.powf(y),
                }
            }
        }
    }
}

/// The real `n`-th root, also of negative numbers for odd `n`.
fn nth_root(x: f64, n: f64) -> f64 {
    let odd_integer = n.fract() == 0.0 && n % 2.0 != 0.0;
    if x < 0.0 && odd_integer {
        -(-x).powf(1.0 / n)
    } else {
        x.powf(1.0 / n)
    }
}

/// True when both expressions have the same variables and the same value
/// (within tolerance) everywhere they are compared: once when there are no
/// variables, else at a few fixed assignments.
pub(crate) fn same_value(left: &Expr, right: &Expr) -> bool {
    let (mut left_variables, mut right_variables) = (BTreeSet::new(), BTreeSet::new());
    left.variables(&mut left_variables);
    right.variables(&mut right_variables);
    if left_variables != right_variables {
        return false;
    }
    if left_variables.is_empty() {
        let no_variables = |_| f64::NAN;
        return close(left.value(&no_variables), right.value(&no_variables));
    }
    let mut compared = 0;
    for point in 0..SAMPLE_POINTS {
        let assignment = |name: char| sample_value(name, point);
        let (x, y) = (left.value(&assignment), right.value(&assignment));
        if x.is_nan() && y.is_nan() {
            continue; // both undefined here, e.g. a logarithm of a negative
        }
        if !close_within(x, y, VARIABLE_TOLERANCE) {
            return false;
        }
        compared += 1;
    }
    compared > 0
}

/// A fixed value per variable and sample point, spread over (0.4, 1.6) so
/// that no term of a polynomial swamps the others.
fn sample_value(name: char, point: u32) -> f64 {
    const GOLDEN: f64 = 0.618_033_988_749_895;
    let seed = f64::from(u32::from(name) % 128) * GOLDEN + f64::from(point) * GOLDEN * GOLDEN;
    0.4 + seed.fract() * 1.2
}

/// Numeric equality: relative tolerance 1e-6, both values finite.
pub(crate) fn close(x: f64, y: f64) -> bool {
    close_within(x, y, RELATIVE_TOLERANCE)
}

fn close_within(x: f64, y: f64, relative: f64) -> bool {
    if !x.is_finite() || !y.is_finite() {
        return false;
    }
    let difference = (x - y).abs();
    difference <= ABSOLUTE_TOLERANCE || difference <= relative * x.abs().max(y.abs())
}

fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        if tokens.len() >= MAX_TOKENS {
            return None;
        }
        let (token, after) = if c.is_ascii_digit() || (c == '.' && rest[1..].starts_with(|d: char| d.is_ascii_digit())) {
            number_token(rest)?
        } else if c == '\\' {
            command_token(rest)?
        } else if c.is_ascii_alphabetic() {
            (Token::Letter(c), &rest[1..])
        } else if "+-*/^(){}[]".contains(c) {
            (Token::Symbol(c), &rest[1..])
        } else {
            return None;
        };
        tokens.push(token);
        rest = after.trim_start();
    }
    Some(tokens)
}

fn number_token(text: &str) -> Option<(Token, &str)> {
    let integer_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let after_integer = &text[integer_end..];
    let fraction_digits = after_integer
        .strip_prefix('.')
        .map(|fraction| fraction.find(|c: char| !c.is_ascii_digit()).unwrap_or(fraction.len()))
        .filter(|&digits| digits > 0);
    let end = match fraction_digits {
        Some(digits) => integer_end + 1 + digits,
        None => integer_end,
    };
    let value = text[..end].parse::<f64>().ok()?;
    Some((Token::Number { value, is_integer: fraction_digits.is_none() }, &text[end..]))
}

fn command_token(text: &str) -> Option<(Token, &str)> {
    let name_and_rest = &text[1..];
    let letters = name_and_rest.len() - name_and_rest.trim_start_matches(|c: char| c.is_ascii_alphabetic()).len();
    if letters == 0 {
        return None; // `\{`, `\,` and the like are not arithmetic
    }
    let (name, rest) = name_and_rest.split_at(letters);
    Some((Token::Command(name.to_string()), rest))
}

struct Parser {
    tokens: Vec<Token>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn peek_at(&self, offset: usize) -> Option<&Token> {
        self.tokens.get(self.at + offset)
    }

    fn advance(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn eat_symbol(&mut self, symbol: char) -> bool {
        let found = self.peek() == Some(&Token::Symbol(symbol));
        if found {
            self.at += 1;
        }
        found
    }

    fn expect_symbol(&mut self, symbol: char) -> Option<()> {
        self.eat_symbol(symbol).then_some(())
    }

    fn is_command(&self, offset: usize, name: &str) -> bool {
        matches!(self.peek_at(offset), Some(Token::Command(found)) if found == name)
    }

    fn sum(&mut self) -> Option<Expr> {
        let mut left = self.product()?;
        loop {
            let op = if self.eat_symbol('+') {
                Op::Add
            } else if self.eat_symbol('-') {
                Op::Sub
            } else {
                return Some(left);
            };
            let right = self.product()?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn product(&mut self) -> Option<Expr> {
        let mut left = self.signed()?;
        loop {
            let (op, right) = if let Some(op) = self.multiplicative_operator() {
                (op, self.signed()?)
            } else if self.starts_factor() {
                (Op::Mul, self.power()?)
            } else {
                return Some(left);
            };
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
    }

    fn multiplicative_operator(&mut self) -> Option<Op> {
        let op = match self.peek()? {
            Token::Symbol('*') => Op::Mul,
            Token::Symbol('/') => Op::Div,
            Token::Command(name) if name == "cdot" || name == "times" => Op::Mul,
            Token::Command(name) if name == "div" => Op::Div,
            _ => return None,
        };
        self.at += 1;
        Some(op)
    }

    /// Whether the next token can start a factor multiplied implicitly.
    fn starts_factor(&self) -> bool {
        match self.peek() {
            Some(Token::Number { .. } | Token::Letter(_)) => true,
            Some(Token::Symbol(symbol)) => *symbol == '(' || *symbol == '{',
            Some(Token::Command(name)) => matches!(name.as_str(), "pi" | "frac" | "sqrt") || Function::named(name).is_some(),
            None => false,
        }
    }

    fn signed(&mut self) -> Option<Expr> {
        if self.eat_symbol('-') {
            return Some(Expr::Neg(Box::new(self.signed()?)));
        }
        if self.eat_symbol('+') {
            return self.signed();
        }
        self.power()
    }

    fn power(&mut self) -> Option<Expr> {
        let base = self.atom()?;
        if !self.eat_symbol('^') {
            return Some(base);
        }
        let exponent = if self.eat_symbol('{') {
            let inner = self.sum()?;
            self.expect_symbol('}')?;
            inner
        } else {
            self.signed()?
        };
        Some(Expr::Binary(Op::Pow, Box::new(base), Box::new(exponent)))
    }

    fn atom(&mut self) -> Option<Expr> {
        match self.advance()? {
            Token::Number { value, is_integer } => Some(self.mixed_number(value, is_integer)),
            Token::Letter(name) => match self.peek() {
                Some(Token::Letter(_)) => None, // a word, not a product
                _ => Some(Expr::Variable(name)),
            },
            Token::Symbol('(') => self.closed_by(')'),
            Token::Symbol('{') => self.closed_by('}'),
            Token::Command(name) => self.command(&name),
            Token::Symbol(_) => None,
        }
    }

    fn closed_by(&mut self, close: char) -> Option<Expr> {
        let inner = self.sum()?;
        self.expect_symbol(close)?;
        Some(inner)
    }

    fn command(&mut self, name: &str) -> Option<Expr> {
        match name {
            "pi" => Some(Expr::Number(std::f64::consts::PI)),
            "frac" => {
                let numerator = self.argument()?;
                let denominator = self.argument()?;
                Some(Expr::Binary(Op::Div, Box::new(numerator), Box::new(denominator)))
            }
            "sqrt" => {
                if self.eat_symbol('[') {
                    let index = self.closed_by(']')?;
                    let radicand = self.argument()?;
                    return Some(Expr::Root { index: Box::new(index), radicand: Box::new(radicand) });
                }
                Some(Expr::Apply(Function::Sqrt, Box::new(self.argument()?)))
            }
            _ => {
                let function = Function::named(name)?;
                Some(Expr::Apply(function, Box::new(self.power()?)))
            }
        }
    }

    /// A command argument: a braced group or a single atom.
    fn argument(&mut self) -> Option<Expr> {
        if self.eat_symbol('{') {
            return self.closed_by('}');
        }
        self.atom()
    }

    /// `1\frac{4}{5}` is the mixed number 1 4/5; any other number is itself.
    fn mixed_number(&mut self, whole: f64, is_integer: bool) -> Expr {
        let integer_at = |parser: &Parser, offset| matches!(parser.peek_at(offset), Some(Token::Number { is_integer: true, .. }));
        let symbol_at = |parser: &Parser, offset, symbol| parser.peek_at(offset) == Some(&Token::Symbol(symbol));
        let is_mixed = is_integer
            && self.is_command(0, "frac")
            && symbol_at(self, 1, '{')
            && integer_at(self, 2)
            && symbol_at(self, 3, '}')
            && symbol_at(self, 4, '{')
            && integer_at(self, 5)
            && symbol_at(self, 6, '}');
        if !is_mixed {
            return Expr::Number(whole);
        }
        let number_at = |parser: &Parser, offset| match parser.peek_at(offset) {
            Some(Token::Number { value, .. }) => *value,
            _ => f64::NAN,
        };
        let fraction = number_at(self, 2) / number_at(self, 5);
        self.at += 7;
        Expr::Number(whole + fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str) -> Option<f64> {
        Expr::parse(text).map(|expr| expr.value(&|_| f64::NAN))
    }

    fn equal(left: &str, right: &str) -> bool {
        match (Expr::parse(left), Expr::parse(right)) {
            (Some(left), Some(right)) => same_value(&left, &right),
            _ => false,
        }
    }

    #[test]
    fn evaluates_arithmetic() {
        assert_eq!(value("1+2*3"), Some(7.0));
        assert_eq!(value("(1+2)*3"), Some(9.0));
        assert_eq!(value("2^{10}"), Some(1024.0));
        assert_eq!(value("2^3^2"), Some(512.0));
        assert_eq!(value("-2^2"), Some(-4.0));
        assert_eq!(value("2^-1"), Some(0.5));
        assert_eq!(value(r"6\div3"), Some(2.0));
        assert_eq!(value(r"2\cdot3\times4"), Some(24.0));
        assert_eq!(value("1/2/2"), Some(0.25));
        assert_eq!(value(".5"), Some(0.5));
    }

    #[test]
    fn evaluates_latex_forms() {
        assert_eq!(value(r"\frac{3}{4}"), Some(0.75));
        assert_eq!(value(r"\sqrt{16}"), Some(4.0));
        assert_eq!(value(r"\sqrt[3]{-8}"), Some(-2.0));
        assert_eq!(value(r"3\sqrt{4}"), Some(6.0));
        assert_eq!(value(r"\frac{\pi}{2}"), Some(std::f64::consts::FRAC_PI_2));
        assert_eq!(value(r"1\frac{4}{5}"), Some(1.8));
        assert_eq!(value(r"-1\frac{1}{2}"), Some(-1.5));
        assert_eq!(value(r"137\frac{1}{2}"), Some(137.5));
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        for text in ["", "east", "52_8", r"\infty", r"1,2", "(1", "1+", r"\{1\}", "3!", "=", "1..2"] {
            assert_eq!(Expr::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn compares_numbers_with_tolerance() {
        assert!(equal("0.5", r"\frac{1}{2}"));
        assert!(equal("1/2", r"\frac{1}{2}"));
        assert!(equal(r"\frac{1}{3}", "0.3333333"));
        assert!(!equal(r"\frac{1}{3}", "0.333"));
        assert!(equal(r"\sqrt{2}", "1.41421356"));
        assert!(!equal("1", "2"));
    }

    #[test]
    fn compares_expressions_with_variables() {
        assert!(equal("2k+2", "2(k+1)"));
        assert!(equal("(a+5)(b+2)", "(b+2)(a+5)"));
        assert!(equal(r"\frac{\cos x}{\sin x}", r"\cot x"));
        assert!(!equal("2k+2", "2n+2"));
        assert!(!equal("x^2", "2x"));
        assert!(!equal("x", "2"));
        assert!(!equal("x^8+x^7+x^6+x^5+x^4+x^3+x^2+x+1", "x^8+x^7+x^6+x^5+x^4+x^3+x^2+x+2"));
        assert!(!equal("x^{20}", "x^{20}+1"));
    }

    #[test]
    fn infinities_and_nan_are_never_close() {
        assert!(!close(f64::INFINITY, f64::INFINITY));
        assert!(!close(f64::NAN, f64::NAN));
        assert!(!equal("1/0", "1/0"));
    }

    #[test]
    fn deep_or_long_input_is_rejected_not_overflowed() {
        let deep = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
        assert_eq!(Expr::parse(&deep), None);
        let long = "1+".repeat(10_000) + "1";
        assert_eq!(Expr::parse(&long), None);
    }
}
