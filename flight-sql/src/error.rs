//! Errors of the Flight SQL service, grouped by who is at fault, and their one mapping to the wire.

use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use tonic::Status;

/// A failed Flight SQL request.
///
/// Every variant carries a message for humans that names the problem; the variant decides the gRPC
/// status code, so that clients can react to the kind of failure without parsing text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request is malformed: SQL syntax, a type error, a bad ticket or handle, a bad parameter.
    #[error("{0}")]
    InvalidRequest(String),
    /// The request names a table, schema or column that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The caller did not prove who they are, and what they asked for needs it.
    #[error("{0}")]
    Unauthenticated(String),
    /// The request is well formed but not allowed: the node is read-only, or its access
    /// policy does not grant it to the caller.
    #[error("{0}")]
    Forbidden(String),
    /// A limit was reached: query length, memory, concurrent queries.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The query ran longer than the configured timeout.
    #[error("{0}")]
    Timeout(String),
    /// The request uses a part of Flight SQL that this node does not offer.
    #[error("{0}")]
    Unsupported(String),
    /// A dataset's storage could not be reached or read (I/O, object store).
    #[error("{0}")]
    Upstream(String),
    /// A dataset's data is malformed: a file that does not parse or does not fit its schema.
    #[error("{0}")]
    BadData(String),
    /// A bug or broken invariant in the node.
    #[error("{0}")]
    Internal(String),
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Stable machine-readable code of the error kind, carried in the status message.
    pub fn code(&self) -> &'static str {
        match self {
            Error::InvalidRequest(_) => "invalid_request",
            Error::NotFound(_) => "not_found",
            Error::Unauthenticated(_) => "unauthenticated",
            Error::Forbidden(_) => "forbidden",
            Error::ResourceExhausted(_) => "resource_exhausted",
            Error::Timeout(_) => "timeout",
            Error::Unsupported(_) => "unsupported",
            Error::Upstream(_) => "upstream",
            Error::BadData(_) => "bad_data",
            Error::Internal(_) => "internal",
        }
    }

    /// Classifies an error of the query engine by who is at fault.
    pub fn from_datafusion(err: DataFusionError) -> Self {
        if let DataFusionError::External(inner) = err.find_root()
            && let Some(ours) = inner.downcast_ref::<Error>()
        {
            return ours.clone();
        }
        let message = err.strip_backtrace();
        match err.find_root() {
            DataFusionError::SQL(..) => Error::InvalidRequest(message),
            DataFusionError::SchemaError(schema_err, _) => {
                use datafusion::common::SchemaError;
                match schema_err.as_ref() {
                    SchemaError::FieldNotFound { .. } => Error::NotFound(message),
                    _ => Error::InvalidRequest(message),
                }
            }
            DataFusionError::Plan(m) => {
                if is_missing_table(m) {
                    Error::NotFound(message)
                } else {
                    Error::InvalidRequest(message)
                }
            }
            DataFusionError::NotImplemented(_) => Error::Unsupported(message),
            DataFusionError::ResourcesExhausted(_) => Error::ResourceExhausted(message),
            DataFusionError::ObjectStore(_) | DataFusionError::IoError(_) => {
                Error::Upstream(message)
            }
            DataFusionError::ArrowError(arrow, _) => match arrow.as_ref() {
                ArrowError::CsvError(_)
                | ArrowError::JsonError(_)
                | ArrowError::ParquetError(_)
                | ArrowError::IpcError(_) => Error::BadData(message),
                // The CSV and JSON readers report values that do not fit the column type as
                // parse errors with their position in the file.
                ArrowError::ParseError(m) if m.contains(" at line ") => Error::BadData(message),
                ArrowError::ComputeError(m) if is_bad_pattern(m) => Error::InvalidRequest(message),
                ArrowError::ExternalError(inner) if is_regex_error(inner.as_ref()) => {
                    Error::InvalidRequest(message)
                }
                ArrowError::IoError(..) | ArrowError::ExternalError(_) => Error::Upstream(message),
                ArrowError::ParseError(_)
                | ArrowError::CastError(_)
                | ArrowError::InvalidArgumentError(_)
                | ArrowError::ArithmeticOverflow(_)
                | ArrowError::DivideByZero => Error::InvalidRequest(message),
                _ => Error::Internal(message),
            },
            DataFusionError::ParquetError(_) => Error::BadData(message),
            // A pattern that does not compile (or compiles too big) is the caller's.
            DataFusionError::External(inner) if is_regex_error(inner.as_ref()) => {
                Error::InvalidRequest(message)
            }
            DataFusionError::External(_) => Error::Upstream(message),
            DataFusionError::Execution(m) if is_missing_table(m) => Error::NotFound(message),
            DataFusionError::Execution(_) => Error::InvalidRequest(message),
            // Some kernels wrap the compute error as an internal one.
            DataFusionError::Internal(m) if is_bad_pattern(m) => Error::InvalidRequest(message),
            _ => Error::Internal(message),
        }
    }
}

/// A caller's regular expression that does not parse or compiles too big.
fn is_regex_error(error: &(dyn std::error::Error + Send + Sync + 'static)) -> bool {
    error.downcast_ref::<regex::Error>().is_some()
        || error.downcast_ref::<regex_syntax::Error>().is_some()
}

/// Arrow's regular-expression kernels report a pattern that does not compile (or compiles
/// past the size limit) only in text.
fn is_bad_pattern(message: &str) -> bool {
    message.contains("Regular expression did not compile")
}

fn is_missing_table(message: &str) -> bool {
    message.contains("not found") && (message.starts_with("table ") || message.contains("table '"))
}

impl From<DataFusionError> for Error {
    fn from(err: DataFusionError) -> Self {
        Error::from_datafusion(err)
    }
}

impl From<ArrowError> for Error {
    fn from(err: ArrowError) -> Self {
        Error::from_datafusion(DataFusionError::ArrowError(Box::new(err), None))
    }
}

impl From<arrow_flight::error::FlightError> for Error {
    fn from(err: arrow_flight::error::FlightError) -> Self {
        match err {
            arrow_flight::error::FlightError::Arrow(e) => Error::from(e),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        let message = format!("{}: {err}", err.code());
        match err {
            Error::InvalidRequest(_) => Status::invalid_argument(message),
            Error::NotFound(_) => Status::not_found(message),
            Error::Unauthenticated(_) => Status::unauthenticated(message),
            Error::Forbidden(_) => Status::permission_denied(message),
            Error::ResourceExhausted(_) => Status::resource_exhausted(message),
            Error::Timeout(_) => Status::deadline_exceeded(message),
            Error::Unsupported(_) => Status::unimplemented(message),
            Error::Upstream(_) => Status::unavailable(message),
            Error::BadData(_) => Status::failed_precondition(message),
            Error::Internal(_) => Status::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::SessionContext;

    async fn error_of(sql: &str) -> Error {
        let ctx = SessionContext::new();
        ctx.sql("CREATE TABLE t(a INT, b VARCHAR) AS VALUES (1, 'x')")
            .await
            .unwrap();
        match ctx.sql(sql).await {
            Ok(df) => Error::from(df.collect().await.unwrap_err()),
            Err(e) => Error::from(e),
        }
    }

    #[tokio::test]
    async fn classifies_engine_errors_by_who_is_at_fault() {
        assert!(matches!(
            error_of("SELEC 1").await,
            Error::InvalidRequest(_)
        ));
        assert!(matches!(
            error_of("SELECT * FROM nope").await,
            Error::NotFound(_)
        ));
        assert!(matches!(
            error_of("SELECT nope FROM t").await,
            Error::NotFound(_)
        ));
        assert!(matches!(
            error_of("SELECT a + b FROM t").await,
            Error::InvalidRequest(_)
        ));
        for sql in [
            "SELECT b ~ repeat('(a|b)*', 100000) FROM t",
            "SELECT regexp_replace(b, '(a{1000}){1000}', 'c') FROM t",
            "SELECT regexp_like(b, '(') FROM t",
        ] {
            let err = error_of(sql).await;
            assert!(matches!(err, Error::InvalidRequest(_)), "{sql}: {err:?}");
        }
    }

    #[test]
    fn maps_to_status_codes() {
        let status = Status::from(Error::Forbidden("read-only".into()));
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
        assert_eq!(status.message(), "forbidden: read-only");
    }
}
