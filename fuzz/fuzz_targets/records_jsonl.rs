//! The record reader on JSON Lines bytes: `whence_io::read_records` on a
//! `.jsonl` file holding the input (after a first byte choosing the read
//! options); then every accepted record is written back with
//! `RecordSet::write_subset` and read again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whence_fuzz::scratch;
use whence_io::{read_records, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let Some((&flags, content)) = data.split_first() else { return };
    let options = ReadOptions {
        skip_invalid: flags & 1 != 0,
        prompt_optional: flags & 2 != 0,
        questions: flags & 4 != 0,
        ..ReadOptions::default()
    };
    let path = scratch("input.jsonl");
    std::fs::write(&path, content).unwrap();
    let Ok(set) = read_records(&path, &options) else { return };
    for record in &set.records {
        assert!(options.questions || !record.response.trim().is_empty(), "a record with a blank response was accepted: {record:?}");
    }
    let all: Vec<usize> = (0..set.records.len()).collect();
    let copy = scratch("subset.jsonl");
    set.write_subset(&all, &copy).unwrap();
    let _ = read_records(&copy, &ReadOptions { skip_invalid: true, ..options });
});
