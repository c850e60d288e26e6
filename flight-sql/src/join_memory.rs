//! Nested loop joins that answer from memory or refuse: they never fall back to spilling.
//!
//! When the build side of DataFusion 55's `NestedLoopJoinExec` does not fit in the memory
//! pool, the join falls back to spilling it: it executes the build side a second time and
//! writes that stream to disk. That fallback is not safe to use on a node:
//!
//! - a build side that cannot be executed twice (a remote peer's stream, a cross join whose
//!   own build side already failed) gives `Internal error: Left side produced no data to
//!   spill` (apache/datafusion#24676), and one that resumes instead of restarting silently
//!   loses the rows consumed by the first attempt;
//! - while spilling, outer, semi and anti joins drop their unmatched rows
//!   (apache/datafusion#24745): a wrong answer with no error.
//!
//! [`InMemoryJoins`] is a physical optimizer rule that puts every nested loop join under a
//! [`RuntimeSwitchExec`] (`InMemoryJoinExec` in plans), which executes the join with the disk
//! manager disabled. The join then
//! fails with `ResourcesExhausted` (gRPC `RESOURCE_EXHAUSTED`) when its build side does not fit,
//! as a hash join does. The join's inputs still run with the session's runtime: a sort below
//! the join spills as before.

use std::fmt;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::disk_manager::{DiskManager, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::joins::NestedLoopJoinExec;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use datafusion::prelude::SessionConfig;

/// The switch reports its child's properties: replacing a child never changes them.
const KEEP_PROPERTIES: ReplaceChildrenOptions =
    ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);

/// Puts every [`NestedLoopJoinExec`] of a plan under a [`RuntimeSwitchExec`]. Run it last, after
/// the rules that may still replace or move joins.
#[derive(Debug, Default)]
pub struct InMemoryJoins;

impl InMemoryJoins {
    /// The rule's name in the session's list of physical optimizer rules.
    pub const NAME: &'static str = "in_memory_nested_loop_joins";
}

impl PhysicalOptimizerRule for InMemoryJoins {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(join) = node.downcast_ref::<NestedLoopJoinExec>() else {
                return Ok(Transformed::no(node));
            };
            if join.children().iter().any(|c| c.is::<RuntimeSwitchExec>()) {
                // Wrapped when the rule ran before on this plan.
                return Ok(Transformed::no(node));
            }
            let inputs = join
                .children()
                .into_iter()
                .map(|child| {
                    Arc::new(RuntimeSwitchExec::new(Arc::clone(child), Switch::JoinInput)) as _
                })
                .collect();
            // The inputs keep their children's properties, so the join keeps its own.
            let join = Arc::clone(&node).replace_children(inputs, KEEP_PROPERTIES)?;
            let wrapped = RuntimeSwitchExec::new(join, Switch::InMemoryJoin);
            Ok(Transformed::yes(Arc::new(wrapped) as _))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        Self::NAME
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Where a [`RuntimeSwitchExec`] stands, and so which runtime its child executes with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    /// Above a nested loop join: the join runs with temporary files disabled.
    InMemoryJoin,
    /// Above an input of such a join: the input runs with the query's runtime again.
    JoinInput,
}

impl Switch {
    fn name(self) -> &'static str {
        match self {
            Switch::InMemoryJoin => "InMemoryJoinExec",
            Switch::JoinInput => "JoinInputExec",
        }
    }
}

/// Executes its child with another runtime: a nested loop join without temporary files
/// ([`Switch::InMemoryJoin`], shown as `InMemoryJoinExec`), and each input of that join with
/// the query's own runtime ([`Switch::JoinInput`], shown as `JoinInputExec`), so that a sort
/// below the join may still spill.
#[derive(Debug)]
pub struct RuntimeSwitchExec {
    child: Arc<dyn ExecutionPlan>,
    switch: Switch,
}

impl RuntimeSwitchExec {
    /// Wraps `child`.
    pub fn new(child: Arc<dyn ExecutionPlan>, switch: Switch) -> Self {
        Self { child, switch }
    }

    /// The context the child executes with.
    fn context(&self, context: Arc<TaskContext>) -> Result<Arc<TaskContext>> {
        match self.switch {
            Switch::InMemoryJoin => {
                let session = SessionRuntime(context.runtime_env());
                let config = context
                    .session_config()
                    .clone()
                    .with_extension(Arc::new(session));
                let runtime = RuntimeEnv {
                    disk_manager: Arc::new(
                        DiskManager::builder()
                            .with_mode(DiskManagerMode::Disabled)
                            .build()?,
                    ),
                    ..RuntimeEnv::clone(&context.runtime_env())
                };
                Ok(with(&context, config, Arc::new(runtime)))
            }
            Switch::JoinInput => match context.session_config().get_extension::<SessionRuntime>() {
                Some(session) => Ok(with(
                    &context,
                    context.session_config().clone(),
                    Arc::clone(&session.0),
                )),
                None => Ok(context),
            },
        }
    }
}

impl DisplayAs for RuntimeSwitchExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match t {
            DisplayFormatType::TreeRender => Ok(()),
            _ => write!(f, "{}", self.switch.name()),
        }
    }
}

impl ExecutionPlan for RuntimeSwitchExec {
    fn name(&self) -> &str {
        self.switch.name()
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.child.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.child]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        datafusion::common::assert_eq_or_internal_err!(
            children.len(),
            1,
            "{} has one child",
            self.switch.name()
        );
        Ok(Arc::new(Self::new(children.swap_remove(0), self.switch)))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(children, KEEP_PROPERTIES)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.child.execute(partition, self.context(context)?)
    }
}

/// The runtime of the query, kept while a join runs without it ([`Switch::InMemoryJoin`]).
#[derive(Debug)]
struct SessionRuntime(Arc<RuntimeEnv>);

/// `context` with another session configuration and runtime.
fn with(
    context: &TaskContext,
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
) -> Arc<TaskContext> {
    Arc::new(TaskContext::new(
        context.task_id(),
        context.session_id(),
        config,
        context.scalar_functions().clone(),
        context.higher_order_functions().clone(),
        context.aggregate_functions().clone(),
        context.window_functions().clone(),
        runtime,
    ))
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Float64Array, Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::error::DataFusionError;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use super::*;

    /// A session whose memory pool holds `limit` bytes, with the rule or without it, and tables
    /// `l(k, v)` (200 rows in two partitions of batches of 16) and `r(w)` (90 rows).
    fn session(limit: usize, in_memory_joins: bool) -> SessionContext {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(limit, 1.0)
            .build_arc()
            .unwrap();
        let config = SessionConfig::new()
            .with_target_partitions(2)
            .with_batch_size(16);
        let state = datafusion::execution::SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features();
        let state = if in_memory_joins {
            state.with_physical_optimizer_rule(Arc::new(InMemoryJoins))
        } else {
            state
        };
        let ctx = SessionContext::new_with_state(state.build());
        let l = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("v", DataType::Float64, false),
        ]));
        let batches = |range: std::ops::Range<i64>| -> Vec<RecordBatch> {
            range
                .collect::<Vec<_>>()
                .chunks(16)
                .map(|chunk| {
                    let k = Int64Array::from(chunk.to_vec());
                    let v = Float64Array::from_iter_values(chunk.iter().map(|i| (i % 50) as f64));
                    RecordBatch::try_new(Arc::clone(&l), vec![Arc::new(k), Arc::new(v)]).unwrap()
                })
                .collect()
        };
        let table = MemTable::try_new(Arc::clone(&l), vec![batches(0..100), batches(100..200)]);
        ctx.register_table("l", Arc::new(table.unwrap())).unwrap();
        let r = Arc::new(Schema::new(vec![Field::new("w", DataType::Float64, false)]));
        let w = Float64Array::from_iter_values((0..90).map(|i| f64::from(i % 45 + 3)));
        let r_batch = RecordBatch::try_new(Arc::clone(&r), vec![Arc::new(w)]).unwrap();
        let table = MemTable::try_new(r, vec![vec![r_batch]]).unwrap();
        ctx.register_table("r", Arc::new(table)).unwrap();
        ctx
    }

    async fn count(ctx: &SessionContext, sql: &str) -> Result<i64, DataFusionError> {
        let batches = ctx.sql(sql).await?.collect().await?;
        let column = batches[0].column(0).as_any().downcast_ref::<Int64Array>();
        Ok(column.expect("count(*)").value(0))
    }

    /// Nested loop joins whose build side does not fit: the exact answer or
    /// `ResourcesExhausted`, never another answer and never an internal error. Without the
    /// rule DataFusion 55 spills these joins, answers the outer and anti joins short and fails
    /// the nested cross join with an internal error.
    #[tokio::test]
    async fn nested_loop_joins_answer_exactly_or_refuse() {
        let queries = [
            "SELECT count(*) FROM l LEFT JOIN r ON l.v > r.w",
            "SELECT count(*) FROM r LEFT JOIN l ON l.v > r.w",
            "SELECT count(*) FROM l FULL JOIN r ON l.v > r.w",
            "SELECT count(*) FROM l WHERE NOT EXISTS (SELECT 1 FROM r WHERE l.v > r.w)",
            "SELECT count(*) FROM l a CROSS JOIN l b CROSS JOIN (VALUES (1), (2)) x(k) \
             WHERE a.v * b.v + x.k > 1000",
        ];
        let ample = session(usize::MAX / 2, true);
        for sql in queries {
            let exact = count(&ample, sql).await.unwrap();
            for limit in [64, 4 * 1024, 64 * 1024] {
                match count(&session(limit, true), sql).await {
                    Ok(answer) => assert_eq!(answer, exact, "{sql} under {limit} bytes"),
                    Err(err) => assert!(
                        matches!(err.find_root(), DataFusionError::ResourcesExhausted(_)),
                        "{sql} under {limit} bytes: {err}"
                    ),
                }
            }
        }
    }

    /// The rule wraps each nested loop join once, however often it runs, and the plan still
    /// answers.
    #[tokio::test]
    async fn the_rule_wraps_each_join_once() {
        let ctx = session(usize::MAX / 2, true);
        let sql = "SELECT count(*) FROM l a CROSS JOIN l b CROSS JOIN r WHERE a.v > r.w";
        let plan = ctx
            .sql(sql)
            .await
            .unwrap()
            .create_physical_plan()
            .await
            .unwrap();
        let again = InMemoryJoins
            .optimize(Arc::clone(&plan), &ConfigOptions::default())
            .unwrap();
        let text = datafusion::physical_plan::displayable(again.as_ref())
            .indent(false)
            .to_string();
        let joins = text.matches("NestedLoopJoinExec").count();
        assert!(joins >= 1, "{text}");
        assert_eq!(text.matches("InMemoryJoinExec").count(), joins, "{text}");
        assert_eq!(text.matches("JoinInputExec").count(), 2 * joins, "{text}");
    }
}
