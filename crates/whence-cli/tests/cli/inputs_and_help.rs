//! Inputs as users have them, and help that reads right: `file:` scorers
//! that give token ids, `whence score`'s INPUT, one default per option.

mod help_defaults;
mod score_input;
mod token_ids;

use crate::*;

pub fn fixture(name: &str) -> PathBuf {
    root().join("tests/reference/fixtures").join(name)
}

/// The first `n` records of the example (a third of its responses hold
/// non-ASCII characters, which the tiny tokenizers spell byte by byte).
pub fn example_records(scratch: &Scratch, n: usize) -> (PathBuf, Vec<serde_json::Value>) {
    let records: Vec<serde_json::Value> = read_jsonl(&example("records.jsonl")).into_iter().take(n).collect();
    let lines: String = records.iter().map(|r| format!("{r}\n")).collect();
    (scratch.write("records.jsonl", &lines), records)
}

/// One role's made-up scores two ways: `ROLE-ids.jsonl` with the response's
/// token ids (and, as vLLM returns them, the end-of-turn token the text
/// leaves out), and `ROLE-offsets.jsonl` with the same numbers at the byte
/// offsets the tokenizer's own encoding gives (the end-of-turn token at
/// `[len, len]`). `salt` varies the numbers between roles.
pub fn role_files(scratch: &Scratch, role: &str, tokenizer: &Path, records: &[serde_json::Value], salt: usize) -> (PathBuf, PathBuf) {
    let encoder = whence_encode::Encoder::open(tokenizer, &whence_encode::TemplateMode::Raw).unwrap();
    let tokenizer = encoder.tokenizer();
    let end_of_turn = tokenizer.token_to_id("<|im_end|>").unwrap();
    let (mut ids_lines, mut offsets_lines) = (String::new(), String::new());
    for (k, record) in records.iter().enumerate() {
        let response = record["response"].as_str().unwrap();
        let encoding = tokenizer.encode(response, false).unwrap();
        let mut ids = encoding.get_ids().to_vec();
        let mut offsets = encoding.get_offsets().to_vec();
        ids.push(end_of_turn);
        offsets.push((response.len(), response.len()));
        let logprobs: Vec<f64> = (0..ids.len()).map(|i| -(((i * 7919 + k * 104_729 + salt * 31) % 97) as f64) / 20.0 - 0.001).collect();
        let id = &record["id"];
        ids_lines.push_str(&format!("{}\n", serde_json::json!({"id": id, "token_ids": ids, "logprobs": logprobs})));
        offsets_lines.push_str(&format!("{}\n", serde_json::json!({"id": id, "offsets": offsets, "logprobs": logprobs})));
    }
    (scratch.write(&format!("{role}-ids.jsonl"), &ids_lines), scratch.write(&format!("{role}-offsets.jsonl"), &offsets_lines))
}
