//! The SQL dialect a coordinator writes for its peers.
//!
//! Peers speak DataFusion's SQL (Polder nodes, roapi): DataFusion's default dialect, except for
//! the functions a Polder session plans in place of operators, which are written back as those
//! operators, so that a peer of any make reads them, and DECIMAL constants, which are written
//! with their type (`typed_decimals`).

use datafusion::arrow::datatypes::{DataType, Decimal128Type, DecimalType};
use datafusion::common::ScalarValue;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Cast, Expr, LogicalPlan, lit};
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

/// `expr` with every DECIMAL constant that a Float64 cannot hold exactly written as
/// `CAST('64.37' AS DECIMAL(10, 2))`.
///
/// The unparser writes a decimal constant as a bare number (`64.37`), which DataFusion's SQL
/// reads as a Float64: a peer then compares `CAST(amount AS DECIMAL(30, 15))` with
/// `64.370000000000008` and loses the row whose amount is 64.37. Whole numbers (`45.00`) are
/// exact as floats and stay as they are.
pub(crate) fn typed_decimals(expr: Expr) -> Result<Transformed<Expr>> {
    expr.transform_up(|e| match e {
        Expr::Literal(ScalarValue::Decimal128(Some(value), precision, scale), _)
            if !exact_as_float(value, scale) =>
        {
            let text = Decimal128Type::format_decimal(value, precision, scale);
            Ok(Transformed::yes(Expr::Cast(Cast::new(
                Box::new(lit(text)),
                DataType::Decimal128(precision, scale),
            ))))
        }
        other => Ok(Transformed::no(other)),
    })
}

/// Whether the decimal `value` with `scale` is a whole number a Float64 holds exactly.
fn exact_as_float(value: i128, scale: i8) -> bool {
    let Ok(scale) = u32::try_from(scale) else {
        return false;
    };
    let Some(unit) = 10i128.checked_pow(scale) else {
        return false;
    };
    value % unit == 0 && (value / unit).unsigned_abs() < 1 << 53
}

/// [`typed_decimals`] for every expression of a plan sent to a peer, subqueries included; the
/// names of the expressions (and so the plan's schema) stay as they were.
pub(crate) fn plan_with_typed_decimals(plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    plan.transform_up_with_subqueries(|node| {
        let names = NamePreserver::new(&node);
        node.map_expressions(|expr| {
            let saved = names.save(&expr);
            Ok(typed_decimals(expr)?.update_data(|typed| saved.restore(typed)))
        })
    })
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

    #[test]
    fn writes_decimal_constants_with_their_type() {
        let amount = ScalarValue::Decimal128(Some(6437), 10, 2);
        let expr = col("amount").eq(lit(amount));
        let typed = typed_decimals(expr).unwrap();
        assert!(typed.transformed);
        let sql = Unparser::new(&PeerDialect)
            .expr_to_sql(&typed.data)
            .unwrap();
        assert_eq!(sql.to_string(), "(amount = CAST('64.37' AS DECIMAL(10,2)))");
        let whole = col("amount").gt(lit(ScalarValue::Decimal128(Some(4500), 15, 2)));
        assert!(!typed_decimals(whole).unwrap().transformed);
    }
}
