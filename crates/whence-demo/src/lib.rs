//! `whence demo`: a small but real distillation world, trained here, where
//! the origin of every sentence is known.
//!
//! The world ([`whence_world`]) writes arithmetic word problems and
//! solutions in sentence families of known origin. This crate trains a
//! teacher, a student and a spurious second teacher from scratch on their
//! own corpora, each with its own tokenizer ([`whence_train`]); samples the
//! teachers on the training questions; distils a copy of the student on one
//! teacher response per question; samples the three models on held-out
//! questions; and runs the method on it all — `trace` (β auto), `select`,
//! `attribute` and the report — then measures the labels against the
//! sentences' true origins ([`whence_world::summary::GroundTruth`]).
//! `--experiment` repeats the distillation with each selection strategy
//! (the paper's Table 1 in miniature).
//!
//! Models are cached by a digest of everything that decides them
//! ([`models`]); samples and scores go through the score cache, so a second
//! run reads everything back.

pub mod analysis;
pub mod experiment;
pub mod findings;
pub mod models;
pub mod plan;
pub mod stages;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use whence_cache::ScoreCache;
use whence_core::{Label, Prompt, Record, Segmenter, SegmenterConfig, Strategy, Threshold};
use whence_io::{OutputFormat, RecordSet};
use whence_pipeline::attribute::{run_attribute, Candidate};
use whence_pipeline::select::{run_select, SelectOutput, SelectSettings};
use whence_pipeline::trace::{run_trace, MethodSettings, TraceScorers};
use whence_pipeline::{BetaChoice, Progress};
use whence_train::StepReport;
use whence_world::summary::{Attribution, DemoSummary, GroundTruth, SampleOrigins, SourceTruth};
use whence_world::{corpus, problems, Matcher, Split, Style};

pub use plan::{DemoPlan, Preset};

use crate::models::Trained;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error(transparent)]
    Train(#[from] whence_train::TrainError),
    #[error(transparent)]
    Generate(#[from] whence_generate::GenerateError),
    #[error(transparent)]
    Pipeline(#[from] whence_pipeline::PipelineError),
    #[error(transparent)]
    Cache(#[from] whence_cache::CacheError),
    #[error(transparent)]
    Report(#[from] whence_report::ReportError),
    #[error("{0}")]
    Model(String),
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl DemoError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DemoError::Io { path: path.display().to_string(), source }
    }
}

/// Progress of the demo's stages, drawn by the CLI: a line per stage, a
/// bar per training run (step, loss, ETA), and the pipeline's bars for
/// sampling and scoring.
pub trait DemoProgress: Progress {
    /// A stage begins.
    fn stage(&self, text: &str);
    fn training_start(&self, what: &str, steps: usize);
    fn training_step(&self, step: &StepReport);
    fn training_finish(&self);
}

/// What to run.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Where the artefacts go (`whence-demo/` by default).
    pub out: PathBuf,
    /// Where models and the demo's score cache are kept.
    pub cache: PathBuf,
    pub seed: u64,
    pub preset: Preset,
    /// Also run the selection-strategy experiment.
    pub experiment: bool,
}

/// How long a stage took.
#[derive(Debug, Clone, Serialize)]
pub struct StageTiming {
    pub stage: String,
    pub seconds: f64,
    /// Read from the caches rather than computed (models) — `null` where it does not apply.
    pub cached: Option<bool>,
}

/// What a run found and wrote.
#[derive(Debug, Clone)]
pub struct DemoOutcome {
    pub summary: DemoSummary,
    pub timings: Vec<StageTiming>,
    /// The report's `index.html`.
    pub report: PathBuf,
}

struct Timer {
    stages: Vec<StageTiming>,
    started: Instant,
}

impl Timer {
    fn new() -> Self {
        Timer { stages: Vec::new(), started: Instant::now() }
    }

    fn lap(&mut self, stage: &str, cached: Option<bool>) {
        let now = Instant::now();
        self.stages.push(StageTiming { stage: stage.to_string(), seconds: (now - self.started).as_secs_f64(), cached });
        self.started = now;
    }
}

fn pairs_of(corpus: &[(whence_world::Problem, whence_world::Solution)]) -> Vec<(String, String)> {
    corpus.iter().map(|(p, s)| (p.question(), s.text())).collect()
}

/// (prompt text, response) of records with text prompts (the world's).
pub(crate) fn record_pairs<'a>(records: impl Iterator<Item = &'a Record>) -> Vec<(String, String)> {
    records
        .map(|r| {
            let prompt = match &r.prompt {
                Prompt::Text(text) => text.clone(),
                Prompt::Chat(turns) => turns.iter().map(|t| t.content.as_str()).collect::<Vec<_>>().join("\n"),
            };
            (prompt, r.response.clone())
        })
        .collect()
}

/// The texts of the non-special actions of each response.
pub(crate) fn sentences<'a>(segmenter: &'a Segmenter, responses: &'a RecordSet) -> impl Iterator<Item = &'a str> + 'a {
    responses.records.iter().flat_map(move |r| {
        segmenter.segment(&r.response).into_iter().filter(|a| !a.special).map(move |a| &r.response[a.span.start..a.span.end])
    })
}

pub(crate) fn select_settings(strategy: Strategy, seed: u64) -> SelectSettings {
    SelectSettings { strategy, seed, beta: BetaChoice::Auto, segmentation: SegmenterConfig::default(), skip_invalid: true }
}

/// The world's models, trained or found in the cache.
pub struct World {
    pub plan: DemoPlan,
    pub teacher: Trained,
    pub student: Trained,
    pub spurious: Trained,
    pub train_questions: Vec<Record>,
    pub heldout_questions: Vec<Record>,
    pub train_questions_path: PathBuf,
    pub heldout_questions_path: PathBuf,
    pub cache: Arc<ScoreCache>,
    pub cache_dir: PathBuf,
}

/// Distils a copy of the student on the records `selected` keeps.
pub(crate) fn distil(
    world: &World,
    selected: &SelectOutput,
    seed: u64,
    what: &str,
    progress: &dyn DemoProgress,
) -> Result<Trained, DemoError> {
    let pairs = record_pairs(selected.kept_records());
    let settings = whence_train::TrainSettings { seed, ..world.plan.distill.clone() };
    models::fine_tune(&world.cache_dir, "distilled", &world.student, &settings, &pairs, what, progress)
}

/// Runs the whole demo.
pub fn run(options: &DemoOptions, progress: &dyn DemoProgress) -> Result<DemoOutcome, DemoError> {
    let plan = DemoPlan::new(options.preset, options.seed);
    let out = &options.out;
    let samples_dir = out.join("samples");
    for dir in [out, &samples_dir, &options.cache] {
        std::fs::create_dir_all(dir).map_err(|e| DemoError::io(dir, e))?;
    }
    let cache = Arc::new(ScoreCache::open(&options.cache.join("scores.sqlite"))?);
    let mut timer = Timer::new();

    progress.stage(&format!(
        "building the world: {} pretraining, {} training and {} held-out questions (seed {})",
        plan.world.pretrain_questions, plan.world.train_questions, plan.world.heldout_questions, plan.world.seed
    ));
    let train_problems = problems(&plan.world, Split::Train);
    let heldout_problems = problems(&plan.world, Split::Heldout);
    let train_questions_path = out.join("questions-train.jsonl");
    let heldout_questions_path = out.join("questions-heldout.jsonl");
    stages::write_questions(&train_questions_path, &train_problems)?;
    stages::write_questions(&heldout_questions_path, &heldout_problems)?;
    let corpus_of = |style| pairs_of(&corpus(&plan.world, Split::Pretrain, style));
    let (teacher_corpus, mut student_corpus, spurious_corpus) =
        (corpus_of(Style::Teacher), corpus_of(Style::Student), corpus_of(Style::Spurious));
    // The student also practises the single steps (one-step problems, always
    // right), as a pretrained base model knows the facts that a teacher's
    // reasoning chains: distillation must transfer the chaining, not the facts.
    student_corpus.extend(pairs_of(&corpus(&plan.world, Split::Practice, Style::Student)));
    // Every tokenizer is trained on the world's whole text (each style's
    // corpus), as real tokenizers are trained on broad text, but at its own
    // size, so the three models split text into different tokens.
    let all_text: Vec<(String, String)> = [&teacher_corpus, &student_corpus, &spurious_corpus].into_iter().flatten().cloned().collect();
    timer.lap("world", None);

    let pretrain = format!("{} pretraining questions", plan.world.pretrain_questions);
    let mut train_model = |role: &str, model_plan: &plan::ModelPlan, pairs: &[(String, String)]| -> Result<Trained, DemoError> {
        progress.stage(&format!("model: the {role}"));
        let trained_on = if role == "student" {
            format!("its own solutions of the {pretrain} and of {} one-step practice questions", plan.world.practice_questions)
        } else {
            format!("its own solutions of the {pretrain}")
        };
        let trained = models::train_from_scratch(&options.cache, role, model_plan, &all_text, pairs, &trained_on, progress)?;
        timer.lap(&format!("train {role}"), Some(trained.cached));
        Ok(trained)
    };
    let teacher = train_model("teacher", &plan.teacher, &teacher_corpus)?;
    let student = train_model("student", &plan.student, &student_corpus)?;
    let spurious = train_model("spurious", &plan.spurious, &spurious_corpus)?;
    let train_questions: Vec<Record> =
        train_problems.iter().map(|p| stages::question(p, &train_questions_path.display().to_string())).collect();
    let heldout_questions: Vec<Record> =
        heldout_problems.iter().map(|p| stages::question(p, &heldout_questions_path.display().to_string())).collect();
    let world = World {
        plan: plan.clone(),
        teacher,
        student,
        spurious,
        train_questions,
        heldout_questions,
        train_questions_path,
        heldout_questions_path,
        cache: cache.clone(),
        cache_dir: options.cache.clone(),
    };
    let sampling = &plan.sampling;
    let sample = |role: &str, model: &Trained, split: &str, samples: usize, seed: u64, timer: &mut Timer| -> Result<RecordSet, DemoError> {
        let (questions, path) = match (split, role) {
            ("train", "spurious") => {
                (&world.train_questions[..sampling.spurious_questions.min(world.train_questions.len())], &world.train_questions_path)
            }
            ("train", _) => (&world.train_questions[..], &world.train_questions_path),
            _ => (&world.heldout_questions[..sampling.heldout_questions.min(world.heldout_questions.len())], &world.heldout_questions_path),
        };
        progress.stage(&format!("sampling the {role}: {samples} per {split} question ({} questions)", questions.len()));
        let set = stages::sample(
            &model.dir,
            questions,
            path,
            samples,
            seed,
            sampling,
            &cache,
            &samples_dir.join(format!("{role}-{split}.jsonl")),
            progress,
        )?;
        timer.lap(&format!("sample {role} ({split})"), None);
        Ok(set)
    };
    let candidates = sample("teacher", &world.teacher, "train", sampling.candidates, plan.world.seed, &mut timer)?;
    let spurious_train = sample("spurious", &world.spurious, "train", sampling.spurious, plan.world.seed, &mut timer)?;

    progress.stage("distilling: one random teacher response per training question (the paper's vanilla baseline)");
    let distil_seed = plan.experiment_seeds[0];
    let mut teacher_scorer = stages::scorer(&world.teacher.dir, &cache)?;
    let mut student_scorer = stages::scorer(&world.student.dir, &cache)?;
    let vanilla = run_select(
        candidates.clone(),
        &mut teacher_scorer,
        &mut student_scorer,
        &select_settings(Strategy::Random, distil_seed),
        progress,
    )?;
    let distilled = distil(&world, &vanilla, distil_seed, "one random teacher sample per training question", progress)?;
    timer.lap("distil", Some(distilled.cached));

    let teacher_heldout = sample("teacher", &world.teacher, "heldout", sampling.heldout, plan.world.seed, &mut timer)?;
    let student_heldout = sample("student", &world.student, "heldout", sampling.heldout, plan.world.seed, &mut timer)?;
    let distilled_heldout = sample("distilled", &distilled, "heldout", sampling.heldout, distil_seed, &mut timer)?;

    progress.stage("trace: labelling every sentence of the distilled model's held-out responses");
    let mut distilled_scorer = stages::scorer(&distilled.dir, &cache)?;
    let trace_settings = MethodSettings {
        alpha: Threshold::new(0.1).map_err(|e| DemoError::Model(e.to_string()))?,
        beta: BetaChoice::Auto,
        segmentation: SegmenterConfig::default(),
        marker_tokens: 4096,
        skip_invalid: true,
        fallback: whence_grade::Fallback::default(),
    };
    let traced = run_trace(
        distilled_heldout.clone(),
        TraceScorers { teacher: &mut teacher_scorer, student: &mut student_scorer, distilled: &mut distilled_scorer },
        &trace_settings,
        progress,
    )?;
    traced.write(out, OutputFormat::Parquet)?;
    let matcher = Matcher::new();
    let mut ground_truth = vec![SourceTruth { source: "distilled".into(), truth: ground_truth(&matcher, &traced.actions) }];
    // Controls: the teacher's and the student's own held-out responses,
    // labelled with the same three models and the β the trace chose, so
    // that each origin has sentences to check (the distilled model writes
    // few or none of the student's).
    let beta = BetaChoice::Fixed(Threshold::new(traced.summary.beta).map_err(|e| DemoError::Model(e.to_string()))?);
    for (source, responses) in [("teacher", &teacher_heldout), ("student", &student_heldout)] {
        progress.stage(&format!("trace (control): the {source}'s own held-out responses"));
        let control = run_trace(
            responses.clone(),
            TraceScorers { teacher: &mut teacher_scorer, student: &mut student_scorer, distilled: &mut distilled_scorer },
            &MethodSettings { beta, ..trace_settings.clone() },
            progress,
        )?;
        let dir = out.join("controls").join(source);
        std::fs::create_dir_all(&dir).map_err(|e| DemoError::io(&dir, e))?;
        control.write(&dir, OutputFormat::Parquet)?;
        ground_truth.push(SourceTruth { source: source.into(), truth: self::ground_truth(&matcher, &control.actions) });
    }
    timer.lap("trace", None);

    progress.stage("select: the teacher candidate richest in teacher-only sentences per training question");
    let selected =
        run_select(candidates.clone(), &mut teacher_scorer, &mut student_scorer, &select_settings(Strategy::TeacherCount, 0), progress)?;
    selected.write(&out.join("selected.jsonl"))?;
    timer.lap("select", None);

    progress.stage("attribute: which teacher did the distilled model learn from?");
    let mut spurious_scorer = stages::scorer(&world.spurious.dir, &cache)?;
    let attribute_settings = MethodSettings {
        alpha: trace_settings.alpha,
        beta: BetaChoice::Auto,
        segmentation: SegmenterConfig::default(),
        marker_tokens: 4096,
        skip_invalid: true,
        fallback: whence_grade::Fallback::default(),
    };
    let attributed = run_attribute(
        distilled_heldout.clone(),
        &mut distilled_scorer,
        &mut student_scorer,
        vec![
            Candidate { name: "teacher".into(), scorer: &mut teacher_scorer },
            Candidate { name: "spurious".into(), scorer: &mut spurious_scorer },
        ],
        &attribute_settings,
        progress,
    )?;
    attributed.write(out, OutputFormat::Parquet)?;
    let attribution = attributed
        .summary
        .candidates
        .iter()
        .map(|c| Attribution {
            rank: c.rank,
            candidate: c.attribution.name.clone(),
            teacher_share: c.attribution.teacher_share,
            student_share: c.attribution.student_share,
            margin: c.attribution.margin,
        })
        .collect();
    timer.lap("attribute", None);

    let experiment = if options.experiment {
        progress.stage("experiment: distilling with each selection strategy");
        let table = experiment::run(&world, &candidates, &mut teacher_scorer, &mut student_scorer, &out.join("experiment"), progress)?;
        timer.lap("experiment", None);
        Some(table)
    } else {
        None
    };

    let segmenter = Segmenter::new(&SegmenterConfig::default()).map_err(|e| DemoError::Model(e.to_string()))?;
    let origins = |model: &str, split: &str, set: &RecordSet| {
        SampleOrigins::tally(model, split, set.records.len(), &matcher, sentences(&segmenter, set))
    };
    let summary = DemoSummary {
        whence_version: whence_pipeline::VERSION.to_string(),
        command: "demo".into(),
        preset: plan.preset.name().into(),
        world: plan.world.clone(),
        models: [&world.teacher, &world.student, &world.spurious, &distilled].iter().map(|m| m.summary.clone()).collect(),
        accuracy: vec![
            stages::accuracy("teacher", &teacher_heldout),
            stages::accuracy("student", &student_heldout),
            stages::accuracy("distilled", &distilled_heldout),
        ],
        sample_origins: vec![
            origins("teacher", "train", &candidates),
            origins("spurious", "train", &spurious_train),
            origins("teacher", "heldout", &teacher_heldout),
            origins("student", "heldout", &student_heldout),
            origins("distilled", "heldout", &distilled_heldout),
        ],
        beta: traced.summary.beta,
        labels: traced.summary.label_counts,
        ground_truth: GroundTruth::combined(ground_truth.iter().map(|s| &s.truth)),
        ground_truth_by_source: ground_truth,
        attribution,
        question_reading: vec![
            analysis::question_reading("teacher", &teacher_heldout.records, &heldout_problems),
            analysis::question_reading("student", &student_heldout.records, &heldout_problems),
            analysis::question_reading("distilled", &distilled_heldout.records, &heldout_problems),
        ],
        correctness: analysis::correctness(&traced.profile, &traced.trajectories),
        experiment,
    };
    whence_io::write_json_atomic(&out.join("demo.json"), &summary).map_err(|e| DemoError::io(&out.join("demo.json"), e))?;
    whence_io::write_json_atomic(&out.join("plan.json"), &plan).map_err(|e| DemoError::io(&out.join("plan.json"), e))?;

    progress.stage("report");
    let written = whence_report::write_report(out, &whence_report::ReportOptions::default())?;
    timer.lap("report", None);
    whence_io::write_json_atomic(&out.join("timings.json"), &timer.stages).map_err(|e| DemoError::io(&out.join("timings.json"), e))?;
    Ok(DemoOutcome { summary, timings: timer.stages, report: written.index })
}

/// The confusion table of the trace's actions: each sentence's family
/// origin against its label.
pub fn ground_truth(matcher: &Matcher, actions: &whence_io::Table) -> GroundTruth {
    use whence_io::Column;
    let (Some(Column::Text(texts)), Some(Column::Text(labels)), Some(Column::Boolean(special))) =
        (actions.column("text"), actions.column("label"), actions.column("special"))
    else {
        return GroundTruth::default();
    };
    let label_of = |name: &str| Label::ALL.into_iter().find(|l| l.as_str() == name).unwrap_or(Label::Unscored);
    let rows = texts
        .iter()
        .zip(labels)
        .zip(special)
        .filter(|(_, s)| !s.unwrap_or(false))
        .filter_map(|((text, label), _)| Some((text.as_deref()?, label_of(label.as_deref()?))));
    GroundTruth::tally(matcher, rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use whence_io::{Column, Table};

    #[test]
    fn ground_truth_reads_the_trace_actions_and_leaves_special_tokens_out() {
        let mut actions = Table::new();
        let text = |v: &[&str]| Column::Text(v.iter().map(|s| Some(s.to_string())).collect());
        actions
            .push("text", text(&["We need to find how many coins Ben has at the end.\n", "<|im_end|>", "Ben ends with 3 + 4 = 7 coins. "]))
            .push("special", Column::Boolean(vec![Some(false), Some(true), Some(false)]))
            .push("label", text(&["teacher", "shared", "student"]));
        let truth = ground_truth(&Matcher::new(), &actions);
        assert_eq!(truth.sentences, 2);
        assert_eq!(truth.teacher_only_labelled_teacher, Some(1.0));
        assert_eq!(truth.student_only_labelled_student, Some(1.0));
        assert_eq!(ground_truth(&Matcher::new(), &Table::new()), GroundTruth::default());
    }

    #[test]
    fn presets_parse_and_name_themselves() {
        for name in Preset::NAMES {
            assert_eq!(name.parse::<Preset>().unwrap().name(), *name);
        }
        assert!("huge".parse::<Preset>().unwrap_err().contains("valid: standard, tiny"));
        assert_eq!(DemoPlan::new(Preset::Standard, 5), DemoPlan::new(Preset::Standard, 5));
        assert_ne!(DemoPlan::new(Preset::Standard, 5).teacher.train.seed, DemoPlan::new(Preset::Standard, 6).teacher.train.seed);
    }
}
