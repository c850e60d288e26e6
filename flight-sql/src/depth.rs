//! The nesting depth of a parsed statement, bounded before anything recursive walks it.
//!
//! The SQL parser builds chains of binary operators (`1+1+...`, long `OR`, `AND`, `||` chains)
//! and of set operations (`... UNION ALL ...`) in a loop, without recursion, so its own
//! recursion limit does not bound them: a 4 KB statement can become a tree thousands of levels
//! deep. Everything after the parser (the SQL-to-plan translation, the analyzer and optimizer
//! rules, expression evaluation, `Drop`) walks such trees recursively. [`check_depth`] measures
//! the tree while descending and stops at the limit, so its own recursion is bounded by the
//! limit, and refuses deeper statements before any of that code runs.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Visit, Visitor};

use crate::error::{Error, Result};

/// Refuses `statement` when its expressions, subqueries and set operations nest deeper than
/// `max_depth` levels.
pub fn check_depth(statement: &DFStatement, max_depth: usize) -> Result<()> {
    let mut depth = Depth {
        current: 0,
        max: max_depth,
    };
    let flow = match statement {
        DFStatement::Statement(inner) => inner.visit(&mut depth),
        DFStatement::Explain(explain) => return check_depth(&explain.statement, max_depth),
        // Refused as statements that are not queries; nothing of them is planned.
        DFStatement::CreateExternalTable(_) | DFStatement::CopyTo(_) | DFStatement::Reset(_) => {
            ControlFlow::Continue(())
        }
    };
    match flow {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(too_deep(max_depth)),
    }
}

/// The refusal of a statement nested deeper than `max_depth` levels.
pub fn too_deep(max_depth: usize) -> Error {
    Error::InvalidRequest(format!(
        "the statement nests expressions, subqueries or set operations more than {max_depth} levels deep, this node's limit (limits.max_query_depth); write long chains of OR as IN lists, or split the query"
    ))
}

struct Depth {
    current: usize,
    max: usize,
}

impl Depth {
    fn enter(&mut self, levels: usize) -> ControlFlow<()> {
        self.current += levels;
        if self.current > self.max {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // The visitor walks a chain of set operations recursively without calling back, so
        // the chain is measured here, without recursion, before it is walked.
        self.enter(1)?;
        if self.current + set_operation_depth(&query.body) > self.max {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.current -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.enter(1)
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}

/// How deep set operations nest in `body` (subqueries in parentheses are measured when the
/// visitor reaches them), without recursion.
fn set_operation_depth(body: &SetExpr) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(body, 0usize)];
    while let Some((node, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        if let SetExpr::SetOperation { left, right, .. } = node {
            pending.push((left, depth + 1));
            pending.push((right, depth + 1));
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParser;

    use super::*;

    fn depth_ok(sql: &str, max: usize) -> bool {
        let mut statements = DFParser::parse_sql(sql).expect("parses");
        check_depth(&statements.pop_front().expect("one statement"), max).is_ok()
    }

    #[test]
    fn measures_operator_chains_subqueries_and_set_operations() {
        let chain = |n: usize, op: &str| {
            format!(
                "SELECT {}",
                std::iter::repeat_n("1", n).collect::<Vec<_>>().join(op)
            )
        };
        assert!(depth_ok(&chain(30, " + "), 40));
        assert!(!depth_ok(&chain(50, " + "), 40));
        assert!(!depth_ok(&chain(50, " OR "), 40));
        assert!(!depth_ok(&chain(50, " || "), 40));
        let unions = |n: usize| vec!["SELECT 1"; n].join(" UNION ALL ");
        assert!(depth_ok(&unions(30), 40));
        assert!(!depth_ok(&unions(50), 40));
        // Subqueries count their own levels.
        let mut nested = "SELECT 1".to_string();
        for _ in 0..20 {
            nested = format!("SELECT ({nested}) + 1");
        }
        assert!(depth_ok(&nested, 100));
        assert!(!depth_ok(&nested, 30));
        // Long flat lists are not deep.
        let list = (0..5000).map(|i| i.to_string()).collect::<Vec<_>>();
        assert!(depth_ok(
            &format!("SELECT 1 WHERE 3 IN ({})", list.join(", ")),
            10
        ));
        // EXPLAIN measures the statement it explains.
        assert!(!depth_ok(&format!("EXPLAIN {}", chain(50, " + ")), 40));
    }
}
