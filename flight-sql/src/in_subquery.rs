//! `x [NOT] IN (SELECT ...)` anywhere in a statement, not only as a condition of `WHERE`.
//!
//! DataFusion 55 turns an `IN` subquery into a join only in a filter. Elsewhere it stays an
//! expression that nothing can execute: in a `CASE` over a join, `Physical plan does not
//! support logical expression InSubquery`; in a join's `ON`, or anywhere under
//! datafusion-federation's rule (a coordinator, `polder sql`), `not implemented: InSubquery`.
//! DuckDB and PostgreSQL answer all of them.
//!
//! [`InSubqueryAsJoin`] runs first among the optimizer rules and replaces each such `IN` whose
//! subquery reads nothing of the outer query by a column computed by joins, with SQL's
//! three-valued answer:
//!
//! ```text
//! x IN (SELECT v FROM s)  =  CASE WHEN a match of x exists      THEN TRUE
//!                                 WHEN s has no rows            THEN FALSE
//!                                 WHEN x IS NULL OR s has NULLs THEN NULL
//!                                 ELSE FALSE END
//! ```
//!
//! The input of the plan node with the `IN` becomes
//!
//! ```text
//! Projection: <input's columns>, CASE ... END AS __in_mark_n
//!   Left Join: x = __in_set_n.value
//!     Cross Join                          -- only when x or v may be NULL
//!       <input>
//!       SubqueryAlias: __in_state_n       -- one row: count(*), count(v)
//!         Aggregate: count(*), count(v) <- s
//!     SubqueryAlias: __in_set_n
//!       Distinct <- Projection: v AS value <- s
//! ```
//!
//! and the `IN` is `__in_mark_n` (`NOT __in_mark_n` for `NOT IN`). The distinct set keeps the
//! left join from repeating rows; when neither side can be NULL the answer is the match alone.
//! Plain joins are what both DataFusion and the federation rule plan well: a subquery that
//! reads one peer is sent to it. Names are kept (a projection's `CASE WHEN x IN (<subquery>)
//! ...` column keeps its name) and the columns added are projected away again, so the plan's
//! schema does not change.
//!
//! Left alone: a correlated `IN` (DataFusion decorrelates those it can in a filter), an `IN` that
//! is itself a condition of a filter's conjunction (DataFusion's semi and null-aware anti joins
//! are the better plan), and an `IN` in a join's `ON` whose left side reads both inputs.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::Result;
use datafusion::functions_aggregate::count::count;
use datafusion::logical_expr::expr::InSubquery;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    Expr, ExprSchemable, JoinType, LogicalPlan, LogicalPlanBuilder, Projection, Subquery, lit, when,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// The rule of the [module docs](self).
#[derive(Debug, Default)]
pub struct InSubqueryAsJoin;

impl InSubqueryAsJoin {
    /// The rule's name, by which a session is checked for it.
    pub const NAME: &'static str = "in_subquery_as_join";
}

impl OptimizerRule for InSubqueryAsJoin {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let rewritable = matches!(
            plan,
            LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::Aggregate(_)
                | LogicalPlan::Sort(_)
                | LogicalPlan::Window(_)
        );
        if !rewritable || !plan.expressions().iter().any(has_in_subquery) {
            return Ok(Transformed::no(plan));
        }
        let keeps_names = matches!(
            plan,
            LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_) | LogicalPlan::Window(_)
        );
        let preserver = NamePreserver::new(&plan);
        let mut inputs: Vec<LogicalPlan> = plan.inputs().into_iter().cloned().collect();
        let mut changed = false;
        let mut exprs = Vec::new();
        for expr in plan.expressions() {
            let saved = preserver.save(&expr);
            let rewritten = if let LogicalPlan::Filter(_) = plan {
                // Conditions of the conjunction that are an `IN` are DataFusion's to plan.
                let parts = split_conjunction_owned(expr)
                    .into_iter()
                    .map(|part| {
                        if is_top_level_in(&part) {
                            Ok(Transformed::no(part))
                        } else {
                            replace_in_subqueries(part, &mut inputs, config)
                        }
                    })
                    .collect::<Result<Vec<_>>>()?;
                let transformed = parts.iter().any(|p| p.transformed);
                let predicate = conjunction(parts.into_iter().map(|p| p.data));
                Transformed::new_transformed(predicate.unwrap_or(lit(true)), transformed)
            } else {
                replace_in_subqueries(expr, &mut inputs, config)?
            };
            changed |= rewritten.transformed;
            exprs.push(if keeps_names && rewritten.transformed {
                saved.restore(rewritten.data)
            } else {
                rewritten.data
            });
        }
        if !changed {
            return Ok(Transformed::no(plan));
        }
        let original = Arc::clone(plan.schema());
        let mut rewritten = plan.with_new_exprs(exprs, inputs)?;
        if rewritten.schema().fields().len() != original.fields().len() {
            // A filter, sort or join passes its input's columns on, the marks among them.
            let columns = original.columns().into_iter().map(Expr::Column).collect();
            rewritten = LogicalPlan::Projection(Projection::try_new(columns, Arc::new(rewritten))?);
        }
        Ok(Transformed::yes(rewritten))
    }
}

fn is_rewritable_in(expr: &Expr) -> bool {
    matches!(expr, Expr::InSubquery(InSubquery { expr, subquery, .. })
        if subquery.outer_ref_columns.is_empty() && !expr.contains_outer())
}

fn has_in_subquery(expr: &Expr) -> bool {
    expr.exists(|e| Ok(is_rewritable_in(e))).unwrap_or(false)
}

fn is_top_level_in(expr: &Expr) -> bool {
    match expr {
        Expr::Not(inner) => matches!(inner.as_ref(), Expr::InSubquery(_)),
        expr => matches!(expr, Expr::InSubquery(_)),
    }
}

/// `expr` with each rewritable `IN` replaced by a mark column added to the input (of `inputs`)
/// whose columns its left side reads.
fn replace_in_subqueries(
    expr: Expr,
    inputs: &mut [LogicalPlan],
    config: &dyn OptimizerConfig,
) -> Result<Transformed<Expr>> {
    // Bottom up: an `IN` inside another's left side is replaced first.
    expr.transform_up(|e| {
        if !is_rewritable_in(&e) {
            return Ok(Transformed::no(e));
        }
        let Expr::InSubquery(InSubquery {
            expr: needle,
            subquery,
            negated,
        }) = e
        else {
            unreachable!("checked by is_rewritable_in")
        };
        let Some(side) = input_reading(&needle, inputs) else {
            return Ok(Transformed::no(Expr::InSubquery(InSubquery {
                expr: needle,
                subquery,
                negated,
            })));
        };
        let input = std::mem::take(&mut inputs[side]);
        let (input, mark) = with_mark(input, *needle, &subquery, config)?;
        inputs[side] = input;
        Ok(Transformed::yes(if negated { !mark } else { mark }))
    })
}

/// The index of the input whose columns are all the columns `needle` reads (the first input
/// when it reads none), `None` when no input has them all.
fn input_reading(needle: &Expr, inputs: &[LogicalPlan]) -> Option<usize> {
    let columns = needle.column_refs();
    inputs.iter().position(|input| {
        columns
            .iter()
            .all(|column| input.schema().has_column(column))
    })
}

/// `input` with a column telling whether `needle IN (subquery)`, and that column.
fn with_mark(
    input: LogicalPlan,
    needle: Expr,
    subquery: &Subquery,
    config: &dyn OptimizerConfig,
) -> Result<(LogicalPlan, Expr)> {
    let aliases = config.alias_generator();
    let values = subquery.subquery.as_ref();
    let value = Expr::Column(Column::from(values.schema().qualified_field(0)));
    let set_alias = aliases.next("__in_set");
    let set = LogicalPlanBuilder::from(values.clone())
        .project([value.clone().alias("value")])?
        .distinct()?
        .alias(set_alias.as_str())?
        .build()?;
    let member = Expr::Column(Column::new(Some(set_alias.as_str()), "value"));
    let matched = member.clone().is_not_null();

    let columns: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let may_be_null = needle.nullable(input.schema())? || values.schema().field(0).is_nullable();
    let mut builder = LogicalPlanBuilder::from(input);
    let mark = if may_be_null {
        let state_alias = aliases.next("__in_state");
        let state = LogicalPlanBuilder::from(values.clone())
            .aggregate(
                Vec::<Expr>::new(),
                [count(lit(1)).alias("rows"), count(value).alias("values")],
            )?
            .alias(state_alias.as_str())?
            .build()?;
        let rows = Expr::Column(Column::new(Some(state_alias.as_str()), "rows"));
        let non_null = Expr::Column(Column::new(Some(state_alias.as_str()), "values"));
        builder = builder.cross_join(state)?;
        when(matched, lit(true))
            .when(rows.clone().eq(lit(0_i64)), lit(false))
            .when(
                needle.clone().is_null().or(non_null.lt(rows)),
                lit(ScalarValue::Boolean(None)),
            )
            .otherwise(lit(false))?
    } else {
        matched
    };
    let mark_name = aliases.next("__in_mark");
    let plan = builder
        .join_on(set, JoinType::Left, [needle.eq(member)])?
        .project(columns.into_iter().chain([mark.alias(mark_name.as_str())]))?
        .build()?;
    Ok((plan, Expr::Column(Column::from_name(mark_name))))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Array, Int32Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// A session as a node's, with `t(x)`: 1, 2, NULL; `s(v)`: 1, 3; `n(v)`: 1, NULL;
    /// `e(v)`: no rows; `k(v)`: 1, 3 and not nullable.
    fn session() -> SessionContext {
        let ctx = SessionContext::new_with_config(crate::session_config());
        let ctx = SessionContext::new_with_state(crate::bounded::bound_functions(ctx.state()));
        let tables: [(&str, &str, Vec<Option<i32>>, bool); 5] = [
            ("t", "x", vec![Some(1), Some(2), None], true),
            ("s", "v", vec![Some(1), Some(3)], true),
            ("n", "v", vec![Some(1), None], true),
            ("e", "v", vec![], true),
            ("k", "v", vec![Some(1), Some(3)], false),
        ];
        for (name, column, values, nullable) in tables {
            let schema = Arc::new(Schema::new(vec![Field::new(
                column,
                DataType::Int32,
                nullable,
            )]));
            let batch = RecordBatch::try_new(
                Arc::clone(&schema),
                vec![Arc::new(Int32Array::from(values))],
            )
            .unwrap();
            let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
            ctx.register_table(name, Arc::new(table)).unwrap();
        }
        ctx
    }

    /// The first column of `sql`'s answer as text, `NULL` for a null.
    async fn column(ctx: &SessionContext, sql: &str) -> Vec<String> {
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut values = Vec::new();
        for batch in batches {
            let column = batch.column(0);
            for row in 0..column.len() {
                values.push(if column.is_null(row) {
                    "NULL".to_string()
                } else {
                    datafusion::arrow::util::display::array_value_to_string(column, row).unwrap()
                });
            }
        }
        values
    }

    #[tokio::test]
    async fn in_a_projection_answers_with_three_valued_logic() {
        let ctx = session();
        // x: 1, 2, NULL.
        let cases = [
            ("s", "true,false,NULL", "false,true,NULL"),
            ("n", "true,NULL,NULL", "false,NULL,NULL"),
            ("e", "false,false,false", "true,true,true"),
            ("k", "true,false,NULL", "false,true,NULL"),
        ];
        for (set, is_in, not_in) in cases {
            for (negated, expected) in [("", is_in), ("NOT ", not_in)] {
                let sql = format!(
                    "SELECT x {negated}IN (SELECT v FROM {set}) FROM t ORDER BY x NULLS LAST"
                );
                assert_eq!(column(&ctx, &sql).await.join(","), expected, "{sql}");
            }
        }
    }

    #[tokio::test]
    async fn in_a_case_over_a_join_keeps_its_name_and_rows() {
        let ctx = session();
        let sql = "SELECT CASE WHEN t.x IN (SELECT v FROM s) THEN 'in' ELSE 'out' END \
                   FROM t JOIN k ON TRUE ORDER BY t.x NULLS LAST, k.v";
        let df = ctx.sql(sql).await.unwrap();
        let name = df.schema().field(0).name().clone();
        let optimized = df.into_optimized_plan().unwrap();
        assert_eq!(optimized.schema().field(0).name(), &name);
        assert!(
            !format!("{optimized}").contains("<subquery>"),
            "{optimized}"
        );
        let values = column(&ctx, sql).await;
        assert_eq!(values.join(","), "in,in,out,out,out,out");
    }

    #[tokio::test]
    async fn in_a_join_condition_and_an_aggregate() {
        let ctx = session();
        let sql = "SELECT t.x, k.v FROM t LEFT JOIN k ON k.v NOT IN (SELECT v FROM n) \
                   ORDER BY t.x NULLS LAST, k.v";
        // `k.v NOT IN (1, NULL)` is never true: every row of t keeps a NULL partner.
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let partners: usize = batches.iter().map(|b| b.column(1).null_count()).sum();
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!((rows, partners), (3, 3));

        let sql = "SELECT count(*) FILTER (WHERE x IN (SELECT v FROM s)) FROM t";
        assert_eq!(column(&ctx, sql).await, ["1"]);
        let sql = "SELECT x IN (SELECT v FROM s) AS m, count(*) AS c FROM t GROUP BY 1 \
                   ORDER BY m NULLS LAST";
        assert_eq!(column(&ctx, sql).await.join(","), "false,true,NULL");
    }

    #[tokio::test]
    async fn in_a_filter_under_or_is_not_true_for_a_null_in_the_set() {
        let ctx = session();
        // 2 NOT IN (1, NULL) is NULL, so the row is not kept.
        let sql = "SELECT x FROM t WHERE x NOT IN (SELECT v FROM n) OR x > 5";
        assert!(column(&ctx, sql).await.is_empty());
        let sql = "SELECT x FROM t WHERE x IN (SELECT v FROM s) OR x = 2 ORDER BY x";
        assert_eq!(column(&ctx, sql).await.join(","), "1,2");
        // A condition of its own stays DataFusion's (a null-aware anti join): 2 only.
        let sql = "SELECT x FROM t WHERE x NOT IN (SELECT v FROM s) ORDER BY x";
        assert_eq!(column(&ctx, sql).await, ["2"]);
    }
}
