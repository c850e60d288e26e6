//! Statement pre-processing: the length and emptiness checks, positional placeholders
//! numbered, the depth bound, and the refusal of anything that is not a read-only query,
//! before the statement is planned.

use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SQLOptions, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{SetExpr, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use tracing::instrument;

use super::QueryLimits;
use crate::error::{Error, Result};

/// Parses `sql`, bounds its depth and plans it, refusing anything that is not a read-only
/// query. Runs where the stack is sized for the limits (see [`QueryRuntime`]).
#[instrument(skip_all, fields(sql_bytes = sql.len()))]
pub(super) async fn plan_statement(
    ctx: &SessionContext,
    limits: &QueryLimits,
    sql: &str,
) -> Result<LogicalPlan> {
    if sql.len() > limits.max_query_bytes {
        return Err(Error::InvalidRequest(format!(
            "query is {} bytes long; this node accepts at most {} bytes",
            sql.len(),
            limits.max_query_bytes
        )));
    }
    if sql.trim().is_empty() {
        return Err(Error::InvalidRequest("query is empty".into()));
    }
    let sql = number_positional_placeholders(sql)?;
    let state = ctx.state();
    let options = state.config().options();
    let dialect = options.sql_parser.dialect;
    let statement =
        state
            .sql_to_statement(&sql, &dialect)
            .map_err(|err| match err.find_root() {
                DataFusionError::SQL(parse, _)
                    if matches!(parse.as_ref(), ParserError::RecursionLimitExceeded) =>
                {
                    crate::depth::too_deep(options.sql_parser.recursion_limit.get())
                }
                _ => Error::from_datafusion(err),
            })?;
    crate::depth::check_depth(&statement, limits.max_query_depth)?;
    check_read_only(&statement)?;
    let plan = state.statement_to_plan(statement).await?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| Error::Forbidden(format!("the node is read-only: {}", e.message())))?;
    Ok(plan)
}

/// Rewrites positional `?` placeholders to `$1, $2, ...`; `?` inside literals and comments is
/// left alone because the tokenizer sees those as one token.
fn number_positional_placeholders(sql: &str) -> Result<String> {
    if !sql.contains('?') {
        return Ok(sql.to_string());
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| Error::InvalidRequest(format!("SQL error: {e}")))?;
    let mut next = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for token in tokens {
        match token {
            Token::Placeholder(p) if p == "?" => {
                next += 1;
                out.push_str(&format!("${next}"));
            }
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

/// Refuses every statement that is not a query: the node is read-only.
fn check_read_only(statement: &DFStatement) -> Result<()> {
    let refuse = |what: &str| {
        Err(Error::Forbidden(format!(
            "the node is read-only: {what} statements are not allowed"
        )))
    };
    match statement {
        DFStatement::Statement(inner) => match inner.as_ref() {
            SqlStatement::Query(query) => match writes(&query.body) {
                Some(kind) => refuse(kind),
                None => Ok(()),
            },
            SqlStatement::ShowTables { .. } | SqlStatement::ShowColumns { .. } => Ok(()),
            SqlStatement::Explain { statement, .. } => {
                check_read_only(&DFStatement::Statement(statement.clone()))
            }
            other => refuse(&statement_kind(&other.to_string())),
        },
        DFStatement::Explain(explain) => check_read_only(&explain.statement),
        DFStatement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE"),
        DFStatement::CopyTo(_) => refuse("COPY"),
        DFStatement::Reset(_) => refuse("RESET"),
    }
}

/// The kind of write a query body holds (`WITH ... INSERT ...` is a query whose body is an
/// insert), without recursion: a chain of set operations may be long.
fn writes(body: &SetExpr) -> Option<&'static str> {
    let mut pending = vec![body];
    while let Some(node) = pending.pop() {
        match node {
            SetExpr::Insert(_) => return Some("INSERT"),
            SetExpr::Update(_) => return Some("UPDATE"),
            SetExpr::Delete(_) => return Some("DELETE"),
            SetExpr::Merge(_) => return Some("MERGE"),
            SetExpr::Query(query) => pending.push(&query.body),
            SetExpr::SetOperation { left, right, .. } => {
                pending.push(left);
                pending.push(right);
            }
            SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => {}
        }
    }
    None
}

/// The leading keywords of a statement, for error messages (never its literals).
fn statement_kind(text: &str) -> String {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("").to_uppercase();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" | "TRUNCATE" => {
            let second = words.next().unwrap_or("").to_uppercase();
            format!("{first} {second}").trim().to_string()
        }
        _ => first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_question_marks_outside_literals() {
        assert_eq!(
            number_positional_placeholders("SELECT '?' AS q, a FROM t WHERE a > ? AND b = ?")
                .unwrap(),
            "SELECT '?' AS q, a FROM t WHERE a > $1 AND b = $2"
        );
        assert_eq!(
            number_positional_placeholders("SELECT 1").unwrap(),
            "SELECT 1"
        );
    }
}
