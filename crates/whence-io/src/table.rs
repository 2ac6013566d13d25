//! Column tables written as Parquet or JSONL.
//!
//! Both forms hold the same columns in the same order; JSONL writes one
//! object a row with nulls explicit. Output is deterministic: the same table
//! gives the same bytes.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use arrow_array::{ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use serde_json::Value;

/// Which file format tables are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    Parquet,
    Jsonl,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Parquet => "parquet",
            OutputFormat::Jsonl => "jsonl",
        }
    }
}

/// One column's values; `None` is null.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    Text(Vec<Option<String>>),
    Integer(Vec<Option<u64>>),
    Float(Vec<Option<f64>>),
    Boolean(Vec<Option<bool>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Text(v) => v.len(),
            Column::Integer(v) => v.len(),
            Column::Float(v) => v.len(),
            Column::Boolean(v) => v.len(),
        }
    }

    fn json(&self, row: usize) -> Value {
        match self {
            Column::Text(v) => v[row].as_ref().map_or(Value::Null, |s| Value::String(s.clone())),
            Column::Integer(v) => v[row].map_or(Value::Null, Value::from),
            Column::Float(v) => v[row].and_then(serde_json::Number::from_f64).map_or(Value::Null, Value::Number),
            Column::Boolean(v) => v[row].map_or(Value::Null, Value::Bool),
        }
    }

    fn arrow(&self) -> (DataType, ArrayRef) {
        match self {
            Column::Text(v) => (DataType::Utf8, Arc::new(StringArray::from(v.clone())) as ArrayRef),
            Column::Integer(v) => (DataType::UInt64, Arc::new(UInt64Array::from(v.clone())) as ArrayRef),
            Column::Float(v) => (DataType::Float64, Arc::new(Float64Array::from(v.clone())) as ArrayRef),
            Column::Boolean(v) => (DataType::Boolean, Arc::new(BooleanArray::from(v.clone())) as ArrayRef),
        }
    }
}

/// Named columns of equal length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Table {
    columns: Vec<(String, Column)>,
}

impl Table {
    pub fn new() -> Self {
        Table::default()
    }

    /// Appends a column; panics if its length differs from the others'
    /// (a programming error, not an input error).
    pub fn push(&mut self, name: impl Into<String>, column: Column) -> &mut Self {
        if let Some((_, first)) = self.columns.first() {
            assert_eq!(first.len(), column.len(), "columns of one table have one length");
        }
        self.columns.push((name.into(), column));
        self
    }

    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }

    /// The column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|(name, _)| name.as_str())
    }

    /// Writes the table to `path` atomically.
    pub fn write(&self, path: &Path, format: OutputFormat) -> std::io::Result<()> {
        crate::atomic::write_atomic(path, |writer| match format {
            OutputFormat::Jsonl => self.write_jsonl(writer),
            OutputFormat::Parquet => self.write_parquet(writer),
        })
    }

    fn write_jsonl(&self, writer: &mut impl Write) -> std::io::Result<()> {
        for row in 0..self.rows() {
            let mut object = serde_json::Map::with_capacity(self.columns.len());
            for (name, column) in &self.columns {
                object.insert(name.clone(), column.json(row));
            }
            serde_json::to_writer(&mut *writer, &Value::Object(object))?;
            writer.write_all(b"\n")?;
        }
        Ok(())
    }

    /// The table as one Arrow batch: text as `Utf8`, integers as `UInt64`,
    /// floats as `Float64`, every column nullable (the Parquet file's schema).
    pub fn to_record_batch(&self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let mut fields = Vec::with_capacity(self.columns.len());
        let mut arrays = Vec::with_capacity(self.columns.len());
        for (name, column) in &self.columns {
            let (data_type, array) = column.arrow();
            fields.push(Field::new(name, data_type, true));
            arrays.push(array);
        }
        let schema = Arc::new(Schema::new(fields));
        if arrays.is_empty() {
            Ok(RecordBatch::new_empty(schema))
        } else {
            RecordBatch::try_new(schema, arrays)
        }
    }

    fn write_parquet<W: Write + Send>(&self, writer: &mut W) -> std::io::Result<()> {
        let batch = self.to_record_batch().map_err(std::io::Error::other)?;
        let schema = batch.schema();
        let properties = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
        let mut parquet = ArrowWriter::try_new(writer, schema, Some(properties)).map_err(std::io::Error::other)?;
        parquet.write(&batch).map_err(std::io::Error::other)?;
        parquet.close().map_err(std::io::Error::other)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut table = Table::new();
        table
            .push("id", Column::Text(vec![Some("a".into()), Some("b".into())]))
            .push("n", Column::Integer(vec![Some(1), None]))
            .push("p", Column::Float(vec![Some(0.25), None]))
            .push("ok", Column::Boolean(vec![None, Some(true)]));
        table
    }

    #[test]
    fn jsonl_keeps_column_order_and_explicit_nulls() {
        let mut out = Vec::new();
        sample().write_jsonl(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":\"a\",\"n\":1,\"p\":0.25,\"ok\":null}\n{\"id\":\"b\",\"n\":null,\"p\":null,\"ok\":true}\n"
        );
    }

    #[test]
    fn parquet_is_deterministic_and_readable() {
        let mut first = Vec::new();
        let mut second = Vec::new();
        sample().write_parquet(&mut first).unwrap();
        sample().write_parquet(&mut second).unwrap();
        assert_eq!(first, second);
        let reader =
            parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(first)).unwrap().build().unwrap();
        let batches: Vec<RecordBatch> = reader.collect::<Result<_, _>>().unwrap();
        assert_eq!(batches[0].num_rows(), 2);
        assert_eq!(batches[0].schema().field(2).name(), "p");
    }
}
