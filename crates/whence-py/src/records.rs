//! Inputs: a path (read as the command line reads it), or an Arrow table
//! handed over through the PyCapsule stream protocol (`__arrow_c_stream__`:
//! pyarrow, polars, DuckDB, …; the Python layer turns pandas, lists of dicts
//! and `datasets` into one), read as a Parquet file's rows are.

use std::path::PathBuf;

use arrow_array::RecordBatch;
use arrow_pyarrow::FromPyArrow;
use pyo3::prelude::*;
use whence_io::{FieldNames, ReadOptions, RecordSet};

/// Records as given.
pub enum RecordsArg {
    Path(PathBuf),
    /// One batch of all rows, and the name locations and default ids use.
    Table {
        batch: RecordBatch,
        name: String,
    },
}

impl RecordsArg {
    /// `records`: a `str`/`os.PathLike` path, or an Arrow stream; `name`
    /// names a table in errors.
    pub fn extract(records: &Bound<'_, PyAny>, name: &str) -> PyResult<Self> {
        if let Ok(path) = records.extract::<PathBuf>() {
            return Ok(RecordsArg::Path(path));
        }
        Ok(RecordsArg::Table { batch: one_batch(records, name)?, name: name.to_string() })
    }

    /// Reads the records as the command line does.
    pub fn read(self, fields: &Fields, skip_invalid: bool, prompt_optional: bool) -> anyhow::Result<RecordSet> {
        let options = ReadOptions { fields: fields.names.clone(), skip_invalid, prompt_optional, questions: false };
        Ok(match self {
            RecordsArg::Path(path) => whence_io::read_records(&path, &options)?,
            RecordsArg::Table { batch, name } => whence_io::read_batch(batch, &name, &options)?,
        })
    }
}

/// An Arrow stream (`__arrow_c_stream__`) as one batch of all its rows;
/// `name` names it in the error.
pub fn one_batch(table: &Bound<'_, PyAny>, name: &str) -> PyResult<RecordBatch> {
    let unreadable = |e: &dyn std::fmt::Display| crate::errors::input(format!("{name}: cannot read it as an Arrow table: {e}"));
    let (batches, schema) = arrow_pyarrow::Table::from_pyarrow_bound(table).map_err(|e| unreadable(&e))?.into_inner();
    arrow_select::concat::concat_batches(&schema, &batches).map_err(|e| unreadable(&e))
}

/// The input's field names (the command line's `--*-field` flags).
#[derive(Clone)]
pub struct Fields {
    pub names: FieldNames,
}

impl Fields {
    /// From a dict of the Python keyword arguments `id_field`, … (missing:
    /// the command line's defaults).
    pub fn extract(given: Option<&Bound<'_, pyo3::types::PyDict>>) -> PyResult<Self> {
        let mut names = FieldNames::default();
        if let Some(given) = given {
            for (key, value) in given.iter() {
                let key: String = key.extract()?;
                let value: String = value.extract().map_err(|_| crate::errors::input(format!("{key}: give a field name (a str)")))?;
                let slot = match key.as_str() {
                    "id_field" => &mut names.id,
                    "question_id_field" => &mut names.question_id,
                    "prompt_field" => &mut names.prompt,
                    "messages_field" => &mut names.messages,
                    "conversations_field" => &mut names.conversations,
                    "response_field" => &mut names.response,
                    "correct_field" => &mut names.correct,
                    "answer_field" => &mut names.answer,
                    other => return Err(crate::errors::input(format!("unknown field option `{other}`"))),
                };
                *slot = value;
            }
        }
        Ok(Fields { names })
    }
}
