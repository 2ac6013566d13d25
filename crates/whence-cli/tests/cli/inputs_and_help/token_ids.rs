//! `file:` scorers that give the response's token ids, decoded with
//! `--tokenizer ROLE=DIR`.

use super::{example_records, fixture, role_files};
use crate::*;

const ROLES: [(&str, &str); 3] = [("teacher", "tiny-qwen3"), ("student", "tiny-llama3"), ("distilled", "tiny-mistral")];

/// `trace` flags for the three roles' `ROLE-KIND.jsonl` files.
fn trace_args(input: &Path, scratch: &Scratch, kind: &str, out: &str) -> Vec<String> {
    let mut args = vec!["-q".to_string(), "trace".into(), input.display().to_string(), "--format".into(), "jsonl".into()];
    for (role, _) in ROLES {
        args.extend([format!("--{role}"), format!("file:{}", scratch.join(&format!("{role}-{kind}.jsonl")).display())]);
    }
    args.extend(["--out".into(), scratch.join(out).display().to_string()]);
    args
}

fn tokenizer_args() -> Vec<String> {
    ROLES.iter().flat_map(|(role, dir)| ["--tokenizer".to_string(), format!("{role}={}", fixture(dir).display())]).collect()
}

#[test]
fn token_ids_trace_to_the_same_labels_as_byte_offsets() {
    let scratch = Scratch::new("token-ids");
    let (input, records) = example_records(&scratch, 24);
    assert!(records.iter().any(|r| !r["response"].as_str().unwrap().is_ascii()), "some responses must split characters");
    for (salt, (role, dir)) in ROLES.iter().enumerate() {
        role_files(&scratch, role, &fixture(dir), &records, salt);
    }
    ok(whence(trace_args(&input, &scratch, "offsets", "by-offsets")));
    let mut by_ids = trace_args(&input, &scratch, "ids", "by-ids");
    by_ids.extend(tokenizer_args());
    ok(whence(by_ids));
    for table in ["actions.jsonl", "trajectories.jsonl", "positions.jsonl"] {
        let (offsets, ids) =
            (read_jsonl(&scratch.join(&format!("by-offsets/{table}"))), read_jsonl(&scratch.join(&format!("by-ids/{table}"))));
        assert_eq!(offsets.len(), ids.len(), "{table}");
        for (a, b) in offsets.iter().zip(&ids) {
            assert!(a == b, "{table}: from offsets:\n{a}\nfrom token ids:\n{b}");
        }
    }
    // The comparison means something: the labels are not all one kind.
    let actions = read_jsonl(&scratch.join("by-ids/actions.jsonl"));
    let mut labels: Vec<&str> = actions.iter().map(|a| a["label"].as_str().unwrap()).collect();
    labels.sort();
    labels.dedup();
    assert!(labels.len() >= 3, "{labels:?}");
}

#[test]
fn token_ids_that_decode_to_another_response_name_the_record_and_byte() {
    let scratch = Scratch::new("token-ids-mismatch");
    let (_, records) = example_records(&scratch, 4);
    for (salt, (role, dir)) in ROLES.iter().enumerate() {
        role_files(&scratch, role, &fixture(dir), &records, salt);
    }
    // The input's third response differs from what the ids spell by one
    // letter, after the first 40 bytes.
    let mut changed = records.clone();
    let response = changed[2]["response"].as_str().unwrap().to_string();
    let at = response.char_indices().find(|&(i, c)| i >= 40 && c.is_ascii_lowercase()).unwrap().0;
    let letter = if &response[at..at + 1] == "q" { "z" } else { "q" };
    let edited = format!("{}{letter}{}", &response[..at], &response[at + 1..]);
    changed[2]["response"] = serde_json::json!(edited);
    let input = scratch.write("changed.jsonl", &changed.iter().map(|r| format!("{r}\n")).collect::<String>());
    let mut args = trace_args(&input, &scratch, "ids", "out");
    args.extend(tokenizer_args());
    let output = whence(&args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    let id = changed[2]["id"].as_str().unwrap();
    assert!(message.contains(&format!("teacher-ids.jsonl:3: field `token_ids[")), "{message}");
    assert!(
        message
            .contains(&format!("record `{id}`: the ids do not decode to the response: first difference at byte {at}: response \"{letter}")),
        "{message}"
    );
    assert!(message.contains(&format!("decoded ids \"{}", &response[at..at + 1])), "{message}");
    assert!(message.contains("hint: `token_ids` must be the response's tokens only"), "{message}");
    // With --skip-invalid the record is skipped, and the others traced.
    args.push("--skip-invalid".into());
    ok(whence(&args));
    let trajectories = read_jsonl(&scratch.join("out/trajectories.jsonl"));
    assert_eq!(trajectories.len(), 3);
    assert!(trajectories.iter().all(|t| t["id"] != id));
}

#[test]
fn token_ids_without_a_tokenizer_are_a_usage_error_with_a_hint() {
    let scratch = Scratch::new("token-ids-no-tokenizer");
    let (input, records) = example_records(&scratch, 2);
    for (salt, (role, dir)) in ROLES.iter().enumerate() {
        role_files(&scratch, role, &fixture(dir), &records, salt);
    }
    // The teacher's and student's tokenizers are given, not the distilled model's.
    let mut args = trace_args(&input, &scratch, "ids", "out");
    args.extend(tokenizer_args().into_iter().take(4));
    let output = whence(&args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    let message = stderr(&output);
    let file = scratch.join("distilled-ids.jsonl");
    assert!(
        message.contains(&format!(
            "the distilled scorer `file:{0}` gives token ids (`token_ids`, first at {0}:1) instead of byte offsets, and no tokenizer is given to decode them",
            file.display()
        )),
        "{message}"
    );
    assert!(message.contains("hint: pass --tokenizer distilled=DIR"), "{message}");
    assert!(!scratch.join("out").exists(), "nothing is written");
    // A directory without tokenizer.json is named.
    let mut args = trace_args(&input, &scratch, "ids", "out");
    args.extend(tokenizer_args().into_iter().take(4));
    args.extend(["--tokenizer".into(), format!("distilled={}", scratch.0.display())]);
    let output = whence(&args);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("tokenizer.json: is missing"), "{}", stderr(&output));
}
