//! Aggregate-only access with a minimum group size.
//!
//! A dataset the policy grants a caller as `aggregate` is an [`AggregateOnlyTable`] in the
//! caller's session. [`AggregateOnlyRule`], an analyzer rule of that session, runs on every plan
//! before anything executes (`EXPLAIN` included) and:
//!
//! 1. accepts such a table only in one shape, a positive list: directly under an `Aggregate`
//!    (through filters, column renames and aliases, nothing else: no join, window, `DISTINCT`
//!    or computed column in between); filters and `FILTER (WHERE ...)` clauses name only
//!    allowed dimensions, with no subquery and no reference to an outer query; grouping
//!    expressions use only the allowed dimensions; each aggregate is an allowed function of
//!    columns as stored (no expression inside it), the privacy unit only inside `count`;
//! 2. rewrites that aggregate to also count the distinct privacy units of each group and keeps
//!    only the groups with at least `min_group_size` of them;
//! 3. refuses the query if any scan of such a table is not covered by step 2: raw rows never
//!    leave the node.
//!
//! The filter sits directly on the aggregate, below any `HAVING`, so no later clause can bring a
//! small group back.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{AsArray, BooleanArray};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::Column;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions_aggregate::count::count_distinct;
use datafusion::logical_expr::{
    Aggregate, ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, TableProviderFilterPushDown, TableType, Volatility, col, lit,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_plan::ExecutionPlan;
use polder_flight_sql::Error;

use crate::guard::{first_problem, not_row_level};
use crate::policy::{AggregateSpec, Violation};

/// The column the rule adds to count each group's distinct privacy units.
const UNITS: &str = "__polder_units";

/// A dataset the caller may only aggregate.
#[derive(Debug)]
pub struct AggregateOnlyTable {
    inner: Arc<dyn TableProvider>,
    dataset: String,
    spec: AggregateSpec,
}

impl AggregateOnlyTable {
    /// Wraps `inner`, the dataset `dataset`, under `spec`.
    pub fn new(inner: Arc<dyn TableProvider>, dataset: String, spec: AggregateSpec) -> Self {
        Self {
            inner,
            dataset,
            spec,
        }
    }
}

#[async_trait]
impl TableProvider for AggregateOnlyTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }
}

/// Enforces aggregate-only access on every plan of a session (see the module docs).
///
/// With `on_violation = "suppress"`, the groups the rule leaves out are counted in
/// [`AggregateOnlyRule::suppressed`], for the audit log.
#[derive(Debug, Default)]
pub struct AggregateOnlyRule {
    suppressed: Arc<AtomicU64>,
}

impl AggregateOnlyRule {
    /// A rule that counts the groups it suppresses in `suppressed`.
    pub fn counting(suppressed: Arc<AtomicU64>) -> Self {
        Self { suppressed }
    }

    /// The number of groups suppressed so far by the plans this rule rewrote.
    pub fn suppressed(&self) -> u64 {
        self.suppressed.load(Ordering::Relaxed)
    }
}

impl AnalyzerRule for AggregateOnlyRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        if protected_scans(&plan)? == 0 {
            return Ok(plan);
        }
        // EXPLAIN ANALYZE reports every operator's row count, the groups before the size
        // filter among them.
        let mut analyzed = false;
        plan.apply_with_subqueries(|node| {
            analyzed |= matches!(node, LogicalPlan::Analyze(_));
            Ok(TreeNodeRecursion::Continue)
        })?;
        if analyzed {
            let name = first_protected(&plan)?.unwrap_or_default();
            return Err(refuse(format!(
                "EXPLAIN ANALYZE is not allowed on dataset '{name}': its row counts describe groups smaller than the minimum size"
            )));
        }
        let mut covered = 0usize;
        let rewritten = plan
            .transform_up_with_subqueries(|node| match node {
                LogicalPlan::Aggregate(aggregate) => match protected_input(&aggregate.input)? {
                    Some(path) => {
                        covered += 1;
                        Ok(Transformed::yes(protect(
                            aggregate,
                            &path,
                            &self.suppressed,
                        )?))
                    }
                    None => Ok(Transformed::no(LogicalPlan::Aggregate(aggregate))),
                },
                other => Ok(Transformed::no(other)),
            })?
            .data;
        let scans = protected_scans(&rewritten)?;
        if covered < scans {
            let name = first_protected(&rewritten)?.unwrap_or_default();
            return Err(refuse(format!(
                "dataset '{name}' may only be aggregated: use GROUP BY over its allowed dimensions with allowed aggregate functions, directly on the dataset (no join, window or DISTINCT before aggregating)"
            )));
        }
        Ok(rewritten)
    }

    fn name(&self) -> &str {
        "polder_aggregate_only"
    }
}

pub(crate) fn refuse(message: String) -> DataFusionError {
    DataFusionError::External(Box::new(Error::Forbidden(message)))
}

fn aggregate_only(plan: &LogicalPlan) -> Option<Arc<dyn TableProvider>> {
    let LogicalPlan::TableScan(scan) = plan else {
        return None;
    };
    let provider = source_as_provider(&scan.source).ok()?;
    let any: &dyn Any = provider.as_ref();
    any.is::<AggregateOnlyTable>().then_some(provider)
}

fn protected_scans(plan: &LogicalPlan) -> Result<usize> {
    let mut count = 0;
    plan.apply_with_subqueries(|node| {
        if aggregate_only(node).is_some() {
            count += 1;
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(count)
}

fn first_protected(plan: &LogicalPlan) -> Result<Option<String>> {
    let mut found = None;
    plan.apply_with_subqueries(|node| {
        if let Some(provider) = aggregate_only(node) {
            let any: &dyn Any = provider.as_ref();
            found = any
                .downcast_ref::<AggregateOnlyTable>()
                .map(|t| t.dataset.clone());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    })?;
    Ok(found)
}

/// An aggregate's input that reads an aggregate-only dataset: its spec, and for each column
/// name of the aggregate's input, the dataset column it is.
pub(crate) struct ProtectedPath {
    pub(crate) dataset: String,
    pub(crate) spec: AggregateSpec,
    pub(crate) base_names: HashMap<String, String>,
}

/// Follows `input` down through filters, aliases and column-only projections to a scan; the
/// path when that scan is aggregate-only, `None` when it is not (other aggregates are no concern
/// of this rule), an error when an aggregate-only scan is reached through anything else.
fn protected_input(input: &LogicalPlan) -> Result<Option<ProtectedPath>> {
    // Name at the aggregate's input -> name at the current level.
    let mut names: HashMap<String, String> = input
        .schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.name().clone()))
        .collect();
    // Columns the filters on the way name, at the current level.
    let mut filtered: Vec<String> = vec![];
    let mut node = input;
    loop {
        match node {
            LogicalPlan::Filter(filter) => {
                if let Some(problem) = not_a_plain_condition(&filter.predicate)? {
                    return refused_if_protected(&filter.input, |dataset| {
                        format!(
                            "dataset '{dataset}' may only be filtered on its dimensions with plain conditions: {problem}"
                        )
                    });
                }
                filtered.extend(
                    filter
                        .predicate
                        .column_refs()
                        .into_iter()
                        .map(|c| c.name.clone()),
                );
                node = filter.input.as_ref();
            }
            LogicalPlan::SubqueryAlias(alias) => node = alias.input.as_ref(),
            LogicalPlan::Projection(projection) => {
                let mut below = HashMap::new();
                for expr in &projection.expr {
                    let (out, inner) = match expr {
                        Expr::Column(c) => (c.name.clone(), c.name.clone()),
                        Expr::Alias(alias) => match alias.expr.as_ref() {
                            Expr::Column(c) => (alias.name.clone(), c.name.clone()),
                            _ => return computed_before_aggregate(&projection.input),
                        },
                        _ => return computed_before_aggregate(&projection.input),
                    };
                    below.insert(out, inner);
                }
                names = names
                    .into_iter()
                    .filter_map(|(top, current)| below.get(&current).map(|b| (top, b.clone())))
                    .collect();
                filtered = filtered
                    .into_iter()
                    .map(|c| below.get(&c).cloned().unwrap_or(c))
                    .collect();
                node = projection.input.as_ref();
            }
            LogicalPlan::TableScan(_) => {
                let Some(provider) = aggregate_only(node) else {
                    return Ok(None);
                };
                let any: &dyn Any = provider.as_ref();
                let table = any
                    .downcast_ref::<AggregateOnlyTable>()
                    .expect("checked by aggregate_only");
                // Excluding (or selecting) units by their identifier is the first step of a
                // differencing attack: the difference of two answers is one person's.
                if filtered.contains(&table.spec.unit) {
                    return Err(refuse(format!(
                        "the privacy unit '{}' of dataset '{}' may only be counted, not used in a filter",
                        table.spec.unit, table.dataset
                    )));
                }
                // A condition on a measure selects units by their values: counting those
                // below a bound, bound after bound, bisects a value.
                if let Some(column) = filtered.iter().find(|c| !table.spec.dimensions.contains(c)) {
                    return Err(refuse(format!(
                        "dataset '{}' may only be filtered on its dimensions ({}); '{column}' is not one of them",
                        table.dataset,
                        table.spec.dimensions.join(", ")
                    )));
                }
                return Ok(Some(ProtectedPath {
                    dataset: table.dataset.clone(),
                    spec: table.spec.clone(),
                    base_names: names,
                }));
            }
            // A join, window, union, distinct, ... : this aggregate is not directly over one
            // dataset. If an aggregate-only dataset is below, it stays uncovered and the query
            // is refused as a whole.
            _ => return Ok(None),
        }
    }
}

/// A computed column between an aggregate-only scan and its aggregate could smuggle a
/// personal value into a dimension; refused when the scan below is aggregate-only.
fn computed_before_aggregate(below: &LogicalPlan) -> Result<Option<ProtectedPath>> {
    refused_if_protected(below, |dataset| {
        format!(
            "dataset '{dataset}' may only be aggregated: compute expressions inside GROUP BY, not in a subquery before the aggregation"
        )
    })
}

/// `Ok(None)` when `below` does not read an aggregate-only dataset directly, else the refusal
/// `message` gives for that dataset.
fn refused_if_protected(
    below: &LogicalPlan,
    message: impl FnOnce(&str) -> String,
) -> Result<Option<ProtectedPath>> {
    match protected_input(below) {
        Ok(Some(path)) => Err(refuse(message(&path.dataset))),
        Ok(None) => Ok(None),
        // The path below is refused for a reason of its own; this one is found first.
        Err(_) => match first_protected(below)? {
            Some(dataset) => Err(refuse(message(&dataset))),
            None => Ok(None),
        },
    }
}

/// What makes `condition` more than a plain condition on columns of the row it filters (see
/// [`not_row_level`]): such a condition could test a unit's values or membership through
/// another query, so on an aggregate-only dataset only plain conditions are allowed.
fn not_a_plain_condition(condition: &Expr) -> Result<Option<&'static str>> {
    first_problem(condition, not_row_level)
}

/// The column an aggregate argument reads as stored (through casts the planner adds to fit a
/// function's signature), `None` when the argument computes something else.
pub(crate) fn stored_column(argument: &Expr) -> Option<&Column> {
    match argument {
        Expr::Column(column) => Some(column),
        Expr::Cast(cast) => stored_column(&cast.expr),
        Expr::TryCast(cast) => stored_column(&cast.expr),
        _ => None,
    }
}

/// Checks the aggregate against the spec and returns it with the group-size filter on top.
fn protect(
    aggregate: Aggregate,
    path: &ProtectedPath,
    suppressed: &Arc<AtomicU64>,
) -> Result<LogicalPlan> {
    let spec = &path.spec;
    let base = |column: &Column| path.base_names.get(&column.name).cloned();
    let dataset = &path.dataset;
    for expr in &aggregate.group_expr {
        if matches!(expr, Expr::GroupingSet(_)) {
            return Err(refuse(format!(
                "dataset '{dataset}' may only be aggregated with a plain GROUP BY (no ROLLUP, CUBE or GROUPING SETS)"
            )));
        }
        if let Some(problem) = not_a_plain_condition(expr)? {
            return Err(refuse(format!(
                "dataset '{dataset}' may only be grouped by expressions of its dimensions: {problem}"
            )));
        }
        for column in expr.column_refs() {
            let name = base(column).unwrap_or_else(|| column.name.clone());
            if !spec.dimensions.contains(&name) {
                return Err(refuse(format!(
                    "dataset '{dataset}' may only be grouped by {}; '{name}' is not one of them",
                    spec.dimensions.join(", ")
                )));
            }
        }
    }
    for expr in &aggregate.aggr_expr {
        let inner = match expr {
            Expr::Alias(alias) => alias.expr.as_ref(),
            other => other,
        };
        let Expr::AggregateFunction(function) = inner else {
            return Err(refuse(format!(
                "dataset '{dataset}' may only be aggregated with the functions {}",
                spec.functions.join(", ")
            )));
        };
        let name = function.func.name().to_lowercase();
        let counts_units = name == "count";
        if !counts_units && !spec.functions.iter().any(|f| f.eq_ignore_ascii_case(&name)) {
            return Err(refuse(format!(
                "dataset '{dataset}' may only be aggregated with the functions {}; {name} is not one of them",
                spec.functions.join(", ")
            )));
        }
        // Each argument is a column as stored or a constant (`count(*)` is `count(1)`): an
        // expression inside an aggregate could count or sum a condition on one unit's values.
        for argument in &function.params.args {
            if matches!(argument, Expr::Literal(..)) {
                continue;
            }
            let Some(column) = stored_column(argument) else {
                return Err(refuse(format!(
                    "dataset '{dataset}' may only be aggregated over its columns as stored: {name}({argument}) computes an expression inside the aggregate"
                )));
            };
            let base_name = base(column).unwrap_or_else(|| column.name.clone());
            if base_name == spec.unit && !counts_units {
                return Err(refuse(format!(
                    "the privacy unit '{}' of dataset '{dataset}' may only be counted",
                    spec.unit
                )));
            }
        }
        for order in &function.params.order_by {
            let plain = stored_column(&order.expr)
                .is_some_and(|c| base(c).unwrap_or_else(|| c.name.clone()) != spec.unit);
            if !plain {
                return Err(refuse(format!(
                    "dataset '{dataset}' may only order inside an aggregate by its columns as stored, not by the privacy unit '{}'",
                    spec.unit
                )));
            }
        }
        if let Some(filter) = &function.params.filter {
            if let Some(problem) = not_a_plain_condition(filter)? {
                return Err(refuse(format!(
                    "dataset '{dataset}' may only be filtered on its dimensions with plain conditions: {problem}"
                )));
            }
            for column in filter.column_refs() {
                let name = base(column).unwrap_or_else(|| column.name.clone());
                if name == spec.unit {
                    return Err(refuse(format!(
                        "the privacy unit '{}' of dataset '{dataset}' may only be counted, not used in a filter",
                        spec.unit
                    )));
                }
                if !spec.dimensions.contains(&name) {
                    return Err(refuse(format!(
                        "dataset '{dataset}' may only be filtered on its dimensions ({}); '{name}' is not one of them",
                        spec.dimensions.join(", ")
                    )));
                }
            }
        }
    }
    let unit = path
        .base_names
        .iter()
        .find(|(_, b)| **b == spec.unit)
        .map(|(top, _)| top.clone())
        .ok_or_else(|| {
            refuse(format!(
                "dataset '{dataset}' may only be aggregated with its privacy unit '{}' available to count",
                spec.unit
            ))
        })?;
    let (qualifier, _) = aggregate
        .input
        .schema()
        .qualified_field_with_unqualified_name(&unit)?;
    let unit = Expr::Column(Column::new(qualifier.cloned(), unit));
    let mut original: Vec<Expr> = aggregate
        .schema
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let mut aggr_expr = aggregate.aggr_expr.clone();
    aggr_expr.push(count_distinct(unit.clone()).alias(UNITS));
    if let Some(perturbation) = &spec.perturbation {
        let released = crate::perturb::perturbed(&aggregate, path, perturbation, unit)?;
        aggr_expr.extend(released.helpers);
        let first = original.len() - aggregate.aggr_expr.len();
        for (column, value) in original[first..].iter_mut().zip(released.values) {
            *column = value;
        }
    }
    let min = i64::try_from(spec.min_group_size).unwrap_or(i64::MAX);
    let keep = match spec.on_violation {
        // The minimum is an argument too, so that EXPLAIN shows it.
        Violation::Suppress => ScalarUDF::new_from_impl(ReleaseGroup {
            signature: Signature::exact(
                vec![DataType::Int64, DataType::Int64],
                Volatility::Volatile,
            ),
            min,
            suppressed: Arc::clone(suppressed),
        })
        .call(vec![col(UNITS), lit(min)]),
        Violation::Refuse => {
            let check = ScalarUDF::new_from_impl(RequireGroupSize {
                signature: Signature::exact(vec![DataType::Int64], Volatility::Volatile),
                dataset: dataset.clone(),
                min,
            });
            check.call(vec![col(UNITS)])
        }
    };
    LogicalPlanBuilder::from(aggregate.input.as_ref().clone())
        .aggregate(aggregate.group_expr.clone(), aggr_expr)?
        .filter(keep)?
        .project(original)?
        .build()
}

/// The filter of `on_violation = "suppress"`: true for every group of at least `min` units;
/// the others are counted. Volatile, so that no optimizer rule folds, duplicates or drops it.
#[derive(Debug)]
struct ReleaseGroup {
    signature: Signature,
    min: i64,
    suppressed: Arc<AtomicU64>,
}

impl PartialEq for ReleaseGroup {
    fn eq(&self, other: &Self) -> bool {
        self.min == other.min && Arc::ptr_eq(&self.suppressed, &other.suppressed)
    }
}

impl Eq for ReleaseGroup {}

impl std::hash::Hash for ReleaseGroup {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.min.hash(state);
        Arc::as_ptr(&self.suppressed).hash(state);
    }
}

impl ScalarUDFImpl for ReleaseGroup {
    fn name(&self) -> &str {
        "polder_release_group"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let units = units_counted(args)?;
        let keep: BooleanArray = units
            .as_primitive::<Int64Type>()
            .iter()
            .map(|u| Some(u.is_some_and(|u| u >= self.min)))
            .collect();
        let dropped = keep.len() - keep.true_count();
        self.suppressed.fetch_add(dropped as u64, Ordering::Relaxed);
        Ok(ColumnarValue::Array(Arc::new(keep)))
    }
}

/// The first argument of a group-size filter: each group's count of distinct units.
fn units_counted(args: ScalarFunctionArgs) -> Result<datafusion::arrow::array::ArrayRef> {
    args.args
        .into_iter()
        .next()
        .ok_or_else(|| {
            DataFusionError::Internal("a group-size filter without its argument".into())
        })?
        .into_array(args.number_rows)
}

/// The filter of `on_violation = "refuse"`: true for every group of at least `min` units; a
/// smaller group fails the query. Volatile, so that no optimizer rule folds or drops it.
#[derive(Debug, PartialEq, Eq, Hash)]
struct RequireGroupSize {
    signature: Signature,
    dataset: String,
    min: i64,
}

impl ScalarUDFImpl for RequireGroupSize {
    fn name(&self) -> &str {
        "polder_require_group_size"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let units = units_counted(args)?;
        let units = units.as_primitive::<Int64Type>();
        if units.iter().any(|u| u.is_none_or(|u| u < self.min)) {
            return Err(refuse(format!(
                "the answer would hold a group of fewer than {} distinct units of dataset '{}'; its policy refuses such queries",
                self.min, self.dataset
            )));
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(vec![
            true;
            units.len()
        ]))))
    }
}
