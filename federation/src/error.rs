//! Errors of talking to a peer. Each names the peer, so that an analyst knows which city's node
//! failed; none is ever turned into a partial answer.

use std::time::Duration;

use datafusion::error::DataFusionError;

use crate::config::UrlError;

/// A peer could not answer a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PeerError {
    /// The peer could not be reached: connection refused, reset, DNS, TLS.
    #[error("peer '{peer}' is unavailable at {url}: {message}")]
    Unavailable {
        /// The peer's name.
        peer: String,
        /// Where it was expected.
        url: String,
        /// What the transport said.
        message: String,
    },
    /// The peer took longer than the configured timeout to send its next message.
    #[error("peer '{peer}' did not answer within {}", humantime_duration(*.timeout))]
    Timeout {
        /// The peer's name.
        peer: String,
        /// The configured timeout.
        timeout: Duration,
    },
    /// The peer answered with an error status.
    #[error("peer '{peer}' returned an error ({code:?}): {message}")]
    Remote {
        /// The peer's name.
        peer: String,
        /// The gRPC status code, e.g. [`tonic::Code::InvalidArgument`].
        code: tonic::Code,
        /// The peer's message.
        message: String,
    },
    /// The peer sent data that does not fit the schema the query expects of it.
    #[error("peer '{peer}' sent data that does not match the expected schema: {detail}")]
    SchemaMismatch {
        /// The peer's name.
        peer: String,
        /// What did not match.
        detail: String,
    },
    /// The peer broke the Flight SQL protocol (an undecodable message, a missing column).
    #[error("peer '{peer}' sent an invalid Flight SQL response: {detail}")]
    Protocol {
        /// The peer's name.
        peer: String,
        /// What was wrong.
        detail: String,
    },
    /// The peer's URL cannot be used (not a URL, no port, an unsupported scheme).
    #[error("peer '{peer}' is misconfigured: {source}")]
    Url {
        /// The peer's name.
        peer: String,
        /// What is wrong with the URL.
        source: UrlError,
    },
    /// The peer's configuration is invalid otherwise (its name, its TLS settings, its catalogs).
    #[error("peer '{peer}' is misconfigured: {detail}")]
    Config {
        /// The peer's name.
        peer: String,
        /// What is wrong.
        detail: String,
    },
}

impl PeerError {
    /// The peer the error is about.
    pub fn peer(&self) -> &str {
        match self {
            PeerError::Unavailable { peer, .. }
            | PeerError::Timeout { peer, .. }
            | PeerError::Remote { peer, .. }
            | PeerError::SchemaMismatch { peer, .. }
            | PeerError::Protocol { peer, .. }
            | PeerError::Url { peer, .. }
            | PeerError::Config { peer, .. } => peer,
        }
    }

    /// Whether the peer refused the request's credentials (no token, or one its policy
    /// rejects): `Unauthenticated` or `PermissionDenied`.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            PeerError::Remote {
                code: tonic::Code::Unauthenticated | tonic::Code::PermissionDenied,
                ..
            }
        )
    }
}

/// Into the query engine: a timeout stays a timeout (DEADLINE_EXCEEDED on the wire), a peer's
/// refusal of the caller stays a refusal (UNAUTHENTICATED, PERMISSION_DENIED: the peer's policy
/// decided), every other peer failure is an upstream failure (UNAVAILABLE); the message names
/// the peer.
impl From<PeerError> for DataFusionError {
    fn from(err: PeerError) -> Self {
        use polder_flight_sql::Error;
        let ours = match &err {
            PeerError::Timeout { .. } => Error::Timeout(err.to_string()),
            PeerError::Remote {
                code: tonic::Code::Unauthenticated,
                ..
            } => Error::Unauthenticated(err.to_string()),
            PeerError::Remote {
                code: tonic::Code::PermissionDenied,
                ..
            } => Error::Forbidden(err.to_string()),
            _ => Error::Upstream(err.to_string()),
        };
        DataFusionError::External(Box::new(ours))
    }
}

pub(crate) fn humantime_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}
