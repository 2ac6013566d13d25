//! Segment + align + classify throughput on a synthetic benchmark input
//! (bench/python/make_synthetic.py), the same steps bench/python/baseline.py
//! times in Python.
//!
//! `cargo bench -p whence-pipeline --bench core_throughput -- DIR [--repeat N]`
//!
//! Loading (JSON parsing) is not timed; the core steps are, over all
//! records, N times (best run reported). Prints one JSON line, with the same
//! checksum over `id\tindex\tstart\tend\tlabel` lines as the Python baseline.

use std::path::PathBuf;
use std::time::Instant;

use sha2::{Digest, Sha256};
use whence_core::label::classify_after_distillation;
use whence_core::{AlignedResponse, Label, Segmenter, Threshold};
use whence_io::{read_records, ReadOptions};
use whence_score::{FileScorer, Scorer, TokenLogprobs};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let Some(dir) = args.first().map(PathBuf::from) else {
        eprintln!("usage: cargo bench -p whence-pipeline --bench core_throughput -- DIR [--repeat N]");
        std::process::exit(2);
    };
    let repeat: usize = args.iter().position(|a| a == "--repeat").and_then(|i| args.get(i + 1)).and_then(|n| n.parse().ok()).unwrap_or(3);

    let load_start = Instant::now();
    let set = read_records(&dir.join("records.jsonl"), &ReadOptions::default()).expect("records");
    let scores: Vec<Vec<TokenLogprobs>> = ["teacher", "student", "distilled"]
        .iter()
        .map(|role| {
            let mut scorer = FileScorer::open(&dir.join(format!("{role}.jsonl"))).expect("scorer file");
            set.records.iter().map(|r| scorer.score(r).expect("scores")).collect()
        })
        .collect();
    let load_seconds = load_start.elapsed().as_secs_f64();

    let segmenter = Segmenter::default();
    let alpha = Threshold::new(0.1).unwrap();
    let beta = Threshold::new(0.1).unwrap();
    let mut best = f64::INFINITY;
    let mut labels_of_last_run: Vec<Vec<Label>> = Vec::new();
    let mut spans_of_last_run = Vec::new();
    for _ in 0..repeat {
        let start = Instant::now();
        let mut all_labels = Vec::with_capacity(set.records.len());
        let mut all_spans = Vec::with_capacity(set.records.len());
        // Buffers reused across records, as a streaming implementation would.
        let mut actions = Vec::new();
        let mut aligned: [whence_core::ActionScores; 3] = Default::default();
        for (i, record) in set.records.iter().enumerate() {
            segmenter.segment_into(&record.response, &mut actions);
            let response = AlignedResponse::new(&record.response, &actions);
            for (m, out) in aligned.iter_mut().enumerate() {
                response.score_into(&scores[m][i].spans, &scores[m][i].logprobs, out);
            }
            let [t, s, d] = &aligned;
            let labels: Vec<Label> = (0..actions.len())
                .map(|a| match (t.probability(a), s.probability(a), d.probability(a)) {
                    (Some(pt), Some(ps), Some(pd)) => classify_after_distillation(pt, ps, pd, alpha, beta),
                    _ => Label::Unscored,
                })
                .collect();
            all_labels.push(labels);
            all_spans.push(actions.iter().map(|a| (a.span.start, a.span.end)).collect::<Vec<_>>());
        }
        best = best.min(start.elapsed().as_secs_f64());
        labels_of_last_run = all_labels;
        spans_of_last_run = all_spans;
    }

    if std::env::var_os("WHENCE_BENCH_PHASES").is_some() {
        // Each phase alone, best of `repeat` runs: where the time goes.
        let best_of = |phase: &mut dyn FnMut()| {
            (0..repeat)
                .map(|_| {
                    let start = Instant::now();
                    phase();
                    start.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min)
        };
        let segmented: Vec<_> = set.records.iter().map(|r| segmenter.segment(&r.response)).collect();
        let segment = best_of(&mut || {
            std::hint::black_box(set.records.iter().map(|r| segmenter.segment(&r.response).len()).sum::<usize>());
        });
        let mut aligned = Vec::new();
        let align = best_of(&mut || {
            aligned = set
                .records
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let response = AlignedResponse::new(&r.response, &segmented[i]);
                    [0, 1, 2].map(|m| response.score(&scores[m][i].spans, &scores[m][i].logprobs))
                })
                .collect();
        });
        let classify = best_of(&mut || {
            let mut n = 0usize;
            for [t, s, d] in &aligned {
                for a in 0..t.tokens.len() {
                    if let (Some(pt), Some(ps), Some(pd)) = (t.probability(a), s.probability(a), d.probability(a)) {
                        n += classify_after_distillation(pt, ps, pd, alpha, beta) as usize;
                    }
                }
            }
            std::hint::black_box(n);
        });
        eprintln!("phases (best of {repeat}): segment {segment:.4} s, align {align:.4} s, classify {classify:.4} s");
    }

    let mut hasher = Sha256::new();
    let mut actions = 0usize;
    let mut counts = std::collections::BTreeMap::new();
    for ((record, labels), spans) in set.records.iter().zip(&labels_of_last_run).zip(&spans_of_last_run) {
        for (index, (label, action)) in labels.iter().zip(spans).enumerate() {
            hasher.update(format!("{}\t{}\t{}\t{}\t{}\n", record.id, index, action.0, action.1, label).as_bytes());
            *counts.entry(label.as_str()).or_insert(0usize) += 1;
            actions += 1;
        }
    }
    println!(
        "{{\"trajectories\": {}, \"actions\": {}, \"labels\": {:?}, \"load_seconds\": {:.2}, \"core_seconds\": {:.3}, \"core_actions_per_second\": {:.0}, \"repeat\": {}, \"checksum\": \"{:x}\"}}",
        set.records.len(),
        actions,
        counts,
        load_seconds,
        best,
        actions as f64 / best,
        repeat,
        hasher.finalize()
    );
}
