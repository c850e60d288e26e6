//! The crate's errors: [`MetadataError`], what is wrong with the catalog's configuration, and
//! [`SparqlError`], why a SPARQL request failed, with its [`SparqlErrorKind`], which fixes the
//! HTTP status and is what a SPARQL worker reports to the node.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What is wrong with the catalog metadata; every problem is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    /// Required fields are missing (all of them are named) and/or values are invalid.
    #[error("{}", describe(missing, invalid))]
    Incomplete {
        /// Keys that must be set, e.g. `catalog.publisher.uri`.
        missing: Vec<String>,
        /// Keys whose values are invalid, with why.
        invalid: Vec<String>,
    },
}

fn describe(missing: &[String], invalid: &[String]) -> String {
    let mut parts = Vec::new();
    if !missing.is_empty() {
        parts.push(format!(
            "catalog metadata is incomplete: missing {}",
            missing.join(", ")
        ));
    }
    if !invalid.is_empty() {
        parts.push(format!("invalid catalog metadata: {}", invalid.join("; ")));
    }
    format!(
        "{} (docs/catalog-guide.md lists every key; node/config/node.example.toml is a complete example)",
        parts.join("; ")
    )
}

/// Why a SPARQL request failed; each maps to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum SparqlError {
    /// The query text is longer than allowed (413).
    #[error("the query is {len} bytes; this endpoint accepts at most {max}")]
    TooLong {
        /// Bytes sent.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The query nests deeper than allowed (400).
    #[error(
        "the query nests deeper than the limit of {max} levels (each bracket is a level, and so \
         is each link of a chain such as || && ! + - * / or of a group's OPTIONAL, UNION, \
         FILTER and BIND); flatten it, e.g. with IN (...) or VALUES instead of long || chains"
    )]
    TooDeep {
        /// The limit.
        max: usize,
    },
    /// The query does not parse (400); the message says where.
    #[error("SPARQL syntax error: {0}")]
    Syntax(String),
    /// A SPARQL Update was sent (403).
    #[error("this endpoint is read-only: SPARQL Update is not accepted")]
    Update,
    /// The request is malformed in another way (400).
    #[error("{0}")]
    BadRequest(String),
    /// No result format the client accepts (406).
    #[error(
        "none of the accepted media types ({accept}) can carry this result; available: {available}"
    )]
    NotAcceptable {
        /// The Accept header.
        accept: String,
        /// What the endpoint can send for this query.
        available: String,
    },
    /// The result cannot be written in the format asked for (406), e.g. RDF/XML of a
    /// predicate that has no XML local name.
    #[error("{0}; ask for Turtle, N-Triples or JSON-LD")]
    NotExpressible(String),
    /// Every evaluation slot stayed taken (429).
    #[error("too many SPARQL queries at once; try again shortly")]
    Busy,
    /// The query ran longer than allowed (503).
    #[error("the query ran longer than the limit of {0:?} and was stopped")]
    Timeout(Duration),
    /// The result is larger than allowed (400).
    #[error("the result has more than {0} solutions or triples; narrow the query or add a LIMIT")]
    TooManyResults(usize),
    /// The serialised result is larger than allowed (400).
    #[error(
        "the result is larger than the limit of {0} bytes; select fewer or shorter values, or add a LIMIT"
    )]
    ResultTooLarge(usize),
    /// The query needed more memory or CPU than a query may use (503).
    #[error("{0}")]
    ResourceLimit(String),
    /// The query uses something the endpoint does not offer (400), such as SERVICE.
    #[error("unsupported in this endpoint: {0}")]
    Unsupported(String),
    /// A fault of the node (500).
    #[error("internal error: {0}")]
    Internal(String),
    /// An error the SPARQL worker reported: its kind and message.
    #[error("{message}")]
    Reported {
        /// The kind of the original error.
        kind: SparqlErrorKind,
        /// Its message.
        message: String,
    },
}

/// The kind of a [`SparqlError`]: what the HTTP status depends on, and what a SPARQL worker
/// reports (in `snake_case`) with the error's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SparqlErrorKind {
    /// [`SparqlError::TooLong`].
    TooLong,
    /// [`SparqlError::TooDeep`].
    TooDeep,
    /// [`SparqlError::Syntax`].
    Syntax,
    /// [`SparqlError::Update`].
    Update,
    /// [`SparqlError::BadRequest`].
    BadRequest,
    /// [`SparqlError::NotAcceptable`] and [`SparqlError::NotExpressible`].
    NotAcceptable,
    /// [`SparqlError::Busy`].
    Busy,
    /// [`SparqlError::Timeout`].
    Timeout,
    /// [`SparqlError::TooManyResults`].
    TooManyResults,
    /// [`SparqlError::ResultTooLarge`].
    ResultTooLarge,
    /// [`SparqlError::ResourceLimit`].
    ResourceLimit,
    /// [`SparqlError::Unsupported`].
    Unsupported,
    /// [`SparqlError::Internal`].
    Internal,
}

impl SparqlError {
    /// The kind of the error.
    pub fn kind(&self) -> SparqlErrorKind {
        use SparqlErrorKind as K;
        match self {
            Self::TooLong { .. } => K::TooLong,
            Self::TooDeep { .. } => K::TooDeep,
            Self::Syntax(_) => K::Syntax,
            Self::Update => K::Update,
            Self::BadRequest(_) => K::BadRequest,
            Self::NotAcceptable { .. } | Self::NotExpressible(_) => K::NotAcceptable,
            Self::Busy => K::Busy,
            Self::Timeout(_) => K::Timeout,
            Self::TooManyResults(_) => K::TooManyResults,
            Self::ResultTooLarge(_) => K::ResultTooLarge,
            Self::ResourceLimit(_) => K::ResourceLimit,
            Self::Unsupported(_) => K::Unsupported,
            Self::Internal(_) => K::Internal,
            Self::Reported { kind, .. } => *kind,
        }
    }

    /// The error a worker reported by kind and message; the message is kept as the worker
    /// wrote it, so the client sees the same text as from in-process evaluation. A timeout
    /// is the node's own `timeout`.
    pub(crate) fn reported(kind: SparqlErrorKind, message: String, timeout: Duration) -> Self {
        match kind {
            SparqlErrorKind::Timeout => Self::Timeout(timeout),
            SparqlErrorKind::Internal => Self::Internal(message),
            kind => Self::Reported { kind, message },
        }
    }
}
