//! Bound parameters: the schema a statement's placeholders expect, the answer's schema with
//! parameters bound, and parameter batches turned into one list of values per row.

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionState;
use datafusion::logical_expr::LogicalPlan;

use crate::error::{Error, Result};

/// The schema of `plan`'s answer with the first row of `params` bound (as it is without
/// parameters): what `GetFlightInfo` of a prepared statement with bound parameters states.
/// Analyzed in `state`: see [`crate::workarounds::answer_schema`].
pub fn bound_schema(
    state: &SessionState,
    plan: &LogicalPlan,
    params: &[RecordBatch],
) -> Result<SchemaRef> {
    let first = params
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.slice(0, 1));
    let schema = match parameter_rows(first.as_slice(), 1)?.pop() {
        Some(values) => {
            crate::workarounds::answer_schema(state, &plan.clone().with_param_values(values)?)
        }
        None => crate::workarounds::answer_schema(state, plan),
    };
    Ok(schema)
}

/// The parameters a planned statement expects, as a schema with one field per placeholder
/// (`$1`, `$2`, ... in order); a type the planner could not infer is `Null`.
pub fn parameter_schema(plan: &LogicalPlan) -> Result<Schema> {
    let mut fields: Vec<(String, Option<DataType>)> =
        plan.get_parameter_types()?.into_iter().collect();
    fields.sort_by_key(|(name, _)| placeholder_index(name).unwrap_or(usize::MAX));
    Ok(Schema::new(
        fields
            .into_iter()
            .map(|(name, ty)| Field::new(name, ty.unwrap_or(DataType::Null), true))
            .collect::<Vec<_>>(),
    ))
}

fn placeholder_index(name: &str) -> Option<usize> {
    name.strip_prefix('$')?.parse().ok()
}

/// Turns bound parameter batches into one list of values per row.
pub(super) fn parameter_rows(batches: &[RecordBatch], max_rows: usize) -> Result<Vec<ParamValues>> {
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    if total > max_rows {
        return Err(Error::ResourceExhausted(format!(
            "{total} parameter rows bound; this node accepts at most {max_rows}"
        )));
    }
    let mut rows = Vec::with_capacity(total);
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, row))
                .collect::<Result<Vec<_>, DataFusionError>>()?;
            rows.push(ParamValues::from(values));
        }
    }
    Ok(rows)
}
