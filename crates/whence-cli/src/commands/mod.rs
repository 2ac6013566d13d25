//! One module per subcommand.

pub mod attribute;
pub mod demo;
pub mod generate;
pub mod grade;
pub mod merge;
pub mod report;
pub mod score;
pub mod segment;
pub mod select;
pub mod serve;
pub mod trace;

use std::io::Write;

/// Writes JSON lines to stdout, ending quietly when the reader goes away
/// (`whence segment … | head`).
pub(crate) fn print_json_lines<T: serde::Serialize>(rows: impl IntoIterator<Item = T>) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut line = Vec::new();
    for row in rows {
        line.clear();
        serde_json::to_writer(&mut line, &row)?;
        line.push(b'\n');
        if let Err(error) = out.write_all(&line) {
            if error.kind() == std::io::ErrorKind::BrokenPipe {
                return Ok(());
            }
            return Err(error.into());
        }
    }
    match out.flush() {
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}
