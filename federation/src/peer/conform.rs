//! Schema conformance: a batch from a peer made the batch the plan expects (the same columns,
//! each of the expected type and name), or a [`PeerError::SchemaMismatch`].

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::{can_cast_types, cast};
use datafusion::arrow::datatypes::{FieldRef, SchemaRef};

use crate::error::PeerError;

/// Makes a batch from the peer named `peer` the batch the plan expects: the same number of
/// columns, each of the expected type (cast when the peer chose a compatible encoding, e.g. a
/// string view) and named as expected. Anything else is a schema mismatch.
pub(super) fn conform(
    peer: &str,
    batch: RecordBatch,
    expected: &SchemaRef,
) -> Result<RecordBatch, PeerError> {
    let mismatch = |detail: String| PeerError::SchemaMismatch {
        peer: peer.to_string(),
        detail,
    };
    if batch.num_columns() != expected.fields().len() {
        return Err(mismatch(format!(
            "expected {} columns, got {}",
            expected.fields().len(),
            batch.num_columns()
        )));
    }
    if batch.schema().fields() == expected.fields() {
        return Ok(batch);
    }
    let columns = batch
        .columns()
        .iter()
        .zip(expected.fields())
        .map(|(column, field)| conform_column(peer, column, field))
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(Arc::clone(expected), columns, &options)
        .map_err(|e| mismatch(e.to_string()))
}

/// `column` as of the type of `field`, or a schema mismatch of the peer named `peer`.
fn conform_column(peer: &str, column: &ArrayRef, field: &FieldRef) -> Result<ArrayRef, PeerError> {
    let mismatch = |detail: String| PeerError::SchemaMismatch {
        peer: peer.to_string(),
        detail,
    };
    if column.data_type() == field.data_type() {
        Ok(Arc::clone(column))
    } else if can_cast_types(column.data_type(), field.data_type()) {
        cast(column, field.data_type())
            .map_err(|e| mismatch(format!("column {}: {e}", field.name())))
    } else {
        Err(mismatch(format!(
            "column {} is {}, expected {}",
            field.name(),
            column.data_type(),
            field.data_type()
        )))
    }
}

/// The bytes of a batch's values: decoded Flight batches share their message's buffer, which
/// `get_array_memory_size` would count once per column.
pub(super) fn arrow_bytes(batch: &RecordBatch) -> u64 {
    batch
        .columns()
        .iter()
        .map(|column| column.to_data().get_slice_memory_size().unwrap_or(0) as u64)
        .sum()
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int32Array, Int64Array, StringViewArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};

    use super::*;

    fn expected() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]))
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        RecordBatch::try_from_iter(columns).unwrap()
    }

    #[test]
    fn compatible_encodings_are_cast_and_renamed() {
        let got = batch(vec![
            ("x", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef),
            ("y", Arc::new(StringViewArray::from(vec!["a", "b"]))),
        ]);
        let conformed = conform("utrecht", got, &expected()).unwrap();
        assert_eq!(conformed.schema(), expected());
        let ids = conformed.column(0).as_any().downcast_ref::<Int64Array>();
        assert_eq!(ids.unwrap().values(), &[1, 2]);
    }

    #[test]
    fn a_missing_column_is_a_mismatch() {
        let got = batch(vec![(
            "id",
            Arc::new(Int64Array::from(vec![1])) as ArrayRef,
        )]);
        let err = conform("utrecht", got, &expected()).unwrap_err();
        assert!(matches!(err, PeerError::SchemaMismatch { .. }), "{err}");
        assert!(
            err.to_string().contains("expected 2 columns, got 1"),
            "{err}"
        );
    }

    #[test]
    fn a_type_that_cannot_be_cast_is_a_mismatch() {
        let fields = vec![Field::new("a", DataType::Int64, true)];
        let expected = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Struct(fields.into()),
            true,
        )]));
        let got = batch(vec![("s", Arc::new(Int64Array::from(vec![1])) as ArrayRef)]);
        let err = conform("utrecht", got, &expected).unwrap_err();
        assert!(err.to_string().contains("column s is Int64"), "{err}");
    }
}
