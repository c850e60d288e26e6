//! How `polder sql` words an error: once, with one kind, naming tables as the analyst wrote
//! them, and with the table they probably meant.

use datafusion::common::utils::datafusion_strsim::levenshtein;
use datafusion::error::DataFusionError;
use datafusion::prelude::SessionContext;

/// The kinds a node puts before its messages (`polder_flight_sql::Error::code`).
const KINDS: &[&str] = &[
    "invalid_request",
    "not_found",
    "unauthenticated",
    "forbidden",
    "resource_exhausted",
    "timeout",
    "unsupported",
    "upstream",
    "bad_data",
    "internal",
];

/// The catalog and schema session-local views and tables live in; a name written without a
/// catalog is looked up there.
const DEFAULT_QUALIFIER: &str = "datafusion.public.";

/// An error of the query engine as the shell reports it: `kind: message`.
///
/// A node's error relayed by a peer keeps the node's kind, said once (not `upstream: peer 'x'
/// returned an error (InvalidArgument): invalid_request: ...`), and a table the analyst named
/// without a catalog is named so (not `datafusion.public.t`). `sql` is the statement.
pub(crate) fn explain(ctx: &SessionContext, sql: &str, err: DataFusionError) -> anyhow::Error {
    let err = polder_flight_sql::Error::from_datafusion(err);
    let mut kind = err.code();
    let mut message = err.to_string();
    if kind == "upstream"
        && let Some((before, after)) = message.split_once("): ")
        && let Some(remote) = KINDS.iter().find(|k| after.starts_with(&format!("{k}: ")))
    {
        kind = remote;
        message = format!("{before}): {}", &after[remote.len() + 2..]);
    }
    if !sql.to_ascii_lowercase().contains("datafusion.") {
        message = message.replace(DEFAULT_QUALIFIER, "");
    }
    if let Some(hint) = missing_table(&message).and_then(|name| suggest(ctx, name)) {
        message = format!("{message}. Did you mean '{hint}'?");
    }
    anyhow::anyhow!("{kind}: {message}")
}

/// The table a "table 'x' not found" message names.
fn missing_table(message: &str) -> Option<&str> {
    let start = message.find("table '")? + "table '".len();
    let rest = &message[start..];
    let end = rest.find("' not found")?;
    Some(&rest[..end])
}

/// The table of the session closest to `name` (as written: `t`, `schema.t` or
/// `catalog.schema.t`), named the same way, when one is close enough to be a typo; a table
/// named without a catalog that a node has is named with its node's catalog.
fn suggest(ctx: &SessionContext, name: &str) -> Option<String> {
    let parts: Vec<&str> = name.split('.').collect();
    let table = *parts.last()?;
    let mut candidates: Vec<(String, String)> = vec![];
    for catalog_name in ctx.catalog_names() {
        let Some(catalog) = ctx.catalog(&catalog_name) else {
            continue;
        };
        if parts.len() == 3 && parts[0] != catalog_name {
            continue;
        }
        for schema_name in catalog.schema_names() {
            if schema_name == "information_schema"
                || (parts.len() >= 2 && parts[parts.len() - 2] != schema_name)
            {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            for candidate in schema.table_names() {
                let shown = match parts.len() {
                    3 => format!("{catalog_name}.{schema_name}.{candidate}"),
                    2 if catalog_name == "datafusion" => format!("{schema_name}.{candidate}"),
                    1 if catalog_name == "datafusion" && schema_name == "public" => {
                        candidate.clone()
                    }
                    _ => format!("{catalog_name}.{schema_name}.{candidate}"),
                };
                candidates.push((candidate, shown));
            }
        }
    }
    let bound = (table.chars().count() / 3).max(1);
    candidates
        .into_iter()
        .map(|(candidate, shown)| (levenshtein(&candidate, table), shown))
        .filter(|(distance, shown)| *distance <= bound && shown != name)
        .min_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)))
        .map(|(_, shown)| shown)
}

/// An error and its causes, each said once: a cause whose text the message already holds
/// (`External error: X` over `X`) is left out.
pub(crate) fn chain(err: &anyhow::Error) -> String {
    let mut message = err.to_string();
    for cause in err.chain().skip(1) {
        let text = cause.to_string();
        if !message.contains(&text) {
            message = format!("{message}: {text}");
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_missing_table() {
        assert_eq!(
            missing_table("Error during planning: table 'datafusion.public.x' not found"),
            Some("datafusion.public.x")
        );
        assert_eq!(missing_table("No field named x"), None);
    }

    #[tokio::test]
    async fn suggests_tables_as_written_and_never_the_default_catalog() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE VIEW air_quality AS SELECT 1 AS a")
            .await
            .unwrap();
        let err = ctx.sql("SELECT * FROM air_qualty").await.unwrap_err();
        let message = explain(&ctx, "SELECT * FROM air_qualty", err).to_string();
        assert_eq!(
            message,
            "not_found: Error during planning: table 'air_qualty' not found. Did you mean 'air_quality'?"
        );
        let err = ctx.sql("SELECT * FROM zzz").await.unwrap_err();
        let message = explain(&ctx, "SELECT * FROM zzz", err).to_string();
        assert!(!message.contains("datafusion") && !message.contains("Did you mean"));
    }

    #[tokio::test]
    async fn columns_of_a_view_are_named_without_the_default_catalog() {
        let ctx = SessionContext::new();
        ctx.sql("CREATE VIEW v AS SELECT 1 AS a").await.unwrap();
        let err = ctx
            .sql("SELECT b FROM datafusion.public.v")
            .await
            .unwrap_err();
        let message = explain(&ctx, "SELECT b FROM v", err).to_string();
        assert!(!message.contains("datafusion"), "{message}");
        assert!(message.contains("v.a"), "{message}");
    }

    #[test]
    fn a_relayed_error_has_one_kind() {
        let relayed = polder_flight_sql::Error::Upstream(
            "peer 'a' returned an error (InvalidArgument): invalid_request: Cast error".into(),
        );
        let err = DataFusionError::External(Box::new(relayed));
        let ctx = SessionContext::new();
        assert_eq!(
            explain(&ctx, "", err).to_string(),
            "invalid_request: peer 'a' returned an error (InvalidArgument): Cast error"
        );
    }

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let inner = std::io::Error::other("disk full");
        let err = anyhow::Error::new(DataFusionError::External(Box::new(inner)));
        assert_eq!(chain(&err), "External error: disk full");
    }
}
