//! Questions decoded together ([`CheckpointGenerator::with_batch_rows`])
//! against one question at a time, on the tiny reference checkpoints:
//! mixed prompt lengths, samples that stop at different steps, stop strings.

use std::path::PathBuf;

use whence_checkpoint::CheckpointOptions;
use whence_generate::{CheckpointGenerator, Generator, Job, JobResult, Request, Sample};
use whence_sample::{SamplingParams, Temperature, TopK, TopP};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/reference/fixtures").join(name)
}

fn jobs(generator: &CheckpointGenerator, temperature: f64) -> Vec<Job> {
    let texts = ["a", "The cat sat on the mat and looked around the room.", "1 2 3", "Once upon a time, far away", "x y"];
    texts
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let prompt = generator.encoder().tokenizer().encode(*text, false).unwrap().get_ids().to_vec();
            Job {
                prompt,
                request: Request {
                    samples: 1 + i % 3,
                    params: SamplingParams { temperature: Temperature::new(temperature).unwrap(), top_p: TopP::ALL, top_k: TopK::ALL },
                    request_seed: 1000 + i as u64,
                    max_new_tokens: 6 + 5 * i,
                    stop: if i == 3 { vec!["e".into()] } else { vec![] },
                    // Token 5 ends a sample, so samples stop at different steps.
                    stop_token_ids: vec![5, 17],
                },
                location: format!("question {i}"),
            }
        })
        .collect()
}

fn run(generator: &mut CheckpointGenerator, jobs: &[Job]) -> Vec<Vec<Sample>> {
    let mut out: Vec<Option<JobResult>> = (0..jobs.len()).map(|_| None).collect();
    generator.generate_many(jobs, &mut |index, result| out[index] = Some(result));
    out.into_iter().map(|r| r.expect("every job answered").expect("generated")).collect()
}

#[test]
fn batched_questions_draw_what_each_question_draws_alone() {
    for name in ["tiny-qwen2", "tiny-llama3", "tiny-mistral", "tiny-qwen3", "tiny-llama2"] {
        for temperature in [0.0, 1.0] {
            let mut alone = CheckpointGenerator::open(&fixture(name), CheckpointOptions::default()).unwrap();
            let jobs = jobs(&alone, temperature);
            let one_by_one = run(&mut alone, &jobs);
            for rows in [2, 4, 64] {
                let mut together = CheckpointGenerator::open(&fixture(name), CheckpointOptions::default()).unwrap().with_batch_rows(rows);
                let batched = run(&mut together, &jobs);
                assert_eq!(batched.len(), one_by_one.len());
                for (q, (a, b)) in one_by_one.iter().zip(&batched).enumerate() {
                    assert_eq!(a.len(), b.len(), "{name} question {q}");
                    for (x, y) in a.iter().zip(b) {
                        assert_eq!(x.tokens, y.tokens, "{name} T={temperature} rows={rows} question {q}");
                        assert_eq!(x.finish_reason, y.finish_reason);
                        for (p, r) in x.logprobs.iter().zip(&y.logprobs) {
                            assert!((p - r).abs() < 1e-4, "{name} question {q}: {p} vs {r}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_bad_prompt_fails_its_question_only() {
    let mut generator = CheckpointGenerator::open(&fixture("tiny-qwen2"), CheckpointOptions::default()).unwrap().with_batch_rows(64);
    let mut jobs = jobs(&generator, 1.0);
    jobs[1].prompt = vec![u32::MAX];
    jobs[2].prompt = vec![];
    let mut results: Vec<Option<JobResult>> = (0..jobs.len()).map(|_| None).collect();
    generator.generate_many(&jobs, &mut |index, result| results[index] = Some(result));
    let results: Vec<JobResult> = results.into_iter().map(Option::unwrap).collect();
    assert!(results[0].is_ok() && results[3].is_ok() && results[4].is_ok());
    assert!(results[1].as_ref().unwrap_err().to_string().contains("outside the model's vocabulary"), "{:?}", results[1]);
    assert!(results[2].as_ref().unwrap_err().to_string().contains("no tokens"), "{:?}", results[2]);
}
