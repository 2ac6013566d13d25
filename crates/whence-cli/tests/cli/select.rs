use crate::*;

fn select_example(out: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args: Vec<String> = vec![
        "select".into(),
        example("records.jsonl").display().to_string(),
        "--teacher".into(),
        format!("file:{}", example("teacher.jsonl").display()),
        "--student".into(),
        format!("file:{}", example("student.jsonl").display()),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    ok(whence(&args));
    let mut summary = out.as_os_str().to_os_string();
    summary.push(".summary.json");
    read_json(Path::new(&summary))
}

#[test]
fn every_strategy_keeps_one_original_line_per_question() {
    let scratch = Scratch::new("select");
    let input = std::fs::read_to_string(example("records.jsonl")).unwrap();
    let input_lines: Vec<&str> = input.lines().collect();
    for strategy in ["teacher-count", "teacher-ratio", "longest", "min-teacher-count", "random", "grape"] {
        let out = scratch.join(&format!("{strategy}.jsonl"));
        let summary = select_example(&out, &["--strategy", strategy]);
        let kept = std::fs::read_to_string(&out).unwrap();
        let kept: Vec<&str> = kept.lines().collect();
        assert_eq!(kept.len(), summary["questions"].as_u64().unwrap() as usize);
        for line in &kept {
            assert!(input_lines.contains(line), "{strategy}: kept line is not an input line byte for byte");
        }
        // The kept id of every question is the one the strategy's statistic says.
        for question in summary["per_question"].as_array().unwrap() {
            let candidates = question["candidates"].as_array().unwrap();
            let key = |c: &serde_json::Value| -> f64 {
                match strategy {
                    "teacher-count" => c["teacher"].as_f64().unwrap(),
                    "teacher-ratio" => c["teacher_ratio"].as_f64().unwrap(),
                    "longest" => c["actions"].as_f64().unwrap(),
                    "min-teacher-count" => -c["teacher"].as_f64().unwrap(),
                    "grape" => c["student_mean_logprob"].as_f64().unwrap_or(f64::NEG_INFINITY),
                    _ => 0.0,
                }
            };
            if strategy != "random" {
                let best = candidates.iter().map(key).fold(f64::NEG_INFINITY, f64::max);
                let first_best = candidates.iter().find(|c| key(c) == best).unwrap();
                assert_eq!(question["kept"], first_best["id"], "{strategy}");
            }
        }
        assert_eq!(summary["strategy"], strategy);
    }
}

#[test]
fn random_is_reproducible_from_the_seed() {
    let scratch = Scratch::new("select-random");
    let a = select_example(&scratch.join("a.jsonl"), &["--strategy", "random", "--seed", "5"]);
    let b = select_example(&scratch.join("b.jsonl"), &["--strategy", "random", "--seed", "5"]);
    let c = select_example(&scratch.join("c.jsonl"), &["--strategy", "random", "--seed", "6"]);
    assert_eq!(std::fs::read(scratch.join("a.jsonl")).unwrap(), std::fs::read(scratch.join("b.jsonl")).unwrap());
    assert_eq!(a["seed"], 5);
    let kept = |s: &serde_json::Value| s["per_question"].as_array().unwrap().iter().map(|q| q["kept"].clone()).collect::<Vec<_>>();
    assert_eq!(kept(&a), kept(&b));
    assert_ne!(kept(&a), kept(&c));
}

#[test]
fn before_training_beta_search_covers_up_to_one() {
    let scratch = Scratch::new("select-beta");
    let summary = select_example(&scratch.join("kept.jsonl"), &[]);
    assert_eq!(summary["beta_search"]["settings"]["steps"], 20);
    assert_eq!(summary["beta_search"]["settings"]["stage"], "before-training");
}
