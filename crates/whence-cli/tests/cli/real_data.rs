//! The real public data in ../shared/data (skipped when absent).

use crate::*;

/// A deterministic stand-in tokenizer and scorer: pieces of up to `width`
/// chars, log-probabilities from a hash of the piece and the model's salt.
fn fake_scores(response: &str, width: usize, salt: u64) -> serde_json::Value {
    let boundaries: Vec<usize> = response.char_indices().map(|(i, _)| i).chain([response.len()]).collect();
    let mut offsets = Vec::new();
    let mut logprobs = Vec::new();
    for pair in boundaries
        .chunks(width)
        .map(|c| c[0])
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| (w[0], w[1]))
        .chain(std::iter::once((boundaries[(boundaries.len() - 1) / width * width], response.len())))
    {
        if pair.0 == pair.1 {
            continue;
        }
        let mut h = salt ^ 0xcbf2_9ce4_8422_2325;
        for b in response[pair.0..pair.1].bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        offsets.push(serde_json::json!([pair.0, pair.1]));
        logprobs.push(-((h % 4000) as f64) / 1000.0);
    }
    serde_json::json!({"offsets": offsets, "logprobs": logprobs})
}

#[test]
fn trace_runs_on_real_traces_with_renamed_fields() {
    let Some(path) = shared_data("trajectories/thought_anchors.jsonl") else { return };
    let scratch = Scratch::new("real");
    let records = read_jsonl(&path);
    let mut specs = Vec::new();
    for (role, width, salt) in [("teacher", 3, 1), ("student", 4, 2), ("distilled", 2, 3)] {
        let mut lines = String::new();
        for (i, record) in records.iter().enumerate() {
            let mut scores = fake_scores(record["response"].as_str().unwrap(), width, salt);
            scores["id"] = serde_json::json!(format!("thought_anchors.jsonl:{}", i + 1));
            lines.push_str(&scores.to_string());
            lines.push('\n');
        }
        let file = scratch.write(&format!("{role}.jsonl"), &lines);
        specs.push(format!("--{role}"));
        specs.push(format!("file:{}", file.display()));
    }
    let mut args = vec![
        "trace".to_string(),
        path.display().to_string(),
        "--prompt-field".into(),
        "question".into(),
        "--answer-field".into(),
        "reference_answer".into(),
        "--correct-field".into(),
        "no_such_field".into(),
        "--out".into(),
        scratch.join("out").display().to_string(),
        "--format".into(),
        "jsonl".into(),
    ];
    args.extend(specs);
    ok(whence(&args));
    let summary = read_json(&scratch.join("out/summary.json"));
    assert_eq!(summary["trajectories"], 40);
    // Correctness graded from the reference answers matches the source's verdicts.
    assert_eq!(summary["correctness"]["graded_from_answer"], 40);
    assert_eq!(summary["correctness"]["correct"], 20);
    assert_eq!(summary["correctness"]["incorrect"], 20);
    let positions = read_jsonl(&scratch.join("out/positions.jsonl"));
    assert!(positions[0]["n_correct"].as_u64().unwrap() == 20);
}

#[test]
fn grade_agrees_with_skythought_verdicts() {
    let Some(path) = shared_data("trajectories/skythought_amc23.jsonl") else { return };
    let output = whence([path.display().to_string().as_str(), "--answer-field", "reference_answer"].iter().fold(
        vec!["grade".to_string()],
        |mut v, a| {
            v.push(a.to_string());
            v
        },
    ));
    let rows: Vec<serde_json::Value> = ok(output).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 560);
    let agree = rows.iter().filter(|r| r["correct"] == r["given_correct"]).count();
    assert!(agree * 100 >= 99 * rows.len(), "agreement {agree}/560");
}

#[test]
fn segment_reads_sharegpt_and_parquet_free_jsonl_with_renamed_prompt() {
    let Some(path) = shared_data("trajectories/skythought_amc23.jsonl") else { return };
    let output = ok(whence(["segment", path.to_str().unwrap(), "--prompt-field", "question"]));
    let rows: Vec<serde_json::Value> = output.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // SkyThought's long-CoT markers are special tokens of the <|…|> family.
    assert!(rows.iter().any(|r| r["text"] == "<|begin_of_thought|>" && r["special"] == true));
}
