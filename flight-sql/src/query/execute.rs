//! From a logical plan to the stream of its answer: one plan per bound parameter row, each
//! made physical, cooperative and checked, their streams chained and coalesced.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::SessionContext;
use futures::StreamExt;

use super::params::parameter_rows;
use crate::error::Result;

/// `plan` with each row of `params` bound, at most `max_rows` of them; `plan` itself when
/// there are none.
pub(super) fn bind_rows(
    plan: LogicalPlan,
    params: &[RecordBatch],
    max_rows: usize,
) -> Result<Vec<LogicalPlan>> {
    let rows = parameter_rows(params, max_rows)?;
    if rows.is_empty() {
        return Ok(vec![plan]);
    }
    Ok(rows
        .into_iter()
        .map(|values| plan.clone().with_param_values(values))
        .collect::<Result<Vec<_>, _>>()?)
}

/// Makes `plans` physical and starts them, one after the other, as one stream of `schema`:
/// explained plans without file paths, batches coalesced to the session's batch size.
pub(super) async fn start(
    ctx: SessionContext,
    plans: Vec<LogicalPlan>,
    schema: SchemaRef,
) -> Result<SendableRecordBatchStream> {
    let explains = matches!(
        plans.first(),
        Some(LogicalPlan::Explain(_) | LogicalPlan::Analyze(_))
    );
    let state = ctx.state();
    let mut streams = Vec::with_capacity(plans.len());
    for plan in plans {
        let physical = cooperative(state.create_physical_plan(&plan).await?)?;
        crate::workarounds::check_answer_types(&schema, &physical.schema())?;
        streams.push(execute_stream(physical, ctx.task_ctx())?);
    }
    let mut stream: SendableRecordBatchStream = if streams.len() == 1 {
        streams.pop().expect("one stream")
    } else {
        Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(streams).flatten(),
        ))
    };
    if explains {
        stream = crate::explain::without_paths(stream);
    }
    // Gathered where the plan runs, before the hand-over, so that batches are gathered from
    // what the plan has ready, not from what the channel holds.
    Ok(crate::coalesce::coalesced(
        stream,
        state.config().batch_size(),
    ))
}

/// Makes every operator of `plan` yield to the scheduler when its task has used up its
/// budget, not only the leaves (DataFusion's own rule). A join can produce batch after batch
/// without polling its inputs; without a yield point in between, a query past its deadline
/// could not be aborted and would keep its worker thread until it finished.
fn cooperative(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|node| {
            if node.children().is_empty() || node.is::<CooperativeExec>() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        })?
        .data)
}
