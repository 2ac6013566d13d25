//! The HTML page: one self-contained file.
//!
//! Everything that comes from the run (responses, ids, paths, model names) is
//! untrusted. It reaches the page in two ways only: escaped as HTML text
//! ([`escape`]), or inside the JSON data block with `<`, `>` and `&` written
//! as `\u003c`, `\u003e`, `\u0026` ([`script_json`]), from where the script
//! puts it into the DOM with `textContent` and never as markup. The
//! Content-Security-Policy allows no network access and runs only the page's
//! own script (by its SHA-256), so even markup that slipped through could
//! not run.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::behaviour::{classify, Behaviour, REFLECTION, TRANSITION, WINDOW_WORDS};
use crate::figures::behaviour::BehaviourTable;
use crate::figures::selection::{five_numbers, StrategyStats};
use crate::load::{AttributeSummary, SelectSummary, TraceSummary};
use crate::style::{self, hex, label_colour, LABELS};
use crate::{Report, Trajectory};

const SCRIPT: &str = include_str!("assets/report.js");
const CSS: &str = include_str!("assets/report.css");

/// Escapes text for HTML text and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// JSON that is safe inside `<script type="application/json">`: `<`, `>`
/// and `&` (which occur only inside strings) become `\u` escapes, so no
/// `</script>` or `<!--` can end or change the block.
pub fn script_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + json.len() / 50);
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            other => out.push(other),
        }
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The CSP source for the page's script: `'sha256-…'`.
pub fn script_hash() -> String {
    format!("'sha256-{}'", base64(&Sha256::digest(SCRIPT.as_bytes())))
}

/// A word longer than this (a path, a fingerprint) may be broken anywhere
/// to fit its column; shorter ones are never split (see `report.css`).
const LONG_WORD: usize = 24;

/// A table cell with `text` escaped: `<td class="long">` when it holds a
/// word longer than [`LONG_WORD`] characters, which the CSS lets break
/// anywhere so that it cannot push the table past the page.
fn td(text: &str) -> String {
    if text.split_whitespace().any(|word| word.chars().count() > LONG_WORD) {
        format!("<td class=\"long\">{}</td>", escape(text))
    } else {
        format!("<td>{}</td>", escape(text))
    }
}

fn row(out: &mut String, key: &str, value: &str) {
    let _ = write!(out, "<tr><th>{}</th>{}</tr>", escape(key), td(value));
}

fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * part as f64 / whole as f64)
    }
}

fn swatch(label: &str) -> String {
    format!("<span class=\"swatch\" style=\"background:{}\"></span>", hex(label_colour(label)))
}

fn models_table(models: &serde_json::Map<String, Value>) -> String {
    if models.is_empty() {
        return String::new();
    }
    let mut out = String::from("<table class=\"kv\"><tr><th>role</th><th>kind</th><th>source</th><th>fingerprint</th></tr>");
    for (role, info) in models {
        let field = |name: &str| info.get(name).and_then(Value::as_str).unwrap_or("").to_string();
        let _ = write!(
            out,
            "<tr>{}{}{}<td class=\"mono long\">{}</td></tr>",
            td(role),
            td(&field("kind")),
            td(&field("source")),
            escape(&field("fingerprint"))
        );
    }
    out.push_str("</table>");
    out
}

/// The trace's summary as tables.
pub fn trace_overview(s: &TraceSummary) -> String {
    let mut out = String::from("<table class=\"kv\">");
    row(&mut out, "input", &s.input.path);
    row(&mut out, "whence version", &s.whence_version);
    row(&mut out, "α", &s.alpha.to_string());
    let search = s.beta_search.as_ref().map_or(String::new(), |b| format!(", searched over {} values", b.steps.len()));
    row(&mut out, "β", &format!("{} ({}{search})", s.beta, s.beta_mode));
    row(&mut out, "trajectories", &s.trajectories.to_string());
    row(&mut out, "actions", &format!("{} ({} scored, {} unscored)", s.actions, s.scored_actions, s.unscored_actions));
    row(
        &mut out,
        "correctness",
        &format!("{} correct, {} incorrect, {} unknown", s.correctness.correct, s.correctness.incorrect, s.correctness.unknown),
    );
    row(&mut out, "skipped records", &s.skipped_records.to_string());
    out.push_str("</table><table class=\"kv\"><tr><th>label</th><th>actions</th><th>share of scored</th></tr>");
    for label in LABELS {
        let n = s.label_counts.get(label).and_then(Value::as_u64).unwrap_or(0) as usize;
        let _ = write!(out, "<tr><td>{}{}</td><td>{}</td><td>{}</td></tr>", swatch(label), label, n, percent(n, s.scored_actions));
    }
    let _ = write!(out, "<tr><td>{}unscored</td><td>{}</td><td></td></tr></table>", swatch("unscored"), s.unscored_actions);
    out.push_str(&models_table(&s.models));
    out
}

/// The behaviour lexicon, as a collapsible block.
pub fn behaviour_intro() -> String {
    let list = |phrases: &[&str]| phrases.iter().map(|p| format!("“{}”", escape(p))).collect::<Vec<_>>().join(", ");
    format!(
        "<p>Behaviours after SEAL (paper A.3.2): <b>execution</b> advances the solution, <b>reflection</b> checks or questions it, <b>transition</b> changes direction. Classified by keywords among an action's first {WINDOW_WORDS} words (whole words, case-insensitive); special tokens are left out.</p><details><summary>Lexicon</summary><p><b>transition</b> (checked first): {}</p><p><b>reflection</b>: {}</p><p><b>execution</b>: everything else.</p></details>",
        list(TRANSITION),
        list(REFLECTION)
    )
}

/// The behaviour table: counts and shares per label.
pub fn behaviour_table(table: &BehaviourTable) -> String {
    let mut out = String::from("<table class=\"kv\" id=\"behaviour-table\"><tr><th>label</th>");
    for b in Behaviour::ALL {
        let _ = write!(out, "<th>{}</th>", b.as_str());
    }
    out.push_str("<th>actions</th></tr>");
    for (r, (label, counts)) in table.rows.iter().enumerate() {
        let _ = write!(out, "<tr><td>{}{}</td>", swatch(label), escape(label));
        for (b, count) in counts.iter().enumerate() {
            let share = table.share(r, b).map_or("–".to_string(), |s| format!("{:.1}%", 100.0 * s));
            let _ = write!(out, "<td>{share} ({count})</td>");
        }
        let _ = write!(out, "<td>{}</td></tr>", counts.iter().sum::<usize>());
    }
    out.push_str("</table>");
    out
}

pub fn select_overview(s: &SelectSummary, path: &Path, agree: usize) -> String {
    let mut out = String::from("<table class=\"kv\">");
    row(&mut out, "summary", &path.display().to_string());
    row(&mut out, "input", &s.input.path);
    row(&mut out, "whence version", &s.whence_version);
    row(&mut out, "strategy", &s.strategy);
    if let Some(seed) = s.seed {
        row(&mut out, "seed", &seed.to_string());
    }
    let search = s.beta_search.as_ref().map_or(String::new(), |b| format!(", searched over {} values", b.steps.len()));
    row(&mut out, "β", &format!("{} ({}{search})", s.beta, s.beta_mode));
    row(&mut out, "responses", &format!("{} over {} questions, {} kept", s.records, s.questions, s.kept));
    row(&mut out, "skipped records", &s.skipped_records.to_string());
    row(
        &mut out,
        "check",
        &format!(
            "recomputing `{}` from the summary's counts keeps the same response for {agree} of {} questions",
            s.strategy,
            s.per_question.len()
        ),
    );
    out.push_str("</table>");
    out.push_str(&models_table(&s.models));
    out
}

pub fn strategy_table(stats: &[StrategyStats]) -> String {
    let mut out = String::from(
        "<table class=\"kv\" id=\"strategy-table\"><tr><th>strategy</th><th>mean teacher actions, kept</th><th>dropped</th><th>mean length (actions), kept</th><th>dropped</th></tr>",
    );
    let mean = |v: &[f64]| five_numbers(v).map_or("–".to_string(), |f| format!("{:.2}", f[5]));
    for s in stats {
        let _ = write!(
            out,
            "<tr><td>{}{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&s.strategy),
            if s.used { " (used)" } else { "" },
            mean(&s.kept_teacher),
            mean(&s.dropped_teacher),
            mean(&s.kept_length),
            mean(&s.dropped_length)
        );
    }
    out.push_str("</table>");
    out
}

/// The tables of `demo.json`: models, accuracy, how often each model reads
/// its question, the ground-truth confusion table (by origin and by family),
/// the origins of every model's samples and the attribution ranking. The
/// correctness analysis and the experiment have sections of their own
/// ([`demo_correctness`], [`demo_experiment`]).
pub fn demo_overview(d: &whence_world::summary::DemoSummary) -> String {
    use whence_core::Label;
    const DEMO_LABELS: [Label; 5] = [Label::Teacher, Label::Student, Label::Shared, Label::Boosted, Label::Unscored];
    let share = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let mut out = String::from("<p>Every sentence below was written by a model trained on this machine, in a world where each sentence family has a known author. The confusion table checks the labels against those origins, over the held-out responses of the distilled model (the trace below) and, as controls labelled with the same three models and β, of the teacher and the student.</p>");
    out.push_str("<table class=\"kv\" id=\"demo-models\"><tr><th>model</th><th>architecture</th><th>parameters</th><th>vocabulary</th><th>trained on</th><th>sequences</th><th>steps</th><th>loss first → last</th></tr>");
    for m in &d.models {
        let _ = write!(
            out,
            "<tr>{}{}<td>{}</td><td>{}</td>{}<td>{}</td><td>{}</td><td>{:.3} → {:.3}</td></tr>",
            td(&m.role),
            td(&m.architecture),
            m.parameters,
            m.vocab_size,
            td(&m.trained_on),
            m.training_sequences,
            m.steps,
            m.first_loss,
            m.final_loss
        );
    }
    out.push_str("</table><table class=\"kv\" id=\"demo-accuracy\"><tr><th>held-out accuracy</th><th>questions</th><th>samples</th><th>correct</th><th>accuracy</th></tr>");
    for a in &d.accuracy {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.1}%</td></tr>",
            escape(&a.model),
            a.questions,
            a.samples,
            a.correct,
            100.0 * a.accuracy
        );
    }
    out.push_str("</table>");
    out.push_str(&question_reading_table(&d.question_reading));
    out.push_str("<table class=\"kv\" id=\"demo-ground-truth\"><tr><th>origin (by family)</th><th>sentences</th>");
    for label in DEMO_LABELS {
        let _ = write!(out, "<th>{}{}</th>", swatch(label.as_str()), label.as_str());
    }
    out.push_str("</tr>");
    for row in &d.ground_truth.by_origin {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td>", row.origin.name(), row.sentences);
        for label in DEMO_LABELS {
            let _ = write!(out, "<td>{}</td>", percent(row.labels.count(label), row.sentences));
        }
        out.push_str("</tr>");
    }
    let _ = write!(
        out,
        "</table><p>Teacher-only sentences labelled <code>teacher</code>: {}; student-only sentences labelled <code>student</code>: {} (the goal: at least 90% each; β = {}).</p>",
        share(d.ground_truth.teacher_only_labelled_teacher),
        share(d.ground_truth.student_only_labelled_student),
        d.beta
    );
    out.push_str("<table class=\"kv\" id=\"demo-ground-truth-by-source\"><tr><th>responses of</th><th>sentences</th><th>teacher-only</th><th>labelled teacher</th><th>student-only</th><th>labelled student</th><th>unmatched</th></tr>");
    for source in &d.ground_truth_by_source {
        let count = |origin: whence_world::Origin| source.truth.by_origin.iter().find(|r| r.origin == origin).map_or(0, |r| r.sentences);
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&source.source),
            source.truth.sentences,
            count(whence_world::Origin::TeacherOnly),
            share(source.truth.teacher_only_labelled_teacher),
            count(whence_world::Origin::StudentOnly),
            share(source.truth.student_only_labelled_student),
            count(whence_world::Origin::Unmatched)
        );
    }
    out.push_str("</table><table class=\"kv\" id=\"demo-families\"><tr><th>family</th><th>origin</th><th>sentences</th>");
    for label in DEMO_LABELS {
        let _ = write!(out, "<th>{}</th>", label.as_str());
    }
    out.push_str("</tr>");
    for row in &d.ground_truth.by_family {
        let _ = write!(out, "<tr><td>{}</td><td>{}</td><td>{}</td>", row.family.name(), row.origin.name(), row.sentences);
        for label in DEMO_LABELS {
            let _ = write!(out, "<td>{}</td>", percent(row.labels.count(label), row.sentences));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table><table class=\"kv\" id=\"demo-sample-origins\"><tr><th>samples of</th><th>questions</th><th>responses</th><th>sentences</th>");
    for origin in whence_world::Origin::ALL {
        let _ = write!(out, "<th>{}</th>", origin.name());
    }
    out.push_str("</tr>");
    for o in &d.sample_origins {
        let _ =
            write!(out, "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>", escape(&o.model), escape(&o.split), o.responses, o.sentences);
        for (_, n) in &o.by_origin {
            let _ = write!(out, "<td>{}</td>", percent(*n, o.sentences));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table><table class=\"kv\" id=\"demo-attribution\"><tr><th>rank</th><th>candidate teacher</th><th>teacher share</th><th>student share</th><th>margin</th></tr>");
    for a in &d.attribution {
        let _ = write!(
            out,
            "<tr><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td></tr>",
            a.rank,
            td(&a.candidate),
            share(a.teacher_share),
            share(a.student_share),
            a.margin.map_or("–".to_string(), |m| format!("{m:+.3}"))
        );
    }
    out.push_str("</table>");
    out
}

/// `part` of `whole` as a share with the count: `97.0% (485)`.
fn share_of(part: usize, whole: usize) -> String {
    format!("{} ({part})", percent(part, whole))
}

/// How often each model's held-out responses carry their question's name,
/// item and start count; nothing for a demo.json without it.
fn question_reading_table(reading: &[whence_world::summary::QuestionReading]) -> String {
    if reading.is_empty() {
        return String::new();
    }
    let mut out = String::from("<p>Does each model read its question? Every question names a person, an item and a start count; the table gives the share of each model's held-out responses that repeat the question's own name, item and start count (as a number), and all three at once — a response that does not carry its question's facts cannot reach the right answer.</p>");
    out.push_str("<table class=\"kv\" id=\"demo-question-reading\"><tr><th>responses of</th><th>responses</th><th>with the question's name</th><th>item</th><th>start count</th><th>all three</th></tr>");
    for r in reading {
        let _ = write!(
            out,
            "<tr>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            td(&r.model),
            r.responses,
            share_of(r.name, r.responses),
            share_of(r.item, r.responses),
            share_of(r.start, r.responses),
            share_of(r.all, r.responses)
        );
    }
    out.push_str("</table>");
    out
}

/// A share as a percentage with one decimal, `–` for none.
fn percent_of(share: Option<f64>) -> String {
    share.filter(|s| s.is_finite()).map_or("–".to_string(), |s| format!("{:.1}%", 100.0 * s))
}

/// A difference of shares in percentage points with its sign: `+3.1`.
fn points(x: f64) -> String {
    crate::figures::signed(100.0 * x, 1)
}

/// The paper's correctness analysis of the distilled model's held-out
/// responses: what it asks, the mean teacher share of correct and incorrect
/// responses, and accuracy by teacher-share quartile. The figure (paper
/// Fig. 3) follows it in the section.
pub fn demo_correctness(c: &whence_world::summary::CorrectnessAnalysis) -> String {
    let mut out = String::from("<p>Do the teacher's sentences help? The paper splits the distilled model's held-out responses by whether their final answer is right and asks two things: whether responses with more teacher-labelled sentences are right more often, and where in a response the teacher's sentences sit, in correct against incorrect responses (its Fig. 3). A response's <b>teacher share</b> is its teacher-labelled actions over its scored actions.</p>");
    if c.responses == 0 && c.profile.is_empty() {
        out.push_str("<p id=\"demo-no-correctness\">This demo.json has no correctness analysis (it was written before whence computed one, or no held-out response has both a known answer and a scored action).</p>");
        return out;
    }
    let _ = write!(
        out,
        "<p>Of the {} held-out responses with a known answer and at least one scored action, {} are correct and {} incorrect. Their mean teacher share:</p>",
        c.responses, c.correct, c.incorrect
    );
    out.push_str("<table class=\"kv\" id=\"demo-teacher-share\"><tr><th>responses</th><th>count</th><th>mean teacher share</th></tr>");
    let _ = write!(out, "<tr><td>correct</td><td>{}</td><td>{}</td></tr>", c.correct, percent_of(c.mean_teacher_share_correct));
    let _ = write!(out, "<tr><td>incorrect</td><td>{}</td><td>{}</td></tr>", c.incorrect, percent_of(c.mean_teacher_share_incorrect));
    if let (Some(right), Some(wrong)) = (c.mean_teacher_share_correct, c.mean_teacher_share_incorrect) {
        let _ = write!(out, "<tr><td>correct − incorrect</td><td></td><td>{} pp</td></tr>", points(right - wrong));
    }
    out.push_str("</table>");
    if !c.quartiles.is_empty() {
        out.push_str("<table class=\"kv\" id=\"demo-share-quartiles\"><tr><th>teacher-share quartile</th><th>teacher share from – to</th><th>responses</th><th>correct</th><th>accuracy</th></tr>");
        for q in &c.quartiles {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{} – {}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                match q.quartile {
                    1 => "1 (lowest)".to_string(),
                    4 => "4 (highest)".to_string(),
                    n => n.to_string(),
                },
                percent_of(Some(q.low)),
                percent_of(Some(q.high)),
                q.responses,
                q.correct,
                percent_of(Some(q.accuracy))
            );
        }
        out.push_str("</table><p>Quartiles: the responses ranked by teacher share (ties by id) and cut into four groups of equal size. If teacher sentences help, accuracy rises from the first quartile to the fourth.</p>");
    }
    out
}

/// The experiment of `whence demo --experiment` (paper Table 1): the
/// table, how its errors are computed, or a note that it did not run.
pub fn demo_experiment(experiment: Option<&whence_world::summary::Experiment>) -> String {
    let Some(e) = experiment else {
        return "<p id=\"demo-no-experiment\">No experiment ran (<code>whence demo --experiment</code> distils the student on the responses each selection strategy keeps and compares their held-out accuracy).</p>".to_string();
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<p>Does choosing the training responses by their teacher labels help? For each selection strategy, the student is distilled on the {} teacher responses it keeps (one per training question), once per seed{}, and each distilled model answers {} held-out questions {} times; a question's accuracy is the share of its samples that are right, and a row's accuracy the mean over questions and seeds.",
        e.training_responses,
        e.rows.first().filter(|r| !r.seeds.is_empty()).map_or(String::new(), |r| format!(
            " ({} {})",
            if r.seeds.len() == 1 { "seed" } else { "seeds" },
            r.seeds.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        )),
        e.heldout_questions,
        e.samples_per_question
    );
    if let Some(beta) = e.searched_beta {
        let _ =
            write!(out, " The β search before training picked β = {beta:.3}; a strategy named with another β selects with that β instead.");
    }
    out.push_str("</p>");
    let has_errors = e.rows.iter().any(|r| r.standard_error > 0.0 || r.vs_random.is_some());
    if has_errors {
        out.push_str("<p>The <b>standard error</b> counts both the questions and the seeds as drawn at random: √(s²<sub>q</sub>/Q + s²<sub>s</sub>/S), with s²<sub>q</sub> the variance of the Q questions' accuracies (each averaged over seeds) and s²<sub>s</sub> that of the S seeds' accuracies (each averaged over questions). <b>vs random</b> is the row's accuracy minus <code>random</code>'s, paired by seed and question (the same questions and seeds, so what they share cancels), with its standard error computed the same way and a 95% interval from 10,000 bootstrap resamples of the questions (with replacement; the 2.5% and 97.5% quantiles of the resampled mean difference). An interval that excludes 0 is a difference the questions drawn are unlikely to explain; it resamples questions only, so unlike the standard error it leaves out how much a result changes from one training seed to another.</p>");
    } else {
        out.push_str("<p>This demo.json was written before whence computed standard errors and paired differences: only the spread over seeds is shown.</p>");
    }
    out.push_str("<table class=\"kv\" id=\"demo-experiment-table\"><tr><th>strategy</th><th>β</th><th>accuracy: mean ± standard error</th><th>sd over seeds</th><th>accuracy per seed</th><th>vs random: mean ± standard error</th><th>vs random: 95% interval</th><th>teacher actions / actions per kept response</th><th>kept responses correct</th></tr>");
    for r in &e.rows {
        let seeds: Vec<String> = r.accuracies.iter().map(|a| format!("{:.1}%", 100.0 * a)).collect();
        let beta = match (r.beta, e.searched_beta) {
            (Some(b), Some(s)) if (b - s).abs() < 1e-12 => format!("{b:.3} (searched)"),
            (Some(b), _) => format!("{b:.3}"),
            (None, _) => "–".to_string(),
        };
        let accuracy = if has_errors {
            format!("{:.1}% ± {:.1} pp", 100.0 * r.mean, 100.0 * r.standard_error)
        } else {
            format!("{:.1}%", 100.0 * r.mean)
        };
        let (difference, interval) = match &r.vs_random {
            Some(d) => {
                (format!("{} ± {:.1} pp", points(d.mean), 100.0 * d.standard_error), format!("[{}, {}] pp", points(d.low), points(d.high)))
            }
            None if r.strategy.starts_with("random") => ("(the baseline)".to_string(), String::new()),
            None => ("–".to_string(), "–".to_string()),
        };
        let _ = write!(
            out,
            "<tr>{}<td>{}</td><td>{}</td><td>{:.1} pp</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2} / {:.2}</td><td>{:.1}%</td></tr>",
            td(&r.strategy),
            beta,
            accuracy,
            100.0 * r.std,
            seeds.join(", "),
            difference,
            interval,
            r.mean_teacher_actions,
            r.mean_actions,
            100.0 * r.kept_correct
        );
    }
    out.push_str("</table>");
    out
}
pub fn attribute_overview(s: &AttributeSummary) -> String {
    let mut out = String::from("<table class=\"kv\">");
    row(&mut out, "input", &s.input.path);
    row(&mut out, "whence version", &s.whence_version);
    row(&mut out, "α", &s.alpha.to_string());
    row(&mut out, "β", &s.beta_mode);
    row(&mut out, "trajectories", &s.trajectories.to_string());
    row(&mut out, "ranking statistic", &s.ranking_statistic);
    row(&mut out, "ranking", &s.ranking.join(" > "));
    row(&mut out, "skipped records", &s.skipped_records.to_string());
    out.push_str("</table><table class=\"kv\" id=\"candidate-table\"><tr><th>rank</th><th>candidate</th><th>β</th>");
    for label in LABELS {
        let _ = write!(out, "<th>{}{label}</th>", swatch(label));
    }
    out.push_str(
        "<th>margin</th><th>mean p_T of teacher actions</th><th>Σ teacher correct − incorrect (first 400)</th><th>source</th></tr>",
    );
    let mut ordered: Vec<_> = s.candidates.iter().collect();
    ordered.sort_by_key(|c| c.rank);
    let f = |x: Option<f64>, digits: usize| x.map_or("–".to_string(), |v| format!("{v:.digits$}"));
    for c in ordered {
        let source = c.model.get("source").and_then(Value::as_str).unwrap_or("");
        let _ = write!(out, "<tr><td>{}</td>{}<td>{}</td>", c.rank, td(&c.name), c.beta);
        for share in [c.teacher_share, c.student_share, c.shared_share, c.boosted_share] {
            let _ = write!(out, "<td>{}</td>", share.map_or("–".to_string(), |s| format!("{:.1}%", 100.0 * s)));
        }
        let _ = write!(
            out,
            "<td>{}</td><td>{}</td><td>{}</td>{}</tr>",
            f(c.margin, 3),
            f(c.mean_p_candidate_teacher_actions, 3),
            f(c.teacher_correct_minus_incorrect_first_400, 2),
            td(source)
        );
    }
    out.push_str("</table>");
    out
}

/// The trajectory browser's data: JSON for the page, and how many
/// trajectories it holds of how many.
#[derive(Debug, Clone)]
pub struct BrowserData {
    pub json: String,
    pub embedded: usize,
    pub total: usize,
    pub limit: usize,
}

fn label_code(label: &str) -> char {
    match label {
        "teacher" => 't',
        "student" => 's',
        "shared" => 'h',
        "boosted" => 'b',
        "common" => 'c',
        _ => 'u',
    }
}

fn quantise(p: Option<f64>) -> i64 {
    p.map_or(-1, |p| (p.clamp(0.0, 1.0) * 10_000.0).round() as i64)
}

/// Compact per-trajectory data: `id`, `c` (correct), `x` (action texts), `l`
/// (label codes), `b` (behaviour codes), `p` (p_T, p_S, p_D per action in
/// units of 1e-4, −1 for none), `k` (token counts, −1 for none). Trajectories
/// are taken in order while the JSON stays within `limit` bytes.
pub fn browser_data(all: &[Trajectory<'_>], limit: usize) -> BrowserData {
    let mut items = Vec::new();
    let mut used = 0usize;
    for t in all {
        let labels: String = t.actions.iter().map(|a| label_code(&a.label)).collect();
        let behaviours: String = t.actions.iter().map(|a| classify(&a.text, a.special).map_or('-', Behaviour::code)).collect();
        let texts: Vec<&str> = t.actions.iter().map(|a| a.text.as_str()).collect();
        let specials: Vec<usize> = t.actions.iter().enumerate().filter(|(_, a)| a.special).map(|(i, _)| i).collect();
        let p: Vec<i64> = t.actions.iter().flat_map(|a| [a.p_teacher, a.p_student, a.p_distilled].map(quantise)).collect();
        let k: Vec<i64> = t
            .actions
            .iter()
            .flat_map(|a| [a.tokens_teacher, a.tokens_student, a.tokens_distilled].map(|k| k.map_or(-1, |k| k as i64)))
            .collect();
        let item =
            json!({"id": t.id, "c": t.correct, "x": texts, "sp": specials, "l": labels, "b": behaviours, "p": p, "k": k}).to_string();
        if used + item.len() + 1 > limit {
            break;
        }
        used += item.len() + 1;
        items.push(item);
    }
    let embedded = items.len();
    let json = format!("{{\"total\":{},\"embedded\":{},\"limit\":{},\"trajectories\":[{}]}}", all.len(), embedded, limit, items.join(","));
    BrowserData { json, embedded, total: all.len(), limit }
}

fn palette_css() -> String {
    let mut out = String::from(":root{");
    for label in ["teacher", "student", "shared", "boosted", "common", "unscored"] {
        let c = label_colour(label);
        let _ = write!(out, "--{label}:{};--{label}-bg:rgba({},{},{},0.32);", hex(c), c.0, c.1, c.2);
    }
    let _ = write!(out, "--distilled:{};", hex(style::DISTILLED));
    for b in Behaviour::ALL {
        let _ = write!(out, "--{}:{};", b.as_str(), hex(style::behaviour_colour(b)));
    }
    out.push('}');
    out
}

fn browser_section(data: &BrowserData) -> String {
    let mut out = String::from("<section id=\"browser\"><h2>Trajectories and text view</h2>");
    out.push_str(
        "<p>Each response with its actions highlighted by label, above its action probabilities (paper Fig. 2, 11). Hover over or click an action (in the text or the plot) to see its three probabilities and token counts; click pins it.</p>",
    );
    if data.embedded < data.total {
        let _ = write!(
            out,
            "<p class=\"warn\" id=\"embed-note\">{} of {} trajectories are embedded (the first ones, within {} MB of data; raise it with <code>--embed-limit-mb</code>).</p>",
            data.embedded,
            data.total,
            data.limit / 1_000_000
        );
    }
    out.push_str("<div class=\"controls\"><label>search id <input id=\"q\" type=\"search\" placeholder=\"id contains…\"></label> <label>correctness <select id=\"correct\"><option value=\"all\">all</option><option value=\"correct\">correct</option><option value=\"incorrect\">incorrect</option><option value=\"unknown\">unknown</option></select></label> <label>must contain <select id=\"has\"><option value=\"\">any label</option>");
    for label in LABELS {
        let _ = write!(out, "<option value=\"{}\">{label}</option>", label_code(label));
    }
    out.push_str("</select></label> <span class=\"labels\">highlight:");
    for label in LABELS.iter().chain(["unscored"].iter()) {
        let _ = write!(
            out,
            "<label class=\"chip L-{code}\"><input type=\"checkbox\" data-label=\"{code}\" checked> {label}</label>",
            code = label_code(label)
        );
    }
    out.push_str("</span> <button id=\"prev\" type=\"button\">◀ prev</button> <span id=\"pageinfo\"></span> <button id=\"next\" type=\"button\">next ▶</button></div>");
    out.push_str("<div class=\"legend\"><span class=\"key\" style=\"border-color:var(--teacher)\"></span>p_T (teacher) <span class=\"key\" style=\"border-color:var(--student)\"></span>p_S (student) <span class=\"key\" style=\"border-color:var(--distilled)\"></span>p_D (distilled)</div>");
    out.push_str("<div id=\"cards\"></div></section>");
    out
}

/// The whole page.
pub fn page(report: &Report) -> String {
    let mut out = String::with_capacity(report.browser.as_ref().map_or(0, |b| b.json.len()) + (1 << 20));
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src {}; img-src 'none'; base-uri 'none'; form-action 'none'\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{}</title>\n<style>{}{}</style></head>\n<body>\n<header><h1>{}</h1><nav>",
        script_hash(),
        escape(&report.title),
        palette_css(),
        CSS,
        escape(&report.title)
    );
    for section in &report.sections {
        let _ = write!(out, "<a href=\"#{}\">{}</a>", escape(&section.id), escape(&section.title));
    }
    if report.browser.is_some() {
        out.push_str("<a href=\"#browser\">Trajectories and text view</a>");
    }
    out.push_str("</nav></header>\n<main>\n");
    for section in &report.sections {
        let _ = write!(out, "<section id=\"{}\"><h2>{}</h2>{}", escape(&section.id), escape(&section.title), section.intro);
        for figure in &section.figures {
            let _ = writeln!(
                out,
                "<figure class=\"fig\" data-figure=\"{name}\"><div class=\"svg\">{svg}</div><figcaption><b>{title}.</b> {caption} <span class=\"files\">Files: <code>figures/{name}.svg</code>, <code>figures/{name}.png</code></span></figcaption></figure>",
                name = escape(&figure.name),
                svg = figure.svg.trim_start_matches(|c: char| c != '<'),
                title = escape(&figure.title),
                caption = escape(&figure.caption)
            );
        }
        out.push_str(&section.outro);
        out.push_str("</section>\n");
    }
    if let Some(browser) = &report.browser {
        out.push_str(&browser_section(browser));
    }
    out.push_str("</main>\n<div id=\"info\" class=\"info\" hidden></div>\n<script type=\"application/json\" id=\"whence-data\">");
    out.push_str(
        &report.browser.as_ref().map_or_else(|| "{\"total\":0,\"embedded\":0,\"trajectories\":[]}".to_string(), |b| script_json(&b.json)),
    );
    out.push_str("</script>\n<script>");
    out.push_str(SCRIPT);
    out.push_str("</script>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_leaves_no_markup() {
        let hostile = "<script>alert(1)</script></style>\"><img src=x onerror=alert(1)></textarea>'&";
        let escaped = escape(hostile);
        assert!(!escaped.contains('<') && !escaped.contains('>') && !escaped.contains('"') && !escaped.contains('\''));
        assert_eq!(escape("a<b & 'c'"), "a&lt;b &amp; &#39;c&#39;");
        let json = script_json(&serde_json::to_string(&hostile).unwrap());
        assert!(!json.contains('<') && !json.contains('>') && !json.contains('&'));
        assert_eq!(serde_json::from_str::<String>(&json).unwrap(), hostile);
    }

    #[test]
    fn only_cells_with_long_words_may_break_anywhere() {
        assert_eq!(td("Qwen2ForCausalLM"), "<td>Qwen2ForCausalLM</td>");
        assert_eq!(td("trained on the pretraining split"), "<td>trained on the pretraining split</td>");
        assert_eq!(
            td("/data/runs/2024/demo/heldout-distilled.jsonl"),
            "<td class=\"long\">/data/runs/2024/demo/heldout-distilled.jsonl</td>"
        );
        assert_eq!(td("a<b"), "<td>a&lt;b</td>");
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
