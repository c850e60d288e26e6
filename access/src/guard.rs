//! Raw access with restrictions: denied columns, column masks and a row filter.
//!
//! A [`GuardedTable`] wraps a dataset for one caller. Its schema lacks the denied columns; a
//! masked column keeps its name and type but holds what the mask computes from the stored row
//! (`left(postcode, 4)`, `NULL`, `date_trunc('month', ts)`); the row filter is applied before any
//! row leaves the scan. All three sit inside the scan, below everything the caller's query adds,
//! so a caller's filter, join or aggregate only ever sees the restricted rows and masked values.
//!
//! Policy expressions are SQL over the dataset's columns. The caller's claims enter them only as
//! bound parameters (`$sub`, `$iss`, `$org`, `$purpose` as text; `$groups`, `$roles` as lists of
//! text): a claim value is a literal in the expression tree, never spliced into SQL text. An
//! absent claim is NULL, so a filter comparing with it keeps no rows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::{
    Expr, ExprSchemable, TableProviderFilterPushDown, TableType, cast, lit,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;

use crate::auth::Claims;

/// The claims a policy expression may name, with their types.
pub const PARAMETERS: [&str; 6] = ["$sub", "$iss", "$org", "$purpose", "$groups", "$roles"];

/// What makes `node` more than an expression over one row: a subquery, a reference to an
/// outer query, an aggregate or window function (as a sentence's object: "no subquery ...").
pub(crate) fn not_row_level(node: &Expr) -> Option<&'static str> {
    match node {
        Expr::ScalarSubquery(_) | Expr::InSubquery(_) | Expr::Exists(_) => {
            Some("no subquery (EXISTS, IN (SELECT ...), scalar subqueries)")
        }
        Expr::OuterReferenceColumn(..) => Some("no reference to an outer query"),
        Expr::AggregateFunction(_) | Expr::WindowFunction(_) => {
            Some("no aggregate or window function")
        }
        _ => None,
    }
}

/// The first problem `check` finds in `expr`, walking it from the top.
pub(crate) fn first_problem<T>(
    expr: &Expr,
    mut check: impl FnMut(&Expr) -> Option<T>,
) -> Result<Option<T>> {
    let mut problem = None;
    expr.apply(|node| {
        problem = check(node);
        Ok(if problem.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    })?;
    Ok(problem)
}

/// Parses the policy expression `text` over a dataset with schema `schema`, binds the caller's
/// `claims` to its parameters and checks what a policy expression may not do. The error names
/// the problem (an unknown column, function or parameter, a subquery, an aggregate).
pub fn compile(state: &SessionState, schema: &Schema, text: &str, claims: &Claims) -> Result<Expr> {
    let df_schema = DFSchema::try_from(schema.clone())?;
    let parsed = state.create_logical_expr(text, &df_schema)?;
    let problem = first_problem(&parsed, |e| match e {
        Expr::Placeholder(p) if !PARAMETERS.contains(&p.id.as_str()) => Some(format!(
            "unknown parameter {}; a policy expression may use {}",
            p.id,
            PARAMETERS.join(", ")
        )),
        other => not_row_level(other).map(|why| format!("a policy expression allows {why}")),
    })?;
    if let Some(problem) = problem {
        return Err(DataFusionError::Plan(problem));
    }
    let bound = parsed
        .transform(|e| match e {
            Expr::Placeholder(p) => Ok(Transformed::yes(lit(claim(claims, &p.id)))),
            other => Ok(Transformed::no(other)),
        })?
        .data;
    // Resolves every function and type now, so a bad expression fails here and not mid-query.
    bound.get_type(&df_schema)?;
    Ok(bound)
}

/// The value of the claim a parameter names.
fn claim(claims: &Claims, parameter: &str) -> ScalarValue {
    let text = |v: Option<&String>| ScalarValue::Utf8(v.cloned());
    let list = |values: &[String]| {
        let values: Vec<ScalarValue> = values
            .iter()
            .map(|v| ScalarValue::Utf8(Some(v.clone())))
            .collect();
        ScalarValue::List(ScalarValue::new_list_nullable(&values, &DataType::Utf8))
    };
    match parameter {
        "$sub" => text(Some(&claims.sub)),
        "$iss" => text(Some(&claims.iss)),
        "$org" => text(claims.org.as_ref()),
        "$purpose" => text(claims.purpose.as_ref()),
        "$groups" => list(&claims.groups),
        "$roles" => list(&claims.roles),
        // compile() refuses other parameters before binding.
        _ => ScalarValue::Utf8(None),
    }
}

/// Checks a row filter: it compiles for a caller with every claim, and it is a condition.
pub fn check_row_filter(state: &SessionState, schema: &Schema, text: &str) -> Result<()> {
    let expr = compile(state, schema, text, &Claims::example())?;
    let df_schema = DFSchema::try_from(schema.clone())?;
    match expr.get_type(&df_schema)? {
        DataType::Boolean | DataType::Null => Ok(()),
        other => Err(DataFusionError::Plan(format!(
            "a row filter must be a condition (boolean), not {other}"
        ))),
    }
}

/// Checks a mask: it compiles, and what it computes is the same kind of value as the column
/// (the same type, NULL, a number for a number, text for text), so converting it cannot fail.
pub fn check_mask(state: &SessionState, schema: &Schema, column: &str, text: &str) -> Result<()> {
    let expr = compile(state, schema, text, &Claims::example())?;
    let df_schema = DFSchema::try_from(schema.clone())?;
    let target = schema.field_with_name(column)?.data_type();
    let computed = expr.get_type(&df_schema)?;
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    // The same kind of value: a cast between kinds (text to number) could fail mid-query.
    let same_kind = computed == *target
        || computed == DataType::Null
        || (computed.is_numeric() && target.is_numeric())
        || (text(&computed) && text(target));
    if same_kind {
        Ok(())
    } else {
        Err(DataFusionError::Plan(format!(
            "the mask computes {computed}, which is not the same kind of value as the column's type {target}"
        )))
    }
}

/// A dataset as one caller may read it raw (see the module docs).
#[derive(Debug)]
pub struct GuardedTable {
    inner: Arc<dyn TableProvider>,
    /// The inner table's index of each visible column.
    visible: Vec<usize>,
    /// Bound mask expressions by column name.
    masks: BTreeMap<String, Expr>,
    /// The bound row filter.
    row_filter: Option<Expr>,
    schema: SchemaRef,
}

impl GuardedTable {
    /// Wraps `inner` without the `denied` columns, with `masks` (bound expressions by column)
    /// and keeping only rows for which `row_filter` is true.
    pub fn new(
        inner: Arc<dyn TableProvider>,
        denied: &[String],
        masks: BTreeMap<String, Expr>,
        row_filter: Option<Expr>,
    ) -> Self {
        let full = inner.schema();
        let visible: Vec<usize> = full
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !denied.contains(f.name()))
            .map(|(i, _)| i)
            .collect();
        let fields: Vec<Field> = visible
            .iter()
            .map(|&i| {
                let field = full.field(i);
                if masks.contains_key(field.name()) {
                    // NULL is a mask too.
                    field.clone().with_nullable(true)
                } else {
                    field.clone()
                }
            })
            .collect();
        let schema = Arc::new(Schema::new_with_metadata(fields, full.metadata().clone()));
        Self {
            inner,
            visible,
            masks,
            row_filter,
            schema,
        }
    }

    /// Whether the table is the inner table minus some columns, and nothing else.
    fn only_projects(&self) -> bool {
        self.masks.is_empty() && self.row_filter.is_none()
    }

    fn names_masked_column(&self, expr: &Expr) -> bool {
        expr.column_refs()
            .iter()
            .any(|c| self.masks.contains_key(&c.name))
    }
}

#[async_trait]
impl TableProvider for GuardedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // A filter on a masked column is about the masked value, which the inner table does not
        // hold: it stays above the scan. Others name visible columns by their inner names; the
        // inner table may use them, and the row filter still applies to what it returns.
        let passable: Vec<&Expr> = filters
            .iter()
            .copied()
            .filter(|f| !self.names_masked_column(f))
            .collect();
        let mut inner = self.inner.supports_filters_pushdown(&passable)?.into_iter();
        filters
            .iter()
            .map(|f| {
                if self.names_masked_column(f) {
                    Ok(TableProviderFilterPushDown::Unsupported)
                } else {
                    inner.next().ok_or_else(|| {
                        DataFusionError::Internal("filter pushdown answer missing".into())
                    })
                }
            })
            .collect()
    }

    fn statistics(&self) -> Option<Statistics> {
        let inner = self.inner.statistics()?;
        let full = self.inner.schema();
        let stats = Statistics {
            num_rows: inner.num_rows,
            total_byte_size: inner.total_byte_size,
            column_statistics: self
                .visible
                .iter()
                .filter_map(|&i| {
                    let stats = inner.column_statistics.get(i)?.clone();
                    if self.masks.contains_key(full.field(i).name()) {
                        Some(datafusion::common::ColumnStatistics::new_unknown())
                    } else {
                        Some(stats)
                    }
                })
                .collect(),
        };
        // Fewer rows pass the row filter; masked values have unknown bounds.
        Some(if self.only_projects() {
            stats
        } else {
            stats.to_inexact()
        })
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let out: Vec<usize> = match projection {
            Some(projection) => projection.iter().map(|&i| self.visible[i]).collect(),
            None => self.visible.clone(),
        };
        if self.only_projects() {
            return self.inner.scan(state, Some(&out), filters, limit).await;
        }
        let full = self.inner.schema();
        // The inner columns the output, the masks of the output and the row filter need.
        let mut needed: BTreeSet<usize> = out.iter().copied().collect();
        let mut refer = |expr: &Expr| -> Result<()> {
            for column in expr.column_refs() {
                needed.insert(full.index_of(&column.name)?);
            }
            Ok(())
        };
        if let Some(filter) = &self.row_filter {
            refer(filter)?;
        }
        for &i in &out {
            if let Some(mask) = self.masks.get(full.field(i).name()) {
                refer(mask)?;
            }
        }
        let needed: Vec<usize> = needed.into_iter().collect();
        // A limit counts rows before the row filter drops some: only the caller's plan applies it.
        let inner_limit = if self.row_filter.is_some() {
            None
        } else {
            limit
        };
        let mut plan = self
            .inner
            .scan(state, Some(&needed), filters, inner_limit)
            .await?;
        let scanned = DFSchema::try_from(plan.schema().as_ref().clone())?;
        if let Some(filter) = &self.row_filter {
            let predicate = state.create_physical_expr(filter.clone(), &scanned)?;
            plan = Arc::new(FilterExec::try_new(predicate, plan)?);
        }
        let mut exprs = Vec::with_capacity(out.len());
        for &i in &out {
            let field = full.field(i);
            let expr = match self.masks.get(field.name()) {
                Some(mask) => cast(mask.clone(), field.data_type().clone()),
                None => Expr::Column(Column::new_unqualified(field.name())),
            };
            exprs.push((
                state.create_physical_expr(expr, &scanned)?,
                field.name().clone(),
            ));
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, plan)?))
    }
}
