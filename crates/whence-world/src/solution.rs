//! Solutions to problems in each style, sentence by sentence, each sentence
//! tagged with its family.

use serde::Serialize;

use crate::family::{self, Family, Style};
use crate::problem::{problems, Change, Operation, Problem, Split, WorldSettings};
use crate::random::Stream;
use crate::template::{render, Fill};

/// One sentence of a solution and the family it was written from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sentence {
    /// The family whose template the sentence fills.
    pub family: Family,
    /// The sentence, without surrounding whitespace.
    pub text: String,
}

/// A solution: its sentences, the answer it states, and whether that is right.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Solution {
    /// Who wrote it (it sets how [`Solution::text`] joins the sentences).
    pub style: Style,
    /// The sentences, in order; the last states the answer.
    pub sentences: Vec<Sentence>,
    /// The answer the solution states.
    pub answer: u32,
    /// Whether the stated answer is the problem's answer.
    pub correct: bool,
}

impl Solution {
    /// The solution's text: sentences joined by a newline for the teachers,
    /// by a space for the student.
    pub fn text(&self) -> String {
        let separator = match self.style {
            Style::Teacher | Style::Spurious => "\n",
            Style::Student => " ",
        };
        let texts: Vec<&str> = self.sentences.iter().map(|sentence| sentence.text.as_str()).collect();
        texts.join(separator)
    }
}

/// The changes a wrong student result is off by.
const STUDENT_SLIPS: [i64; 6] = [-10, -2, -1, 1, 2, 10];

/// The solution of `problem` in `style`, deterministic from (`seed`, `style`,
/// `problem.id`): its random stream is keyed by a stable hash of these, so it
/// does not depend on which other solutions are drawn, nor in what order.
///
/// - Teacher: [`Family::SharedOpen`] (p 0.25), [`Family::TeacherRestate`],
///   [`Family::TeacherPlan`] (p 0.7), one [`Family::Step`] per operation,
///   [`Family::TeacherVerify`] of the last step (p 0.5), [`Family::Final`].
/// - Spurious: [`Family::SpuriousRestate`], [`Family::SpuriousPlan`] (p 0.7),
///   the steps, [`Family::SpuriousVerify`] (p 0.5), [`Family::Final`].
/// - Student: [`Family::SharedOpen`] (p 0.25), [`Family::StudentOpen`]
///   (p 0.5), [`Family::StudentJump`], [`Family::StudentGuess`] (p 0.4),
///   [`Family::Final`]. With probability `student_error_rate` its result is
///   off by one of −10, −2, −1, 1, 2, 10 (redrawn while below 0).
///
/// The teachers' result is the last running total; `correct` compares the
/// stated answer with `problem.answer` (the same for a drawn problem).
pub fn solve(problem: &Problem, style: Style, student_error_rate: f64, seed: u64) -> Solution {
    let mut stream = Stream::keyed(seed, &format!("{}\u{1f}{}", style.name(), problem.id));
    let values = problem.values();
    let right = values.last().copied().unwrap_or(problem.start);
    let count = count_word(problem.steps.len());
    let base = Fill { name: problem.name, item: problem.item, n: &count, ..Fill::default() };
    let mut sentences = Vec::new();
    let mut write = |family: Family, template: &str, fill: &Fill<'_>| sentences.push(Sentence { family, text: render(template, fill) });
    let stated = match style {
        Style::Teacher | Style::Spurious => {
            let teacher = style == Style::Teacher;
            if teacher && stream.chance(0.25) {
                write(Family::SharedOpen, family::SHARED_OPEN, &base);
            }
            let (restate, restate_template) = if teacher {
                (Family::TeacherRestate, family::TEACHER_RESTATE)
            } else {
                (Family::SpuriousRestate, family::SPURIOUS_RESTATE)
            };
            write(restate, restate_template, &base);
            if stream.chance(0.7) {
                let (plan, plan_template) =
                    if teacher { (Family::TeacherPlan, family::TEACHER_PLAN) } else { (Family::SpuriousPlan, family::SPURIOUS_PLAN) };
                write(plan, plan_template, &base);
            }
            let mut last = None;
            for (&step, window) in problem.steps.iter().zip(values.windows(2)) {
                let fill = Fill { k: amount(step), a: window[0], r: window[1], ..base.clone() };
                write(Family::Step, family::step_template(step), &fill);
                last = Some((step, fill));
            }
            if stream.chance(0.5) {
                if let Some((step, fill)) = last {
                    if teacher {
                        write(Family::TeacherVerify, family::teacher_verify_template(step), &fill);
                    } else {
                        write(Family::SpuriousVerify, family::spurious_verify_template(step), &fill);
                    }
                }
            }
            right
        }
        Style::Student => {
            let stated = if stream.chance(student_error_rate) { slipped(&mut stream, right) } else { right };
            if stream.chance(0.25) {
                write(Family::SharedOpen, family::SHARED_OPEN, &base);
            }
            if stream.chance(0.5) {
                write(Family::StudentOpen, family::STUDENT_OPEN, &base);
            }
            let expression = student_expression(problem);
            write(Family::StudentJump, family::STUDENT_JUMP, &Fill { expr: &expression, r: stated, ..base.clone() });
            if stream.chance(0.4) {
                write(Family::StudentGuess, family::STUDENT_GUESS, &base);
            }
            stated
        }
    };
    write(Family::Final, family::FINAL, &Fill { r: stated, ..base });
    Solution { style, sentences, answer: stated, correct: stated == problem.answer }
}

/// `right` off by a uniform choice of [`STUDENT_SLIPS`], redrawn while below 0.
fn slipped(stream: &mut Stream, right: u32) -> u32 {
    loop {
        let slip = STUDENT_SLIPS[stream.below(STUDENT_SLIPS.len() as u32) as usize];
        if let Ok(stated) = u32::try_from(i64::from(right) + slip) {
            return stated;
        }
    }
}

/// The `{k}` of a step's sentences: its amount, or its factor.
fn amount(step: Operation) -> u32 {
    match step.change() {
        Change::Add(k) | Change::Subtract(k) => k,
        Change::Multiply(factor) => factor,
    }
}

/// The solutions in `style` of every problem of `split`, with the settings'
/// seed and student error rate (none on the practice split: the student
/// knows the single steps; what it cannot do is chain them in one jump).
pub fn corpus(settings: &WorldSettings, split: Split, style: Style) -> Vec<(Problem, Solution)> {
    let error_rate = if split == Split::Practice { 0.0 } else { settings.student_error_rate };
    problems(settings, split)
        .into_iter()
        .map(|problem| {
            let solution = solve(&problem, style, error_rate, settings.seed);
            (problem, solution)
        })
        .collect()
}

/// The student's whole computation, left to right, with parentheses around
/// the expression so far when a multiplication follows an addition or a
/// subtraction: `(12 + 5) * 2 - 3`.
pub fn student_expression(problem: &Problem) -> String {
    let mut expression = problem.start.to_string();
    let mut ends_additive = false;
    for step in &problem.steps {
        match step.change() {
            Change::Add(k) => {
                expression = format!("{expression} + {k}");
                ends_additive = true;
            }
            Change::Subtract(k) => {
                expression = format!("{expression} - {k}");
                ends_additive = true;
            }
            Change::Multiply(factor) => {
                if ends_additive {
                    expression = format!("({expression})");
                }
                expression = format!("{expression} * {factor}");
                ends_additive = false;
            }
        }
    }
    expression
}

/// The number of steps as a word (`two`, `three`, `four`; other counts,
/// which a drawn problem never has, as other words or in digits).
fn count_word(count: usize) -> String {
    let words = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"];
    words.get(count).map_or_else(|| count.to_string(), |word| word.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matcher::Matcher;
    use proptest::prelude::*;
    use whence_core::{Segmenter, SegmenterConfig};

    fn problem(start: u32, steps: Vec<Operation>) -> Problem {
        let mut problem = Problem { id: "train-0007".into(), split: Split::Train, name: "Ana", item: "apples", start, steps, answer: 0 };
        problem.answer = *problem.values().last().unwrap();
        problem
    }

    fn example() -> Problem {
        problem(12, vec![Operation::Buy(5), Operation::Double, Operation::GiveAway(3)])
    }

    /// The first seed whose solution satisfies `wanted`.
    fn solution_where(problem: &Problem, style: Style, error_rate: f64, wanted: impl Fn(&Solution) -> bool) -> Solution {
        (0..10_000).map(|seed| solve(problem, style, error_rate, seed)).find(wanted).expect("some seed gives it")
    }

    fn families(solution: &Solution) -> Vec<Family> {
        solution.sentences.iter().map(|sentence| sentence.family).collect()
    }

    #[test]
    fn teacher_solution_with_every_optional_sentence() {
        let solution = solution_where(&example(), Style::Teacher, 0.3, |solution| solution.sentences.len() == 8);
        assert_eq!(
            solution.text(),
            "Let us work it out.\n\
             We need to find how many apples Ana has at the end.\n\
             The plan is to apply the three changes in order.\n\
             After buying 5 more, Ana has 12 + 5 = 17 apples.\n\
             After doubling, Ana has 17 * 2 = 34 apples.\n\
             After giving away 3, Ana has 34 - 3 = 31 apples.\n\
             Check: 31 + 3 = 34, so the last step is right.\n\
             The answer is \\boxed{31}."
        );
        assert_eq!((solution.answer, solution.correct), (31, true));
    }

    #[test]
    fn teacher_solution_without_optional_sentences() {
        let solution = solution_where(&example(), Style::Teacher, 0.3, |solution| solution.sentences.len() == 5);
        assert_eq!(families(&solution), [Family::TeacherRestate, Family::Step, Family::Step, Family::Step, Family::Final]);
    }

    #[test]
    fn spurious_solution_with_every_optional_sentence() {
        let two_steps = problem(4, vec![Operation::Double, Operation::Find(1)]);
        let solution = solution_where(&two_steps, Style::Spurious, 0.3, |solution| solution.sentences.len() == 6);
        assert_eq!(
            solution.text(),
            "Goal: find the number of apples Ana ends up with.\n\
             Strategy: work through the two events one at a time.\n\
             After doubling, Ana has 4 * 2 = 8 apples.\n\
             After finding 1 more, Ana has 8 + 1 = 9 apples.\n\
             Double-checking the last step: 8 + 1 is 9.\n\
             The answer is \\boxed{9}."
        );
    }

    #[test]
    fn every_step_sentence_renders_as_specified() {
        let every_operation = problem(
            10,
            vec![
                Operation::Buy(1),
                Operation::Find(2),
                Operation::Get(3),
                Operation::GiveAway(4),
                Operation::Lose(5),
                Operation::Sell(6),
                Operation::Double,
                Operation::Triple,
            ],
        );
        let solution = solve(&every_operation, Style::Teacher, 0.3, 1);
        let steps: Vec<&str> = solution.sentences.iter().filter(|s| s.family == Family::Step).map(|s| s.text.as_str()).collect();
        assert_eq!(
            steps,
            [
                "After buying 1 more, Ana has 10 + 1 = 11 apples.",
                "After finding 2 more, Ana has 11 + 2 = 13 apples.",
                "After getting 3 more, Ana has 13 + 3 = 16 apples.",
                "After giving away 4, Ana has 16 - 4 = 12 apples.",
                "After losing 5, Ana has 12 - 5 = 7 apples.",
                "After selling 6, Ana has 7 - 6 = 1 apples.",
                "After doubling, Ana has 1 * 2 = 2 apples.",
                "After tripling, Ana has 2 * 3 = 6 apples.",
            ]
        );
    }

    #[test]
    fn verify_sentences_of_each_kind() {
        let cases = [
            (Operation::Get(3), "Check: 7 - 3 = 4, so the last step is right.", "Double-checking the last step: 4 + 3 is 7."),
            (Operation::Lose(3), "Check: 1 + 3 = 4, so the last step is right.", "Double-checking the last step: 4 - 3 is 1."),
            (Operation::Double, "Check: 8 / 2 = 4, so the last step is right.", "Double-checking the last step: 4 * 2 is 8."),
            (Operation::Triple, "Check: 12 / 3 = 4, so the last step is right.", "Double-checking the last step: 4 * 3 is 12."),
        ];
        for (last, teacher_check, spurious_check) in cases {
            let problem = problem(2, vec![Operation::Double, last]);
            let with = |family: Family| move |solution: &Solution| solution.sentences.iter().any(|sentence| sentence.family == family);
            let teacher = solution_where(&problem, Style::Teacher, 0.3, with(Family::TeacherVerify));
            let spurious = solution_where(&problem, Style::Spurious, 0.3, with(Family::SpuriousVerify));
            assert_eq!(teacher.sentences[teacher.sentences.len() - 2].text, teacher_check);
            assert_eq!(spurious.sentences[spurious.sentences.len() - 2].text, spurious_check);
        }
    }

    #[test]
    fn student_expression_brackets_before_a_multiplication() {
        assert_eq!(student_expression(&example()), "(12 + 5) * 2 - 3");
        assert_eq!(student_expression(&problem(4, vec![Operation::Double, Operation::Buy(1)])), "4 * 2 + 1");
        assert_eq!(student_expression(&problem(4, vec![Operation::Double, Operation::Triple])), "4 * 2 * 3");
        assert_eq!(
            student_expression(&problem(3, vec![Operation::Find(4), Operation::Double, Operation::Sell(1), Operation::Triple])),
            "((3 + 4) * 2 - 1) * 3"
        );
        assert_eq!(student_expression(&problem(3, vec![])), "3");
    }

    #[test]
    fn student_solution_with_every_optional_sentence() {
        let solution = solution_where(&example(), Style::Student, 0.0, |solution| solution.sentences.len() == 5);
        assert_eq!(
            solution.text(),
            "Let us work it out. Let me just do it all at once. Ana ends with (12 + 5) * 2 - 3 = 31 apples. \
             That should be about right. The answer is \\boxed{31}."
        );
        assert!(solution.correct);
        let bare = solution_where(&example(), Style::Student, 0.0, |solution| solution.sentences.len() == 2);
        assert_eq!(bare.text(), "Ana ends with (12 + 5) * 2 - 3 = 31 apples. The answer is \\boxed{31}.");
    }

    #[test]
    fn a_wrong_student_states_its_wrong_result_throughout() {
        let small = problem(2, vec![Operation::Lose(1), Operation::Double]);
        let mut slips = std::collections::BTreeSet::new();
        for seed in 0..400 {
            let solution = solve(&small, Style::Student, 1.0, seed);
            assert!(!solution.correct);
            let slip = i64::from(solution.answer) - 2;
            assert!(STUDENT_SLIPS.contains(&slip), "{slip}");
            slips.insert(slip);
            let jump = solution.sentences.iter().find(|sentence| sentence.family == Family::StudentJump).unwrap();
            assert_eq!(jump.text, format!("Ana ends with (2 - 1) * 2 = {} apples.", solution.answer));
            assert!(solution.text().ends_with(&format!("\\boxed{{{}}}.", solution.answer)));
        }
        // From 2, −10 would go below 0 and is redrawn; the rest occur.
        assert_eq!(slips.into_iter().collect::<Vec<_>>(), [-2, -1, 1, 2, 10]);
    }

    #[test]
    fn student_error_share_matches_the_rate() {
        let settings = WorldSettings::standard(42);
        let solutions = corpus(&settings, Split::Pretrain, Style::Student);
        assert_eq!(solutions.len(), 4000);
        let wrong = solutions.iter().filter(|(_, solution)| !solution.correct).count() as f64 / 4000.0;
        assert!((wrong - 0.3).abs() <= 0.04, "{wrong}");
        for (problem, solution) in &solutions {
            assert_eq!(solution.correct, solution.answer == problem.answer);
        }
        let practice = corpus(&settings, Split::Practice, Style::Student);
        assert!(practice.iter().all(|(_, solution)| solution.correct));
    }

    #[test]
    fn teachers_are_always_correct_and_write_only_their_families() {
        let settings = WorldSettings::standard(8);
        for style in Style::ALL {
            for split in Split::ALL {
                for (problem, solution) in corpus(&settings, split, style) {
                    if style != Style::Student {
                        assert!(solution.correct && solution.answer == problem.answer, "{}", problem.id);
                    }
                    assert!(solution.sentences.iter().all(|sentence| sentence.family.users().contains(&style)));
                    let last = solution.sentences.last().unwrap();
                    assert_eq!(last.family, Family::Final);
                    assert!(last.text.contains(&format!("\\boxed{{{}}}", solution.answer)));
                }
            }
        }
    }

    #[test]
    fn final_sentence_is_gradable() {
        for style in Style::ALL {
            let solution = solve(&example(), style, 0.0, 2);
            let last = solution.sentences.last().unwrap();
            assert_eq!((last.family, last.text.as_str()), (Family::Final, r"The answer is \boxed{31}."));
            assert!(solution.text().ends_with(r"\boxed{31}."));
        }
    }

    #[test]
    fn optional_sentences_appear_at_their_rates() {
        let settings = WorldSettings::standard(5);
        let share = |style: Style, family: Family| {
            let solutions = corpus(&settings, Split::Pretrain, style);
            let with = solutions.iter().filter(|(_, solution)| solution.sentences.iter().any(|s| s.family == family)).count();
            with as f64 / solutions.len() as f64
        };
        for (style, family, rate) in [
            (Style::Teacher, Family::SharedOpen, 0.25),
            (Style::Teacher, Family::TeacherPlan, 0.7),
            (Style::Teacher, Family::TeacherVerify, 0.5),
            (Style::Spurious, Family::SpuriousPlan, 0.7),
            (Style::Spurious, Family::SpuriousVerify, 0.5),
            (Style::Student, Family::SharedOpen, 0.25),
            (Style::Student, Family::StudentOpen, 0.5),
            (Style::Student, Family::StudentGuess, 0.4),
        ] {
            let observed = share(style, family);
            assert!((observed - rate).abs() < 0.05, "{style:?} {family:?}: {observed}");
        }
    }

    #[test]
    fn solve_is_deterministic_and_independent_of_call_order() {
        let settings = WorldSettings::tiny(3);
        let drawn = problems(&settings, Split::Train);
        for style in Style::ALL {
            let forward: Vec<Solution> = drawn.iter().map(|problem| solve(problem, style, 0.3, 3)).collect();
            let mut backward: Vec<Solution> = drawn.iter().rev().map(|problem| solve(problem, style, 0.3, 3)).collect();
            backward.reverse();
            assert_eq!(forward, backward);
            let from_corpus: Vec<Solution> = corpus(&settings, Split::Train, style).into_iter().map(|(_, solution)| solution).collect();
            assert_eq!(forward, from_corpus);
        }
        let teacher = |seed| solve(&drawn[0], Style::Teacher, 0.3, seed);
        assert!((0..20).any(|seed| teacher(seed) != teacher(0)), "the seed matters");
    }

    #[test]
    fn malformed_problems_do_not_panic() {
        let empty = problem(5, vec![]);
        for style in Style::ALL {
            let solution = solve(&empty, style, 0.5, 1);
            assert_eq!(solution.sentences.last().unwrap().family, Family::Final);
        }
        let huge = Problem { answer: 7, ..problem(u32::MAX, vec![Operation::Triple, Operation::Sell(9)]) };
        for style in Style::ALL {
            let solution = solve(&huge, style, f64::NAN, 1);
            assert!(!solution.correct);
        }
        let zero = problem(1, vec![Operation::Lose(9)]);
        assert!(solve(&zero, Style::Student, 1.0, 4).answer > 0);
    }

    fn segments_back_into_families(solution: &Solution, matcher: &Matcher, segmenter: &Segmenter) -> Result<(), TestCaseError> {
        let text = solution.text();
        let actions = segmenter.segment(&text);
        prop_assert_eq!(actions.len(), solution.sentences.len(), "{:?}", text);
        for (action, sentence) in actions.iter().zip(&solution.sentences) {
            prop_assert!(!action.special);
            let piece = action.span.slice(&text).unwrap();
            prop_assert_eq!(piece.trim(), sentence.text.as_str());
            prop_assert_eq!(matcher.family(piece), Some(sentence.family), "{:?}", piece);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn segmented_solutions_map_back_to_their_families(
            world_seed in any::<u64>(),
            index in 0usize..64,
            style_index in 0usize..3,
            solve_seed in any::<u64>(),
            error_rate in 0.0f64..=1.0,
        ) {
            let problem = problems(&WorldSettings::tiny(world_seed), Split::Pretrain).swap_remove(index);
            let solution = solve(&problem, Style::ALL[style_index], error_rate, solve_seed);
            segments_back_into_families(&solution, &Matcher::new(), &Segmenter::new(&SegmenterConfig::default()).unwrap())?;
        }

        #[test]
        fn segmented_solutions_of_any_valid_problem_map_back(
            start in 2u32..=30,
            raw_steps in proptest::collection::vec((0u32..8, 1u32..=9), 1..=6),
            name in 0usize..16,
            item in 0usize..10,
            style_index in 0usize..3,
            solve_seed in any::<u64>(),
        ) {
            let steps: Vec<Operation> = raw_steps.into_iter().map(|(index, k)| Operation::with_amount(index, k)).collect();
            let mut problem = problem(start, steps);
            problem.name = crate::NAMES[name];
            problem.item = crate::ITEMS[item];
            let solution = solve(&problem, Style::ALL[style_index], 0.5, solve_seed);
            let matcher = Matcher::new();
            let segmenter = Segmenter::new(&SegmenterConfig::default()).unwrap();
            // Plans name two to six steps only; other counts are outside the world.
            let in_world = (2..=6).contains(&problem.steps.len());
            if in_world {
                segments_back_into_families(&solution, &matcher, &segmenter)?;
            } else {
                let text = solution.text();
                prop_assert_eq!(segmenter.segment(&text).len(), solution.sentences.len());
            }
        }

        #[test]
        fn teacher_steps_chain_right_results(
            world_seed in any::<u64>(),
            index in 0usize..64,
            split_index in 0usize..4,
            solve_seed in any::<u64>(),
            teacher in any::<bool>(),
        ) {
            let split = [Split::Pretrain, Split::Train, Split::Heldout, Split::Practice][split_index];
            let settings = WorldSettings::tiny(world_seed);
            let drawn = problems(&settings, split);
            let problem = &drawn[index % drawn.len()];
            // The generator's own answer is the chain of its changes.
            prop_assert_eq!(problem.steps.iter().fold(problem.start, |value, step| step.apply(value)), problem.answer);
            let style = if teacher { Style::Teacher } else { Style::Spurious };
            let solution = solve(problem, style, 0.3, solve_seed);
            let arithmetic = regex::Regex::new(r"(\d+) ([-+*]) (\d+) = (\d+)").unwrap();
            let mut previous = problem.start;
            let mut steps = 0;
            for sentence in solution.sentences.iter().filter(|s| s.family == Family::Step) {
                let found = arithmetic.captures(&sentence.text).expect("a step writes its arithmetic");
                let number = |i: usize| found[i].parse::<u32>().unwrap();
                let (a, k, r) = (number(1), number(3), number(4));
                let computed = match &found[2] { "+" => a + k, "-" => a - k, _ => a * k };
                prop_assert_eq!(a, previous, "{}", sentence.text);
                prop_assert_eq!(r, computed, "{}", sentence.text);
                prop_assert_eq!(r, problem.values()[steps + 1]);
                previous = r;
                steps += 1;
            }
            prop_assert_eq!(steps, problem.steps.len());
            prop_assert_eq!(previous, problem.answer);
            prop_assert!(solution.correct);
        }

        #[test]
        fn the_matcher_takes_any_text(text in ".{0,200}") {
            let _ = Matcher::new().family(&text);
        }
    }
}
