//! The analyzer rule that bounds the calls SQL syntax plans without the function registry.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::expr::{BinaryExpr, ScalarFunction};
use datafusion::logical_expr::{Expr, LogicalPlan, Operator, ScalarUDF};
use datafusion::optimizer::analyzer::AnalyzerRule;

use super::{BoundedFunction, Growth, StringConcat};

/// Bounds the calls SQL syntax plans without the function registry (`OVERLAY(s PLACING t FROM
/// n)`, `||` on arrays as `array_concat`, `array_append` or `array_prepend`): the last analyzer
/// rule, before any constant is folded.
#[derive(Debug)]
pub(super) struct BoundCalls {
    budget: usize,
}

impl BoundCalls {
    pub(super) const NAME: &str = "polder_bound_calls";

    /// The rule, bounding each call to `budget` bytes.
    pub(super) fn new(budget: usize) -> Self {
        Self { budget }
    }

    /// `expr` with `||` on strings replaced by `concat` (a bounded [`StringConcat`]) and each
    /// call of a function listed in [`Growth::of`] bounded.
    fn bound(&self, expr: Expr, concat: &Arc<ScalarUDF>) -> Result<Transformed<Expr>> {
        match expr {
            // After type coercion, `||` left in the plan joins two strings.
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: Operator::StringConcat,
                right,
            }) => Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                func: Arc::clone(concat),
                args: vec![*left, *right],
            }))),
            Expr::ScalarFunction(call) => match BoundedFunction::wrap(&call.func, self.budget) {
                Some(func) => Ok(Transformed::yes(Expr::ScalarFunction(ScalarFunction {
                    func: Arc::new(func),
                    args: call.args,
                }))),
                None => Ok(Transformed::no(Expr::ScalarFunction(call))),
            },
            other => Ok(Transformed::no(other)),
        }
    }
}

impl AnalyzerRule for BoundCalls {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        let concat = Arc::new(ScalarUDF::new_from_impl(BoundedFunction::new(
            Arc::new(StringConcat::new()),
            Growth::Sum(1),
            self.budget,
        )));
        let bound = |expr: Expr| expr.transform_up(|expr| self.bound(expr, &concat));
        plan.transform_up_with_subqueries(|plan| plan.map_expressions(bound))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        Self::NAME
    }
}
