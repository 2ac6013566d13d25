//! `whence score INPUT`, positional like every other command's, with
//! `--input` still accepted.

use super::{example_records, fixture, role_files};
use crate::*;

#[test]
fn score_takes_input_as_positional_or_flag() {
    let scratch = Scratch::new("score-input");
    let (input, records) = example_records(&scratch, 6);
    let (ids, offsets) = role_files(&scratch, "model", &fixture("tiny-qwen2"), &records, 0);
    let run = |input_args: &[&str], out: &str| {
        let out = scratch.join(out);
        let mut args = vec!["-q", "score", "--model"];
        let model = format!("file:{}", ids.display());
        let tokenizer = format!("model={}", fixture("tiny-qwen2").display());
        args.extend([model.as_str(), "--tokenizer", tokenizer.as_str(), "--out", out.to_str().unwrap(), "--no-cache"]);
        args.extend(input_args);
        (whence(&args), out)
    };
    let (output, positional) = run(&[input.to_str().unwrap()], "positional.jsonl");
    ok(output);
    let (output, flag) = run(&["--input", input.to_str().unwrap()], "flag.jsonl");
    ok(output);
    let (output, short) = run(&["-i", input.to_str().unwrap()], "short.jsonl");
    ok(output);
    let positional = std::fs::read(positional).unwrap();
    assert_eq!(positional, std::fs::read(flag).unwrap());
    assert_eq!(positional, std::fs::read(short).unwrap());
    // Scoring a token-id file writes the byte offsets the tokenizer gives.
    let written = read_jsonl(&scratch.join("positional.jsonl"));
    let expected = read_jsonl(&offsets);
    assert_eq!(written.len(), records.len());
    for (a, b) in written.iter().zip(&expected) {
        assert_eq!((&a["id"], &a["offsets"], &a["logprobs"]), (&b["id"], &b["offsets"], &b["logprobs"]));
    }
    // Both, or neither: usage errors.
    let (output, _) = run(&[input.to_str().unwrap(), "--input", input.to_str().unwrap()], "both.jsonl");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("cannot be used with"), "{}", stderr(&output));
    let (output, _) = run(&[], "neither.jsonl");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("<INPUT>"), "{}", stderr(&output));
}
