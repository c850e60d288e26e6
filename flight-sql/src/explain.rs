//! `EXPLAIN` output as callers see it: plans without the server's file paths.
//!
//! DataFusion's file scans print their file groups (`file_groups={2 groups: [[srv/data/a.csv:
//! 0..633468], ...]}`): where the operator keeps the city's data on disk is no business of a
//! caller's, and a path can name more than the dataset (a user, a mount, a bucket). The groups
//! are kept as a count; the paths are withheld.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;

const FILE_GROUPS: &str = "file_groups={";

/// `text` with the contents of every `file_groups={...}` replaced by its group count.
pub fn withhold_paths(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(FILE_GROUPS) {
        let inner = &rest[at + FILE_GROUPS.len()..];
        // The matching brace: paths may hold braces of their own only in pairs (globs).
        let mut depth = 1usize;
        let end = inner.char_indices().find_map(|(i, c)| {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(i)
        });
        let Some(end) = end else {
            // Unbalanced: withhold everything after the marker.
            out.push_str(&rest[..at]);
            out.push_str("file_groups={paths withheld}");
            return out;
        };
        let groups = inner[..end].split(':').next().unwrap_or("").trim();
        out.push_str(&rest[..at]);
        out.push_str(FILE_GROUPS);
        if groups.ends_with("groups") || groups.ends_with("group") {
            out.push_str(groups);
            out.push_str(", paths withheld}");
        } else {
            out.push_str("paths withheld}");
        }
        rest = &inner[end + 1..];
    }
    out.push_str(rest);
    out
}

/// `stream`, an `EXPLAIN` result, with the paths withheld from every text column.
pub fn without_paths(stream: SendableRecordBatchStream) -> SendableRecordBatchStream {
    let schema = stream.schema();
    let batches = stream.map(|batch| batch.and_then(withhold_in_batch));
    Box::pin(RecordBatchStreamAdapter::new(schema, batches))
}

fn withhold_in_batch(batch: RecordBatch) -> Result<RecordBatch> {
    let columns = batch
        .columns()
        .iter()
        .map(|column| match column.data_type() {
            DataType::Utf8 => {
                let text = column.as_string::<i32>();
                let withheld: StringArray = text.iter().map(|v| v.map(withhold_paths)).collect();
                Arc::new(withheld) as ArrayRef
            }
            _ => Arc::clone(column),
        })
        .collect();
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn withholds_file_paths_and_keeps_the_rest() {
        let plan = "CoalescePartitionsExec: fetch=1\n  DataSourceExec: file_groups={2 groups: [[srv/city/air.csv:0..63], [srv/city/air.csv:63..126]]}, projection=[a, b], file_type=csv";
        let shown = withhold_paths(plan);
        assert!(!shown.contains("srv/city"), "{shown}");
        assert!(shown.contains("file_groups={2 groups, paths withheld}, projection=[a, b]"));
        assert!(shown.starts_with("CoalescePartitionsExec: fetch=1\n"));
        let glob =
            "x file_groups={1 group: [[data/{a,b}.csv]]} y file_groups={1 group: [[c.parquet]]}";
        assert_eq!(
            withhold_paths(glob),
            "x file_groups={1 group, paths withheld} y file_groups={1 group, paths withheld}"
        );
        assert_eq!(
            withhold_paths("file_groups={[[broken"),
            "file_groups={paths withheld}"
        );
        assert_eq!(withhold_paths("no scan here"), "no scan here");
    }
}
