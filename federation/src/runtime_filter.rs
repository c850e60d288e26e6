//! Runtime filters sent with remote queries: semi-join reduction across nodes.
//!
//! When a hash join here has finished reading its build side, DataFusion derives a *dynamic
//! filter* for the probe side from it: the key's bounds (`k >= min AND k <= max`) and, for a small
//! build side, the keys themselves (`k IN (...)`). The probe side of a join across nodes is a
//! remote part, which DataFusion starts only once the build side is read. At that moment
//! [`narrow`] turns what the filter holds into SQL and wraps the remote part's query in it, so
//! the node holding the probe side sends only the rows that can join, not its whole table. Only
//! filters with a key list are sent: bounds alone rarely exclude anything (measured on TPC-H).
//!
//! The filter only ever narrows what the join sees anyway: the join still applies its own
//! condition, so a runtime filter that is partly untranslatable is weakened (a conjunct dropped,
//! a `CASE` over partitions read as the `OR` of its branches), never changed in meaning. What
//! cannot be rendered faithfully (a hash-table lookup, a function) is left out.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{Column as LogicalColumn, ScalarValue};
use datafusion::logical_expr::{BinaryExpr as LogicalBinary, Cast, Expr, Operator};
use datafusion::physical_expr::expressions::{
    BinaryExpr, CaseExpr, CastExpr, Column, InListExpr, IsNullExpr, Literal,
};
use datafusion::physical_expr_common::physical_expr::snapshot_physical_expr;
use datafusion::physical_plan::PhysicalExpr;
use datafusion::sql::unparser::Unparser;
use datafusion::sql::unparser::dialect::Dialect;

/// The remote part's query narrowed by the runtime `filters` pushed to it, or `None` when they
/// hold no key list that fits in `max_bytes` of SQL (no filter yet, a build side with too many
/// keys for a list, only hash lookups). Bounds alone are not sent: measured on TPC-H, the keys'
/// range of a join rarely excludes anything, and a filter costs the peer planning and
/// evaluation. A build side with no rows at all sends `false`.
pub(crate) fn narrow(
    sql: &str,
    schema: &Schema,
    filters: &[Arc<dyn PhysicalExpr>],
    dialect: &dyn Dialect,
    max_bytes: usize,
) -> Option<String> {
    if filters.is_empty() || max_bytes == 0 {
        return None;
    }
    let translator = Translator {
        columns: schema.fields().len(),
    };
    let predicate = filters
        .iter()
        .filter_map(|filter| snapshot_physical_expr(Arc::clone(filter)).ok())
        .filter_map(|filter| translator.condition(&filter))
        .reduce(Expr::and)?;
    let selective = predicate
        .exists(|e| Ok(matches!(e, Expr::InList(_)) || is_false(e)))
        .unwrap_or(false);
    if !selective {
        return None;
    }
    let predicate = crate::dialect::typed_decimals(predicate).ok()?.data;
    let predicate = Unparser::new(dialect)
        .expr_to_sql(&predicate)
        .ok()?
        .to_string();
    if predicate.len() > max_bytes {
        return None;
    }
    let columns = (0..schema.fields().len())
        .map(column_name)
        .collect::<Vec<_>>()
        .join(", ");
    Some(format!(
        "SELECT * FROM ({sql}) AS polder_narrowed({columns}) WHERE {predicate}"
    ))
}

/// The name the narrowed query gives the remote part's `index`th column: positional, so that
/// duplicate or unusual column names of the part do not matter.
fn column_name(index: usize) -> String {
    format!("c{index}")
}

struct Translator {
    /// Columns of the remote part: a filter's column index must be one of them.
    columns: usize,
}

impl Translator {
    /// A condition implied by `expr` (every row `expr` keeps, it keeps too), or `None` for
    /// "no condition".
    fn condition(&self, expr: &Arc<dyn PhysicalExpr>) -> Option<Expr> {
        if let Some(binary) = expr.downcast_ref::<BinaryExpr>() {
            return match binary.op() {
                Operator::And => {
                    match (
                        self.condition(binary.left()),
                        self.condition(binary.right()),
                    ) {
                        (Some(l), Some(r)) => Some(l.and(r)),
                        (one, None) | (None, one) => one,
                    }
                }
                Operator::Or => Some(
                    self.condition(binary.left())?
                        .or(self.condition(binary.right())?),
                ),
                op @ (Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq) => Some(Expr::BinaryExpr(LogicalBinary::new(
                    Box::new(self.value(binary.left())?),
                    *op,
                    Box::new(self.value(binary.right())?),
                ))),
                _ => None,
            };
        }
        if let Some(list) = expr.downcast_ref::<InListExpr>() {
            if list.negated() {
                return None;
            }
            // The join's list holds a key once per build row: send each key once.
            let mut seen = HashSet::new();
            let mut values = vec![];
            for value in list.list() {
                let value = self.value(value)?;
                if seen.insert(value.clone()) {
                    values.push(value);
                }
            }
            return Some(self.value(list.expr())?.in_list(values, false));
        }
        if let Some(case) = expr.downcast_ref::<CaseExpr>() {
            // The value of a CASE is one of its branches: it keeps a row only if some branch
            // does (the hash join's filter routes each row to its partition's branch). A branch
            // that keeps every row makes the CASE keep every row.
            let mut branches = Vec::new();
            let thens = case.when_then_expr().iter().map(|(_, then)| then);
            for then in thens.chain(case.else_expr()) {
                let branch = self.condition(then)?;
                if !is_false(&branch) {
                    branches.push(branch);
                }
            }
            return Some(
                branches
                    .into_iter()
                    .reduce(Expr::or)
                    .unwrap_or_else(falsity),
            );
        }
        if let Some(is_null) = expr.downcast_ref::<IsNullExpr>() {
            return Some(self.value(is_null.arg())?.is_null());
        }
        if let Some(literal) = expr.downcast_ref::<Literal>() {
            return match literal.value() {
                ScalarValue::Boolean(Some(false)) | ScalarValue::Boolean(None) => Some(falsity()),
                _ => None,
            };
        }
        None
    }

    /// `expr` exactly, as a value: a column of the remote part, a literal or a cast of one.
    fn value(&self, expr: &Arc<dyn PhysicalExpr>) -> Option<Expr> {
        if let Some(column) = expr.downcast_ref::<Column>() {
            return (column.index() < self.columns).then(|| {
                Expr::Column(LogicalColumn::new_unqualified(column_name(column.index())))
            });
        }
        if let Some(literal) = expr.downcast_ref::<Literal>() {
            return (!literal.value().is_null())
                .then(|| Expr::Literal(literal.value().clone(), None));
        }
        if let Some(cast) = expr.downcast_ref::<CastExpr>() {
            return Some(Expr::Cast(Cast::new(
                Box::new(self.value(cast.expr())?),
                cast.cast_type().clone(),
            )));
        }
        None
    }
}

fn is_false(expr: &Expr) -> bool {
    matches!(expr, Expr::Literal(ScalarValue::Boolean(Some(false)), _))
}

fn falsity() -> Expr {
    Expr::Literal(ScalarValue::Boolean(Some(false)), None)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{ArrayRef, Int64Array};
    use datafusion::arrow::datatypes::{DataType, Field};
    use datafusion::physical_expr::expressions::{DynamicFilterPhysicalExpr, lit};
    use datafusion::sql::unparser::dialect::DefaultDialect;

    use super::*;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("l_orderkey", DataType::Int64, false),
            Field::new("l_comment", DataType::Utf8, true),
        ])
    }

    fn key() -> Arc<dyn PhysicalExpr> {
        Arc::new(Column::new("l_orderkey", 0))
    }

    fn binary(
        l: Arc<dyn PhysicalExpr>,
        op: Operator,
        r: Arc<dyn PhysicalExpr>,
    ) -> Arc<dyn PhysicalExpr> {
        Arc::new(BinaryExpr::new(l, op, r))
    }

    fn bounds(min: i64, max: i64) -> Arc<dyn PhysicalExpr> {
        binary(
            binary(key(), Operator::GtEq, lit(min)),
            Operator::And,
            binary(key(), Operator::LtEq, lit(max)),
        )
    }

    fn keys(values: &[i64]) -> Arc<dyn PhysicalExpr> {
        let array: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
        Arc::new(InListExpr::try_new_from_array(key(), array, false, &schema()).unwrap())
    }

    fn narrowed(filter: Arc<dyn PhysicalExpr>, max_bytes: usize) -> Option<String> {
        narrow(
            "SELECT l_orderkey, l_comment FROM lineitem",
            &schema(),
            &[filter],
            &DefaultDialect {},
            max_bytes,
        )
    }

    #[test]
    fn bounds_and_keys_of_a_join_become_a_where_clause() {
        let filter = binary(bounds(1, 7), Operator::And, keys(&[1, 3, 7, 3, 1]));
        assert_eq!(
            narrowed(filter, 1024).unwrap(),
            "SELECT * FROM (SELECT l_orderkey, l_comment FROM lineitem) AS polder_narrowed(c0, c1) \
             WHERE (((c0 >= 1) AND (c0 <= 7)) AND c0 IN (1, 3, 7))"
        );
    }

    #[test]
    fn bounds_alone_or_a_key_list_too_long_send_nothing() {
        let filter = binary(bounds(1, 7), Operator::And, keys(&[1, 3, 7]));
        assert_eq!(narrowed(filter, 30), None);
        assert_eq!(narrowed(bounds(1, 7), 1024), None);
    }

    #[test]
    fn partitions_of_a_join_are_read_as_the_or_of_their_branches() {
        // CASE hash(key) % 2 WHEN 0 THEN <partition 0> WHEN 1 THEN <partition 1> ELSE false END
        let routing = binary(key(), Operator::Modulo, lit(2i64));
        let case = CaseExpr::try_new(
            Some(routing),
            vec![(lit(0i64), keys(&[2, 4])), (lit(1i64), keys(&[5]))],
            Some(lit(false)),
        )
        .unwrap();
        let sql = narrowed(Arc::new(case), 1024).unwrap();
        assert!(sql.ends_with("WHERE (c0 IN (2, 4) OR c0 IN (5))"), "{sql}");
    }

    #[test]
    fn what_cannot_be_rendered_is_dropped_only_where_that_keeps_more_rows() {
        // A branch that keeps every row (untranslatable) makes the whole CASE keep every row.
        let opaque = binary(
            Arc::new(Column::new("l_comment", 1)),
            Operator::LikeMatch,
            lit("x%"),
        );
        let case = CaseExpr::try_new(
            Some(key()),
            vec![(lit(0i64), keys(&[2])), (lit(1i64), Arc::clone(&opaque))],
            None,
        )
        .unwrap();
        assert_eq!(narrowed(Arc::new(case), 1024), None);
        // Under OR, one side unknown means no condition; under AND the other side stays.
        assert_eq!(
            narrowed(binary(keys(&[2]), Operator::Or, Arc::clone(&opaque)), 1024),
            None
        );
        let sql = narrowed(binary(keys(&[2]), Operator::And, opaque), 1024).unwrap();
        assert!(sql.ends_with("WHERE c0 IN (2)"), "{sql}");
        // A negated list would be weakened into its opposite: never sent.
        let array: ArrayRef = Arc::new(Int64Array::from(vec![2]));
        let not_in = InListExpr::try_new_from_array(key(), array, true, &schema()).unwrap();
        assert_eq!(narrowed(Arc::new(not_in), 1024), None);
    }

    #[test]
    fn an_empty_build_side_sends_false_and_no_filter_yet_sends_nothing() {
        let sql = narrowed(lit(false), 1024).unwrap();
        assert!(sql.ends_with("WHERE false"), "{sql}");
        assert_eq!(narrowed(lit(true), 1024), None);
        assert_eq!(narrowed(keys(&[1]), 0), None);
    }

    #[test]
    fn a_dynamic_filter_is_read_as_it_is_when_the_part_starts() {
        let dynamic = Arc::new(DynamicFilterPhysicalExpr::new(vec![key()], lit(true)));
        let filter: Arc<dyn PhysicalExpr> = Arc::clone(&dynamic) as _;
        assert_eq!(narrowed(Arc::clone(&filter), 1024), None);
        dynamic.update(keys(&[4, 5])).unwrap();
        dynamic.mark_complete();
        let sql = narrowed(filter, 1024).unwrap();
        assert!(sql.ends_with("WHERE c0 IN (4, 5)"), "{sql}");
    }
}
