//! Estimates for the planner: the row counts of a peer's tables, counted once, and the rows a
//! remote part is expected to send, derived from them (which side of a join to build).

use std::collections::HashMap;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::TableReference;
use datafusion::logical_expr::{FetchType, Join, JoinType, LogicalPlan, TableScan};
use futures::TryStreamExt;
use parking_lot::RwLock;
use tracing::debug;

use super::Peer;
use crate::error::PeerError;

/// The share of rows a filter is assumed to keep, as DataFusion assumes for `FilterExec`.
const SELECTIVITY: f64 = 0.2;

/// Row counts of a peer's tables by (schema, table).
#[derive(Debug, Default)]
pub(crate) struct RowCounts(RwLock<HashMap<(String, String), u64>>);

impl RowCounts {
    /// Records the row count of `schema.table`.
    pub(crate) fn insert(&self, schema: &str, table: &str, rows: u64) {
        self.0
            .write()
            .insert((schema.to_string(), table.to_string()), rows);
    }

    fn contains(&self, schema: &str, table: &str) -> bool {
        self.0
            .read()
            .contains_key(&(schema.to_string(), table.to_string()))
    }

    /// The estimated rows of a remote part: a fifth per filter (DataFusion's default
    /// selectivity), at most its limit, a join as its larger side (a foreign-key join), an
    /// aggregate as its input. Parts with other operators, or tables not counted, get none.
    pub(crate) fn estimate(&self, plan: &LogicalPlan) -> Option<usize> {
        let counts = self.0.read();
        rows_of(plan, &counts).map(|rows| rows.ceil() as usize)
    }
}

type Counts = HashMap<(String, String), u64>;

fn rows_of(plan: &LogicalPlan, counts: &Counts) -> Option<f64> {
    match plan {
        LogicalPlan::TableScan(scan) => scan_rows(scan, counts),
        LogicalPlan::Filter(filter) => Some(rows_of(&filter.input, counts)? * SELECTIVITY),
        LogicalPlan::Limit(limit) => {
            let rows = rows_of(&limit.input, counts)?;
            Some(match limit.get_fetch_type().ok()? {
                FetchType::Literal(Some(n)) => rows.min(n as f64),
                _ => rows,
            })
        }
        LogicalPlan::Projection(p) => rows_of(&p.input, counts),
        LogicalPlan::SubqueryAlias(a) => rows_of(&a.input, counts),
        LogicalPlan::Sort(s) => rows_of(&s.input, counts),
        // At most the input's rows.
        LogicalPlan::Aggregate(a) => rows_of(&a.input, counts),
        LogicalPlan::Distinct(d) => rows_of(d.input(), counts),
        LogicalPlan::Union(u) => u.inputs.iter().map(|i| rows_of(i, counts)).sum(),
        LogicalPlan::Join(join) => join_rows(join, counts),
        _ => None,
    }
}

fn scan_rows(scan: &TableScan, counts: &Counts) -> Option<f64> {
    let key = (
        scan.table_name.schema()?.to_string(),
        scan.table_name.table().to_string(),
    );
    let rows = *counts.get(&key)? as f64 * SELECTIVITY.powi(scan.filters.len() as i32);
    Some(scan.fetch.map_or(rows, |f| rows.min(f as f64)))
}

/// A join along a foreign key has the rows of its larger side; semi and anti joins at most
/// those of the side they keep.
fn join_rows(join: &Join, counts: &Counts) -> Option<f64> {
    let left = rows_of(&join.left, counts);
    let right = rows_of(&join.right, counts);
    let rows = match join.join_type {
        JoinType::LeftSemi | JoinType::LeftAnti | JoinType::LeftMark => left?,
        JoinType::RightSemi | JoinType::RightAnti | JoinType::RightMark => right?,
        _ => left?.max(right?),
    };
    Some(if join.filter.is_some() {
        rows * SELECTIVITY
    } else {
        rows
    })
}

impl Peer {
    /// Counts the rows of a table on the peer (`SELECT count(*)`), once: the planner uses the
    /// count to estimate the size of remote parts (which side of a join to build), so a count
    /// that ages is still useful. Failures leave the table without an estimate.
    pub async fn count_rows_once(&self, catalog: &str, schema: &str, table: &str) {
        if self.row_counts.contains(schema, table) {
            return;
        }
        match self
            .count_rows(TableReference::full(catalog, schema, table))
            .await
        {
            Ok(n) => self.row_counts.insert(schema, table, n),
            Err(err) => debug!(peer = %self.config.name, table, error = %err, "no row count"),
        }
    }

    async fn count_rows(&self, table: TableReference) -> Result<u64, PeerError> {
        let sql = super::sql::count_rows(table).map_err(|e| self.protocol(e.to_string()))?;
        let batches: Vec<RecordBatch> = self.query(sql).await?.try_collect().await?;
        let column = batches
            .first()
            .filter(|b| b.num_rows() == 1 && b.num_columns() == 1)
            .map(|b| cast(b.column(0), &DataType::Int64))
            .transpose()
            .map_err(|e| self.protocol(e.to_string()))?
            .ok_or_else(|| self.protocol("count(*) did not answer one value".into()))?;
        Ok(column.as_primitive::<Int64Type>().value(0).max(0) as u64)
    }

    /// The estimated rows of a remote part (see [`RowCounts::estimate`]).
    pub(super) fn estimate_rows(&self, plan: &LogicalPlan) -> Option<usize> {
        self.row_counts.estimate(plan)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::logical_expr::builder::LogicalTableSource;
    use datafusion::logical_expr::{JoinType, LogicalPlanBuilder, col, lit};

    use super::*;

    fn scan(table: &str) -> LogicalPlanBuilder {
        let schema = Schema::new(vec![
            Field::new(format!("{table}_id"), DataType::Int64, false),
            Field::new("k", DataType::Int64, false),
        ]);
        let source = Arc::new(LogicalTableSource::new(Arc::new(schema)));
        LogicalPlanBuilder::scan(TableReference::full("city", "public", table), source, None)
            .unwrap()
    }

    fn counts() -> RowCounts {
        let counts = RowCounts::default();
        counts.insert("public", "orders", 1000);
        counts.insert("public", "customer", 100);
        counts
    }

    #[test]
    fn a_scan_has_its_count_and_a_filter_keeps_a_fifth() {
        let counts = counts();
        let plan = scan("orders").build().unwrap();
        assert_eq!(counts.estimate(&plan), Some(1000));
        let plan = scan("orders").filter(col("k").eq(lit(1))).unwrap();
        let plan = plan.build().unwrap();
        assert_eq!(counts.estimate(&plan), Some(200));
    }

    #[test]
    fn a_limit_caps_and_an_aggregate_keeps_its_input() {
        let counts = counts();
        let limited = scan("orders").limit(0, Some(10)).unwrap().build().unwrap();
        assert_eq!(counts.estimate(&limited), Some(10));
        let grouped = scan("orders")
            .aggregate(vec![col("k")], Vec::<datafusion::logical_expr::Expr>::new())
            .unwrap()
            .build()
            .unwrap();
        assert_eq!(counts.estimate(&grouped), Some(1000));
    }

    #[test]
    fn a_join_has_its_larger_side_and_a_semi_join_the_side_it_keeps() {
        let counts = counts();
        let join = |kind| {
            scan("customer")
                .join(
                    scan("orders").build().unwrap(),
                    kind,
                    (vec!["customer.k"], vec!["orders.k"]),
                    None,
                )
                .unwrap()
                .build()
                .unwrap()
        };
        assert_eq!(counts.estimate(&join(JoinType::Inner)), Some(1000));
        assert_eq!(counts.estimate(&join(JoinType::LeftSemi)), Some(100));
    }

    #[test]
    fn a_table_not_counted_gives_no_estimate() {
        let counts = counts();
        let plan = scan("lineitem").build().unwrap();
        assert_eq!(counts.estimate(&plan), None);
    }
}
