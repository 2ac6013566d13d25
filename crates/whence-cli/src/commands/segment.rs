//! `whence segment`.

use clap::Args;
use serde::Serialize;
use whence_core::Segmenter;

use crate::args::{InputArgs, SegmentationArgs};

/// Print the actions of each response as JSON lines: id, index, start, end
/// (byte offsets into the response), special, text.
#[derive(Debug, Args)]
pub struct SegmentArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub segmentation: SegmentationArgs,
}

#[derive(Serialize)]
struct ActionRow<'a> {
    id: &'a str,
    index: usize,
    start: usize,
    end: usize,
    special: bool,
    text: &'a str,
}

pub fn run(args: SegmentArgs) -> anyhow::Result<()> {
    let segmenter = Segmenter::new(&args.segmentation.config()?)?;
    let set = args.input.read(true)?;
    let segmented: Vec<_> = set.records.iter().map(|r| (r, segmenter.segment(&r.response))).collect();
    let rows = segmented.iter().flat_map(|(record, actions)| {
        actions.iter().enumerate().map(move |(index, action)| ActionRow {
            id: &record.id,
            index,
            start: action.span.start,
            end: action.span.end,
            special: action.special,
            text: &record.response[action.span.start..action.span.end],
        })
    });
    super::print_json_lines(rows)
}
