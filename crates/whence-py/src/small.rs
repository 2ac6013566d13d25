//! The small functions: segmentation, grading, and the labels of
//! probability arrays.

use arrow_array::{Array, Float64Array, StringArray};
use arrow_pyarrow::{FromPyArrow, ToPyArrow};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use whence_cli::args::SegmentationArgs;
use whence_core::{ActionProbabilities, Label, SegmenterConfig, Threshold};

/// The segmentation settings from the Python layer's dict (keys:
/// `special_tokens`, `special_patterns`, `no_default_specials`,
/// `sentence_pattern`), checked as the command line checks its flags.
pub fn segmentation(given: Option<&Bound<'_, PyDict>>) -> PyResult<SegmenterConfig> {
    let mut args = SegmentationArgs {
        special_tokens: Vec::new(),
        special_patterns: Vec::new(),
        no_default_specials: false,
        sentence_pattern: whence_core::segment::DEFAULT_SENTENCE_PATTERN.to_string(),
    };
    if let Some(given) = given {
        for (key, value) in given.iter() {
            let key: String = key.extract()?;
            let wrong = |what: &str| crate::errors::input(format!("{key}: give {what}"));
            match key.as_str() {
                "special_tokens" => args.special_tokens = value.extract().map_err(|_| wrong("a list of str"))?,
                "special_patterns" => args.special_patterns = value.extract().map_err(|_| wrong("a list of str"))?,
                "no_default_specials" => args.no_default_specials = value.extract().map_err(|_| wrong("a bool"))?,
                "sentence_pattern" => args.sentence_pattern = value.extract().map_err(|_| wrong("a str"))?,
                other => return Err(crate::errors::input(format!("unknown segmentation option `{other}`"))),
            }
        }
    }
    args.config().map_err(|e| crate::errors::to_py(&e))
}

pub fn threshold(name: &str, value: f64) -> PyResult<Threshold> {
    Threshold::new(value).map_err(|e| crate::errors::input(format!("{name}: {e}")))
}

/// The actions of `text`: `(start, end, special)` byte spans.
#[pyfunction]
#[pyo3(signature = (text, segmentation=None))]
pub fn segment(text: &str, segmentation: Option<&Bound<'_, PyDict>>) -> PyResult<Vec<(usize, usize, bool)>> {
    let config = self::segmentation(segmentation)?;
    let segmenter = whence_core::Segmenter::new(&config).map_err(|e| crate::errors::input(e.to_string()))?;
    Ok(segmenter.segment(text).iter().map(|a| (a.span.start, a.span.end, a.special)).collect())
}

/// Grades `response` against `answer`: `(correct, kind, extracted, method)`.
#[pyfunction]
#[pyo3(signature = (response, answer, fallback))]
pub fn grade(response: &str, answer: &str, fallback: &str) -> PyResult<(bool, &'static str, Option<String>, Option<&'static str>)> {
    let fallback: whence_grade::Fallback =
        fallback.parse().map_err(|e: whence_grade::UnknownFallback| crate::errors::input(e.to_string()))?;
    let grade = whence_grade::grade(response, answer, fallback);
    let method = grade.extracted.as_ref().map(|e| e.method.as_str());
    Ok((grade.correct, grade.kind.as_str(), grade.extracted.map(|e| e.text), method))
}

fn float_array(name: &str, value: &Bound<'_, PyAny>) -> PyResult<Float64Array> {
    let data = arrow_array::make_array(arrow_data::ArrayData::from_pyarrow_bound(value)?);
    data.as_any()
        .downcast_ref::<Float64Array>()
        .cloned()
        .ok_or_else(|| crate::errors::input(format!("{name}: give float64 values, not {}", data.data_type())))
}

/// The label of every action from its probabilities (`p_distilled` absent:
/// the labels before training). A null or NaN probability is `unscored`.
#[pyfunction]
#[pyo3(signature = (p_teacher, p_student, p_distilled, alpha, beta))]
pub fn label<'py>(
    py: Python<'py>,
    p_teacher: &Bound<'py, PyAny>,
    p_student: &Bound<'py, PyAny>,
    p_distilled: Option<&Bound<'py, PyAny>>,
    alpha: f64,
    beta: f64,
) -> PyResult<Bound<'py, PyAny>> {
    let (alpha, beta) = (threshold("alpha", alpha)?, threshold("beta", beta)?);
    let teacher = float_array("p_teacher", p_teacher)?;
    let student = float_array("p_student", p_student)?;
    let distilled = p_distilled.map(|p| float_array("p_distilled", p)).transpose()?;
    let n = teacher.len();
    if student.len() != n || distilled.as_ref().is_some_and(|d| d.len() != n) {
        return Err(crate::errors::input(format!(
            "p_teacher, p_student and p_distilled must have one length; got {n}, {} and {}",
            student.len(),
            distilled.as_ref().map_or("none".to_string(), |d| d.len().to_string())
        )));
    }
    let value = |array: &Float64Array, i: usize| (array.is_valid(i) && !array.value(i).is_nan()).then(|| array.value(i));
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let probabilities = match (value(&teacher, i), value(&student, i), distilled.as_ref().map(|d| value(d, i))) {
            (Some(teacher), Some(student), None) => Some(ActionProbabilities { teacher, student, distilled: None }),
            (Some(teacher), Some(student), Some(Some(d))) => Some(ActionProbabilities { teacher, student, distilled: Some(d) }),
            _ => None,
        };
        if let Some(p) = &probabilities {
            if [p.teacher, p.student].into_iter().chain(p.distilled).any(|x| !(0.0..=1.0).contains(&x)) {
                return Err(crate::errors::input(format!(
                    "probabilities must be from 0 to 1; at index {i}: p_teacher {}, p_student {}{}",
                    p.teacher,
                    p.student,
                    p.distilled.map_or(String::new(), |d| format!(", p_distilled {d}"))
                )));
            }
        }
        labels.push(probabilities.map_or(Label::Unscored, |p| p.classify(alpha, beta)).as_str());
    }
    StringArray::from(labels).to_data().to_pyarrow(py)
}
