//! The SQL dialect a coordinator writes for its peers.
//!
//! Peers speak DataFusion's SQL (Polder nodes, roapi): DataFusion's default dialect, except for
//! the functions a Polder session plans in place of operators, which are written back as those
//! operators, so that a peer of any make reads them.

use datafusion::error::Result;
use datafusion::logical_expr::Expr;
use datafusion::sql::sqlparser::ast::{self, BinaryOperator};
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::{DefaultDialect, Dialect};
use polder_flight_sql::bounded::StringConcat;

/// DataFusion's default dialect, with [`StringConcat`] written as `||`.
#[derive(Debug, Default)]
pub struct PeerDialect;

impl Dialect for PeerDialect {
    fn identifier_quote_style(&self, identifier: &str) -> Option<char> {
        DefaultDialect {}.identifier_quote_style(identifier)
    }

    fn scalar_function_to_sql_overrides(
        &self,
        unparser: &Unparser,
        func_name: &str,
        args: &[Expr],
    ) -> Result<Option<ast::Expr>> {
        match (func_name, args) {
            (StringConcat::NAME, [left, right]) => {
                let operation = ast::Expr::BinaryOp {
                    left: Box::new(unparser.expr_to_sql(left)?),
                    op: BinaryOperator::StringConcat,
                    right: Box::new(unparser.expr_to_sql(right)?),
                };
                Ok(Some(ast::Expr::Nested(Box::new(operation))))
            }
            _ => DefaultDialect {}.scalar_function_to_sql_overrides(unparser, func_name, args),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::logical_expr::{ScalarUDF, col, lit};
    use datafusion::sql::unparser::Unparser;

    use super::*;

    #[test]
    fn writes_the_string_concatenation_function_as_the_operator() {
        let concat = Arc::new(ScalarUDF::new_from_impl(StringConcat::new()));
        let expr = concat.call(vec![col("name"), lit("-x")]);
        let dialect = PeerDialect;
        let sql = Unparser::new(&dialect).expr_to_sql(&expr).unwrap();
        assert_eq!(sql.to_string(), "(\"name\" || '-x')");
    }
}
