//! The SQL of a peer's own requests (row counts, table schemas), built as logical plans and
//! unparsed in the [`PeerDialect`], so that identifiers are quoted by the rule that quotes the
//! remote parts of queries.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::TableReference;
use datafusion::error::Result;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::logical_expr::builder::LogicalTableSource;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, lit};
use datafusion::sql::unparser::Unparser;

use crate::dialect::PeerDialect;

/// `SELECT * FROM table`.
pub(super) fn select_all(table: TableReference) -> Result<String> {
    unparse(&scan(table)?.build()?)
}

/// `SELECT count(1) FROM table`: one row, the table's row count.
pub(super) fn count_rows(table: TableReference) -> Result<String> {
    let plan = scan(table)?
        .aggregate(
            Vec::<datafusion::logical_expr::Expr>::new(),
            vec![count(lit(1))],
        )?
        .build()?;
    unparse(&plan)
}

/// A scan of `table` whose columns are not known here (the peer knows them).
fn scan(table: TableReference) -> Result<LogicalPlanBuilder> {
    let source = Arc::new(LogicalTableSource::new(Arc::new(Schema::empty())));
    LogicalPlanBuilder::scan(table, source, None)
}

fn unparse(plan: &LogicalPlan) -> Result<String> {
    Ok(Unparser::new(&PeerDialect).plan_to_sql(plan)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_by_the_dialect() {
        let table = TableReference::full("utrecht", "Public", "air \"quality\"");
        assert_eq!(
            select_all(table.clone()).unwrap(),
            r#"SELECT * FROM utrecht."Public"."air ""quality""""#
        );
        assert_eq!(
            count_rows(table).unwrap(),
            r#"SELECT count(1) FROM utrecht."Public"."air ""quality""""#
        );
    }
}
