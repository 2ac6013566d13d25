//! Sentence templates with slots, one source for both rendering a sentence
//! and compiling the pattern that recognises it.
//!
//! A template is text with slots in braces (`{name}`, `{item}`, `{k}`, `{a}`,
//! `{r}`, `{n}`, `{expr}`); `{{` and `}}` stand for literal braces, as in
//! `format!`.

/// A slot of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The person's name.
    Name,
    /// The item, a plural noun.
    Item,
    /// The amount of a change.
    K,
    /// The value before a step.
    A,
    /// The value after a step, or the stated result.
    R,
    /// The number of steps, as a word.
    N,
    /// The student's whole computation.
    Expr,
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// Literal text.
    Text(String),
    /// A slot to fill.
    Slot(Slot),
}

/// The pieces of `template`. An unknown `{word}` stays literal text (the
/// crate's templates have none; a test checks that).
pub(crate) fn parse(template: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(character) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("{{") {
            text.push('{');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            text.push('}');
            rest = after;
        } else if let Some((slot, after)) = slot_at(rest) {
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Slot(slot));
            rest = after;
        } else {
            text.push(character);
            rest = &rest[character.len_utf8()..];
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

fn slot_at(text: &str) -> Option<(Slot, &str)> {
    let inner = text.strip_prefix('{')?;
    let close = inner.find('}')?;
    let slot = match &inner[..close] {
        "name" => Slot::Name,
        "item" => Slot::Item,
        "k" => Slot::K,
        "a" => Slot::A,
        "r" => Slot::R,
        "n" => Slot::N,
        "expr" => Slot::Expr,
        _ => return None,
    };
    Some((slot, &inner[close + 1..]))
}

/// The values of the slots (a slot a template lacks is ignored).
#[derive(Debug, Clone, Default)]
pub(crate) struct Fill<'a> {
    pub(crate) name: &'a str,
    pub(crate) item: &'a str,
    pub(crate) k: u32,
    pub(crate) a: u32,
    pub(crate) r: u32,
    pub(crate) n: &'a str,
    pub(crate) expr: &'a str,
}

/// `template` with its slots filled.
pub(crate) fn render(template: &str, fill: &Fill<'_>) -> String {
    let mut out = String::new();
    for piece in parse(template) {
        match piece {
            Piece::Text(text) => out.push_str(&text),
            Piece::Slot(Slot::Name) => out.push_str(fill.name),
            Piece::Slot(Slot::Item) => out.push_str(fill.item),
            Piece::Slot(Slot::K) => out.push_str(&fill.k.to_string()),
            Piece::Slot(Slot::A) => out.push_str(&fill.a.to_string()),
            Piece::Slot(Slot::R) => out.push_str(&fill.r.to_string()),
            Piece::Slot(Slot::N) => out.push_str(fill.n),
            Piece::Slot(Slot::Expr) => out.push_str(fill.expr),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_slots_and_escaped_braces() {
        assert_eq!(
            parse(r"The answer is \boxed{{{r}}}."),
            vec![Piece::Text(r"The answer is \boxed{".into()), Piece::Slot(Slot::R), Piece::Text("}.".into())]
        );
        assert_eq!(parse("{unknown} {name}"), vec![Piece::Text("{unknown} ".into()), Piece::Slot(Slot::Name)]);
        assert_eq!(parse("{"), vec![Piece::Text("{".into())]);
        assert_eq!(parse(""), vec![]);
    }

    #[test]
    fn renders_every_slot() {
        let fill = Fill { name: "Ana", item: "beads", k: 3, a: 4, r: 7, n: "two", expr: "4 + 3" };
        assert_eq!(render("{name} {item} {k} {a} {r} {n} {expr} {{x}}", &fill), "Ana beads 3 4 7 two 4 + 3 {x}");
    }
}
