//! `whence demo --experiment`: the paper's Table 1 and ablation in
//! miniature. The same student is distilled on the same number of teacher
//! responses (one per training question) chosen by each strategy, once per
//! seed, and each distilled model answers the held-out questions.
//!
//! A seed sets the fine-tuning's batch order and the held-out sampling
//! (and, for `random`, the choice itself); the other strategies choose the
//! same responses for every seed, so their spread is that of training and
//! sampling alone.

use std::collections::HashMap;
use std::path::Path;

use whence_core::Strategy;
use whence_pipeline::select::run_select;
use whence_score::Scorer;
use whence_world::summary::{Experiment, ExperimentRow};

use crate::{distil, select_settings, stages, DemoError, DemoProgress, World};

/// The strategies compared, in the table's order.
pub const STRATEGIES: [Strategy; 5] =
    [Strategy::Random, Strategy::Grape, Strategy::TeacherCount, Strategy::Longest, Strategy::MinTeacherCount];

pub fn run(
    world: &World,
    candidates: &whence_io::RecordSet,
    teacher: &mut dyn Scorer,
    student: &mut dyn Scorer,
    dir: &Path,
    progress: &dyn DemoProgress,
) -> Result<Experiment, DemoError> {
    std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    let correct: HashMap<&str, bool> = candidates
        .records
        .iter()
        .map(|r| {
            (
                r.id.as_str(),
                r.answer.as_deref().is_some_and(|a| whence_grade::grade(&r.response, a, whence_grade::Fallback::default()).correct),
            )
        })
        .collect();
    let mut rows = Vec::new();
    let mut training_responses = 0;
    for strategy in STRATEGIES {
        let mut accuracies = Vec::new();
        let (mut teacher_actions, mut actions, mut kept_correct, mut kept) = (0usize, 0usize, 0usize, 0usize);
        for &seed in &world.plan.experiment_seeds {
            progress.stage(&format!("experiment: {} (seed {seed})", strategy.as_str()));
            let selected = run_select(candidates.clone(), teacher, student, &select_settings(strategy, seed), progress)?;
            for question in &selected.summary.per_question {
                if let Some(c) = question.candidates.iter().find(|c| c.id == question.kept) {
                    teacher_actions += c.teacher;
                    actions += c.actions;
                    kept_correct += usize::from(correct.get(c.id.as_str()).copied().unwrap_or(false));
                    kept += 1;
                }
            }
            training_responses = selected.summary.kept;
            let distilled = distil(world, &selected, seed, &format!("teacher samples chosen by {}", strategy.as_str()), progress)?;
            let out = dir.join(format!("{}-{seed}.jsonl", strategy.as_str()));
            let responses = stages::sample(
                &distilled.dir,
                &world.heldout_questions,
                &world.heldout_questions_path,
                world.plan.sampling.heldout,
                seed,
                &world.plan.sampling,
                &world.cache,
                &out,
                progress,
            )?;
            accuracies.push(stages::accuracy(strategy.as_str(), &responses).accuracy);
        }
        let per = |n: usize| if kept == 0 { 0.0 } else { n as f64 / kept as f64 };
        rows.push(ExperimentRow::new(
            strategy.as_str().to_string(),
            world.plan.experiment_seeds.clone(),
            accuracies,
            per(teacher_actions),
            per(actions),
            per(kept_correct),
        ));
    }
    Ok(Experiment {
        training_responses,
        heldout_questions: world.heldout_questions.len(),
        samples_per_question: world.plan.sampling.heldout,
        rows,
    })
}
