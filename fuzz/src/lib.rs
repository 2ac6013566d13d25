//! Helpers shared by the fuzz targets: a scratch directory for the targets
//! whose API reads files, and the input layouts.

use std::path::PathBuf;

/// A file named `name` in this process's scratch directory (in `/dev/shm`
/// when there is one, so that writing each input costs no disk I/O); the
/// directory is made on first use and reused for every input.
pub fn scratch(name: &str) -> PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() { PathBuf::from("/dev/shm") } else { std::env::temp_dir() };
        let dir = base.join(format!("whence-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("cannot make the fuzz scratch directory");
        dir
    });
    dir.join(name)
}

/// Splits `data` at NUL bytes into at most `parts` pieces (the last keeps any
/// further NULs), so that a seed is readable text: `first\0second\0…`.
pub fn split_nul(data: &[u8], parts: usize) -> Vec<&[u8]> {
    data.splitn(parts, |&b| b == 0).collect()
}

/// The text of `bytes`, invalid UTF-8 replaced (targets whose API takes
/// `&str` still see every byte pattern that is valid UTF-8).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The record reader on one input file of type `extension` (`jsonl`,
/// `parquet`): the first byte of `data` chooses the read options, the rest
/// is the file. Every accepted record must have a response (unless reading
/// questions); all are written back with `write_subset` and read again.
pub fn read_records_and_write_back(data: &[u8], extension: &str) {
    use whence_io::{read_records, ReadOptions};
    let Some((&flags, content)) = data.split_first() else { return };
    let options = ReadOptions {
        skip_invalid: flags & 1 != 0,
        prompt_optional: flags & 2 != 0,
        questions: flags & 4 != 0,
        ..ReadOptions::default()
    };
    let path = scratch(&format!("input.{extension}"));
    std::fs::write(&path, content).unwrap();
    let Ok(set) = read_records(&path, &options) else { return };
    for record in &set.records {
        assert!(options.questions || !record.response.trim().is_empty(), "a record with a blank response was accepted: {record:?}");
    }
    let all: Vec<usize> = (0..set.records.len()).collect();
    let copy = scratch(&format!("subset.{extension}"));
    set.write_subset(&all, &copy).unwrap();
    let _ = read_records(&copy, &ReadOptions { skip_invalid: true, ..options });
}
