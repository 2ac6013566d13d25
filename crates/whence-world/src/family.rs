//! The authors' styles, the sentence families they write in, the families'
//! templates and their origin.

use serde::{Deserialize, Serialize};

use crate::problem::{Change, Operation};

/// An author of solutions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Style {
    /// The true teacher: restates, plans, works step by step, checks by the inverse.
    Teacher,
    /// The original student: jumps to one expression, and is sometimes wrong.
    Student,
    /// A second teacher that works step by step like the true one, with its
    /// own wording for restating, planning and checking.
    Spurious,
}

impl Style {
    /// The three styles.
    pub const ALL: [Style; 3] = [Style::Teacher, Style::Student, Style::Spurious];

    /// The style's name: `teacher`, `student` or `spurious`.
    pub fn name(self) -> &'static str {
        match self {
            Style::Teacher => "teacher",
            Style::Student => "student",
            Style::Spurious => "spurious",
        }
    }
}

/// Where a family of sentences comes from, relative to the pair the labels
/// compare (the true teacher against the original student).
///
/// A family used by both the [`Style::Teacher`] and the [`Style::Student`] is
/// [`Origin::Shared`]; one used by the teacher (with or without the spurious
/// teacher) but not the student is [`Origin::TeacherOnly`] (so [`Family::Step`]
/// is teacher-only); one used by the student alone is [`Origin::StudentOnly`];
/// one used by the spurious teacher alone is [`Origin::SpuriousOnly`].
/// [`Origin::Unmatched`] is for sentences no family matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Written by the true teacher and not the student.
    TeacherOnly,
    /// Written by the student alone.
    StudentOnly,
    /// Written by both the true teacher and the student.
    Shared,
    /// Written by the spurious teacher alone.
    SpuriousOnly,
    /// Matches no family.
    Unmatched,
}

impl Origin {
    /// The five origins.
    pub const ALL: [Origin; 5] = [Origin::TeacherOnly, Origin::StudentOnly, Origin::Shared, Origin::SpuriousOnly, Origin::Unmatched];

    /// The origin's name, kebab-case: `teacher-only`, `student-only`, `shared`,
    /// `spurious-only`, `unmatched`.
    pub fn name(self) -> &'static str {
        match self {
            Origin::TeacherOnly => "teacher-only",
            Origin::StudentOnly => "student-only",
            Origin::Shared => "shared",
            Origin::SpuriousOnly => "spurious-only",
            Origin::Unmatched => "unmatched",
        }
    }
}

/// A family of sentences: one template (or one per operation kind) with slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// `Let us work it out.`
    SharedOpen,
    /// `We need to find how many {item} {name} has at the end.`
    TeacherRestate,
    /// `The plan is to apply the {n} changes in order.`
    TeacherPlan,
    /// One step, e.g. `After buying {k} more, {name} has {a} + {k} = {r} {item}.`
    Step,
    /// A check of the last step by its inverse, e.g. `Check: {r} - {k} = {a}, so the last step is right.`
    TeacherVerify,
    /// `Goal: find the number of {item} {name} ends up with.`
    SpuriousRestate,
    /// `Strategy: work through the {n} events one at a time.`
    SpuriousPlan,
    /// The last step redone, e.g. `Double-checking the last step: {a} + {k} is {r}.`
    SpuriousVerify,
    /// `Let me just do it all at once.`
    StudentOpen,
    /// `{name} ends with {expr} = {r} {item}.`, the whole computation at once.
    StudentJump,
    /// `That should be about right.`
    StudentGuess,
    /// `The answer is \boxed{R}.`
    Final,
}

const TEACHER: &[Style] = &[Style::Teacher];
const STUDENT: &[Style] = &[Style::Student];
const SPURIOUS: &[Style] = &[Style::Spurious];
const TEACHER_AND_STUDENT: &[Style] = &[Style::Teacher, Style::Student];
const BOTH_TEACHERS: &[Style] = &[Style::Teacher, Style::Spurious];
const EVERYONE: &[Style] = &[Style::Teacher, Style::Student, Style::Spurious];

impl Family {
    /// The twelve families.
    pub const ALL: [Family; 12] = [
        Family::SharedOpen,
        Family::TeacherRestate,
        Family::TeacherPlan,
        Family::Step,
        Family::TeacherVerify,
        Family::SpuriousRestate,
        Family::SpuriousPlan,
        Family::SpuriousVerify,
        Family::StudentOpen,
        Family::StudentJump,
        Family::StudentGuess,
        Family::Final,
    ];

    /// The family's name, kebab-case (`shared-open`, …, `final`).
    pub fn name(self) -> &'static str {
        match self {
            Family::SharedOpen => "shared-open",
            Family::TeacherRestate => "teacher-restate",
            Family::TeacherPlan => "teacher-plan",
            Family::Step => "step",
            Family::TeacherVerify => "teacher-verify",
            Family::SpuriousRestate => "spurious-restate",
            Family::SpuriousPlan => "spurious-plan",
            Family::SpuriousVerify => "spurious-verify",
            Family::StudentOpen => "student-open",
            Family::StudentJump => "student-jump",
            Family::StudentGuess => "student-guess",
            Family::Final => "final",
        }
    }

    /// The styles that write sentences of this family.
    pub fn users(self) -> &'static [Style] {
        match self {
            Family::SharedOpen => TEACHER_AND_STUDENT,
            Family::TeacherRestate | Family::TeacherPlan | Family::TeacherVerify => TEACHER,
            Family::Step => BOTH_TEACHERS,
            Family::SpuriousRestate | Family::SpuriousPlan | Family::SpuriousVerify => SPURIOUS,
            Family::StudentOpen | Family::StudentJump | Family::StudentGuess => STUDENT,
            Family::Final => EVERYONE,
        }
    }

    /// The family's origin, from its [`users`](Family::users) (see [`Origin`]).
    pub fn origin(self) -> Origin {
        let users = self.users();
        let teacher = users.contains(&Style::Teacher);
        let student = users.contains(&Style::Student);
        match (teacher, student) {
            (true, true) => Origin::Shared,
            (true, false) => Origin::TeacherOnly,
            (false, true) => Origin::StudentOnly,
            (false, false) if users.contains(&Style::Spurious) => Origin::SpuriousOnly,
            (false, false) => Origin::Unmatched,
        }
    }
}

pub(crate) const SHARED_OPEN: &str = "Let us work it out.";
pub(crate) const TEACHER_RESTATE: &str = "We need to find how many {item} {name} has at the end.";
pub(crate) const TEACHER_PLAN: &str = "The plan is to apply the {n} changes in order.";
const STEP_BUY: &str = "After buying {k} more, {name} has {a} + {k} = {r} {item}.";
const STEP_FIND: &str = "After finding {k} more, {name} has {a} + {k} = {r} {item}.";
const STEP_GET: &str = "After getting {k} more, {name} has {a} + {k} = {r} {item}.";
const STEP_GIVE_AWAY: &str = "After giving away {k}, {name} has {a} - {k} = {r} {item}.";
const STEP_LOSE: &str = "After losing {k}, {name} has {a} - {k} = {r} {item}.";
const STEP_SELL: &str = "After selling {k}, {name} has {a} - {k} = {r} {item}.";
const STEP_DOUBLE: &str = "After doubling, {name} has {a} * 2 = {r} {item}.";
const STEP_TRIPLE: &str = "After tripling, {name} has {a} * 3 = {r} {item}.";
const TEACHER_VERIFY_ADD: &str = "Check: {r} - {k} = {a}, so the last step is right.";
const TEACHER_VERIFY_SUBTRACT: &str = "Check: {r} + {k} = {a}, so the last step is right.";
const TEACHER_VERIFY_DOUBLE: &str = "Check: {r} / 2 = {a}, so the last step is right.";
const TEACHER_VERIFY_TRIPLE: &str = "Check: {r} / 3 = {a}, so the last step is right.";
pub(crate) const SPURIOUS_RESTATE: &str = "Goal: find the number of {item} {name} ends up with.";
pub(crate) const SPURIOUS_PLAN: &str = "Strategy: work through the {n} events one at a time.";
const SPURIOUS_VERIFY_ADD: &str = "Double-checking the last step: {a} + {k} is {r}.";
const SPURIOUS_VERIFY_SUBTRACT: &str = "Double-checking the last step: {a} - {k} is {r}.";
const SPURIOUS_VERIFY_DOUBLE: &str = "Double-checking the last step: {a} * 2 is {r}.";
const SPURIOUS_VERIFY_TRIPLE: &str = "Double-checking the last step: {a} * 3 is {r}.";
pub(crate) const STUDENT_OPEN: &str = "Let me just do it all at once.";
pub(crate) const STUDENT_JUMP: &str = "{name} ends with {expr} = {r} {item}.";
pub(crate) const STUDENT_GUESS: &str = "That should be about right.";
pub(crate) const FINAL: &str = r"The answer is \boxed{{{r}}}.";

/// Every template with its family, all variants (the matcher compiles these).
pub(crate) const TEMPLATES: [(Family, &str); 25] = [
    (Family::SharedOpen, SHARED_OPEN),
    (Family::TeacherRestate, TEACHER_RESTATE),
    (Family::TeacherPlan, TEACHER_PLAN),
    (Family::Step, STEP_BUY),
    (Family::Step, STEP_FIND),
    (Family::Step, STEP_GET),
    (Family::Step, STEP_GIVE_AWAY),
    (Family::Step, STEP_LOSE),
    (Family::Step, STEP_SELL),
    (Family::Step, STEP_DOUBLE),
    (Family::Step, STEP_TRIPLE),
    (Family::TeacherVerify, TEACHER_VERIFY_ADD),
    (Family::TeacherVerify, TEACHER_VERIFY_SUBTRACT),
    (Family::TeacherVerify, TEACHER_VERIFY_DOUBLE),
    (Family::TeacherVerify, TEACHER_VERIFY_TRIPLE),
    (Family::SpuriousRestate, SPURIOUS_RESTATE),
    (Family::SpuriousPlan, SPURIOUS_PLAN),
    (Family::SpuriousVerify, SPURIOUS_VERIFY_ADD),
    (Family::SpuriousVerify, SPURIOUS_VERIFY_SUBTRACT),
    (Family::SpuriousVerify, SPURIOUS_VERIFY_DOUBLE),
    (Family::SpuriousVerify, SPURIOUS_VERIFY_TRIPLE),
    (Family::StudentOpen, STUDENT_OPEN),
    (Family::StudentJump, STUDENT_JUMP),
    (Family::StudentGuess, STUDENT_GUESS),
    (Family::Final, FINAL),
];

/// The step sentence's template for `step`.
pub(crate) fn step_template(step: Operation) -> &'static str {
    match step {
        Operation::Buy(_) => STEP_BUY,
        Operation::Find(_) => STEP_FIND,
        Operation::Get(_) => STEP_GET,
        Operation::GiveAway(_) => STEP_GIVE_AWAY,
        Operation::Lose(_) => STEP_LOSE,
        Operation::Sell(_) => STEP_SELL,
        Operation::Double => STEP_DOUBLE,
        Operation::Triple => STEP_TRIPLE,
    }
}

/// The teacher's check of a last step `step`, by its inverse.
pub(crate) fn teacher_verify_template(step: Operation) -> &'static str {
    match step.change() {
        Change::Add(_) => TEACHER_VERIFY_ADD,
        Change::Subtract(_) => TEACHER_VERIFY_SUBTRACT,
        Change::Multiply(2) => TEACHER_VERIFY_DOUBLE,
        Change::Multiply(_) => TEACHER_VERIFY_TRIPLE,
    }
}

/// The spurious teacher's redo of a last step `step`.
pub(crate) fn spurious_verify_template(step: Operation) -> &'static str {
    match step.change() {
        Change::Add(_) => SPURIOUS_VERIFY_ADD,
        Change::Subtract(_) => SPURIOUS_VERIFY_SUBTRACT,
        Change::Multiply(2) => SPURIOUS_VERIFY_DOUBLE,
        Change::Multiply(_) => SPURIOUS_VERIFY_TRIPLE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{parse, Piece};

    #[test]
    fn origins_follow_the_users() {
        let origins: Vec<(&str, Origin)> = Family::ALL.iter().map(|family| (family.name(), family.origin())).collect();
        assert_eq!(
            origins,
            [
                ("shared-open", Origin::Shared),
                ("teacher-restate", Origin::TeacherOnly),
                ("teacher-plan", Origin::TeacherOnly),
                ("step", Origin::TeacherOnly),
                ("teacher-verify", Origin::TeacherOnly),
                ("spurious-restate", Origin::SpuriousOnly),
                ("spurious-plan", Origin::SpuriousOnly),
                ("spurious-verify", Origin::SpuriousOnly),
                ("student-open", Origin::StudentOnly),
                ("student-jump", Origin::StudentOnly),
                ("student-guess", Origin::StudentOnly),
                ("final", Origin::Shared),
            ]
        );
        assert_eq!(Family::Step.users(), [Style::Teacher, Style::Spurious]);
        assert_eq!(Family::Final.users(), Style::ALL);
    }

    #[test]
    fn every_family_has_a_template_and_every_slot_is_known() {
        for family in Family::ALL {
            assert!(TEMPLATES.iter().any(|&(other, _)| other == family), "{family:?}");
        }
        for (_, template) in TEMPLATES {
            for piece in parse(template) {
                if let Piece::Text(text) = piece {
                    assert!(!text.contains('{') || text.ends_with(r"\boxed{"), "unfilled slot in {template}");
                }
            }
        }
    }

    #[test]
    fn names() {
        assert_eq!(Style::ALL.map(Style::name), ["teacher", "student", "spurious"]);
        assert_eq!(Origin::ALL.map(Origin::name), ["teacher-only", "student-only", "shared", "spurious-only", "unmatched"]);
    }
}
