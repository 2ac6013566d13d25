//! Files in and out of `whence`.
//!
//! - [`records`]: input records from JSONL or Parquet, with configurable
//!   field names and the three prompt shapes (`prompt`, OpenAI `messages`,
//!   ShareGPT `conversations`); errors name the file, the line (or row) and
//!   the field.
//! - [`table`]: column tables written as Parquet or JSONL, deterministically.
//! - [`atomic`]: every output is written to a temporary file and renamed into
//!   place, so a failed run never leaves a half-written file behind.

pub mod atomic;
pub mod records;
pub mod table;

pub use atomic::{write_atomic, write_json_atomic, write_lines_atomic};
pub use records::{read_batch, read_records, FieldNames, InputError, InputFormat, OriginalRow, ReadOptions, RecordSet, Skipped};
pub use table::{Column, OutputFormat, Table};
