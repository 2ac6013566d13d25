//! `whence demo --experiment`: the paper's Table 1 and Table 3 in
//! miniature. The same student is distilled on the same number of teacher
//! responses (one per training question) chosen by each strategy, once per
//! seed, and each distilled model answers every held-out question; then
//! `teacher-count` again with β set around the one its search picked.
//!
//! A seed sets the fine-tuning's batch order and the held-out sampling
//! (and, for `random`, the choice itself); the other strategies choose the
//! same responses for every seed, so their spread is that of training and
//! sampling alone. Rows are compared with `random` paired by seed and
//! question (see [`whence_world::summary::Experiment`]).

use std::collections::HashMap;
use std::path::Path;

use whence_core::{Strategy, Threshold};
use whence_pipeline::select::run_select;
use whence_pipeline::BetaChoice;
use whence_score::Scorer;
use whence_world::summary::{Experiment, ExperimentRow, QuestionAccuracies};

use crate::{distil, select_settings, stages, DemoError, DemoProgress, World};

/// The strategies compared, in the table's order (`random` first: the baseline).
pub const STRATEGIES: [Strategy; 6] =
    [Strategy::Random, Strategy::Grape, Strategy::TeacherCount, Strategy::TeacherRatio, Strategy::Longest, Strategy::MinTeacherCount];

/// The β of the ablation rows: 0.05 below and above the searched one (half
/// of it instead when that would not be positive).
pub fn beta_variants(searched: f64) -> Vec<f64> {
    let below = if searched - 0.05 > 0.0 { searched - 0.05 } else { searched / 2.0 };
    vec![below, (searched + 0.05).min(1.0)]
}

/// What one row's runs gave.
struct Arm {
    accuracies: QuestionAccuracies,
    beta: f64,
    kept: (f64, f64, f64),
}

struct Context<'a> {
    world: &'a World,
    candidates: &'a whence_io::RecordSet,
    correct: HashMap<&'a str, bool>,
    dir: &'a Path,
}

/// Per question (in the held-out order), the share of `responses`' samples that are right.
fn question_accuracies(world: &World, responses: &whence_io::RecordSet) -> Vec<f64> {
    let mut tally: HashMap<&str, (usize, usize)> = HashMap::new();
    for r in &responses.records {
        let right = stages::is_correct(r);
        let entry = tally.entry(r.question_id.as_str()).or_default();
        entry.0 += usize::from(right);
        entry.1 += 1;
    }
    world.heldout_questions.iter().map(|q| tally.get(q.id.as_str()).map_or(0.0, |&(right, all)| right as f64 / all.max(1) as f64)).collect()
}

fn arm(
    context: &Context<'_>,
    strategy: Strategy,
    beta: BetaChoice,
    teacher: &mut dyn Scorer,
    student: &mut dyn Scorer,
    progress: &dyn DemoProgress,
) -> Result<Arm, DemoError> {
    let world = context.world;
    let seeds = &world.plan.experiment_seeds;
    let mut per_seed: Vec<Vec<f64>> = Vec::with_capacity(seeds.len());
    let (mut teacher_actions, mut actions, mut kept_correct, mut kept) = (0usize, 0usize, 0usize, 0usize);
    let mut used_beta = 0.0;
    let name = match beta {
        BetaChoice::Auto => strategy.as_str().to_string(),
        BetaChoice::Fixed(b) => format!("{}-beta{:.3}", strategy.as_str(), b.value()),
    };
    for &seed in seeds {
        progress.stage(&format!("experiment: {name} (seed {seed})"));
        let settings = whence_pipeline::select::SelectSettings { beta, ..select_settings(strategy, seed) };
        let selected = run_select(context.candidates.clone(), teacher, student, &settings, progress)?;
        used_beta = selected.summary.beta;
        for question in &selected.summary.per_question {
            if let Some(c) = question.candidates.iter().find(|c| c.id == question.kept) {
                teacher_actions += c.teacher;
                actions += c.actions;
                kept_correct += usize::from(context.correct.get(c.id.as_str()).copied().unwrap_or(false));
                kept += 1;
            }
        }
        let distilled = distil(world, &selected, seed, &format!("teacher samples chosen by {name}"), progress)?;
        let out = context.dir.join(format!("{name}-{seed}.jsonl"));
        let responses = stages::sample(
            &distilled.dir,
            &world.heldout_questions,
            &world.heldout_questions_path,
            world.plan.sampling.experiment_heldout,
            seed,
            &world.plan.sampling,
            &world.cache,
            &out,
            progress,
        )?;
        per_seed.push(question_accuracies(world, &responses));
    }
    let questions = world.heldout_questions.len();
    let accuracies = (0..questions).map(|q| per_seed.iter().map(|seed| seed[q]).collect()).collect();
    let per = |n: usize| if kept == 0 { 0.0 } else { n as f64 / kept as f64 };
    Ok(Arm { accuracies, beta: used_beta, kept: (per(teacher_actions), per(actions), per(kept_correct)) })
}

pub fn run(
    world: &World,
    candidates: &whence_io::RecordSet,
    teacher: &mut dyn Scorer,
    student: &mut dyn Scorer,
    dir: &Path,
    progress: &dyn DemoProgress,
) -> Result<Experiment, DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    let correct = candidates.records.iter().map(|r| (r.id.as_str(), stages::is_correct(r))).collect();
    let context = Context { world, candidates, correct, dir };
    let seeds = world.plan.experiment_seeds.clone();
    let mut arms: Vec<(String, Arm)> = Vec::new();
    for strategy in STRATEGIES {
        let arm = arm(&context, strategy, BetaChoice::Auto, teacher, student, progress)?;
        arms.push((strategy.as_str().to_string(), arm));
    }
    let searched = arms.iter().find(|(name, _)| name == Strategy::TeacherCount.as_str()).map(|(_, arm)| arm.beta);
    if let Some(searched) = searched {
        for beta in beta_variants(searched) {
            let fixed = BetaChoice::Fixed(Threshold::new(beta).map_err(|e| DemoError::Model(e.to_string()))?);
            let arm = arm(&context, Strategy::TeacherCount, fixed, teacher, student, progress)?;
            arms.push((format!("teacher-count (β {beta:.3})"), arm));
        }
    }
    let baseline = arms.first().map(|(_, arm)| arm.accuracies.clone());
    let rows = arms
        .iter()
        .enumerate()
        .map(|(i, (name, arm))| {
            let baseline = if i == 0 { None } else { baseline.as_ref() };
            ExperimentRow::new(name.clone(), Some(arm.beta), seeds.clone(), &arm.accuracies, baseline, arm.kept)
        })
        .collect();
    Ok(Experiment {
        training_responses: world.train_questions.len(),
        heldout_questions: world.heldout_questions.len(),
        samples_per_question: world.plan.sampling.experiment_heldout,
        searched_beta: searched,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beta_variants_surround_the_searched_beta() {
        assert_eq!(beta_variants(0.15).len(), 2);
        assert!((beta_variants(0.15)[0] - 0.10).abs() < 1e-12 && (beta_variants(0.15)[1] - 0.20).abs() < 1e-12);
        assert!((beta_variants(0.05)[0] - 0.025).abs() < 1e-12);
        assert_eq!(beta_variants(0.99)[1], 1.0);
    }
}
