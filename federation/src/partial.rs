//! Partial aggregation across nodes: an aggregate over a `UNION ALL` of several inputs (one city
//! each, typically) is computed in two steps, a partial aggregate per input and a final one over
//! their union. Each partial aggregate reads one node, so the federation sends it there as one
//! remote query: every node sends a row per group instead of its rows.
//!
//! ```text
//! Aggregate: g, avg(x)                 Projection: g, CAST(sum(s) AS Float64) / nullif(sum(c), 0)
//!   Union                        =>      Aggregate: g, sum(s), sum(c)
//!     amsterdam.t                          Union
//!     utrecht.t                              Aggregate: g, sum(x) AS s, count(x) AS c   (amsterdam)
//!                                            Aggregate: g, sum(x) AS s, count(x) AS c   (utrecht)
//! ```
//!
//! `count`, `sum`, `min`, `max` and `avg` (of integers and floats) decompose; an aggregate with
//! anything else (`DISTINCT`, `FILTER`, `ORDER BY`, another function) stays as it is.

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchemaRef, ScalarValue};
use datafusion::error::Result;
use datafusion::functions::core::expr_fn::{coalesce, nullif};
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{
    Aggregate, Expr, ExprSchemable, LogicalPlan, LogicalPlanBuilder, cast, col, lit,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// The optimizer rule (see the module docs).
#[derive(Debug, Default)]
pub struct PartialAggregates;

impl OptimizerRule for PartialAggregates {
    fn name(&self) -> &str {
        "partial_aggregates_over_union"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|node| match node {
            LogicalPlan::Aggregate(aggregate) => match split(&aggregate)? {
                Some(rewritten) => Ok(Transformed::yes(rewritten)),
                None => Ok(Transformed::no(LogicalPlan::Aggregate(aggregate))),
            },
            other => Ok(Transformed::no(other)),
        })
    }
}

/// How one aggregate function decomposes.
enum Kind {
    Count,
    Sum,
    Min,
    Max,
    Avg,
}

fn kind(function: &AggregateFunction, input: &DFSchemaRef) -> Result<Option<Kind>> {
    let params = &function.params;
    if params.distinct
        || params.filter.is_some()
        || !params.order_by.is_empty()
        || params.null_treatment.is_some()
        || params.args.len() > 1
    {
        return Ok(None);
    }
    let numeric = |e: &Expr| -> Result<bool> {
        let t = e.get_type(input)?;
        Ok(t.is_integer() || t.is_floating())
    };
    Ok(match (function.func.name(), params.args.first()) {
        ("count", _) => Some(Kind::Count),
        ("sum", Some(arg)) if numeric(arg)? => Some(Kind::Sum),
        ("min", Some(_)) => Some(Kind::Min),
        ("max", Some(_)) => Some(Kind::Max),
        ("avg", Some(arg)) if numeric(arg)? => Some(Kind::Avg),
        _ => None,
    })
}

/// The two-step form of `aggregate`, when its input is a union and every function decomposes.
fn split(aggregate: &Aggregate) -> Result<Option<LogicalPlan>> {
    let union = match aggregate.input.as_ref() {
        LogicalPlan::Union(union) => union,
        LogicalPlan::SubqueryAlias(alias) => match alias.input.as_ref() {
            LogicalPlan::Union(union) => union,
            _ => return Ok(None),
        },
        _ => return Ok(None),
    };
    if union.inputs.len() < 2
        || aggregate
            .group_expr
            .iter()
            .any(|e| matches!(e, Expr::GroupingSet(_)))
    {
        return Ok(None);
    }
    let input_schema = aggregate.input.schema();
    // Each function's partial aggregates, as indices into the distinct partials (`avg(x)` and
    // `sum(x)` share `sum(x)`: an aggregate cannot compute the same expression twice).
    let mut functions: Vec<(Kind, Vec<usize>)> = Vec::with_capacity(aggregate.aggr_expr.len());
    let mut distinct: Vec<Expr> = vec![];
    let mut index_of = |expr: Expr| match distinct.iter().position(|d| *d == expr) {
        Some(i) => i,
        None => {
            distinct.push(expr);
            distinct.len() - 1
        }
    };
    for expr in &aggregate.aggr_expr {
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(function) = inner else {
            return Ok(None);
        };
        let Some(kind) = kind(function, input_schema)? else {
            return Ok(None);
        };
        let arg = function
            .params
            .args
            .first()
            .cloned()
            .unwrap_or_else(|| lit(1));
        let parts = match kind {
            Kind::Count => vec![index_of(count(arg))],
            Kind::Sum => vec![index_of(sum(arg))],
            Kind::Min => vec![index_of(min(arg))],
            Kind::Max => vec![index_of(max(arg))],
            Kind::Avg => {
                // avg of integers arrives as avg(CAST(x AS Float64)); the partial sums and counts
                // x itself (shared with a sum(x) of the same query), and the final step divides
                // as Float64.
                let arg = match arg {
                    Expr::Cast(c) if c.field.data_type() == &DataType::Float64 => *c.expr,
                    other => other,
                };
                vec![index_of(sum(arg.clone())), index_of(count(arg))]
            }
        };
        functions.push((kind, parts));
    }

    // The partial aggregate of each input, with fixed output names so the union lines up.
    let mut partials = Vec::with_capacity(union.inputs.len());
    for input in &union.inputs {
        // The aggregate's input columns, by position, are the union input's columns.
        let rename = |expr: &Expr| -> Result<Expr> {
            expr.clone()
                .transform(|e| match e {
                    Expr::Column(column) => {
                        let index = input_schema.index_of_column(&column)?;
                        let (qualifier, field) = input.schema().qualified_field(index);
                        Ok(Transformed::yes(Expr::Column(Column::new(
                            qualifier.cloned(),
                            field.name(),
                        ))))
                    }
                    other => Ok(Transformed::no(other)),
                })
                .map(|t| t.data)
        };
        let group: Vec<Expr> = aggregate
            .group_expr
            .iter()
            .enumerate()
            .map(|(i, e)| Ok(rename(e)?.alias(group_name(i))))
            .collect::<Result<_>>()?;
        let aggr: Vec<Expr> = distinct
            .iter()
            .enumerate()
            .map(|(j, e)| Ok(rename(e)?.alias(part_name(j))))
            .collect::<Result<_>>()?;
        partials.push(
            LogicalPlanBuilder::from(input.as_ref().clone())
                .aggregate(group, aggr)?
                .build()?,
        );
    }
    let mut partials = partials.into_iter();
    let mut builder = LogicalPlanBuilder::from(partials.next().expect("two inputs or more"));
    for partial in partials {
        builder = builder.union(partial)?;
    }

    // The final aggregate over the partial results, and the original names and types.
    let group: Vec<Expr> = (0..aggregate.group_expr.len())
        .map(|i| col(group_name(i)))
        .collect();
    // How each distinct partial combines: counts and sums add up, minima and maxima repeat.
    let aggr: Vec<Expr> = distinct
        .iter()
        .enumerate()
        .map(|(j, e)| {
            let part = col(part_name(j));
            let combined = match e {
                Expr::AggregateFunction(f) if f.func.name() == "min" => min(part),
                Expr::AggregateFunction(f) if f.func.name() == "max" => max(part),
                _ => sum(part),
            };
            combined.alias(part_name(j))
        })
        .collect();
    let builder = builder.aggregate(group, aggr)?;
    let original = aggregate.schema.as_ref();
    let groups = aggregate.group_expr.len();
    let mut projection = Vec::with_capacity(original.fields().len());
    for (index, (qualifier, field)) in original.iter().enumerate() {
        let expr = if index < groups {
            col(group_name(index))
        } else {
            let (kind, parts) = &functions[index - groups];
            let part = |k: usize| col(part_name(parts[k]));
            match kind {
                // No row at all counts 0, as the one-step count does.
                Kind::Count => coalesce(vec![part(0), lit(ScalarValue::Int64(Some(0)))]),
                Kind::Sum | Kind::Min | Kind::Max => part(0),
                Kind::Avg => {
                    cast(part(0), DataType::Float64)
                        / cast(nullif(part(1), lit(0i64)), DataType::Float64)
                }
            }
        };
        projection.push(
            cast(expr, field.data_type().clone()).alias_qualified(qualifier.cloned(), field.name()),
        );
    }
    Ok(Some(builder.project(projection)?.build()?))
}

fn group_name(i: usize) -> String {
    format!("__polder_group_{i}")
}

fn part_name(index: usize) -> String {
    format!("__polder_partial_{index}")
}
