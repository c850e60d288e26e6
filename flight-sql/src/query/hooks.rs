//! The hooks a node plugs into the engine: the session each request is planned against
//! ([`RequestSessions`]) and the audit of what each query does ([`QueryAudit`]), and how the
//! engine calls the audit's blocking writes.

use std::sync::Arc;

use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};

/// Chooses the session each request is planned against. A node with an access policy gives
/// every caller a session holding only what that caller may see; the identity comes from the
/// request's extensions, put there by the authentication layer in front of the service.
#[tonic::async_trait]
pub trait RequestSessions: Send + Sync + std::fmt::Debug + 'static {
    /// The session for a request with `extensions`, derived from the node's `base` session,
    /// and where to record what the request's query releases. It may ask other nodes (what a
    /// federation peer lists for the caller), so it is async.
    async fn session(
        &self,
        base: &SessionContext,
        extensions: &tonic::Extensions,
    ) -> Result<(SessionContext, Option<Arc<dyn QueryAudit>>)>;
}

/// Records what one request's query does (an audit log): called by [`QueryEngine::run`](super::QueryEngine::run).
///
/// The methods may block on I/O (a durable write): the engine calls them on Tokio's blocking
/// pool, never on a thread that serves requests.
pub trait QueryAudit: Send + Sync + std::fmt::Debug {
    /// Planning refused the statement.
    fn refused(&self, sql: &str, error: &Error);
    /// The statement is planned and about to run; an error refuses it before any row is sent.
    fn started(&self, sql: &str) -> Result<()>;
    /// The result ended: all rows sent, failed, or abandoned by the client (`error` says which).
    fn finished(&self, rows: u64, error: Option<&Error>);
}

/// Runs blocking `work` (an audit write) on Tokio's blocking pool and waits for it without
/// holding up the request threads.
pub(super) async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(Error::Upstream("the node is shutting down".into())),
    }
}

/// Runs blocking `work` on Tokio's blocking pool without waiting for it (from a stream's poll
/// or drop, which cannot wait); inline where there is no runtime.
pub(super) fn in_background(work: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(work);
        }
        Err(_) => work(),
    }
}
