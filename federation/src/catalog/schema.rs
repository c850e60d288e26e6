//! The schemas of a peer's catalog: as discovered, or, before any discovery succeeded, one
//! that answers every table lookup with the reason.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::Result;
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::SQLTableSource;

use crate::error::PeerError;
use crate::whole::{FederatedOnly, WholeTable};

/// One schema of a peer.
#[derive(Debug)]
pub(super) struct PeerSchema {
    pub(super) tables: BTreeMap<String, Arc<SQLTableSource>>,
    pub(super) pushdown: bool,
}

#[async_trait]
impl SchemaProvider for PeerSchema {
    fn table_names(&self) -> Vec<String> {
        self.tables.keys().cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Ok(self
            .tables
            .get(name)
            .map(|source| table_provider(Arc::clone(source), self.pushdown)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.tables.contains_key(name)
    }
}

/// A remote table as the planner sees it: federated whole parts, or scanned whole without
/// pushdown.
pub(crate) fn table_provider(
    source: Arc<SQLTableSource>,
    pushdown: bool,
) -> Arc<dyn TableProvider> {
    if pushdown {
        let only = Arc::new(FederatedOnly {
            source: Arc::clone(&source),
        });
        Arc::new(FederatedTableProviderAdaptor::new_with_provider(
            source as Arc<_>,
            only,
        ))
    } else {
        Arc::new(WholeTable { source })
    }
}

/// What a query naming a peer that was never discovered fails with: the reason discovery
/// failed, except that a discovery that timed out makes the peer unavailable (the query did
/// not run past a deadline of its own).
pub(super) fn not_discovered(err: &PeerError, url: &str) -> PeerError {
    match err {
        PeerError::Timeout { peer, timeout } => PeerError::Unavailable {
            peer: peer.clone(),
            url: url.to_string(),
            message: format!(
                "its tables are not discovered yet: it did not answer within {}",
                crate::error::humantime_duration(*timeout)
            ),
        },
        other => other.clone(),
    }
}

/// The schema of a peer never discovered: each table lookup fails with the reason.
#[derive(Debug)]
pub(super) struct UnavailableSchema(pub(super) PeerError);

#[async_trait]
impl SchemaProvider for UnavailableSchema {
    fn table_names(&self) -> Vec<String> {
        vec![]
    }

    async fn table(&self, _name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(self.0.clone().into())
    }

    fn table_exist(&self, _name: &str) -> bool {
        false
    }
}
