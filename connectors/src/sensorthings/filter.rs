//! The query's conditions the service can evaluate, as OData `$filter` text: comparisons of
//! `phenomenon_time`, `datastream_id` and `id` with constants, `IN` lists, `AND` and `OR`.

use chrono::DateTime;
use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator};

use super::entity::Entity;

/// The `$filter` condition of one of the query's conditions, if the service can evaluate it.
pub(super) fn filter_of(entity: Entity, expr: &Expr) -> Option<String> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            let (column, value, op) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) => (c.name.as_str(), v, *op),
                (Expr::Literal(v, _), Expr::Column(c)) => (c.name.as_str(), v, op.swap()?),
                _ => {
                    if *op == Operator::And {
                        let (l, r) = (filter_of(entity, left)?, filter_of(entity, right)?);
                        return Some(format!("({l} and {r})"));
                    }
                    if *op == Operator::Or {
                        let (l, r) = (filter_of(entity, left)?, filter_of(entity, right)?);
                        return Some(format!("({l} or {r})"));
                    }
                    return None;
                }
            };
            let op = match op {
                Operator::Eq => "eq",
                Operator::NotEq => "ne",
                Operator::Gt => "gt",
                Operator::GtEq => "ge",
                Operator::Lt => "lt",
                Operator::LtEq => "le",
                _ => return None,
            };
            let (path, literal) = match (entity, column) {
                (Entity::Observations, "phenomenon_time") => {
                    ("phenomenonTime", time_literal(value)?)
                }
                (Entity::Observations, "datastream_id") => ("Datastream/id", id_literal(value)?),
                (_, "id") => ("id", id_literal(value)?),
                _ => return None,
            };
            Some(format!("{path} {op} {literal}"))
        }
        Expr::InList(list) if !list.negated => {
            let parts: Option<Vec<String>> = list
                .list
                .iter()
                .map(|value| {
                    filter_of(
                        entity,
                        &Expr::BinaryExpr(BinaryExpr::new(
                            list.expr.clone(),
                            Operator::Eq,
                            Box::new(value.clone()),
                        )),
                    )
                })
                .collect();
            let parts = parts?;
            (!parts.is_empty()).then(|| format!("({})", parts.join(" or ")))
        }
        _ => None,
    }
}

/// An id as OData writes it: a number as is, other text quoted.
fn id_literal(value: &ScalarValue) -> Option<String> {
    let text = match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::Utf8View(Some(s))
        | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
        ScalarValue::Int64(Some(v)) => v.to_string(),
        ScalarValue::Int32(Some(v)) => v.to_string(),
        _ => return None,
    };
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        Some(text)
    } else {
        Some(format!("'{}'", text.replace('\'', "''")))
    }
}

/// A timestamp as an OData date-time literal (UTC).
fn time_literal(value: &ScalarValue) -> Option<String> {
    let micros = match value
        .cast_to(&DataType::Timestamp(
            TimeUnit::Microsecond,
            Some("UTC".into()),
        ))
        .ok()?
    {
        ScalarValue::TimestampMicrosecond(Some(v), _) => v,
        _ => return None,
    };
    let time = DateTime::from_timestamp_micros(micros)?;
    Some(time.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    #[test]
    fn conditions_on_time_datastream_and_id_become_odata() {
        let time = col("phenomenon_time").gt_eq(lit(ScalarValue::TimestampMicrosecond(
            Some(1_704_067_200_000_000),
            Some("UTC".into()),
        )));
        assert_eq!(
            filter_of(Entity::Observations, &time).unwrap(),
            "phenomenonTime ge 2024-01-01T00:00:00.000000Z"
        );
        let streams = col("datastream_id").in_list(vec![lit("12"), lit("a'b")], false);
        assert_eq!(
            filter_of(Entity::Observations, &streams).unwrap(),
            "(Datastream/id eq 12 or Datastream/id eq 'a''b')"
        );
        assert_eq!(
            filter_of(Entity::Things, &lit("7").eq(col("id"))).unwrap(),
            "id eq 7"
        );
        assert!(filter_of(Entity::Observations, &col("result").gt(lit(3.0))).is_none());
        assert!(filter_of(Entity::Things, &col("name").eq(lit("x"))).is_none());
    }
}
