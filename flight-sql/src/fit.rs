//! Cutting result batches into pieces that fit a Flight message.
//!
//! Arrow Flight's encoder splits a batch by its buffer sizes, but a slice of a string-view
//! column (`Utf8View`, the type DataFusion reads Parquet strings as) still refers to all of its
//! parent's data buffers, and the IPC writer sends them whole: each piece of a large batch
//! would carry all of the batch's strings, and overflow the message limit. [`fit`] cuts a batch
//! by the bytes its rows actually use and compacts the view columns of each piece, so every
//! message holds its own rows only; a single row too large for any message is a typed error
//! instead of a broken stream.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::DataType;

use crate::error::Error;

/// The bytes the rows of `array` use once encoded (its slice, for view types the data its
/// views refer to).
fn used_bytes(array: &dyn Array) -> usize {
    let own = array
        .to_data()
        .get_slice_memory_size()
        .unwrap_or_else(|_| array.get_buffer_memory_size());
    let viewed = match array.data_type() {
        DataType::Utf8View => array.as_string_view().total_buffer_bytes_used(),
        DataType::BinaryView => array.as_binary_view().total_buffer_bytes_used(),
        _ => 0,
    };
    own + viewed
}

fn batch_bytes(batch: &RecordBatch) -> usize {
    batch.columns().iter().map(|c| used_bytes(c.as_ref())).sum()
}

/// The same rows with view columns holding only the data they refer to, where they refer to
/// less than half of the data they hold (copying costs too).
fn compact(batch: RecordBatch) -> Result<RecordBatch, Error> {
    if !batch.columns().iter().any(|c| wasteful(c.as_ref())) {
        return Ok(batch);
    }
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| match c.data_type() {
            DataType::Utf8View if wasteful(c.as_ref()) => {
                Arc::new(c.as_string_view().gc()) as ArrayRef
            }
            DataType::BinaryView if wasteful(c.as_ref()) => {
                Arc::new(c.as_binary_view().gc()) as ArrayRef
            }
            _ => Arc::clone(c),
        })
        .collect();
    RecordBatch::try_new(batch.schema(), columns)
        .map_err(|e| Error::Internal(format!("cannot compact a result batch: {e}")))
}

/// Whether a view column holds more than twice the string data its views refer to.
fn wasteful(array: &dyn Array) -> bool {
    let (held, used) = match array.data_type() {
        DataType::Utf8View => {
            let a = array.as_string_view();
            let held: usize = a.data_buffers().iter().map(|b| b.len()).sum();
            (held, a.total_buffer_bytes_used())
        }
        DataType::BinaryView => {
            let a = array.as_binary_view();
            let held: usize = a.data_buffers().iter().map(|b| b.len()).sum();
            (held, a.total_buffer_bytes_used())
        }
        _ => return false,
    };
    held > 2 * used + 4096
}

/// Cuts `batch` into consecutive pieces of at most about `target` bytes each (by the rows'
/// average size), each compacted. A row larger than `limit`, the most one message may carry,
/// is refused with `ResourceExhausted`.
pub fn fit(batch: RecordBatch, target: usize, limit: usize) -> Result<Vec<RecordBatch>, Error> {
    let rows = batch.num_rows();
    let bytes = batch_bytes(&batch);
    if bytes <= target || rows <= 1 {
        if rows == 1 && bytes > limit {
            return Err(too_large(bytes, limit));
        }
        return Ok(vec![compact(batch)?]);
    }
    let pieces = bytes.div_ceil(target.max(1));
    let per_piece = rows.div_ceil(pieces).max(1);
    let mut out = Vec::with_capacity(pieces);
    let mut offset = 0;
    while offset < rows {
        let length = per_piece.min(rows - offset);
        let piece = batch.slice(offset, length);
        let size = batch_bytes(&piece);
        if size > target && length > 1 {
            // Rows of very different sizes: cut this piece again.
            out.extend(fit(piece, target, limit)?);
        } else if length == 1 && size > limit {
            return Err(too_large(size, limit));
        } else {
            out.push(compact(piece)?);
        }
        offset += length;
    }
    Ok(out)
}

fn too_large(bytes: usize, limit: usize) -> Error {
    Error::ResourceExhausted(format!(
        "a row of the result is {bytes} bytes, more than the {limit}-byte message limit; select fewer or smaller columns"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringViewArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::ipc::writer::{IpcDataGenerator, IpcWriteOptions};

    fn strings(rows: usize, width: usize) -> RecordBatch {
        let values: Vec<String> = (0..rows)
            .map(|i| format!("{i}{}", "x".repeat(width)))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("s", DataType::Utf8View, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(0..rows as i64)),
                Arc::new(StringViewArray::from_iter_values(values)),
            ],
        )
        .unwrap()
    }

    /// The size of the IPC message a batch encodes to.
    fn encoded(batch: &RecordBatch) -> usize {
        let generator = IpcDataGenerator::default();
        let mut tracker = datafusion::arrow::ipc::writer::DictionaryTracker::new(false);
        let mut compression = Default::default();
        let (_, data) = generator
            .encode(
                batch,
                &mut tracker,
                &IpcWriteOptions::default(),
                &mut compression,
            )
            .unwrap();
        data.ipc_message.len() + data.arrow_data.len()
    }

    #[test]
    fn pieces_of_a_view_batch_carry_their_own_strings_only() {
        // 10 000 rows of 100-byte strings: about 1.2 MB.
        let batch = strings(10_000, 100);
        let target = 64 * 1024;
        // A plain slice drags all of the batch's string data along.
        assert!(encoded(&batch.slice(0, 100)) > 900_000);
        let pieces = fit(batch.clone(), target, 1024 * 1024).unwrap();
        assert!(pieces.len() > 10, "{}", pieces.len());
        assert_eq!(pieces.iter().map(|p| p.num_rows()).sum::<usize>(), 10_000);
        for piece in &pieces {
            assert!(encoded(piece) <= 2 * target, "{}", encoded(piece));
        }
        // The rows are the same, in order.
        let joined = datafusion::arrow::compute::concat_batches(&batch.schema(), &pieces).unwrap();
        assert_eq!(joined, batch);
    }

    #[test]
    fn a_row_larger_than_a_message_is_refused() {
        let batch = strings(3, 200_000);
        let err = fit(batch, 64 * 1024, 100_000).unwrap_err();
        assert!(matches!(err, Error::ResourceExhausted(m) if m.contains("100000-byte")));
        // Small batches pass as they are.
        let small = strings(10, 10);
        assert_eq!(fit(small.clone(), 64 * 1024, 100_000).unwrap(), vec![small]);
    }
}
