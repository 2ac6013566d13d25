//! The record reader on Parquet bytes: `whence_io::read_records` on a
//! `.parquet` file holding the input (after a first byte choosing the read
//! options); then every accepted record is written back with
//! `RecordSet::write_subset` and read again.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| whence_fuzz::read_records_and_write_back(data, "parquet"));
