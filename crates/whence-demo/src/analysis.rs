//! What the demo measures beyond the method's own outputs: whether models
//! read their question, and the paper's correctness analysis (its Fig. 3 and
//! the relation between a response's teacher share and its correctness).

use std::collections::HashMap;

use whence_core::profile::PositionProfile;
use whence_core::Label;
use whence_core::Record;
use whence_io::{Column, Table};
use whence_world::summary::{CorrectnessAnalysis, CorrectnessPosition, PositionShares, QuestionReading, ShareQuartile};
use whence_world::Problem;

/// The words of `text`: maximal runs of letters and digits.
fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty())
}

/// How often `responses` carry their question's name, item and start count.
pub fn question_reading(model: &str, responses: &[Record], problems: &[Problem]) -> QuestionReading {
    let by_id: HashMap<&str, &Problem> = problems.iter().map(|p| (p.id.as_str(), p)).collect();
    let mut reading = QuestionReading { model: model.to_string(), responses: 0, name: 0, item: 0, start: 0, all: 0 };
    for record in responses {
        let Some(problem) = by_id.get(record.question_id.as_str()) else { continue };
        let start = problem.start.to_string();
        let (mut name, mut item, mut has_start) = (false, false, false);
        for word in words(&record.response) {
            name |= word == problem.name;
            item |= word == problem.item;
            has_start |= word == start;
        }
        reading.responses += 1;
        reading.name += usize::from(name);
        reading.item += usize::from(item);
        reading.start += usize::from(has_start);
        reading.all += usize::from(name && item && has_start);
    }
    reading
}

/// The correctness analysis of a trace: its position profile's correct and
/// incorrect groups, and the responses' teacher shares against correctness.
pub fn correctness(profile: &PositionProfile, trajectories: &Table) -> CorrectnessAnalysis {
    let slot = |label: Label| profile.labels.iter().position(|&l| l == label);
    let shares = |group: &whence_core::profile::LabelFractions| {
        let fraction = |label| slot(label).and_then(|i| group.fractions.get(i).copied()).unwrap_or(0.0);
        PositionShares {
            n: group.n,
            teacher: fraction(Label::Teacher),
            boosted: fraction(Label::Boosted),
            student: fraction(Label::Student),
            shared: fraction(Label::Shared),
        }
    };
    let positions = profile
        .rows
        .iter()
        .filter(|row| row.correct.n + row.incorrect.n > 0)
        .map(|row| CorrectnessPosition { index: row.index, correct: shares(&row.correct), incorrect: shares(&row.incorrect) })
        .collect();
    let (Some(Column::Text(ids)), Some(Column::Boolean(correct)), Some(Column::Float(teacher_share))) =
        (trajectories.column("id"), trajectories.column("correct"), trajectories.column("share_teacher"))
    else {
        return CorrectnessAnalysis { profile: positions, ..CorrectnessAnalysis::default() };
    };
    let mut responses: Vec<(f64, &str, bool)> = ids
        .iter()
        .zip(correct)
        .zip(teacher_share)
        .filter_map(|((id, correct), share)| Some(((*share)?, id.as_deref().unwrap_or(""), (*correct)?)))
        .collect();
    responses.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let mean = |right: bool| {
        let shares: Vec<f64> = responses.iter().filter(|r| r.2 == right).map(|r| r.0).collect();
        (!shares.is_empty()).then(|| shares.iter().sum::<f64>() / shares.len() as f64)
    };
    let n = responses.len();
    let mut quartiles = Vec::new();
    let mut start = 0;
    for quartile in 0..4 {
        let size = n / 4 + usize::from(quartile < n % 4);
        let part = &responses[start..start + size];
        start += size;
        if part.is_empty() {
            continue;
        }
        let right = part.iter().filter(|r| r.2).count();
        quartiles.push(ShareQuartile {
            quartile: quartile + 1,
            low: part[0].0,
            high: part[part.len() - 1].0,
            responses: part.len(),
            correct: right,
            accuracy: right as f64 / part.len() as f64,
        });
    }
    let correct_count = responses.iter().filter(|r| r.2).count();
    CorrectnessAnalysis {
        responses: n,
        correct: correct_count,
        incorrect: n - correct_count,
        mean_teacher_share_correct: mean(true),
        mean_teacher_share_incorrect: mean(false),
        quartiles,
        profile: positions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use whence_core::profile::{position_profile, ProfileInput};
    use whence_core::{Prompt, SourceLocation};

    fn record(question: &str, response: &str) -> Record {
        Record {
            id: format!("{question}#0"),
            question_id: question.into(),
            prompt: Prompt::Text(String::new()),
            response: response.into(),
            correct: None,
            answer: None,
            source: SourceLocation { file: "t".into(), line: None, row: None },
        }
    }

    #[test]
    fn reading_counts_whole_words_only() {
        let problems = whence_world::problems(&whence_world::WorldSettings::tiny(1), whence_world::Split::Heldout);
        let p = &problems[0];
        let good = format!("We need to find how many {} {} has. {} + 1 = 9.", p.item, p.name, p.start);
        let partial = format!("{}s {}x {}0", p.name, p.item, p.start);
        let set = [record(&p.id, &good), record(&p.id, &partial), record("unknown", &good)];
        let reading = question_reading("m", &set, &problems);
        assert_eq!((reading.responses, reading.name, reading.item, reading.start, reading.all), (2, 1, 1, 1, 1));
    }

    #[test]
    fn quartiles_rank_responses_by_teacher_share() {
        let mut table = Table::new();
        let ids: Vec<Option<String>> = (0..9).map(|i| Some(format!("r{i}"))).collect();
        let shares = [0.9, 0.1, 0.5, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4].map(Some).to_vec();
        let correct = shares.iter().map(|s| Some(s.unwrap() >= 0.5)).collect();
        table.push("id", Column::Text(ids)).push("correct", Column::Boolean(correct)).push("share_teacher", Column::Float(shares));
        let labels = [Label::Teacher, Label::Student];
        let profile = position_profile(
            &[
                ProfileInput { labels: &labels, correct: Some(true), new_tokens: &[1, 1] },
                ProfileInput { labels: &labels[1..], correct: Some(false), new_tokens: &[1] },
            ],
            &[Label::Teacher, Label::Student, Label::Shared, Label::Boosted],
            4096,
        );
        let analysis = correctness(&profile, &table);
        assert_eq!((analysis.responses, analysis.correct, analysis.incorrect), (9, 5, 4));
        let sizes: Vec<usize> = analysis.quartiles.iter().map(|q| q.responses).collect();
        assert_eq!(sizes, [3, 2, 2, 2]);
        assert_eq!((analysis.quartiles[0].low, analysis.quartiles[0].high, analysis.quartiles[0].correct), (0.1, 0.3, 0));
        assert_eq!((analysis.quartiles[3].low, analysis.quartiles[3].high, analysis.quartiles[3].accuracy), (0.8, 0.9, 1.0));
        assert!((analysis.mean_teacher_share_correct.unwrap() - 0.7).abs() < 1e-12);
        assert!((analysis.mean_teacher_share_incorrect.unwrap() - 0.25).abs() < 1e-12);
        assert_eq!(analysis.profile[0].correct.teacher, 1.0);
        assert_eq!(analysis.profile[0].incorrect.student, 1.0);
        assert_eq!(analysis.profile[1].incorrect.n, 0);
    }
}
