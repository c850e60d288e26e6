//! A peer's catalog as one caller sees it: the caller's token carried to the peer, so that the
//! peer's own policy decides what the caller lists and reads.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::error::Result;
use datafusion_federation::sql::{RemoteTableRef, SQLFederationProvider, SQLTableSource};
use lru::LruCache;
use tracing::info;

use super::table_provider;
use super::{PeerCatalog, View};
use crate::peer::Peer;

/// Table names by schema, as the peer lists them for one caller.
type Listing = BTreeMap<String, Vec<String>>;

/// When a caller's listing was asked, and what the peer answered (none when it could not).
type CallerListing = (Instant, Option<Arc<Listing>>);

/// What the peer lists for each caller's token, with when it was asked.
pub(super) type Listings = LruCache<String, CallerListing>;

/// How many callers' listings a peer catalog keeps.
const CALLER_LISTINGS: NonZeroUsize = NonZeroUsize::new(1024).expect("not zero");

/// How long a request waits for a peer's listing for its caller (listings only: the query
/// itself has the peer timeout).
const LISTING_WAIT: Duration = Duration::from_secs(5);

/// An empty cache of callers' listings.
pub(super) fn listings() -> Listings {
    LruCache::new(CALLER_LISTINGS)
}

impl PeerCatalog {
    /// This catalog as one caller sees it: every request to the peer carries the caller's
    /// `token`, and each table is looked up on the peer with it, so the peer's own policy decides
    /// what the caller reads (tables, columns) and refuses the rest with its reason.
    ///
    /// Listings (`information_schema`, Flight SQL `GetTables` at this node) show what the peer
    /// lists for the caller, asked once per token and refresh interval; when the peer cannot
    /// be asked, this node's own view of it.
    pub async fn for_caller(self: &Arc<Self>, token: &str) -> Arc<dyn CatalogProvider> {
        let peer = self.peer.with_bearer(token);
        let listing = self.caller_listing(&peer, token).await;
        let provider = Arc::new(SQLFederationProvider::new(Arc::new(peer.clone())));
        Arc::new(CallerCatalog {
            base: Arc::clone(self),
            peer,
            provider,
            listing,
        })
    }

    /// What the peer lists for the caller whose token `peer` carries: cached, or asked now
    /// (bounded by [`LISTING_WAIT`]).
    async fn caller_listing(&self, peer: &Peer, token: &str) -> Option<Arc<Listing>> {
        let fresh = self.peer.options().refresh_interval;
        if let Some((at, listing)) = self.listings.lock().get(token)
            && at.elapsed() < fresh
        {
            return listing.clone();
        }
        let wait = LISTING_WAIT.min(self.peer.options().peer_timeout);
        let listing = match tokio::time::timeout(wait, peer.discover()).await {
            Ok(Ok(discovered)) => Some(Arc::new(
                discovered
                    .schemas
                    .into_iter()
                    .map(|(schema, tables)| (schema, tables.into_keys().collect()))
                    .collect::<Listing>(),
            )),
            // The caller's own queries report the reason; the listing falls back.
            Ok(Err(err)) => {
                info!(peer = %self.peer.name(), error = %err, "peer lists nothing for a caller");
                None
            }
            Err(_) => {
                info!(peer = %self.peer.name(), "peer did not list its tables for a caller in time");
                None
            }
        };
        self.listings
            .lock()
            .put(token.to_string(), (Instant::now(), listing.clone()));
        listing
    }
}

/// A peer's catalog for one caller (see [`PeerCatalog::for_caller`]). Listings are what the
/// peer lists for the caller (or, failing that, the node's own view of the peer); each table is
/// looked up on the peer with the caller's token.
#[derive(Debug)]
struct CallerCatalog {
    base: Arc<PeerCatalog>,
    peer: Peer,
    provider: Arc<SQLFederationProvider>,
    listing: Option<Arc<Listing>>,
}

impl CatalogProvider for CallerCatalog {
    fn schema_names(&self) -> Vec<String> {
        match &self.listing {
            Some(listing) => listing.keys().cloned().collect(),
            None => self.base.schema_names(),
        }
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        // A schema the listing lacks may still be the caller's to read.
        let listed = match &self.listing {
            Some(listing) => listing.get(name).cloned(),
            None => match &*self.base.state.read() {
                View::Ready { schemas, .. } => schemas.get(name).map(|s| s.table_names()),
                View::Pending(_) => None,
            },
        };
        Some(Arc::new(CallerSchema {
            peer: self.peer.clone(),
            provider: Arc::clone(&self.provider),
            catalog: self.base.remote_catalog(),
            schema: name.to_string(),
            listed: listed.unwrap_or_default(),
        }))
    }
}

#[derive(Debug)]
struct CallerSchema {
    peer: Peer,
    provider: Arc<SQLFederationProvider>,
    catalog: String,
    schema: String,
    listed: Vec<String>,
}

#[async_trait]
impl SchemaProvider for CallerSchema {
    fn table_names(&self) -> Vec<String> {
        self.listed.clone()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(arrow_schema) = self
            .peer
            .table_schema(&self.catalog, &self.schema, name)
            .await?
        else {
            return Ok(None);
        };
        let remote = RemoteTableRef::from(TableReference::full(
            self.catalog.as_str(),
            self.schema.as_str(),
            name,
        ));
        let source =
            SQLTableSource::new_with_schema(Arc::clone(&self.provider), remote, arrow_schema);
        Ok(Some(table_provider(
            Arc::new(source),
            self.peer.options().pushdown,
        )))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.listed.iter().any(|t| t == name)
    }
}
