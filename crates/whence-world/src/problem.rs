//! The arithmetic word problems of the world and the seeded stream that draws them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::random::Stream;

/// The people of the problems.
pub const NAMES: [&str; 16] =
    ["Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivan", "Jo", "Kai", "Lena", "Milo", "Nora", "Omar", "Pia"];

/// The things they count (plural nouns).
pub const ITEMS: [&str; 10] = ["apples", "books", "coins", "cards", "shells", "stickers", "marbles", "pencils", "stamps", "beads"];

/// The largest running total a drawn problem reaches. Small on purpose: each
/// step is then a fact from a table of a few hundred (`12 + 5 = 17`) that a
/// model of a million parameters learns exactly, while the whole chain in one
/// jump is not (README's demo section has the figures that set it).
pub const MAX_TOTAL: u32 = 20;

/// The fewest and the most changes of a question of the pretraining, training
/// and held-out splits (each practice problem has one).
pub const MIN_STEPS: u32 = 3;
/// See [`MIN_STEPS`].
pub const MAX_STEPS: u32 = 5;

/// The smallest and the largest start count of a multi-step question.
pub const MIN_START: u32 = 2;
/// See [`MIN_START`].
pub const MAX_START: u32 = 12;

/// The size of the world and its seed; fixed up front for a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorldSettings {
    /// The seed of the problems and of every solution.
    pub seed: u64,
    /// How many problems the pretraining split holds.
    pub pretrain_questions: usize,
    /// How many problems the distillation training split holds.
    pub train_questions: usize,
    /// How many problems the held-out split holds.
    pub heldout_questions: usize,
    /// How many one-step problems the student practises on (its pretraining
    /// text exercises the single steps, as a pretrained base model knows the
    /// facts a teacher's reasoning chains).
    #[serde(default)]
    pub practice_questions: usize,
    /// The probability that the student's result of a multi-step question is
    /// wrong (its one-step results are always right).
    pub student_error_rate: f64,
}

impl WorldSettings {
    /// The demo's world: 4000 pretraining, 400 training and 500 held-out
    /// problems, 3000 one-step practice problems; the student errs on 30%.
    pub fn standard(seed: u64) -> Self {
        WorldSettings {
            seed,
            pretrain_questions: 4000,
            train_questions: 400,
            heldout_questions: 500,
            practice_questions: 3000,
            student_error_rate: 0.3,
        }
    }

    /// A small world for tests: 64 / 16 / 8 problems, 32 practice problems;
    /// the student errs on 30%.
    pub fn tiny(seed: u64) -> Self {
        WorldSettings {
            seed,
            pretrain_questions: 64,
            train_questions: 16,
            heldout_questions: 8,
            practice_questions: 32,
            student_error_rate: 0.3,
        }
    }

    /// How many problems `split` holds.
    pub fn questions(&self, split: Split) -> usize {
        match split {
            Split::Pretrain => self.pretrain_questions,
            Split::Train => self.train_questions,
            Split::Heldout => self.heldout_questions,
            Split::Practice => self.practice_questions,
        }
    }
}

/// A disjoint part of the world's problems.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// The problems the models are pretrained on.
    Pretrain,
    /// The problems whose teacher solutions are the distillation data.
    Train,
    /// The problems no model was trained on.
    Heldout,
    /// One-step problems, drawn from a stream of their own: the student's
    /// practice of the single steps.
    Practice,
}

impl Split {
    /// The three splits of multi-step questions, in the order they are drawn.
    pub const ALL: [Split; 3] = [Split::Pretrain, Split::Train, Split::Heldout];

    /// The split's name: `pretrain`, `train`, `heldout` or `practice` (also
    /// its ids' prefix).
    pub fn name(self) -> &'static str {
        match self {
            Split::Pretrain => "pretrain",
            Split::Train => "train",
            Split::Heldout => "heldout",
            Split::Practice => "practice",
        }
    }
}

/// One change to the count of a problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operation {
    /// Buys this many more.
    Buy(u32),
    /// Finds this many more.
    Find(u32),
    /// Gets this many more from a friend.
    Get(u32),
    /// Gives this many away.
    GiveAway(u32),
    /// Loses this many.
    Lose(u32),
    /// Sells this many.
    Sell(u32),
    /// Doubles the count.
    Double,
    /// Triples the count.
    Triple,
}

/// The arithmetic of an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Add(u32),
    Subtract(u32),
    Multiply(u32),
}

impl Operation {
    /// The eight operations, with `k` for those that take an amount (in this
    /// order: the draw picks one by index).
    pub(crate) fn with_amount(index: u32, k: u32) -> Operation {
        match index {
            0 => Operation::Buy(k),
            1 => Operation::Find(k),
            2 => Operation::Get(k),
            3 => Operation::GiveAway(k),
            4 => Operation::Lose(k),
            5 => Operation::Sell(k),
            6 => Operation::Double,
            _ => Operation::Triple,
        }
    }

    pub(crate) fn change(self) -> Change {
        match self {
            Operation::Buy(k) | Operation::Find(k) | Operation::Get(k) => Change::Add(k),
            Operation::GiveAway(k) | Operation::Lose(k) | Operation::Sell(k) => Change::Subtract(k),
            Operation::Double => Change::Multiply(2),
            Operation::Triple => Change::Multiply(3),
        }
    }

    /// The count after this operation on `value`, saturating at 0 and at
    /// `u32::MAX` (a drawn problem never reaches either).
    pub fn apply(self, value: u32) -> u32 {
        match self.change() {
            Change::Add(k) => value.saturating_add(k),
            Change::Subtract(k) => value.saturating_sub(k),
            Change::Multiply(factor) => value.saturating_mul(factor),
        }
    }

    /// The question's sentence for this operation by `name` on `item`.
    pub fn sentence(self, name: &str, item: &str) -> String {
        match self {
            Operation::Buy(k) => format!("Then {name} buys {k} more."),
            Operation::Find(k) => format!("Then {name} finds {k} more."),
            Operation::Get(k) => format!("Then {name} gets {k} more from a friend."),
            Operation::GiveAway(k) => format!("Then {name} gives away {k}."),
            Operation::Lose(k) => format!("Then {name} loses {k}."),
            Operation::Sell(k) => format!("Then {name} sells {k}."),
            Operation::Double => format!("Then {name} doubles the {item}."),
            Operation::Triple => format!("Then {name} triples the {item}."),
        }
    }
}

/// A multi-step word problem: a start count and changes to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// `{split}-{index}`, the index 1-based with at least 4 digits (`train-0001`).
    pub id: String,
    /// The split the problem belongs to.
    pub split: Split,
    /// The person (one of [`NAMES`]).
    pub name: &'static str,
    /// What they count (one of [`ITEMS`]).
    pub item: &'static str,
    /// The count at the start.
    pub start: u32,
    /// The changes, in order.
    pub steps: Vec<Operation>,
    /// The count at the end.
    pub answer: u32,
}

impl Problem {
    /// The question, e.g. `Ana has 12 apples. Then Ana buys 5 more. Then Ana
    /// gives away 3. How many apples does Ana have now?`
    pub fn question(&self) -> String {
        let mut sentences = vec![format!("{} has {} {}.", self.name, self.start, self.item)];
        sentences.extend(self.steps.iter().map(|step| step.sentence(self.name, self.item)));
        sentences.push(format!("How many {} does {} have now?", self.item, self.name));
        sentences.join(" ")
    }

    /// The running totals: the start first, then the count after each step
    /// (`steps.len() + 1` values; the last is the answer of a drawn problem).
    pub fn values(&self) -> Vec<u32> {
        let mut values = Vec::with_capacity(self.steps.len() + 1);
        let mut value = self.start;
        values.push(value);
        for step in &self.steps {
            value = step.apply(value);
            values.push(value);
        }
        values
    }
}

/// The problems of `split`, deterministic from `settings.seed`.
///
/// One stream of problems is drawn (ChaCha8 from the seed); a problem whose
/// question was drawn before is dropped; the first `pretrain_questions` go to
/// the pretraining split, the next `train_questions` to training, the next
/// `heldout_questions` to the held-out split. So the splits are disjoint and a
/// split does not depend on which split is asked for. The practice split's
/// one-step problems come from a stream of their own (keyed by the seed and
/// `practice`), so they never repeat a multi-step question either.
pub fn problems(settings: &WorldSettings, split: Split) -> Vec<Problem> {
    let practice = split == Split::Practice;
    let skipped = if practice {
        0
    } else {
        Split::ALL.iter().take_while(|&&other| other != split).map(|&other| settings.questions(other)).fold(0, usize::saturating_add)
    };
    let wanted = settings.questions(split);
    let mut stream = if practice { Stream::keyed(settings.seed, "practice") } else { Stream::new(settings.seed) };
    let mut seen = HashSet::new();
    let mut drawn = 0usize;
    let mut out = Vec::new();
    while out.len() < wanted {
        let problem = if practice { draw_practice(&mut stream) } else { draw_problem(&mut stream) };
        if !seen.insert(problem.question()) {
            continue;
        }
        drawn += 1;
        if drawn > skipped {
            let id = format!("{}-{:04}", split.name(), out.len() + 1);
            out.push(Problem { id, split, ..problem });
        }
    }
    out
}

/// One problem of the stream (its id and split are filled in by the caller).
fn draw_problem(stream: &mut Stream) -> Problem {
    let name = NAMES[stream.below(NAMES.len() as u32) as usize];
    let item = ITEMS[stream.below(ITEMS.len() as u32) as usize];
    let count = stream.inclusive(MIN_STEPS, MAX_STEPS);
    let start = stream.inclusive(MIN_START, MAX_START);
    let mut value = start;
    let mut steps = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let step = draw_step(stream, value);
        value = step.apply(value);
        steps.push(step);
    }
    Problem { id: String::new(), split: Split::Pretrain, name, item, start, steps, answer: value }
}

/// One practice problem: a start count anywhere in 1..=[`MAX_TOTAL`] and one
/// change valid on it, so that the practice covers every fact a step can need.
fn draw_practice(stream: &mut Stream) -> Problem {
    let name = NAMES[stream.below(NAMES.len() as u32) as usize];
    let item = ITEMS[stream.below(ITEMS.len() as u32) as usize];
    let start = stream.inclusive(1, MAX_TOTAL);
    let step = draw_step(stream, start);
    Problem { id: String::new(), split: Split::Practice, name, item, start, steps: vec![step], answer: step.apply(start) }
}

/// A uniformly chosen operation valid on `value`, redrawn (operation and
/// amount) until valid: additions reach at most [`MAX_TOTAL`], subtractions
/// leave at least 1, multiplications reach at most [`MAX_TOTAL`].
fn draw_step(stream: &mut Stream, value: u32) -> Operation {
    loop {
        let index = stream.below(8);
        let k = if index < 6 { stream.inclusive(1, 9) } else { 0 };
        let step = Operation::with_amount(index, k);
        let valid = match step.change() {
            Change::Add(k) => value + k <= MAX_TOTAL,
            Change::Subtract(k) => k < value,
            Change::Multiply(factor) => value * factor <= MAX_TOTAL,
        };
        if valid {
            return step;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example() -> Problem {
        Problem {
            id: "train-0001".into(),
            split: Split::Train,
            name: "Ana",
            item: "apples",
            start: 12,
            steps: vec![Operation::Buy(5), Operation::GiveAway(3)],
            answer: 14,
        }
    }

    #[test]
    fn question_reads_as_specified() {
        assert_eq!(
            example().question(),
            "Ana has 12 apples. Then Ana buys 5 more. Then Ana gives away 3. How many apples does Ana have now?"
        );
        let sentences: Vec<String> = [
            Operation::Buy(1),
            Operation::Find(2),
            Operation::Get(3),
            Operation::GiveAway(4),
            Operation::Lose(5),
            Operation::Sell(6),
            Operation::Double,
            Operation::Triple,
        ]
        .iter()
        .map(|step| step.sentence("Jo", "beads"))
        .collect();
        assert_eq!(
            sentences,
            [
                "Then Jo buys 1 more.",
                "Then Jo finds 2 more.",
                "Then Jo gets 3 more from a friend.",
                "Then Jo gives away 4.",
                "Then Jo loses 5.",
                "Then Jo sells 6.",
                "Then Jo doubles the beads.",
                "Then Jo triples the beads.",
            ]
        );
    }

    #[test]
    fn values_are_the_running_totals() {
        assert_eq!(example().values(), vec![12, 17, 14]);
        let problem =
            Problem { steps: vec![Operation::Double, Operation::Lose(4), Operation::Triple, Operation::Find(9)], start: 5, ..example() };
        assert_eq!(problem.values(), vec![5, 10, 6, 18, 27]);
    }

    #[test]
    fn values_saturate_on_malformed_problems() {
        let problem = Problem {
            start: 2,
            steps: vec![Operation::Sell(9), Operation::Buy(u32::MAX), Operation::Buy(1), Operation::Triple],
            ..example()
        };
        assert_eq!(problem.values(), vec![2, 0, u32::MAX, u32::MAX, u32::MAX]);
        assert_eq!(Problem { steps: vec![], ..example() }.values(), vec![12]);
    }

    #[test]
    fn problems_are_deterministic_from_the_seed() {
        let settings = WorldSettings::tiny(5);
        assert_eq!(problems(&settings, Split::Train), problems(&settings, Split::Train));
        assert_ne!(problems(&settings, Split::Train), problems(&WorldSettings::tiny(6), Split::Train));
    }

    #[test]
    fn splits_have_exact_sizes_ids_and_no_shared_question() {
        let settings = WorldSettings::standard(1);
        let mut questions = HashSet::new();
        for split in Split::ALL {
            let drawn = problems(&settings, split);
            assert_eq!(drawn.len(), settings.questions(split));
            for (index, problem) in drawn.iter().enumerate() {
                assert_eq!(problem.id, format!("{}-{:04}", split.name(), index + 1));
                assert_eq!(problem.split, split);
                assert!(questions.insert(problem.question()), "{} repeats a question", problem.id);
            }
        }
        assert_eq!(questions.len(), 4900);
        assert_eq!(problems(&settings, Split::Heldout)[0].id, "heldout-0001");
    }

    #[test]
    fn a_split_does_not_depend_on_the_sizes_after_it() {
        let standard = WorldSettings::standard(9);
        let bigger_heldout = WorldSettings { heldout_questions: 800, ..standard.clone() };
        assert_eq!(problems(&standard, Split::Train), problems(&bigger_heldout, Split::Train));
        assert_eq!(problems(&standard, Split::Heldout)[..], problems(&bigger_heldout, Split::Heldout)[..500]);
        let empty = WorldSettings { train_questions: 0, ..standard };
        assert!(problems(&empty, Split::Train).is_empty());
    }

    #[test]
    fn standard_world_keeps_every_constraint() {
        let settings = WorldSettings::standard(2024);
        let mut operations_seen = HashSet::new();
        let mut step_counts = HashSet::new();
        for split in Split::ALL {
            for problem in problems(&settings, split) {
                assert!((MIN_STEPS as usize..=MAX_STEPS as usize).contains(&problem.steps.len()), "{problem:?}");
                step_counts.insert(problem.steps.len());
                assert!((MIN_START..=MAX_START).contains(&problem.start), "{problem:?}");
                assert!(NAMES.contains(&problem.name) && ITEMS.contains(&problem.item));
                let values = problem.values();
                assert_eq!(values.len(), problem.steps.len() + 1);
                assert_eq!(*values.last().unwrap(), problem.answer);
                assert!(values.iter().all(|value| (1..=MAX_TOTAL).contains(value)), "{problem:?}");
                for (step, window) in problem.steps.iter().zip(values.windows(2)) {
                    match step.change() {
                        Change::Add(k) | Change::Subtract(k) => assert!((1..=9).contains(&k), "{problem:?}"),
                        Change::Multiply(_) => {}
                    }
                    operations_seen.insert(std::mem::discriminant(step));
                    assert!(window[1] >= 1);
                }
            }
        }
        assert_eq!(operations_seen.len(), 8);
        assert_eq!(step_counts.len(), 3);
    }

    #[test]
    fn names_and_items_are_drawn_roughly_uniformly() {
        let drawn = problems(&WorldSettings::standard(3), Split::Pretrain);
        for name in NAMES {
            let count = drawn.iter().filter(|problem| problem.name == name).count();
            assert!((190..310).contains(&count), "{name}: {count}");
        }
        for item in ITEMS {
            let count = drawn.iter().filter(|problem| problem.item == item).count();
            assert!((320..480).contains(&count), "{item}: {count}");
        }
    }

    #[test]
    fn split_names() {
        assert_eq!(Split::ALL.map(Split::name), ["pretrain", "train", "heldout"]);
        assert_eq!(Split::Practice.name(), "practice");
    }

    #[test]
    fn practice_problems_have_one_step_cover_every_start_and_repeat_no_question() {
        let settings = WorldSettings::standard(4);
        let practice = problems(&settings, Split::Practice);
        assert_eq!(practice.len(), 3000);
        assert_eq!(practice, problems(&settings, Split::Practice));
        let multi: HashSet<String> = Split::ALL.iter().flat_map(|&split| problems(&settings, split)).map(|p| p.question()).collect();
        let mut starts = HashSet::new();
        let mut seen = HashSet::new();
        for (index, problem) in practice.iter().enumerate() {
            assert_eq!(problem.id, format!("practice-{:04}", index + 1));
            assert_eq!(problem.split, Split::Practice);
            assert_eq!(problem.steps.len(), 1);
            assert!(problem.values().iter().all(|value| (1..=MAX_TOTAL).contains(value)), "{problem:?}");
            assert_eq!(problem.answer, problem.steps[0].apply(problem.start));
            assert!(!multi.contains(&problem.question()) && seen.insert(problem.question()));
            starts.insert(problem.start);
        }
        assert_eq!(starts.len(), MAX_TOTAL as usize);
    }
}
