//! `whence generate` in-process on the tiny reference checkpoints: output
//! format, determinism across thread counts, resuming from the cache,
//! `--logprobs` against `whence score`, stops, and bad input.

use crate::*;

fn fixture(name: &str) -> String {
    root().join("tests/reference/fixtures").join(name).display().to_string()
}

/// Questions: text prompts with answers, and a chat prompt.
fn questions(scratch: &Scratch, n: usize) -> PathBuf {
    let mut lines = String::new();
    for i in 0..n {
        let record = if i % 3 == 2 {
            serde_json::json!({"id": format!("q{i}"), "messages": [
                {"role": "system", "content": "Think step by step."},
                {"role": "user", "content": format!("What is {i} times {i}?")}]})
        } else {
            serde_json::json!({"id": format!("q{i}"), "prompt": format!("Problem {i}: what is {i} + {}?", i + 1), "answer": format!("{}", 2 * i + 1)})
        };
        lines.push_str(&record.to_string());
        lines.push('\n');
    }
    scratch.write("questions.jsonl", &lines)
}

fn generate_args(model: &str, input: &Path, out: &Path, extra: &[&str]) -> Vec<String> {
    let mut args = vec!["-q".to_string(), "generate".into(), model.to_string(), "-i".into(), input.display().to_string()];
    args.extend(["-o".into(), out.display().to_string()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn generate_writes_records_that_trace_reads() {
    let scratch = Scratch::new("generate-trace");
    let input = questions(&scratch, 4);
    let out = scratch.join("responses.jsonl");
    let args = generate_args(
        &fixture("tiny-qwen2"),
        &input,
        &out,
        &["--samples", "3", "--max-new-tokens", "24", "--seed", "7", "--top-p", "0.95", "--top-k", "50", "--no-cache"],
    );
    ok(whence(&args));
    let records = read_jsonl(&out);
    assert_eq!(records.len(), 12);
    for (n, record) in records.iter().enumerate() {
        let (question, k) = (n / 3, n % 3);
        assert_eq!(record["id"], format!("q{question}#{k}"));
        assert_eq!(record["question_id"], format!("q{question}"));
        let keys: Vec<&str> = record.as_object().unwrap().keys().map(String::as_str).collect();
        if question % 3 == 2 {
            assert_eq!(keys, ["id", "question_id", "messages", "response", "finish_reason", "tokens"]);
            assert_eq!(record["messages"][1]["content"], format!("What is {question} times {question}?"));
        } else {
            assert_eq!(keys, ["id", "question_id", "prompt", "response", "answer", "finish_reason", "tokens"]);
        }
        assert!(record["finish_reason"] == "stop" || record["finish_reason"] == "length");
        assert!(record["tokens"].as_u64().unwrap() <= 24);
    }
    // Samples of one question differ (temperature 1).
    assert_ne!(records[0]["response"], records[1]["response"]);
    let summary = read_json(&scratch.join("responses.jsonl.summary.json"));
    assert_eq!(summary["samples"], 12);
    assert_eq!(summary["questions"], 4);
    assert_eq!(summary["settings"]["top_k"], 50);
    assert_eq!(summary["settings"]["stop_token_ids"], serde_json::json!([1002]));
    assert_eq!(summary["model"]["kind"], "checkpoint");
    assert!(summary["tokens_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(summary["kv_cache_bytes_per_token"], 2 * 2 * 2 * 16 * 4);

    // The responses trace like any others (three checkpoints, β auto).
    let trace_out = scratch.join("trace");
    ok(whence([
        "-q",
        "trace",
        out.to_str().unwrap(),
        "--teacher",
        &fixture("tiny-qwen3"),
        "--student",
        &fixture("tiny-qwen2"),
        "--distilled",
        &fixture("tiny-qwen2"),
        "--format",
        "jsonl",
        "--no-cache",
        "--out",
        trace_out.to_str().unwrap(),
    ]));
    let summary = read_json(&trace_out.join("summary.json"));
    assert_eq!(summary["trajectories"], 12);
    assert_eq!(summary["correctness"]["graded_from_answer"], 9);
}

#[test]
fn same_seed_same_bytes_for_one_and_two_threads() {
    let scratch = Scratch::new("generate-threads");
    let input = questions(&scratch, 3);
    let run = |name: &str, threads: &str, seed: &str| {
        let out = scratch.join(name);
        let extra = ["--samples", "2", "--max-new-tokens", "30", "--seed", seed, "--threads", threads, "--no-cache", "--logprobs"];
        let mut args = generate_args(&fixture("tiny-llama3"), &input, &out, &extra);
        args.push(scratch.join(&format!("{name}.logprobs")).display().to_string());
        ok(whence(&args));
        (std::fs::read(&out).unwrap(), std::fs::read(scratch.join(&format!("{name}.logprobs"))).unwrap())
    };
    let one = run("one.jsonl", "1", "3");
    let two = run("two.jsonl", "2", "3");
    assert!(one == two, "1 and 2 threads differ");
    let other_seed = run("other.jsonl", "2", "4");
    assert_ne!(one.0, other_seed.0, "another seed gives the same samples");
}

#[test]
fn greedy_samples_are_all_the_argmax_continuation() {
    let scratch = Scratch::new("generate-greedy");
    let input = questions(&scratch, 2);
    let out = scratch.join("greedy.jsonl");
    ok(whence(&generate_args(
        &fixture("tiny-qwen3"),
        &input,
        &out,
        &["--samples", "3", "--temperature", "0", "--max-new-tokens", "16", "--no-cache"],
    )));
    let records = read_jsonl(&out);
    for question in records.chunks(3) {
        assert!(question.iter().all(|r| r["response"] == question[0]["response"]), "greedy samples differ: {question:?}");
    }
    // Greedy does not depend on the seed.
    let again = scratch.join("greedy-seed.jsonl");
    ok(whence(&generate_args(
        &fixture("tiny-qwen3"),
        &input,
        &again,
        &["--samples", "3", "--temperature", "0", "--max-new-tokens", "16", "--seed", "99", "--no-cache"],
    )));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&again).unwrap());
}

/// `--batch-rows` decodes several questions together; on the tiny
/// checkpoints the records are those of one question at a time.
#[test]
fn questions_decoded_together_give_the_same_records() {
    let scratch = Scratch::new("generate-batch-rows");
    let input = questions(&scratch, 9);
    let extra = ["--samples", "3", "--temperature", "0.7", "--max-new-tokens", "12", "--no-cache"];
    let alone = scratch.join("alone.jsonl");
    ok(whence(&generate_args(&fixture("tiny-llama2"), &input, &alone, &extra)));
    let together = scratch.join("together.jsonl");
    let mut args = generate_args(&fixture("tiny-llama2"), &input, &together, &extra);
    args.extend(["--batch-rows".to_string(), "8".to_string()]);
    ok(whence(&args));
    assert_eq!(std::fs::read_to_string(&alone).unwrap(), std::fs::read_to_string(&together).unwrap());
    let mut args = generate_args(&fixture("tiny-llama2"), &input, &together, &extra);
    args.extend(["--batch-rows".to_string(), "0".to_string()]);
    let output = whence(&args);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn an_interrupted_run_resumes_from_the_cache_with_the_same_output() {
    let scratch = Scratch::new("generate-resume");
    let all = questions(&scratch, 6);
    // The first half, as a run stopped after three questions would have left the cache.
    let lines: Vec<String> = std::fs::read_to_string(&all).unwrap().lines().map(str::to_string).collect();
    let half = scratch.write("half.jsonl", &(lines[..3].join("\n") + "\n"));
    let cache = scratch.join("cache.sqlite");
    let extra = ["--samples", "2", "--max-new-tokens", "20", "--seed", "11", "--cache", cache.to_str().unwrap()];
    ok(whence(&generate_args(&fixture("tiny-mistral"), &half, &scratch.join("half-out.jsonl"), &extra)));
    let resumed = scratch.join("resumed.jsonl");
    ok(whence(&generate_args(&fixture("tiny-mistral"), &all, &resumed, &extra)));
    let summary = read_json(&scratch.join("resumed.jsonl.summary.json"));
    assert_eq!(summary["cached_questions"], 3, "{summary}");
    let fresh = scratch.join("fresh.jsonl");
    ok(whence(&generate_args(
        &fixture("tiny-mistral"),
        &all,
        &fresh,
        &["--samples", "2", "--max-new-tokens", "20", "--seed", "11", "--no-cache"],
    )));
    assert_eq!(std::fs::read(&resumed).unwrap(), std::fs::read(&fresh).unwrap());
    // A rerun takes everything from the cache.
    ok(whence(&generate_args(&fixture("tiny-mistral"), &all, &resumed, &extra)));
    assert_eq!(read_json(&scratch.join("resumed.jsonl.summary.json"))["cached_questions"], 6);
    assert_eq!(std::fs::read(&resumed).unwrap(), std::fs::read(&fresh).unwrap());
}

/// `generate --logprobs` then `score` on `model`: the log-probabilities agree
/// wherever the tokenizations do, and they agree exactly on the responses
/// flagged canonical.
fn logprobs_equal_whence_score_wherever_the_tokenizations_agree(model: &str) {
    let scratch = Scratch::new(&format!("generate-logprobs-{model}"));
    let input = questions(&scratch, 12);
    let out = scratch.join("responses.jsonl");
    let logprobs = scratch.join("logprobs.jsonl");
    // Short samples at a low temperature: random-weight models often draw
    // spellings the tokenizer would not make, and short ones less often.
    let extra = ["--samples", "8", "--max-new-tokens", "4", "--temperature", "0.7", "--seed", "1", "--no-cache", "--logprobs"];
    let mut args = generate_args(&fixture(model), &input, &out, &extra);
    args.push(logprobs.display().to_string());
    ok(whence(&args));
    let scored = scratch.join("scored.jsonl");
    ok(whence([
        "-q",
        "score",
        "--model",
        &fixture(model),
        "--input",
        out.to_str().unwrap(),
        "--out",
        scored.to_str().unwrap(),
        "--no-cache",
        // A sample whose few tokens end inside one character has no text
        // (SPEC §10): an empty response, which scoring skips.
        "--skip-invalid",
    ]));
    let (generated, scored) = (read_jsonl(&logprobs), read_jsonl(&scored));
    let scored: std::collections::HashMap<String, &serde_json::Value> =
        scored.iter().map(|s| (s["id"].as_str().unwrap().to_string(), s)).collect();
    // A response agrees when scoring gives the same spans and the same
    // log-probabilities (the same spans alone are not enough: a byte-
    // fallback piece and a vocabulary piece can cover the same text).
    let (mut agree, mut worst) = (0, 0f64);
    for g in &generated {
        let Some(s) = scored.get(g["id"].as_str().unwrap()) else { continue };
        if g["offsets"] != s["offsets"] {
            continue;
        }
        let differences: Vec<f64> = g["logprobs"]
            .as_array()
            .unwrap()
            .iter()
            .zip(s["logprobs"].as_array().unwrap())
            .map(|(a, b)| (a.as_f64().unwrap() - b.as_f64().unwrap()).abs())
            .collect();
        if differences.iter().all(|&d| d < 1e-4) {
            agree += 1;
            worst = differences.iter().fold(worst, |w, &d| w.max(d));
        }
    }
    let summary = read_json(&scratch.join("responses.jsonl.summary.json"));
    let non_canonical = summary["non_canonical_responses"].as_u64().unwrap() as usize;
    eprintln!(
        "{model}: --logprobs vs whence score: {agree} of {} responses scored alike (max |Δ| {worst:.2e}); {non_canonical} not canonical",
        generated.len()
    );
    assert!(agree >= 10, "{model}: only {agree} of {} responses are canonical", generated.len());
    // Canonical responses are exactly those that scoring scores alike.
    assert_eq!(agree + non_canonical, generated.len(), "{model}");
}

#[test]
fn logprobs_equal_whence_score_on_a_byte_level_tokenizer() {
    logprobs_equal_whence_score_wherever_the_tokenizations_agree("tiny-qwen2");
}

/// A SentencePiece-style tokenizer (Llama 2's layout: its decoder strips a
/// leading space): responses decoded alone lost their first space, so
/// re-scoring tokenized them otherwise (issue 21).
#[test]
fn logprobs_equal_whence_score_on_a_sentencepiece_tokenizer() {
    logprobs_equal_whence_score_wherever_the_tokenizations_agree("tiny-llama2");
}

#[test]
fn a_stop_string_ends_a_sample_before_it() {
    let scratch = Scratch::new("generate-stop");
    let input = questions(&scratch, 1);
    let out = scratch.join("free.jsonl");
    ok(whence(&generate_args(&fixture("tiny-qwen2"), &input, &out, &["--temperature", "0", "--max-new-tokens", "30", "--no-cache"])));
    let free = read_jsonl(&out)[0]["response"].as_str().unwrap().to_string();
    // A stop string from the middle of the greedy continuation.
    let chars: Vec<char> = free.chars().collect();
    let stop: String = chars[chars.len() / 2..chars.len() / 2 + 3].iter().collect();
    let cut = free.find(&stop).unwrap();
    let stopped = scratch.join("stopped.jsonl");
    ok(whence(&generate_args(
        &fixture("tiny-qwen2"),
        &input,
        &stopped,
        &["--temperature", "0", "--max-new-tokens", "30", "--no-cache", "--stop", &stop],
    )));
    let record = &read_jsonl(&stopped)[0];
    assert_eq!(record["response"].as_str().unwrap(), &free[..cut], "stop {stop:?}");
    assert_eq!(record["finish_reason"], "stop");
}

#[test]
fn bad_generate_input_is_a_clear_error_and_writes_nothing() {
    let scratch = Scratch::new("generate-bad");
    let input = questions(&scratch, 2);
    let out = scratch.join("out.jsonl");
    let model = fixture("tiny-qwen2");
    let fails = |extra: &[&str], code: i32, want: &str| {
        let output = whence(&generate_args(&model, &input, &out, extra));
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{extra:?}: {message}");
        assert!(message.contains(want), "{extra:?}: {message} should say {want}");
        assert!(!out.exists(), "{extra:?} left an output");
    };
    fails(&["--samples", "0"], 2, "--samples 0");
    fails(&["--temperature", "-1"], 2, "temperature `-1` must be a finite number ≥ 0");
    fails(&["--top-p", "1.5"], 2, "top_p `1.5` must be in (0, 1]");
    fails(&["--top-k", "-3"], 2, "top_k `-3`");
    fails(&["--max-new-tokens", "0"], 2, "--max-new-tokens 0");
    // tiny-qwen2's context is 512 tokens.
    fails(&["--max-new-tokens", "600", "--no-cache"], 2, "exceed the model's context of 512 tokens");
    let template = scratch.write("bad.jinja", "{{ raise_exception('this template refuses') }}");
    fails(&["--template", template.to_str().unwrap(), "--no-cache"], 2, "this template refuses");
    let output = whence([
        "generate",
        &format!("file:{}", example("teacher.jsonl").display()),
        "-i",
        input.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("cannot generate"), "{}", stderr(&output));
    // A prompt longer than the context is that question's error: skippable.
    let long = format!("{{\"id\": \"long\", \"prompt\": \"{}\"}}\n", "word ".repeat(600));
    let mixed = scratch.write("mixed.jsonl", &(long + &std::fs::read_to_string(&input).unwrap()));
    let output = whence(&generate_args(&model, &mixed, &out, &["--max-new-tokens", "8", "--no-cache"]));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("mixed.jsonl:1") && stderr(&output).contains("hint: pass --skip-invalid"), "{}", stderr(&output));
    assert!(!out.exists());
    ok(whence(&generate_args(&model, &mixed, &out, &["--max-new-tokens", "8", "--no-cache", "--skip-invalid"])));
    assert_eq!(read_jsonl(&out).len(), 2);
    let summary = read_json(&scratch.join("out.jsonl.summary.json"));
    assert_eq!(summary["skipped_questions"], 1);
    assert!(summary["skipped"][0]["reason"].as_str().unwrap().contains("exceed the model's context"));
}
