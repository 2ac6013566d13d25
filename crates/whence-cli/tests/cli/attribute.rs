use crate::*;

#[test]
fn the_true_teacher_ranks_first() {
    // The example's student file stands in for a spurious teacher: as a
    // candidate it explains few actions as teacher-originated.
    let scratch = Scratch::new("attribute");
    let mut args = example_attribution();
    args.extend(["--out".into(), scratch.0.display().to_string(), "--format".into(), "jsonl".into()]);
    let output = ok(whence(&args));
    assert!(output.contains("ranked by teacher_share - student_share"), "{output}");
    let summary = read_json(&scratch.join("attribution.json"));
    assert_eq!(summary["ranking"], serde_json::json!(["true", "spurious"]));
    let candidates = read_jsonl(&scratch.join("candidates.jsonl"));
    assert_eq!(candidates[0]["candidate"], "true");
    assert_eq!(candidates[0]["rank"], 1);
    // As its own teacher, the student explains no action as teacher or student.
    assert_eq!(candidates[1]["teacher_share"], 0.0);
    assert_eq!(scratch.listing(""), vec!["attribution.json", "candidates.jsonl", "positions-spurious.jsonl", "positions-true.jsonl"]);
}

#[test]
fn fewer_than_two_candidates_is_a_usage_error() {
    let output = whence(["attribute", "in.jsonl", "--distilled", "file:d", "--student", "file:s", "--candidate", "a=file:a", "--out", "o"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("attribute needs two or more --candidate NAME=SCORER; got 1"), "{}", stderr(&output));
}
