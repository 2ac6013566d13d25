//! What `whence demo` prints at the end: what it found, as plain text.

use std::fmt::Write;
use std::path::Path;

use whence_core::{Label, LabelCounts};
use whence_world::summary::DemoSummary;
use whence_world::Origin;

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        "-".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

const LABELS: [Label; 5] = [Label::Teacher, Label::Student, Label::Shared, Label::Boosted, Label::Unscored];

fn total(counts: &LabelCounts) -> usize {
    LABELS.iter().map(|&l| counts.count(l)).sum()
}

/// The findings of a run, for the terminal.
pub fn findings(summary: &DemoSummary, out: &Path, report: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "whence demo ({} world, seed {})", summary.preset, summary.world.seed);
    let _ = writeln!(s, "\nheld-out accuracy ({} questions):", summary.accuracy.first().map_or(0, |a| a.questions));
    for a in &summary.accuracy {
        let _ = writeln!(s, "  {:<10} {:>6.1}%  ({} of {} samples)", a.model, 100.0 * a.accuracy, a.correct, a.samples);
    }
    if !summary.question_reading.is_empty() {
        let _ = writeln!(s, "\nreading the question (held-out responses that carry the question's name, item, start count, all three):");
        for r in &summary.question_reading {
            let _ = writeln!(
                s,
                "  {:<10} {:>6} {:>6} {:>6} {:>6}  (of {})",
                r.model,
                percent(r.name, r.responses),
                percent(r.item, r.responses),
                percent(r.start, r.responses),
                percent(r.all, r.responses),
                r.responses
            );
        }
    }
    let n = total(&summary.labels);
    let _ = writeln!(s, "\nlabels of the distilled model's {n} held-out sentences (β = {}):", summary.beta);
    for label in LABELS {
        let _ = writeln!(s, "  {:<10} {:>6}  {:>6}", label.as_str(), summary.labels.count(label), percent(summary.labels.count(label), n));
    }
    let _ = writeln!(
        s,
        "\nground truth: each held-out sentence's family origin (rows) against its label (columns), over the responses of the {} (controls labelled with the same models and β)",
        summary.ground_truth_by_source.iter().map(|t| t.source.as_str()).collect::<Vec<_>>().join(", ")
    );
    let _ = write!(s, "  {:<14} {:>9}", "origin", "sentences");
    for label in LABELS {
        let _ = write!(s, " {:>9}", label.as_str());
    }
    let _ = writeln!(s);
    for row in &summary.ground_truth.by_origin {
        let _ = write!(s, "  {:<14} {:>9}", row.origin.name(), row.sentences);
        for label in LABELS {
            let _ = write!(s, " {:>9}", percent(row.labels.count(label), row.sentences));
        }
        let _ = writeln!(s);
    }
    let goal = |share: Option<f64>| share.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let _ = writeln!(
        s,
        "  teacher-only sentences labelled teacher: {} (goal ≥ 90%); student-only labelled student: {} (goal ≥ 90%)",
        goal(summary.ground_truth.teacher_only_labelled_teacher),
        goal(summary.ground_truth.student_only_labelled_student)
    );
    for source in &summary.ground_truth_by_source {
        let row = |origin: Origin| source.truth.by_origin.iter().find(|r| r.origin == origin).map_or(0, |r| r.sentences);
        let _ = writeln!(
            s,
            "    {:<10} {:>5} sentences: teacher-only {:>5} → teacher {:>6}, student-only {:>5} → student {:>6}, unmatched {:>5}",
            source.source,
            source.truth.sentences,
            row(Origin::TeacherOnly),
            goal(source.truth.teacher_only_labelled_teacher),
            row(Origin::StudentOnly),
            goal(source.truth.student_only_labelled_student),
            row(Origin::Unmatched)
        );
    }
    let c = &summary.correctness;
    if c.responses > 0 {
        let share = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v));
        let _ = writeln!(
            s,
            "\ncorrectness (the distilled model's {} held-out responses: {} correct, {} incorrect): mean teacher share {} of correct, {} of incorrect responses",
            c.responses,
            c.correct,
            c.incorrect,
            share(c.mean_teacher_share_correct),
            share(c.mean_teacher_share_incorrect)
        );
        let _ = writeln!(s, "  accuracy by teacher-share quartile:");
        for q in &c.quartiles {
            let _ = writeln!(
                s,
                "    Q{} (teacher share {:>5.1}%–{:>5.1}%) {:>6}  ({} of {})",
                q.quartile,
                100.0 * q.low,
                100.0 * q.high,
                percent(q.correct, q.responses),
                q.correct,
                q.responses
            );
        }
        let _ = writeln!(s, "  label shares by position, correct | incorrect (teacher boosted student shared, n):");
        for p in c.profile.iter().filter(|p| p.correct.n + p.incorrect.n >= 10) {
            let row = |g: &whence_world::summary::PositionShares| {
                format!(
                    "{:>4.0}% {:>4.0}% {:>4.0}% {:>4.0}% {:>4}",
                    100.0 * g.teacher,
                    100.0 * g.boosted,
                    100.0 * g.student,
                    100.0 * g.shared,
                    g.n
                )
            };
            let _ = writeln!(s, "    {:>3}  {}  |  {}", p.index, row(&p.correct), row(&p.incorrect));
        }
    }
    let _ = writeln!(s, "\nattribution (teacher share − student share; the true teacher should rank first):");
    for a in &summary.attribution {
        let share = |v: Option<f64>| v.map_or("-".into(), |v| format!("{:.1}%", 100.0 * v));
        let _ = writeln!(
            s,
            "  {}. {:<10} margin {:>7}  (teacher {}, student {})",
            a.rank,
            a.candidate,
            a.margin.map_or("-".into(), |m| format!("{m:+.3}")),
            share(a.teacher_share),
            share(a.student_share)
        );
    }
    if let Some(experiment) = &summary.experiment {
        let _ = writeln!(
            s,
            "\nexperiment: the student distilled on {} teacher responses chosen by each strategy; held-out accuracy over {} questions × {} samples and {} seeds (± standard error over questions and seeds); difference from random paired by seed and question, with its 95% bootstrap interval over questions",
            experiment.training_responses,
            experiment.heldout_questions,
            experiment.samples_per_question,
            experiment.rows.first().map_or(0, |r| r.seeds.len())
        );
        let _ = writeln!(
            s,
            "  {:<26} {:>6} {:>15} {:>18} {:>27} {:>13} {:>13}",
            "strategy", "β", "accuracy", "per seed", "vs random", "teacher/resp", "kept correct"
        );
        for row in &experiment.rows {
            let seeds: Vec<String> = row.accuracies.iter().map(|a| format!("{:.1}", 100.0 * a)).collect();
            let versus = row.vs_random.as_ref().map_or("-".to_string(), |d| {
                format!("{:+.1} ± {:.1} [{:+.1}, {:+.1}]", 100.0 * d.mean, 100.0 * d.standard_error, 100.0 * d.low, 100.0 * d.high)
            });
            let _ = writeln!(
                s,
                "  {:<26} {:>6} {:>7.1}% ± {:>4.1} {:>18} {:>27} {:>13.2} {:>12.1}%",
                row.strategy,
                row.beta.map_or("-".into(), |b| format!("{b:.3}")),
                100.0 * row.mean,
                100.0 * row.standard_error,
                seeds.join(" "),
                versus,
                row.mean_teacher_actions,
                100.0 * row.kept_correct
            );
        }
    }
    let _ = writeln!(s, "\nartefacts: {} (demo.json: all of the above)", out.display());
    let _ = writeln!(s, "report:    {}", report.display());
    s
}
