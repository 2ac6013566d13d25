//! `whence merge`.

use std::path::PathBuf;

use clap::Args;

/// Combine the shard directories of a `--shard K/N` run of `trace`, `select`,
/// `attribute` or `score` into exactly what one unsharded run writes (byte-identical).
///
/// Checks that the shards belong to one command line, one input (sha256)
/// and the same models, and that every shard 1/N … N/N is there once; then
/// re-reads the input and runs the command on the shards' scores. Run it
/// where the workers ran (the input is read from the path they were given).
#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' --out directories (each holds shard.json and scores/)
    #[arg(required = true, num_args = 1..)]
    pub shards: Vec<PathBuf>,
    /// Where the unsharded run would write: trace's or attribute's output directory, select's or score's output file
    #[arg(long, short)]
    pub out: PathBuf,
}
