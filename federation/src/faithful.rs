//! Parts of a plan rewritten so that the SQL unparsed for a peer means what the part means.
//!
//! DataFusion's unparser writes some plans as SQL that a peer reads differently: the rewrites
//! here give such a part a form, with the same schema, that the unparser writes faithfully.
//!
//! - A GROUP BY naming one expression twice: the aggregate's schema has the key once, while
//!   the unparser finds output columns by position among the keys, so that `SELECT count(*)
//!   ... GROUP BY k, k` was sent as `SELECT k ... GROUP BY k, k`. The keys are deduplicated
//!   ([`unique_group_keys`]).
//! - A constant GROUP BY key (one the optimizer folded, `CASE WHEN key IS NULL THEN key ELSE -2
//!   END`) is written as a bare number, which a peer reads as a column position (`GROUP BY -2`):
//!   refused, or grouped by another column. The constant is written as a cast of itself
//!   ([`typed_constant_keys`]), which no SQL engine reads as a position.
//! - A cross join with one row of no columns (a subquery the optimizer reduced to that, `(SELECT
//!   count(*) FROM (VALUES (1)))` whose count is unused) is written without its FROM clause.
//!   Joining one row of nothing changes nothing, so the join becomes its other side
//!   ([`without_unit_joins`]).
//! - A projected expression named by an alias inside it (`CAST(o AS c0 AS BIGINT)`, as
//!   DataFusion decorrelates `x IN (SELECT o AS c0 ...)` of another type) is written without
//!   the alias, which the unparser writes only at the top: the peer's column has another name
//!   than the part's (`No field named __correlated_sq_1.c0`). The alias moves to the top
//!   ([`named_columns`]).
//! - A semi or anti join (`EXISTS`, `IN`, `EXCEPT`, `INTERSECT`) is written as `[NOT] EXISTS
//!   (SELECT 1 FROM <right side> WHERE <condition>)`: NULL keys never match there, while
//!   `EXCEPT` and `INTERSECT` match them, and a `NOT IN` (a null-aware anti join) keeps no row
//!   once the subquery has a NULL; and the right side loses its projection, so that a
//!   condition on a computed column names a column the peer does not have. A null-aware anti
//!   join is written as the `NOT IN` it is; otherwise the right side becomes a derived table
//!   with its columns named, and keys that match NULLs are compared with `IS NOT DISTINCT
//!   FROM` ([`semi_joins_as_written`]). A `NOT IN` with a correlated condition has no such
//!   form: it is refused, as DataFusion refuses it on one node.
//!
//! - A semi or anti join at the top of a SELECT (the part itself, or a derived table, perhaps
//!   under filters, sorts, limits or DISTINCT) is written with no columns: `SELECT FROM ...
//!   WHERE NOT EXISTS (...)` (an `EXCEPT` of two tables of one peer), whose answer has none.
//!   Such a join gets a projection of its columns ([`projected_semi_join`]).
//! - An `ORDER BY` of a name the SELECT gives an expression (`SELECT count(*) AS c3 FROM (...)
//!   AS t1 GROUP BY t1.c3, t1.c0 ORDER BY c3`) is written as the GROUP BY key of that name
//!   (`ORDER BY t1.c3`): another order, or on the peer an ambiguity error. The sort then reads
//!   the SELECT as a derived table, by its output names ([`sort_by_output_names`]).
//! - An aliased projection of an aliased table scan with filters (`(SELECT t2.tag AS c4 FROM
//!   tags AS t2 WHERE t2.weight > 5) AS t1`) is written with the outer alias on the table and
//!   the inner one in the filters (`FROM tags AS t1 WHERE t2.weight > 5`), which the peer
//!   refuses. The inner alias goes: the projection names the table's columns by the table
//!   ([`without_inner_scan_alias`]).
//!
//! A part that reads no table at all (the optimizer proved its join empty) is not sent: see
//! [`reads_a_table`].

use std::sync::Arc;

use datafusion::common::not_impl_err;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, NullEquality, Spans};
use datafusion::error::Result;
use datafusion::logical_expr::expr::InSubquery;
use datafusion::logical_expr::{
    Aggregate, BinaryExpr, Cast, EmptyRelation, Expr, Filter, Join, JoinType, LogicalPlan,
    Operator, Projection, Sort, Subquery, SubqueryAlias,
};

/// `plan`, a part sent to a peer, in a form the unparser writes faithfully (see the module
/// docs), subqueries included. Its schema stays as it was.
pub(crate) fn part_for_peer(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let mut derived_tables = 0;
    let rewritten = plan.transform_up_with_subqueries(|node| {
        unique_group_keys(node)?
            .transform_data(typed_constant_keys)?
            .transform_data(without_unit_joins)?
            .transform_data(|node| semi_joins_as_written(node, &mut derived_tables))?
            .transform_data(named_columns)?
            .transform_data(|node| sort_by_output_names(node, &mut derived_tables))?
            .transform_data(without_inner_scan_alias)?
            .transform_data(|node| match node {
                LogicalPlan::SubqueryAlias(_) => node.map_children(projected_semi_join),
                node => Ok(Transformed::no(node)),
            })
    })?;
    rewritten
        .transform_data(projected_semi_join)?
        .transform_data(crate::dialect::plan_with_typed_decimals)
}

/// `plan`, the top of a SELECT, with a projection of its columns over a semi or anti join at
/// its top (under filters, sorts, limits and DISTINCT) whose left side is a derived table:
/// the unparser takes the SELECT's columns from the left side when it is part of the same
/// SELECT (an aggregate, a projection), and writes none otherwise.
fn projected_semi_join(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    match &plan {
        LogicalPlan::Join(join)
            if matches!(join.join_type, JoinType::LeftSemi | JoinType::LeftAnti)
                && matches!(join.left.as_ref(), LogicalPlan::SubqueryAlias(_)) =>
        {
            let columns = plan
                .schema()
                .columns()
                .into_iter()
                .map(Expr::Column)
                .collect();
            let projection = Projection::try_new(columns, Arc::new(plan))?;
            Ok(Transformed::yes(LogicalPlan::Projection(projection)))
        }
        LogicalPlan::Filter(_)
        | LogicalPlan::Sort(_)
        | LogicalPlan::Limit(_)
        | LogicalPlan::Distinct(_) => plan.map_children(projected_semi_join),
        _ => Ok(Transformed::no(plan)),
    }
}

/// A sort over a projection that names an expression as the aggregate below it names a column
/// (see the module docs), as `Sort <- Projection(<the columns, by their names>) <-
/// SubqueryAlias(polder_sorted_n) <- <the projection>`.
fn sort_by_output_names(
    node: LogicalPlan,
    derived_tables: &mut usize,
) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Sort(sort) = &node else {
        return Ok(Transformed::no(node));
    };
    let LogicalPlan::Projection(projection) = sort.input.as_ref() else {
        return Ok(Transformed::no(node));
    };
    let Some(aggregate) = aggregate_of_select(&projection.input) else {
        return Ok(Transformed::no(node));
    };
    let clashes = |column: &Column| {
        let Ok(i) = projection.schema.index_of_column(column) else {
            return false;
        };
        let same_column = matches!(projection.expr[i].clone().unalias(),
            Expr::Column(produced) if produced.name == column.name);
        !same_column && aggregate.schema.is_column_from_schema(column)
    };
    if !sort
        .expr
        .iter()
        .any(|s| s.expr.column_refs().into_iter().any(clashes))
    {
        return Ok(Transformed::no(node));
    }
    let alias = format!("polder_sorted_{}", *derived_tables + 1);
    let Ok(derived) = SubqueryAlias::try_new(Arc::clone(&sort.input), alias.as_str()) else {
        // Output names that only their qualifiers tell apart cannot name a derived table's
        // columns; such a part stays as it was.
        return Ok(Transformed::no(node));
    };
    *derived_tables += 1;
    let columns = projection
        .schema
        .iter()
        .map(|(qualifier, field)| {
            Expr::Column(Column::new(Some(alias.as_str()), field.name()))
                .alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    // The sort stays on top (a LIMIT above it must stay in its SELECT), over the columns by
    // their names again, and names them without qualifier: a qualifier of an output column
    // (`t3.c0` for `SELECT t3.c0 ... ORDER BY c0`) names nothing in the SQL written.
    let restored = Projection::try_new(columns, Arc::new(LogicalPlan::SubqueryAlias(derived)))?;
    let unqualified = |expr: Expr| -> Result<Expr> {
        expr.transform(|e| match e {
            Expr::Column(column) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                column.name,
            )))),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    };
    let order = sort
        .expr
        .iter()
        .map(|s| Ok(s.with_expr(unqualified(s.expr.clone())?)))
        .collect::<Result<Vec<_>>>()?;
    let sorted = LogicalPlan::Sort(Sort {
        expr: order,
        input: Arc::new(LogicalPlan::Projection(restored)),
        fetch: sort.fetch,
    });
    Ok(Transformed::yes(sorted))
}

/// The aggregate the unparser takes a SELECT's to be: the first below `plan` through nodes of
/// one input, not past another projection.
fn aggregate_of_select(plan: &LogicalPlan) -> Option<&Aggregate> {
    match plan {
        LogicalPlan::Aggregate(aggregate) => Some(aggregate),
        LogicalPlan::Projection(_) | LogicalPlan::TableScan(_) => None,
        other => match other.inputs().as_slice() {
            [input] => aggregate_of_select(input),
            _ => None,
        },
    }
}

/// Whether `plan` reads a table: a part that reads none runs where it is, as nothing of it
/// needs the peer (and the unparser writes an empty relation as no FROM clause at all).
pub(crate) fn reads_a_table(plan: &LogicalPlan) -> bool {
    let mut found = false;
    plan.apply_with_subqueries(|node| {
        found = matches!(node, LogicalPlan::TableScan(_));
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })
    .expect("infallible");
    found
}

/// A semi or anti join in a form the unparser writes faithfully (see the module docs);
/// `derived_tables` counts the derived tables made so far in the part, to name them apart.
fn semi_joins_as_written(
    node: LogicalPlan,
    derived_tables: &mut usize,
) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Join(join) = &node else {
        return Ok(Transformed::no(node));
    };
    if !matches!(join.join_type, JoinType::LeftSemi | JoinType::LeftAnti) {
        return Ok(Transformed::no(node));
    }
    if join.null_aware {
        let Some((key, other_key)) = only_key(join) else {
            // A NOT IN with a correlated condition. DataFusion refuses it on one node (its
            // null-aware anti join takes one key); written as NOT EXISTS, a peer would keep
            // the rows a NULL in the subquery removes.
            return not_impl_err!(
                "NOT IN (SELECT ...) with a correlated condition: write it as NOT EXISTS (...) \
                 (with IS NOT NULL conditions if NULLs should remove rows)"
            );
        };
        let values =
            Projection::try_new(vec![other_key.clone().alias("c0")], Arc::clone(&join.right))?;
        let subquery = Subquery {
            subquery: Arc::new(LogicalPlan::Projection(values)),
            outer_ref_columns: vec![],
            spans: Spans::new(),
        };
        let predicate = Expr::InSubquery(InSubquery::new(
            Box::new(key.clone()),
            subquery,
            join.join_type == JoinType::LeftAnti,
        ));
        let filter = Filter::try_new(predicate, Arc::clone(&join.left))?;
        return Ok(Transformed::yes(LogicalPlan::Filter(filter)));
    }
    let nulls_match = join.null_equality == NullEquality::NullEqualsNull;
    if !nulls_match && (is_plain_relation(&join.right) || is_derived_table_of_ours(&join.right)) {
        return Ok(Transformed::no(node));
    }
    *derived_tables += 1;
    let alias = format!("polder_sq_{derived_tables}");
    let right_columns = join.right.schema().columns();
    let named = right_columns
        .iter()
        .enumerate()
        .map(|(i, column)| Expr::Column(column.clone()).alias(format!("c{i}")))
        .collect();
    let projection = Projection::try_new(named, Arc::clone(&join.right))?;
    let right = SubqueryAlias::try_new(Arc::new(LogicalPlan::Projection(projection)), &alias)?;
    let left_schema = join.left.schema();
    let rename = |expr: Expr| -> Result<Expr> {
        expr.transform(|e| match e {
            Expr::Column(column) if !left_schema.has_column(&column) => {
                match right_columns.iter().position(|c| c == &column) {
                    Some(i) => Ok(Transformed::yes(Expr::Column(Column::new(
                        Some(alias.as_str()),
                        format!("c{i}"),
                    )))),
                    None => Ok(Transformed::no(Expr::Column(column))),
                }
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    };
    let mut on = join
        .on
        .iter()
        .map(|(key, other_key)| Ok((key.clone(), rename(other_key.clone())?)))
        .collect::<Result<Vec<_>>>()?;
    let mut filter = join.filter.clone().map(rename).transpose()?;
    if nulls_match {
        for (key, other_key) in on.drain(..) {
            let matches = Expr::BinaryExpr(BinaryExpr::new(
                Box::new(key),
                Operator::IsNotDistinctFrom,
                Box::new(other_key),
            ));
            filter = Some(match filter {
                Some(filter) => filter.and(matches),
                None => matches,
            });
        }
    }
    let rewritten = Join::try_new(
        Arc::clone(&join.left),
        Arc::new(LogicalPlan::SubqueryAlias(right)),
        on,
        filter,
        join.join_type,
        join.join_constraint,
        NullEquality::NullEqualsNothing,
        false,
    )?;
    Ok(Transformed::yes(LogicalPlan::Join(rewritten)))
}

/// The key of a join on one equality of a column of the left side with one of the right side,
/// as an equijoin key or (before DataFusion extracts keys) its filter.
fn only_key(join: &Join) -> Option<(&Expr, &Expr)> {
    match (join.on.as_slice(), &join.filter) {
        ([(key, other_key)], None) => Some((key, other_key)),
        (
            [],
            Some(Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::Eq,
                right,
            })),
        ) => {
            let side_of = |expr: &Expr| {
                let columns = expr.column_refs();
                if columns.is_empty() {
                    None
                } else if columns.iter().all(|c| join.left.schema().has_column(c)) {
                    Some(true)
                } else if columns.iter().all(|c| join.right.schema().has_column(c)) {
                    Some(false)
                } else {
                    None
                }
            };
            match (side_of(left)?, side_of(right)?) {
                (true, false) => Some((left, right)),
                (false, true) => Some((right, left)),
                _ => None,
            }
        }
        _ => None,
    }
}

/// `SubqueryAlias(a) <- Projection <- SubqueryAlias(b) <- TableScan(with filters)` without
/// `SubqueryAlias(b)`, the projection naming the scan's columns by its table (see the module
/// docs). The schemas stay as they were.
fn without_inner_scan_alias(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::SubqueryAlias(outer) = &node else {
        return Ok(Transformed::no(node));
    };
    let LogicalPlan::Projection(projection) = outer.input.as_ref() else {
        return Ok(Transformed::no(node));
    };
    let LogicalPlan::SubqueryAlias(inner) = projection.input.as_ref() else {
        return Ok(Transformed::no(node));
    };
    let LogicalPlan::TableScan(scan) = inner.input.as_ref() else {
        return Ok(Transformed::no(node));
    };
    if scan.filters.is_empty() {
        return Ok(Transformed::no(node));
    }
    let exprs = projection
        .expr
        .iter()
        .map(|expr| {
            expr.clone()
                .transform(|e| match e {
                    Expr::Column(column) if column.relation.as_ref() == Some(&inner.alias) => {
                        Ok(Transformed::yes(Expr::Column(Column::new(
                            Some(scan.table_name.clone()),
                            column.name,
                        ))))
                    }
                    other => Ok(Transformed::no(other)),
                })
                .map(|t| t.data)
        })
        .collect::<Result<Vec<_>>>()?;
    let projection = Projection::try_new_with_schema(
        exprs,
        Arc::clone(&inner.input),
        Arc::clone(&projection.schema),
    )?;
    let outer = SubqueryAlias::try_new(
        Arc::new(LogicalPlan::Projection(projection)),
        outer.alias.clone(),
    )?;
    Ok(Transformed::yes(LogicalPlan::SubqueryAlias(outer)))
}

/// The derived table this rewrite made of a right side already (the part is prepared again
/// each time the planner looks at it).
fn is_derived_table_of_ours(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::SubqueryAlias(alias) if alias.alias.table().starts_with("polder_sq_"))
}

/// A table, perhaps aliased, filtered or with some of its columns picked: the unparser writes
/// it as the `FROM` and `WHERE` of an `EXISTS` subquery whose columns are the table's.
fn is_plain_relation(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::TableScan(_) => true,
        LogicalPlan::SubqueryAlias(alias) => is_plain_relation(&alias.input),
        LogicalPlan::Filter(filter) => is_plain_relation(&filter.input),
        LogicalPlan::Projection(projection) => {
            projection.expr.iter().all(|e| matches!(e, Expr::Column(_)))
                && is_plain_relation(&projection.input)
        }
        _ => false,
    }
}

/// A projection whose expressions named by an alias inside them carry that name at the top.
fn named_columns(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Projection(projection) = &node else {
        return Ok(Transformed::no(node));
    };
    let nested_alias = |expr: &Expr| {
        !matches!(expr, Expr::Alias(_))
            && expr
                .exists(|e| Ok(matches!(e, Expr::Alias(_))))
                .unwrap_or(false)
    };
    if !projection.expr.iter().any(nested_alias) {
        return Ok(Transformed::no(node));
    }
    let exprs = projection
        .expr
        .iter()
        .enumerate()
        .map(|(i, expr)| {
            if !nested_alias(expr) {
                return expr.clone();
            }
            let (qualifier, field) = projection.schema.qualified_field(i);
            expr.clone()
                .unalias_nested()
                .data
                .alias_qualified(qualifier.cloned(), field.name())
        })
        .collect();
    let renamed = Projection::try_new_with_schema(
        exprs,
        Arc::clone(&projection.input),
        Arc::clone(&projection.schema),
    )?;
    Ok(Transformed::yes(LogicalPlan::Projection(renamed)))
}

/// An aggregate with each of its GROUP BY keys once (the schema has each once already).
fn unique_group_keys(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Aggregate(aggregate) = &node else {
        return Ok(Transformed::no(node));
    };
    let mut unique: Vec<Expr> = Vec::with_capacity(aggregate.group_expr.len());
    for key in &aggregate.group_expr {
        if !unique.contains(key) {
            unique.push(key.clone());
        }
    }
    if unique.len() == aggregate.group_expr.len() {
        return Ok(Transformed::no(node));
    }
    rebuilt(&node, aggregate, unique)
}

/// An aggregate whose integer constant keys are written as casts (`GROUP BY CAST(-2 AS
/// BIGINT)`), under their own names.
fn typed_constant_keys(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Aggregate(aggregate) = &node else {
        return Ok(Transformed::no(node));
    };
    if !aggregate
        .group_expr
        .iter()
        .any(|key| as_cast(key).is_some())
    {
        return Ok(Transformed::no(node));
    }
    let keys = aggregate
        .group_expr
        .iter()
        .map(|key| as_cast(key).unwrap_or_else(|| key.clone()))
        .collect();
    rebuilt(&node, aggregate, keys)
}

/// An integer constant, perhaps aliased, as a cast of itself under the same name; `None` for
/// any other expression.
fn as_cast(key: &Expr) -> Option<Expr> {
    match key {
        Expr::Literal(value, _) if value.data_type().is_integer() && !value.is_null() => Some(
            Expr::Cast(Cast::new(Box::new(key.clone()), value.data_type()))
                .alias(key.schema_name().to_string()),
        ),
        Expr::Alias(alias) => {
            let cast = as_cast(&alias.expr)?;
            Some(
                cast.unalias()
                    .alias_qualified(alias.relation.clone(), &alias.name),
            )
        }
        _ => None,
    }
}

/// `aggregate` with `keys` instead of its GROUP BY keys, if that keeps its schema.
fn rebuilt(
    node: &LogicalPlan,
    aggregate: &Aggregate,
    keys: Vec<Expr>,
) -> Result<Transformed<LogicalPlan>> {
    let rebuilt = Aggregate::try_new(
        Arc::clone(&aggregate.input),
        keys,
        aggregate.aggr_expr.clone(),
    )?;
    if rebuilt.schema.fields() != aggregate.schema.fields()
        || rebuilt.schema.columns() != aggregate.schema.columns()
    {
        return Ok(Transformed::no(node.clone()));
    }
    Ok(Transformed::yes(LogicalPlan::Aggregate(rebuilt)))
}

/// A cross join (or inner join on a condition) with one row of no columns, as its other side
/// (under the join's condition, if any).
fn without_unit_joins(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Join(join) = &node else {
        return Ok(Transformed::no(node));
    };
    if join.join_type != JoinType::Inner || !join.on.is_empty() {
        return Ok(Transformed::no(node));
    }
    let other = if is_unit(&join.left) {
        &join.right
    } else if is_unit(&join.right) {
        &join.left
    } else {
        return Ok(Transformed::no(node));
    };
    let plan = match &join.filter {
        Some(condition) => {
            LogicalPlan::Filter(Filter::try_new(condition.clone(), Arc::clone(other))?)
        }
        None => other.as_ref().clone(),
    };
    Ok(Transformed::yes(plan))
}

/// One row of no columns, perhaps under an alias or a projection of nothing.
fn is_unit(plan: &LogicalPlan) -> bool {
    match plan {
        LogicalPlan::EmptyRelation(EmptyRelation {
            produce_one_row: true,
            schema,
        }) => schema.fields().is_empty(),
        LogicalPlan::SubqueryAlias(alias) => is_unit(&alias.input),
        LogicalPlan::Projection(projection) => {
            projection.expr.is_empty() && is_unit(&projection.input)
        }
        _ => false,
    }
}
