use crate::*;

fn trace_example(out: &Path, format: &str, extra: &[&str]) -> String {
    let mut args: Vec<String> = vec!["trace".into(), example("records.jsonl").display().to_string()];
    args.extend(example_scorers());
    args.extend(["--out".into(), out.display().to_string(), "--format".into(), format.into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    ok(whence(&args))
}

#[test]
fn trace_writes_every_output_deterministically() {
    let scratch = Scratch::new("trace");
    for format in ["jsonl", "parquet"] {
        trace_example(&scratch.join(&format!("{format}-1")), format, &[]);
        trace_example(&scratch.join(&format!("{format}-2")), format, &[]);
        let names = scratch.listing(&format!("{format}-1"));
        assert_eq!(
            names,
            vec![format!("actions.{format}"), format!("positions.{format}"), "summary.json".to_string(), format!("trajectories.{format}")]
        );
        for name in names {
            let first = std::fs::read(scratch.join(&format!("{format}-1/{name}"))).unwrap();
            let second = std::fs::read(scratch.join(&format!("{format}-2/{name}"))).unwrap();
            assert!(first == second, "{format}/{name} differs between two identical runs");
        }
    }
    // Parquet and JSONL hold the same rows.
    let jsonl = read_jsonl(&scratch.join("jsonl-1/actions.jsonl"));
    let file = std::fs::File::open(scratch.join("parquet-1/actions.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows() as usize, jsonl.len());
}

#[test]
fn trace_outputs_follow_the_schema_and_add_up() {
    let scratch = Scratch::new("trace-schema");
    trace_example(&scratch.0, "jsonl", &[]);
    let actions = read_jsonl(&scratch.join("actions.jsonl"));
    let first = actions[0].as_object().unwrap();
    let columns: Vec<&str> = first.keys().map(String::as_str).collect();
    assert_eq!(
        columns,
        vec![
            "id",
            "question_id",
            "correct",
            "index",
            "start",
            "end",
            "special",
            "text",
            "tokens_teacher",
            "logprob_teacher",
            "p_teacher",
            "tokens_student",
            "logprob_student",
            "p_student",
            "tokens_distilled",
            "logprob_distilled",
            "p_distilled",
            "label"
        ]
    );
    // Actions tile each response.
    let records = read_jsonl(&example("records.jsonl"));
    for record in &records {
        let id = record["id"].as_str().unwrap();
        let text: String = actions.iter().filter(|a| a["id"] == id).map(|a| a["text"].as_str().unwrap()).collect();
        assert_eq!(text, record["response"].as_str().unwrap());
    }
    // p = exp(logprob), and unscored actions have a null somewhere.
    for action in &actions {
        for role in ["teacher", "student", "distilled"] {
            match (action[format!("logprob_{role}")].as_f64(), action[format!("p_{role}")].as_f64()) {
                (Some(lp), Some(p)) => assert!((lp.exp() - p).abs() < 1e-12),
                (None, None) => assert_eq!(action["label"], "unscored"),
                other => panic!("logprob and p disagree: {other:?}"),
            }
        }
    }
    let summary = read_json(&scratch.join("summary.json"));
    let trajectories = read_jsonl(&scratch.join("trajectories.jsonl"));
    assert_eq!(summary["trajectories"], trajectories.len());
    assert_eq!(summary["actions"], actions.len());
    let unscored = actions.iter().filter(|a| a["label"] == "unscored").count();
    assert_eq!(summary["unscored_actions"], unscored);
    assert!(unscored > 0, "the example has unscored actions");
    let search = &summary["beta_search"];
    assert_eq!(search["settings"]["steps"], 4);
    assert_eq!(summary["beta"], search["beta"]);
    let positions = read_jsonl(&scratch.join("positions.jsonl"));
    let longest = trajectories.iter().map(|t| t["actions"].as_u64().unwrap()).max().unwrap();
    assert_eq!(positions.len() as u64, longest);
    assert_eq!(positions[0]["n_all"].as_u64().unwrap() as usize, trajectories.len());
}

#[test]
fn fixed_beta_and_alpha_are_used_and_reported() {
    let scratch = Scratch::new("trace-fixed");
    trace_example(&scratch.0, "jsonl", &["--alpha", "0.05", "--beta", "0.2"]);
    let summary = read_json(&scratch.join("summary.json"));
    assert_eq!(summary["alpha"], 0.05);
    assert_eq!(summary["beta"], 0.2);
    assert_eq!(summary["beta_mode"], "fixed");
    assert!(summary["beta_search"].is_null());
}

#[test]
fn summary_snapshot() {
    let scratch = Scratch::new("trace-snapshot");
    trace_example(&scratch.0, "jsonl", &[]);
    let text = std::fs::read_to_string(scratch.join("summary.json")).unwrap();
    let text = text.replace(&root().display().to_string(), "[ROOT]").replace(env!("CARGO_PKG_VERSION"), "[VERSION]");
    insta::assert_snapshot!("trace_summary", text);
}
