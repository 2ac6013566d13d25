//! Maps a sentence back to the family whose template it fills.

use regex::RegexSet;

use crate::family::{Family, TEMPLATES};
use crate::problem::{ITEMS, NAMES};
use crate::template::{parse, Piece, Slot};

/// The pattern of a number slot: any decimal number, so a sentence with a
/// wrong number still matches its family (the matcher classifies wording,
/// not arithmetic).
const NUMBER: &str = r"\d+";
/// The pattern of the step count: the words a drawn problem uses.
const COUNT: &str = "(?:two|three|four|five|six)";
/// The pattern of the student's expression: numbers joined by ` + `, ` - `
/// or ` * `, with any parentheses.
const EXPRESSION: &str = r"\(*\d+(?: [-+*] \d+\)*)+";

/// Recognises the sentences of every family: one anchored pattern per
/// template variant, compiled once.
#[derive(Debug, Clone)]
pub struct Matcher {
    patterns: RegexSet,
    families: Vec<Family>,
}

impl Default for Matcher {
    fn default() -> Self {
        Matcher::new()
    }
}

impl Matcher {
    /// Compiles the patterns of all templates (slots: a name of the world, an
    /// item of the world, any number, `two`/`three`/`four`, an expression).
    pub fn new() -> Matcher {
        let names = alternation(&NAMES);
        let items = alternation(&ITEMS);
        let mut patterns = Vec::with_capacity(TEMPLATES.len());
        let mut families = Vec::with_capacity(TEMPLATES.len());
        for (family, template) in TEMPLATES {
            let mut pattern = String::from("^");
            for piece in parse(template) {
                match piece {
                    Piece::Text(text) => pattern.push_str(&regex::escape(&text)),
                    Piece::Slot(Slot::Name) => pattern.push_str(&names),
                    Piece::Slot(Slot::Item) => pattern.push_str(&items),
                    Piece::Slot(Slot::K | Slot::A | Slot::R) => pattern.push_str(NUMBER),
                    Piece::Slot(Slot::N) => pattern.push_str(COUNT),
                    Piece::Slot(Slot::Expr) => pattern.push_str(EXPRESSION),
                }
            }
            pattern.push('$');
            patterns.push(pattern);
            families.push(family);
        }
        let patterns = RegexSet::new(&patterns).expect("the templates' patterns are valid (tested)");
        Matcher { patterns, families }
    }

    /// The family `sentence` belongs to, after trimming surrounding
    /// whitespace; `None` when it matches no family, or (which the templates
    /// rule out) more than one.
    pub fn family(&self, sentence: &str) -> Option<Family> {
        let mut found = None;
        for index in self.patterns.matches(sentence.trim()).iter() {
            let family = self.families[index];
            match found {
                None => found = Some(family),
                Some(earlier) if earlier == family => {}
                Some(_) => return None,
            }
        }
        found
    }

    /// The origin of `sentence`: that of its family, or
    /// [`Origin::Unmatched`](crate::Origin::Unmatched).
    pub fn origin(&self, sentence: &str) -> crate::Origin {
        self.family(sentence).map_or(crate::Origin::Unmatched, Family::origin)
    }
}

/// `(?:a|b|c)` of the escaped words.
fn alternation(words: &[&str]) -> String {
    let escaped: Vec<String> = words.iter().map(|word| regex::escape(word)).collect();
    format!("(?:{})", escaped.join("|"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{render, Fill};
    use crate::Origin;

    #[test]
    fn each_hand_written_sentence_finds_its_family() {
        let matcher = Matcher::new();
        let cases = [
            ("Let us work it out.", Family::SharedOpen),
            ("We need to find how many coins Omar has at the end.", Family::TeacherRestate),
            ("The plan is to apply the four changes in order.", Family::TeacherPlan),
            ("After getting 3 more, Pia has 4 + 3 = 7 stamps.", Family::Step),
            ("After selling 9, Pia has 40 - 9 = 31 stamps.", Family::Step),
            ("After tripling, Pia has 4 * 3 = 12 stamps.", Family::Step),
            ("Check: 12 / 3 = 4, so the last step is right.", Family::TeacherVerify),
            ("Check: 31 + 9 = 40, so the last step is right.", Family::TeacherVerify),
            ("Goal: find the number of cards Jo ends up with.", Family::SpuriousRestate),
            ("Strategy: work through the two events one at a time.", Family::SpuriousPlan),
            ("Double-checking the last step: 4 * 2 is 8.", Family::SpuriousVerify),
            ("Let me just do it all at once.", Family::StudentOpen),
            ("Jo ends with ((3 + 4) * 2 - 1) * 3 = 39 cards.", Family::StudentJump),
            ("That should be about right.", Family::StudentGuess),
            (r"The answer is \boxed{39}.", Family::Final),
        ];
        for (sentence, family) in cases {
            assert_eq!(matcher.family(sentence), Some(family), "{sentence}");
        }
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        let matcher = Matcher::default();
        assert_eq!(matcher.family("  Let us work it out.\n\n"), Some(Family::SharedOpen));
        assert_eq!(matcher.family("The answer is \\boxed{7}. "), Some(Family::Final));
    }

    #[test]
    fn wrong_numbers_keep_the_family() {
        let matcher = Matcher::new();
        assert_eq!(matcher.family("After buying 5 more, Ana has 12 + 5 = 99 apples."), Some(Family::Step));
        assert_eq!(matcher.family("Check: 1 - 1000 = 3, so the last step is right."), Some(Family::TeacherVerify));
        assert_eq!(matcher.family("Ana ends with 12 + 5 = 0 apples."), Some(Family::StudentJump));
    }

    #[test]
    fn changed_or_unrelated_text_matches_nothing() {
        let matcher = Matcher::new();
        for sentence in [
            "",
            "   \n",
            "The weather is nice today.",
            "After buying 5 more, Zed has 12 + 5 = 17 apples.",
            "After buying 5 more, Ana has 12 + 5 = 17 apple.",
            "After buying 5 more, Ana has 12 - 5 = 17 apples.",
            "After buying five more, Ana has 12 + 5 = 17 apples.",
            "after buying 5 more, Ana has 12 + 5 = 17 apples.",
            "After buying 5 more, Ana has 12 + 5 = 17 apples",
            "After buying 5 more, Ana has 12 + 5 = 17 apples. Let us work it out.",
            "Let us work it out!",
            "The plan is to apply the seven changes in order.",
            "Check: 10 / 4 = 2, so the last step is right.",
            "Ana ends with 12 = 12 apples.",
            r"The answer is \boxed{-3}.",
            "The answer is 39.",
            "Then Ana buys 5 more.",
            "Ana has 12 apples.",
            "How many apples does Ana have now?",
            "Let us work it out.\u{0}",
        ] {
            assert_eq!(matcher.family(sentence), None, "{sentence:?}");
        }
        assert_eq!(matcher.origin("nothing like it"), Origin::Unmatched);
        assert_eq!(matcher.origin("Let me just do it all at once."), Origin::StudentOnly);
    }

    #[test]
    fn every_pattern_is_anchored_and_matches_only_its_own_variant() {
        let matcher = Matcher::new();
        assert_eq!(matcher.families.len(), TEMPLATES.len());
        assert!(matcher.patterns.patterns().iter().all(|pattern| pattern.starts_with('^') && pattern.ends_with('$')));
        let fill = Fill { name: "Kai", item: "shells", k: 3, a: 14, r: 17, n: "three", expr: "(2 + 5) * 2" };
        for (index, (family, template)) in TEMPLATES.iter().enumerate() {
            let sentence = render(template, &fill);
            let matched: Vec<usize> = matcher.patterns.matches(&sentence).iter().collect();
            assert_eq!(matched, [index], "{sentence}");
            assert_eq!(matcher.family(&sentence), Some(*family));
        }
    }
}
