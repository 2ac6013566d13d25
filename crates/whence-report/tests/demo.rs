//! The demo's sections of the report, from `tests/fixtures/demo`: a
//! `demo.json` as `whence demo --experiment` writes it (question reading,
//! correctness analysis, experiment with standard errors and paired
//! differences) beside a two-response trace, and
//! `tests/fixtures/demo-before-analysis.json`, the same run as an older
//! whence wrote it (none of those fields), which must still load and say
//! what it lacks.

mod common;

use std::path::{Path, PathBuf};

use whence_report::{build_report, html, Report, ReportOptions, Section};
use whence_world::summary::DemoSummary;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn section<'a>(report: &'a Report, id: &str) -> &'a Section {
    report.sections.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no section {id}"))
}

fn assert_contains(html: &str, needles: &[&str]) {
    for needle in needles {
        assert!(html.contains(needle), "missing `{needle}` in:\n{html}");
    }
}

/// The table row of `table_id` whose first cell is `first`, its cells' texts.
fn table_row(html: &str, table_id: &str, first: &str) -> Vec<String> {
    let start = html.find(&format!("id=\"{table_id}\"")).unwrap_or_else(|| panic!("no table {table_id}"));
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    let cells = |row: &str| -> Vec<String> {
        row.split("<td").skip(1).map(|c| c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()].to_string()).collect()
    };
    table.split("<tr>").map(cells).find(|c| c.first().is_some_and(|c| c == first)).unwrap_or_else(|| panic!("no row {first} in {table}"))
}

#[test]
fn the_demo_sections_show_question_reading_correctness_and_the_experiment() {
    let report = build_report(&fixtures().join("demo"), &ReportOptions::default()).unwrap();
    let ids: Vec<&str> = report.sections.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(&ids[..3], ["demo", "demo-correctness", "demo-experiment"], "{ids:?}");

    let overview = &section(&report, "demo").intro;
    assert_contains(overview, &["id=\"demo-question-reading\"", "the goal: at least 90% each", "id=\"demo-ground-truth\""]);
    assert!(!overview.contains("80% each"));
    assert_eq!(
        table_row(overview, "demo-question-reading", "teacher"),
        ["teacher", "200", "99.0% (198)", "98.5% (197)", "98.0% (196)", "97.5% (195)"]
    );
    assert_eq!(table_row(overview, "demo-question-reading", "student")[5], "60.0% (120)");

    let correctness = section(&report, "demo-correctness");
    assert_contains(&correctness.intro, &["Of the 100 held-out responses", "60 are correct and 40 incorrect", "teacher share"]);
    assert_eq!(table_row(&correctness.intro, "demo-teacher-share", "correct"), ["correct", "60", "41.2%"]);
    assert_eq!(table_row(&correctness.intro, "demo-teacher-share", "incorrect"), ["incorrect", "40", "28.7%"]);
    assert_eq!(table_row(&correctness.intro, "demo-teacher-share", "correct − incorrect")[2], "+12.5 pp");
    assert_eq!(table_row(&correctness.intro, "demo-share-quartiles", "1 (lowest)"), ["1 (lowest)", "5.0% – 22.0%", "25", "9", "36.0%"]);
    assert_eq!(table_row(&correctness.intro, "demo-share-quartiles", "4 (highest)"), ["4 (highest)", "46.0% – 71.0%", "25", "20", "80.0%"]);
    let [profile] = &correctness.figures[..] else { panic!("one figure: {:?}", correctness.figures.len()) };
    assert_eq!(profile.name, "demo-correctness-profile");
    common::assert_honest(&profile.name, &profile.svg);
    // Correct against incorrect, and the axis cut where fewer than 10 responses remain.
    assert!(profile.caption.contains("solid lines are the 60 correct responses, dashed the 40 incorrect ones"), "{}", profile.caption);
    assert!(profile.caption.contains("the axis ends at index 16, the last with at least 10 responses"), "{}", profile.caption);
    let summary = common::summary(&profile.svg);
    assert!(summary.contains("text: correct\ntext: incorrect"), "{summary}");
    insta::assert_snapshot!("correctness_profile", summary);

    let experiment = section(&report, "demo-experiment");
    assert_contains(
        &experiment.intro,
        &["picked β = 0.100", "seeds 1, 2, 3", "200 held-out questions 4 times", "standard error", "bootstrap resamples of the questions"],
    );
    assert_eq!(
        table_row(&experiment.intro, "demo-experiment-table", "teacher-count"),
        [
            "teacher-count",
            "0.100 (searched)",
            "49.0% ± 2.0 pp",
            "2.0 pp",
            "47.0%, 49.0%, 51.0%",
            "+7.0 ± 1.2 pp",
            "[+4.6, +9.4] pp",
            "4.80 / 9.40",
            "93.0%"
        ]
    );
    let random = table_row(&experiment.intro, "demo-experiment-table", "random");
    assert_eq!((random[2].as_str(), random[5].as_str()), ("42.0% ± 2.1 pp", "(the baseline)"));
    let other_beta = table_row(&experiment.intro, "demo-experiment-table", "teacher-count (β 0.150)");
    assert_eq!((other_beta[1].as_str(), other_beta[6].as_str()), ("0.150", "[+1.5, +6.6] pp"));
    assert_eq!(
        table_row(&experiment.intro, "demo-experiment-table", "longest")[1..7],
        ["–", "41.0% ± 2.2 pp", "2.0 pp", "39.0%, 41.0%, 43.0%", "-1.0 ± 1.4 pp", "[-3.7, +1.8] pp"]
    );
    let [figure] = &experiment.figures[..] else { panic!("one figure") };
    assert_eq!(figure.name, "demo-experiment");
    common::assert_honest(&figure.name, &figure.svg);
    assert!(figure.png.starts_with(b"\x89PNG"));
    let summary = common::summary(&figure.svg);
    for needle in ["teacher-count (β 0.150)", "the baseline", "difference from random (paired)", "± standard error", "95% interval"] {
        assert!(summary.contains(needle), "{needle} in {summary}");
    }
    insta::assert_snapshot!("experiment", summary);
    for s in &report.sections {
        assert!(!s.intro.contains("NaN") && !s.intro.contains("inf"), "{}", s.intro);
    }
}

#[test]
fn the_page_breaks_only_long_words_in_tables() {
    let report = build_report(&fixtures().join("demo"), &ReportOptions::default()).unwrap();
    let page = html::page(&report);
    assert!(page.contains("table.kv td.long{overflow-wrap:anywhere}"));
    let rule = page.split("table.kv th,table.kv td{").nth(1).unwrap().split('}').next().unwrap();
    assert!(rule.contains("overflow-wrap:break-word") && !rule.contains("anywhere"), "{rule}");
    // Short words such as an architecture's name are cells without the class.
    assert!(page.contains("<td>Qwen2ForCausalLM</td>"));
}

#[test]
fn a_demo_json_written_before_the_analysis_still_loads() {
    let text = std::fs::read_to_string(fixtures().join("demo-before-analysis.json")).unwrap();
    assert!(!text.contains("question_reading") && !text.contains("standard_error") && !text.contains("searched_beta"));
    let demo: DemoSummary = serde_json::from_str(&text).unwrap();
    assert!(demo.question_reading.is_empty() && demo.correctness.profile.is_empty());
    let experiment = demo.experiment.as_ref().unwrap();
    assert!(experiment.rows.iter().all(|r| r.beta.is_none() && r.vs_random.is_none() && r.standard_error == 0.0));

    let overview = html::demo_overview(&demo);
    assert!(!overview.contains("demo-question-reading"), "{overview}");
    let correctness = html::demo_correctness(&demo.correctness);
    assert!(correctness.contains("id=\"demo-no-correctness\""), "{correctness}");
    let table = html::demo_experiment(Some(experiment));
    assert!(table.contains("written before whence computed standard errors"), "{table}");
    assert!(!table.contains("± 0.0") && !table.contains("NaN"), "{table}");
    assert_eq!(table_row(&table, "demo-experiment-table", "teacher-count")[2..6], ["49.0%", "2.0 pp", "47.0%, 49.0%, 51.0%", "–"]);

    // The whole report: no correctness figure, and the experiment's figure
    // says the differences are missing rather than drawing them at zero.
    let scratch = std::env::temp_dir().join(format!("whence-report-old-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    for name in ["summary.json", "actions.jsonl", "positions.jsonl"] {
        std::fs::copy(fixtures().join("demo").join(name), scratch.join(name)).unwrap();
    }
    std::fs::write(scratch.join("demo.json"), &text).unwrap();
    let report = build_report(&scratch, &ReportOptions::default());
    let _ = std::fs::remove_dir_all(&scratch);
    let report = report.unwrap();
    assert!(section(&report, "demo-correctness").figures.is_empty());
    let [figure] = &section(&report, "demo-experiment").figures[..] else { panic!("one figure") };
    common::assert_honest(&figure.name, &figure.svg);
    let summary = common::summary(&figure.svg);
    assert!(summary.contains("no paired difference") && summary.contains("the baseline"), "{summary}");
}
