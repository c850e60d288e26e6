//! The records of the audit log as they are written: one JSON object a line, its fields in the
//! order of these structs, `kind` first.
//!
//! [`AuditLog`](super::AuditLog) adds `seq`, `prev` and `hash` after the fields of each record
//! (the hash chain, `audit/chain.rs`); [`verify`](super::verify) (`polder audit verify`) and the
//! conformance suite read these names.

use std::collections::BTreeMap;

use serde::Serialize;

use super::statement::{statement_hash, strip_literals};

/// One line of the log, before the chain fields.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// A query that was planned and is about to run.
    Query(QueryRecord),
    /// A query refused before it ran (`outcome` says why).
    Refused(QueryRecord),
    /// How a query that ran ended.
    QueryEnd(QueryEnd),
    /// A signed checkpoint over the chain so far.
    Checkpoint(Checkpoint),
    /// Refusals of one caller counted past the rate limit instead of recorded.
    RefusalsSuppressed(RefusalsSuppressed),
}

/// Who asked what, of which datasets under which grant: a `query` or `refused` record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueryRecord {
    /// When, RFC 3339 in milliseconds, UTC.
    pub time: String,
    /// The token's subject, or `anonymous`.
    pub subject: String,
    /// The token's `purpose` claim.
    pub purpose: Option<String>,
    /// Each dataset the query named, with what the policy decided for it.
    pub datasets: Vec<DatasetAccess>,
    /// The statement's shape, hash and length.
    #[serde(flatten)]
    pub statement: Statement,
    /// Why a refused query was refused (the error's code); absent on `query` records.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
}

/// What a record keeps of a statement: never a literal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Statement {
    /// The literals replaced by `?`, at most the log's `max_statement_bytes`.
    pub statement: String,
    /// SHA-256 of the whole statement, hex.
    pub statement_sha256: String,
    /// The whole statement's length in bytes.
    pub statement_bytes: usize,
    /// `true` when `statement` is a prefix; absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub statement_truncated: bool,
}

impl Statement {
    /// What a record keeps of `sql`, its text at most `max_bytes` long.
    pub fn of(sql: &str, max_bytes: usize) -> Self {
        let stripped = strip_literals(sql, max_bytes);
        Self {
            statement: stripped.text,
            statement_sha256: statement_hash(sql),
            statement_bytes: sql.len(),
            statement_truncated: stripped.truncated,
        }
    }
}

/// One dataset a query named, and the policy's decision for the caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DatasetAccess {
    /// `node.schema.table`.
    pub dataset: String,
    /// The grant, or the refusal.
    #[serde(flatten)]
    pub access: Access,
    /// Whether the policy marks the dataset as personal data.
    pub personal: bool,
}

/// What the caller was granted on a dataset (`access` in the record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "access", rename_all = "lowercase")]
pub enum Access {
    /// Rows, restricted as the rule says.
    Raw {
        /// The granting rule (1-based); `null` for a public dataset.
        rule: Option<usize>,
        /// Columns removed from the caller's view.
        denied_columns: Vec<String>,
        /// Columns the caller sees masked.
        masked_columns: Vec<String>,
        /// The row filter, its claims unbound.
        row_filter: Option<String>,
    },
    /// Aggregates only.
    Aggregate {
        /// The granting rule (1-based).
        rule: usize,
        /// Groups of fewer privacy units are not released.
        min_group_size: u64,
        /// The row filter, its claims unbound.
        row_filter: Option<String>,
    },
    /// Nothing.
    Refused,
}

/// How a query ended: a `query_end` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryEnd {
    /// When, RFC 3339 in milliseconds, UTC.
    pub time: String,
    /// The `seq` of the query's start record; `null` when it could not be written.
    pub query: Option<u64>,
    /// `ok`, or the error's code.
    pub outcome: String,
    /// The rows sent.
    pub rows_out: u64,
    /// Groups left out for being smaller than the minimum size; only for aggregate access.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups_suppressed: Option<u64>,
}

/// A signed checkpoint: a `checkpoint` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checkpoint {
    /// When, RFC 3339 in milliseconds, UTC.
    pub time: String,
    /// The `seq` of the last record it covers.
    pub covers: u64,
    /// The most records before the next checkpoint (signed with it).
    pub every: u64,
    /// Ed25519 over `polder-audit-checkpoint:{covers}:{covers_hash}:every={every}`, base64url.
    pub signature: String,
    /// The hash of the record it covers, hex.
    pub covers_hash: String,
}

/// One caller's refusals counted past the rate limit: a `refusals_suppressed` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusalsSuppressed {
    /// When, RFC 3339 in milliseconds, UTC.
    pub time: String,
    /// The subject, or `anonymous` for all anonymous callers.
    pub subject: String,
    /// Refusals counted.
    pub count: u64,
    /// The count by outcome (the error's code).
    pub outcomes: BTreeMap<String, u64>,
    /// When the first of them happened.
    pub first: Option<String>,
}

/// The time of a record: now, RFC 3339 in milliseconds, UTC.
pub fn now_text() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
