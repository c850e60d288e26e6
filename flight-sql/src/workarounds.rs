//! Workarounds for DataFusion 55 bugs that gave wrong answers or unclear errors.
//!
//! **The schema a statement announces** ([`answer_schema`]). DataFusion's SQL planner builds a
//! `UNION` with "loose types": until the analyzer's type coercion runs, the union's schema has
//! the types of its first input, whatever the others hold (apache/datafusion#11742 moved union
//! coercion out of the plan builder, #11961; #14356 keeps the first input's types and marks it
//! "not necessarily reasonable"). A node announces its answer's schema before the plan is
//! analyzed (in `GetFlightInfo`, a prepared statement's dataset schema, the stream of `DoGet`),
//! and arrow-flight's encoder casts every batch to the announced schema: `SELECT 1 AS x UNION
//! ALL SELECT 2.5` answered 2, and `SELECT count(*) AS c1 FROM t UNION SELECT c_acctbal ...`
//! cut `-932.38` to `-932`. [`answer_schema`] is the schema of the analyzed plan, the one its
//! batches have.
//!
//! **An aggregate's type changed by `single_distinct_aggregation_to_group_by`**
//! ([`KeepAggregateTypes`]). Next to one `DISTINCT` aggregate, DataFusion rewrites `sum(x)` into
//! a sum of partial sums, `sum(sum(x))`, whose type is wider: `sum` of a `DECIMAL(6, 2)` is a
//! `DECIMAL(16, 2)`, the sum of those a `DECIMAL(26, 2)`. The rewritten aggregate keeps the
//! name but not the type, and a filter above it typed for the old one fails: `SELECT count(*)
//! FROM (SELECT sum(w) AS c0, min(DISTINCT w) AS c1 FROM t) WHERE c0 > 7` gave `Invalid
//! comparison operation: Decimal128(26, 2) > Decimal128(16, 2)` (the optimizer checks only the
//! schema of the whole plan). The rule is wrapped so that each plan it rewrites casts its columns
//! back to the types they had.
//!
//! **Two `IN` lists of one expression whose lists leave nothing** ([`NullSafeInLists`]).
//! `simplify_expressions` merges `x NOT IN (a) OR x NOT IN (b)` into `x NOT IN (<the lists'
//! intersection>)`, and `x IN A AND x IN B`, `x IN A AND x NOT IN B` likewise; when nothing is
//! left it writes the constant `TRUE` or `FALSE`, which is wrong where `x` is NULL: the
//! original is NULL there. `WHERE x NOT IN (7474) OR x NOT IN (4968)` kept the rows where `x`
//! is NULL. The rule is wrapped so that such a pair becomes `CASE WHEN x IS NULL THEN NULL
//! ELSE <the constant> END` before it runs.
//!
//! **`IN` subqueries outside a filter** ([`crate::in_subquery`]): planned as joins wherever
//! they are, so that DataFusion and the federation rule can run them.
//!
//! **CASE nullability** ([`crate::session_config`] skips DataFusion's aggregate input schema
//! check). Logical planning proves more `CASE` expressions never null than physical planning
//! does: `CASE WHEN k >= 1 AND w >= 14.75 THEN CAST(w AS DECIMAL(15, 2)) ELSE 14.75 END` is not
//! null logically (the condition is never true when `w` is null: three-valued bounds), but the
//! physical `CaseExpr` substitutes `NULL` for `w` and cannot fold `k >= 1 AND NULL` to a
//! constant, so it says nullable (apache/datafusion#23844 aligns the two through casts, not
//! through such conditions). Grouping by it failed with "Physical input schema should be the
//! same as the one converted from logical input schema" for a nullability difference alone.
//! With the check skipped, [`check_answer_types`] still refuses an answer whose types are not
//! the ones announced, so a type difference the check would have caught is an error, never a
//! cast.

use std::sync::Arc;

use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::expr::{InList, TryCast};
use datafusion::logical_expr::{
    BinaryExpr, Cast, Expr, LogicalPlan, Operator, Projection, cast, lit, when,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::in_subquery::InSubqueryAsJoin;

/// The schema of the answer `plan` gives once analyzed (types coerced): the types its batches
/// have. When the analyzer refuses the plan (a parameter that nothing gives a type), the
/// plan's own schema; running the plan then fails with the analyzer's error.
pub fn answer_schema(state: &SessionState, plan: &LogicalPlan) -> SchemaRef {
    let analyzed =
        state
            .analyzer()
            .execute_and_check(plan.clone(), state.config_options(), |_, _| {});
    match analyzed {
        Ok(analyzed) => Arc::clone(analyzed.schema().inner()),
        Err(_) => Arc::clone(plan.schema().inner()),
    }
}

/// `state` with the workarounds of the [module docs](self) that are optimizer rules. Applying
/// it twice changes nothing more.
pub fn apply(state: SessionState) -> SessionState {
    let mut rules: Vec<_> = state
        .optimizers()
        .iter()
        .map(KeepAggregateTypes::wrap)
        .map(|rule| NullSafeInLists::wrap(&rule))
        .collect();
    if !rules.iter().any(|r| r.name() == InSubqueryAsJoin::NAME) {
        // First: before DataFusion's subquery rules and the federation's.
        rules.insert(0, Arc::new(InSubqueryAsJoin));
    }
    SessionStateBuilder::new_from_existing(state)
        .with_optimizer_rules(rules)
        .build()
}

/// Refuses (an internal error, the node's fault) an answer whose column types, `physical`,
/// are not the `announced` ones: Flight's encoder would cast each batch to the announced
/// schema, and a cast can change values.
pub fn check_answer_types(announced: &Schema, physical: &Schema) -> Result<()> {
    let differs = announced.fields().len() != physical.fields().len()
        || announced
            .fields()
            .iter()
            .zip(physical.fields())
            .any(|(a, p)| !a.data_type().equals_datatype(p.data_type()));
    if differs {
        let types = |schema: &Schema| {
            let types: Vec<String> = schema
                .fields()
                .iter()
                .map(|f| f.data_type().to_string())
                .collect();
            types.join(", ")
        };
        return Err(DataFusionError::Internal(format!(
            "the plan answers with columns of types ({}) where its schema announces ({}) \
             (a DataFusion planning bug)",
            types(physical),
            types(announced)
        )));
    }
    Ok(())
}

/// The name of the DataFusion rule [`KeepAggregateTypes`] wraps.
pub const SINGLE_DISTINCT: &str = "single_distinct_aggregation_to_group_by";

/// DataFusion's `single_distinct_aggregation_to_group_by`, whose rewrites keep the types of the
/// plans they rewrite (see the [module docs](self)).
#[derive(Debug)]
pub struct KeepAggregateTypes(pub Arc<dyn OptimizerRule + Send + Sync>);

impl KeepAggregateTypes {
    /// `rule` wrapped when it is the one this wraps and not wrapped yet.
    pub fn wrap(
        rule: &Arc<dyn OptimizerRule + Send + Sync>,
    ) -> Arc<dyn OptimizerRule + Send + Sync> {
        wrap_once(rule, SINGLE_DISTINCT, "KeepAggregateTypes", |rule| {
            Arc::new(KeepAggregateTypes(rule))
        })
    }
}

impl OptimizerRule for KeepAggregateTypes {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        self.0.apply_order()
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let before = Arc::clone(plan.schema());
        let result = self.0.rewrite(plan, config)?;
        if !result.transformed || !needs_casts(&before, result.data.schema()) {
            return Ok(result);
        }
        result.map_data(|plan| restore_types(plan, &before))
    }
}

/// `rule` given to `wrapper` when it is named `name` and no wrapper whose type is named
/// `wrapper_name` holds it yet (the rules' `Debug` shows each wrapper and what it holds), so
/// that wrapping twice wraps once.
fn wrap_once(
    rule: &Arc<dyn OptimizerRule + Send + Sync>,
    name: &str,
    wrapper_name: &str,
    wrapper: impl FnOnce(Arc<dyn OptimizerRule + Send + Sync>) -> Arc<dyn OptimizerRule + Send + Sync>,
) -> Arc<dyn OptimizerRule + Send + Sync> {
    if rule.name() == name && !format!("{rule:?}").contains(wrapper_name) {
        wrapper(Arc::clone(rule))
    } else {
        Arc::clone(rule)
    }
}

/// The name of the DataFusion rule [`NullSafeInLists`] wraps.
pub const SIMPLIFY: &str = "simplify_expressions";

/// DataFusion's `simplify_expressions`, after pairs of `IN` lists it would make a constant
/// have been given their NULL (see the [module docs](self)).
#[derive(Debug)]
pub struct NullSafeInLists(pub Arc<dyn OptimizerRule + Send + Sync>);

impl NullSafeInLists {
    /// `rule` wrapped when it is the one this wraps and not wrapped yet (perhaps inside
    /// another wrapper).
    pub fn wrap(
        rule: &Arc<dyn OptimizerRule + Send + Sync>,
    ) -> Arc<dyn OptimizerRule + Send + Sync> {
        wrap_once(rule, SIMPLIFY, "NullSafeInLists", |rule| {
            Arc::new(NullSafeInLists(rule))
        })
    }
}

impl OptimizerRule for NullSafeInLists {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        self.0.apply_order()
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let prepared = plan.transform_up_with_subqueries(|node| {
            node.map_expressions(|expr| expr.transform_up(null_safe_in_list_pair))
        })?;
        let transformed = prepared.transformed;
        let mut result = self.0.rewrite(prepared.data, config)?;
        result.transformed |= transformed;
        Ok(result)
    }
}

/// `x [NOT] IN A AND|OR x [NOT] IN B` whose merge by `simplify_expressions` leaves an empty
/// list, as `CASE WHEN x IS NULL THEN NULL ELSE <what the empty list means> END`. Lists with a
/// NULL or an expression that is not a constant are left alone (the merge compares them as
/// folded, and a NULL in a list makes the answer NULL in more places than `x IS NULL`).
fn null_safe_in_list_pair(expr: Expr) -> Result<Transformed<Expr>> {
    let Expr::BinaryExpr(BinaryExpr { left, op, right }) = &expr else {
        return Ok(Transformed::no(expr));
    };
    let (Expr::InList(l1), Expr::InList(l2)) = (left.as_ref(), right.as_ref()) else {
        return Ok(Transformed::no(expr));
    };
    let constants = |list: &InList| list.list.iter().map(constant).collect::<Option<Vec<_>>>();
    let (Some(first), Some(second)) = (constants(l1), constants(l2)) else {
        return Ok(Transformed::no(expr));
    };
    if l1.expr != l2.expr {
        return Ok(Transformed::no(expr));
    }
    let shared = first.iter().filter(|v| second.contains(v)).count();
    let only_first = first.iter().filter(|v| !second.contains(v)).count();
    let only_second = second.iter().filter(|v| !first.contains(v)).count();
    // What simplify_expressions makes of the pair when its list ends up empty.
    let constant = match (op, l1.negated, l2.negated) {
        (Operator::Or, true, true) if shared == 0 => true,
        (Operator::And, false, false) if shared == 0 => false,
        (Operator::And, false, true) if only_first == 0 => false,
        (Operator::And, true, false) if only_second == 0 => false,
        _ => return Ok(Transformed::no(expr)),
    };
    let value = when(
        l1.expr.as_ref().clone().is_null(),
        lit(ScalarValue::Boolean(None)),
    )
    .otherwise(lit(constant))?;
    Ok(Transformed::yes(value))
}

/// The value of a list element as the simplifier folds it: a constant not NULL, perhaps cast.
fn constant(expr: &Expr) -> Option<ScalarValue> {
    let value = match expr {
        Expr::Literal(value, _) => value.clone(),
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) => {
            constant(expr)?.cast_to(field.data_type()).ok()?
        }
        _ => return None,
    };
    (!value.is_null()).then_some(value)
}

fn needs_casts(before: &DFSchemaRef, after: &DFSchemaRef) -> bool {
    before.fields().len() == after.fields().len()
        && before
            .fields()
            .iter()
            .zip(after.fields())
            .any(|(b, a)| b.data_type() != a.data_type())
}

/// `plan` under a projection that casts each of its columns to the type, and names it as, the
/// column of `schema` at the same position.
fn restore_types(plan: LogicalPlan, schema: &DFSchemaRef) -> Result<LogicalPlan> {
    let exprs: Vec<Expr> = plan
        .schema()
        .iter()
        .zip(schema.iter())
        .map(|((qualifier, field), (old_qualifier, old_field))| {
            let column = Expr::Column(Column::from((qualifier, field)));
            let value = if field.data_type() == old_field.data_type() {
                column
            } else {
                cast(column, old_field.data_type().clone())
            };
            value.alias_qualified(old_qualifier.cloned(), old_field.name())
        })
        .collect();
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        Arc::new(plan),
    )?))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        Array, AsArray, BooleanArray, Decimal128Array, Int32Array, Int64Array, RecordBatch,
        StringArray,
    };
    use datafusion::arrow::datatypes::{
        DataType, Decimal128Type, Field, Float64Type, Int64Type, Schema,
    };

    use super::check_answer_types;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;
    use futures::TryStreamExt;

    use crate::query::{QueryEngine, QueryLimits};

    fn table(ctx: &SessionContext, name: &str, batch: RecordBatch) {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).unwrap();
        ctx.register_table(name, Arc::new(table)).unwrap();
    }

    fn decimals(values: Vec<Option<i128>>, precision: u8) -> Arc<Decimal128Array> {
        let array = Decimal128Array::from(values).with_precision_and_scale(precision, 2);
        Arc::new(array.unwrap())
    }

    /// A session as a node's (the same settings, its functions bounded) with TPC-H's `nation`
    /// and `customer` (the columns the reproducers use) and the differential test's `tags`.
    fn session() -> SessionContext {
        let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
            .with_memory_limit(1 << 30, 1.0)
            .build_arc()
            .unwrap();
        let ctx = SessionContext::new_with_config_rt(crate::session_config(), runtime);
        let ctx = SessionContext::new_with_state(crate::bounded::bound_functions(ctx.state()));
        let nation = Schema::new(vec![Field::new("n_comment", DataType::Utf8, false)]);
        let comments = StringArray::from(vec!["a", "b", "a"]);
        table(
            &ctx,
            "nation",
            RecordBatch::try_new(Arc::new(nation), vec![Arc::new(comments)]).unwrap(),
        );
        let customer = Schema::new(vec![
            Field::new("c_nationkey", DataType::Int64, false),
            Field::new("c_acctbal", DataType::Decimal128(15, 2), false),
        ]);
        let columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            decimals(vec![Some(-93238), Some(12345)], 15),
        ];
        table(
            &ctx,
            "customer",
            RecordBatch::try_new(Arc::new(customer), columns).unwrap(),
        );
        let tags = Schema::new(vec![
            Field::new("k", DataType::Int32, true),
            Field::new("weight", DataType::Decimal128(6, 2), true),
            Field::new("active", DataType::Boolean, true),
        ]);
        let columns: Vec<Arc<dyn Array>> = vec![
            Arc::new(Int32Array::from(vec![Some(1), Some(2), Some(3), None])),
            decimals(vec![Some(2000), Some(925), None, Some(5000)], 6),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                Some(true),
                None,
            ])),
        ];
        table(
            &ctx,
            "tags",
            RecordBatch::try_new(Arc::new(tags), columns).unwrap(),
        );
        ctx
    }

    /// The batches a node sends for `sql`, each cast to the schema the node announces (as
    /// arrow-flight's encoder does), and that schema.
    async fn answer(sql: &str) -> crate::Result<Vec<RecordBatch>> {
        let engine = QueryEngine::new(session(), QueryLimits::default());
        let stream = engine.run(sql, vec![]).await?;
        let schema = stream.schema();
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        Ok(batches
            .into_iter()
            .map(|batch| {
                let columns = batch
                    .columns()
                    .iter()
                    .zip(schema.fields())
                    .map(|(c, f)| datafusion::arrow::compute::cast(c, f.data_type()).unwrap())
                    .collect();
                RecordBatch::try_new(Arc::clone(&schema), columns).unwrap()
            })
            .collect())
    }

    #[tokio::test]
    async fn a_union_announces_the_types_it_answers_with() {
        let batches = answer("SELECT 1 AS x UNION ALL SELECT 2.5 ORDER BY x")
            .await
            .unwrap();
        let x = batches[0].column(0).as_primitive::<Float64Type>();
        assert_eq!(x.values().to_vec(), vec![1.0, 2.5]);

        let sql = "SELECT count(*) AS c0, count(*) AS c1, count(*) AS c2 FROM (SELECT DISTINCT \
                   n_comment AS c0 FROM nation) AS t1 UNION SELECT c_nationkey, c_acctbal AS c1, \
                   c_acctbal AS c2 FROM customer ORDER BY c1";
        let batches = answer(sql).await.unwrap();
        let batch = &batches[0];
        assert_eq!(
            batch.schema().field(1).data_type(),
            &DataType::Decimal128(22, 2)
        );
        for column in [1, 2] {
            let values = batch.column(column).as_primitive::<Decimal128Type>();
            assert_eq!(values.values().to_vec(), vec![-93238, 200, 12345]);
        }

        let engine = QueryEngine::new(session(), QueryLimits::default());
        let plan = engine.plan("SELECT 1 AS x UNION SELECT 2.5").await.unwrap();
        let state = engine.session().state();
        let schema = crate::query::bound_schema(&state, &plan, &[]).unwrap();
        assert_eq!(schema.field(0).data_type(), &DataType::Float64);
    }

    #[tokio::test]
    async fn in_list_pairs_keep_their_null() {
        // tags.k: 1, 2, 3, NULL.
        let count = |sql: &'static str| async move {
            let batches = answer(sql).await.unwrap();
            batches[0].column(0).as_primitive::<Int64Type>().value(0)
        };
        let cases = [
            // NULL OR NULL is NULL: the NULL row is not kept (it was: TRUE).
            ("k NOT IN (7) OR k NOT IN (8)", 3),
            // NOT (NULL AND NULL) is NULL (it was: NOT FALSE).
            ("NOT (k IN (1, 2) AND k IN (3))", 3),
            ("NOT (k IN (1) AND k NOT IN (1, 2))", 3),
            ("NOT (k NOT IN (1, 2) AND k IN (1))", 3),
            // Merges that leave a list stay DataFusion's.
            ("k NOT IN (1, 2) OR k NOT IN (2, 3)", 2),
            ("k IN (1, 2) AND k IN (2, 3)", 1),
        ];
        for (condition, expected) in cases {
            let sql = format!("SELECT count(*) FROM tags WHERE {condition}");
            let sql: &'static str = Box::leak(sql.into_boxed_str());
            assert_eq!(count(sql).await, expected, "{sql}");
        }
    }

    #[tokio::test]
    async fn a_sum_next_to_a_distinct_aggregate_keeps_its_type() {
        // weight: 20.00, 9.25, NULL, 50.00.
        let sql = "SELECT count(*) AS n FROM (SELECT sum(weight) AS c0, min(DISTINCT weight) \
                   AS c1 FROM tags) AS w WHERE c0 > 7";
        let batches = answer(sql).await.unwrap();
        assert_eq!(batches[0].column(0).as_primitive::<Int64Type>().value(0), 1);
        let sql = "SELECT c0, c1 FROM (SELECT sum(weight) AS c0, count(DISTINCT weight) AS c1 \
                   FROM tags) AS w WHERE c0 > 79";
        let batches = answer(sql).await.unwrap();
        let batch = &batches[0];
        assert_eq!(
            batch.schema().field(0).data_type(),
            &DataType::Decimal128(16, 2)
        );
        assert_eq!(
            batch.column(0).as_primitive::<Decimal128Type>().value(0),
            7925
        );
        assert_eq!(batch.column(1).as_primitive::<Int64Type>().value(0), 3);
    }

    #[tokio::test]
    async fn grouping_by_a_case_the_optimizer_proves_not_null() {
        let sql = "SELECT c0, c1 FROM (SELECT CASE WHEN (k >= 1 AND k <= 20 AND weight >= 14.75 \
                   AND weight <= 77.91) THEN CAST(weight AS DECIMAL(15,2)) ELSE 14.75 END AS c0, \
                   active AS c1 FROM tags) GROUP BY c0, c1 ORDER BY c0, c1";
        let batches = answer(sql).await.unwrap();
        let batch = &batches[0];
        // DECIMAL(30, 15): the common type of the CAST and the literal 14.75 (a Float64).
        let c0 = datafusion::arrow::compute::cast(batch.column(0), &DataType::Float64).unwrap();
        let c0 = c0.as_primitive::<Float64Type>();
        assert_eq!(c0.values().to_vec(), vec![14.75, 14.75, 14.75, 20.0]);
        assert_eq!(c0.null_count(), 0);
    }

    #[test]
    fn an_answer_of_other_types_than_announced_is_refused() {
        let announced = Schema::new(vec![Field::new("c1", DataType::Int64, false)]);
        let physical = Schema::new(vec![Field::new("c1", DataType::Decimal128(22, 2), true)]);
        let err = check_answer_types(&announced, &physical).unwrap_err();
        assert!(err.to_string().contains("Decimal128(22, 2)"), "{err}");
        let nullable = Schema::new(vec![Field::new("c1", DataType::Int64, true)]);
        check_answer_types(&announced, &nullable).unwrap();
    }
}
