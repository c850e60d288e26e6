//! Enforcement: every request is planned against a session whose catalog holds only what the
//! caller may read.
//!
//! The node's own catalog is wrapped per request: a dataset the policy does not grant is left out
//! of every listing (Flight SQL `GetTables`, `information_schema`, `SHOW TABLES`) and naming it
//! in a query fails with the policy's reason; a granted dataset with denied columns is a table
//! without those columns, so they exist nowhere in the caller's plan: not in `SELECT *`, not in
//! `EXPLAIN`, not in a filter. Peers' catalogs pass through: each peer applies its own policy.
//!
//! One concern a file: this one builds the per-caller session ([`PolicySessions`]);
//! `view.rs` holds the caller's view (the policy's decisions for one request), `catalog.rs` the
//! policy-enforcing catalog and schema wrappers, `record.rs` the request's audit records.

mod catalog;
mod record;
mod view;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use datafusion::catalog::CatalogProvider;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;
use parking_lot::{Mutex, RwLock};
use polder_flight_sql::{Error, QueryAudit, RequestSessions};

use crate::aggregate::AggregateOnlyRule;
use crate::audit::AuditLog;
use crate::auth::Identity;
use crate::policy::Policy;

use catalog::PolicyCatalogList;
use record::AuditRecorder;
use view::View;

/// A catalog that answers each authenticated caller with the caller's own token, so that the
/// node behind it (a federation peer) applies its own policy to the caller.
///
/// Registered per catalog name with [`PolicySessions::forward`]; [`PolicySessions`] asks it for
/// the caller's view when it builds a request's session. The node implements it for each
/// federation peer (`PeerForward` in `node/src/startup.rs`, over
/// `polder_federation::PeerCatalog::for_caller`).
pub trait ForwardCatalog: Send + Sync {
    /// The catalog as the caller holding `token` sees it.
    fn for_caller<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Arc<dyn CatalogProvider>>;
}

/// Chooses each request's session by the caller's identity and the node's policy.
#[derive(Clone)]
pub struct PolicySessions {
    policy: Arc<Policy>,
    node: String,
    forwarding: Arc<RwLock<HashMap<String, Arc<dyn ForwardCatalog>>>>,
    audit: Option<Arc<AuditLog>>,
}

impl std::fmt::Debug for PolicySessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicySessions")
            .field("node", &self.node)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl PolicySessions {
    /// Enforces `policy` on the catalog `node` (the node's own datasets).
    pub fn new(policy: Arc<Policy>, node: impl Into<String>) -> Self {
        Self {
            policy,
            node: node.into(),
            forwarding: Arc::default(),
            audit: None,
        }
    }

    /// Records every query in `log` (see [`crate::audit`]).
    pub fn with_audit(mut self, log: Arc<AuditLog>) -> Self {
        self.audit = Some(log);
        self
    }

    /// From now on, an authenticated caller's requests see the catalog `name` as `forward`
    /// makes it from the caller's token: a peer then applies its own policy to the caller.
    /// Callers without a token see the catalog as the node does.
    pub fn forward(&self, name: impl Into<String>, forward: Arc<dyn ForwardCatalog>) {
        self.forwarding.write().insert(name.into(), forward);
    }

    /// The forwarded catalogs as `identity` sees them, made concurrently; none for an
    /// anonymous caller.
    async fn forwarded(&self, identity: &Identity) -> HashMap<String, Arc<dyn CatalogProvider>> {
        let Identity::User { token, .. } = identity else {
            return HashMap::new();
        };
        let forwarding: Vec<(String, Arc<dyn ForwardCatalog>)> = self
            .forwarding
            .read()
            .iter()
            .map(|(name, forward)| (name.clone(), Arc::clone(forward)))
            .collect();
        let views = forwarding
            .iter()
            .map(|(name, forward)| async move { (name.clone(), forward.for_caller(token).await) });
        futures::future::join_all(views).await.into_iter().collect()
    }
}

#[async_trait]
impl RequestSessions for PolicySessions {
    async fn session(
        &self,
        base: &SessionContext,
        extensions: &tonic::Extensions,
    ) -> polder_flight_sql::Result<(SessionContext, Option<Arc<dyn QueryAudit>>)> {
        // Fail closed: without an identity from the authentication layer nothing is readable.
        let identity = extensions.get::<Identity>().cloned().ok_or_else(|| {
            Error::Unauthenticated("unauthenticated: no identity established".into())
        })?;
        let state = base.state();
        let forwarded = self.forwarded(&identity).await;
        let suppressed = Arc::new(AtomicU64::new(0));
        let view = Arc::new(View {
            state: state.clone(),
            suppressed: Arc::clone(&suppressed),
            policy: Arc::clone(&self.policy),
            identity,
            node: self.node.clone(),
            decisions: Mutex::default(),
        });
        let catalogs = Arc::new(PolicyCatalogList {
            inner: Arc::clone(state.catalog_list()),
            forwarded,
            view: Arc::clone(&view),
        });
        let state = SessionStateBuilder::new_from_existing(state)
            .with_catalog_list(catalogs)
            .with_analyzer_rule(Arc::new(AggregateOnlyRule::counting(suppressed)))
            .build();
        let audit = self
            .audit
            .as_ref()
            .map(|log| Arc::new(AuditRecorder::new(Arc::clone(log), view)) as Arc<dyn QueryAudit>);
        Ok((SessionContext::new_with_state(state), audit))
    }
}
