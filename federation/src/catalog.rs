//! A peer's tables as a SQL catalog of the local session.
//!
//! The peer's tables and schemas are discovered with Flight SQL `GetTables` when the catalog is
//! made, and again every [`FederationOptions::refresh_interval`] in the background; a failed
//! refresh keeps the last good view. Until a first discovery succeeds, every table of the
//! catalog answers with the error that prevented it, naming the peer.

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::TableReference;
use datafusion::error::Result;
use datafusion_federation::FederatedTableProviderAdaptor;
use datafusion_federation::sql::{RemoteTableRef, SQLFederationProvider, SQLTableSource};
use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};

use crate::config::{FederationOptions, PeerConfig};
use crate::error::PeerError;
use crate::peer::{Discovered, Peer};
use crate::whole::{FederatedOnly, WholeTable};

/// The local view of a peer: a catalog whose schemas and tables are the peer's.
#[derive(Debug)]
pub struct PeerCatalog {
    peer: Peer,
    provider: Arc<SQLFederationProvider>,
    state: RwLock<View>,
    /// Whether a discovery has ended (succeeded or failed) at least once.
    tried: std::sync::atomic::AtomicBool,
    /// The background task counting the rows of newly discovered tables.
    counting: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// What the peer lists for each caller's token, with when it was asked.
    /// (None: the peer could not be asked; not asked again before the refresh interval.)
    listings: Mutex<lru::LruCache<String, CallerListing>>,
}

/// Table names by schema, as the peer lists them for one caller.
type Listing = BTreeMap<String, Vec<String>>;

/// When a caller's listing was asked, and what the peer answered (none when it could not).
type CallerListing = (Instant, Option<Arc<Listing>>);

/// How many callers' listings a peer catalog keeps.
const CALLER_LISTINGS: usize = 1024;

/// How long a request waits for a peer's listing for its caller (listings only: the query
/// itself has the peer timeout).
const LISTING_WAIT: Duration = Duration::from_secs(5);

/// How long making a catalog waits for the row counts of the peer's tables.
const FIRST_COUNT_WAIT: Duration = Duration::from_secs(5);

#[derive(Debug)]
enum View {
    /// No discovery has succeeded yet; the last failure.
    Pending(PeerError),
    /// The peer's schemas as last discovered.
    Ready {
        /// The peer's catalog the schemas belong to.
        catalog: String,
        schemas: BTreeMap<String, Arc<PeerSchema>>,
        at: Instant,
    },
}

impl PeerCatalog {
    /// A catalog for `config` whose tables are not discovered yet.
    fn new(config: PeerConfig, options: FederationOptions) -> Result<Arc<Self>, PeerError> {
        let pending = PeerError::Unavailable {
            peer: config.name.clone(),
            url: config.url.to_string(),
            message: "its tables are not discovered yet (discovery is under way)".into(),
        };
        let peer = Peer::new(config, options)?;
        let provider = Arc::new(SQLFederationProvider::new(Arc::new(peer.clone())));
        Ok(Arc::new(Self {
            peer,
            provider,
            state: RwLock::new(View::Pending(pending)),
            tried: Default::default(),
            counting: Default::default(),
            listings: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(CALLER_LISTINGS).expect("not zero"),
            )),
        }))
    }

    /// A catalog for `config`, after one discovery attempt (bounded by the peer timeout), and
    /// refreshed in the background from then on. Returns the error of the first discovery when
    /// it failed: the catalog still exists and keeps trying.
    pub async fn connect(
        config: PeerConfig,
        options: FederationOptions,
    ) -> Result<(Arc<Self>, Option<PeerError>), PeerError> {
        let catalog = Self::new(config, options)?;
        let first = catalog.refresh().await.err();
        // Give the first row counts a moment, so that the first queries get estimates too.
        let counting = catalog.counting.lock().take();
        if let Some(counting) = counting {
            let _ = tokio::time::timeout(FIRST_COUNT_WAIT, counting).await;
        }
        spawn_refresh(
            Arc::downgrade(&catalog),
            catalog.peer.options().refresh_interval,
            false,
        );
        Ok((catalog, first))
    }

    /// A catalog for `config`, returned at once: the first discovery runs in the background
    /// (retried every few seconds until it succeeds), then refreshes. Until then every table
    /// of the catalog answers with an `Unavailable` error naming the peer.
    pub fn connect_in_background(
        config: PeerConfig,
        options: FederationOptions,
    ) -> Result<Arc<Self>, PeerError> {
        let catalog = Self::new(config, options)?;
        spawn_refresh(
            Arc::downgrade(&catalog),
            catalog.peer.options().refresh_interval,
            true,
        );
        Ok(catalog)
    }

    /// Whether the peer's tables have been discovered (at least once).
    pub fn is_discovered(&self) -> bool {
        self.age().is_some()
    }

    /// Whether a discovery of the peer has ended, successfully or not, at least once.
    pub fn was_tried(&self) -> bool {
        self.tried.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The peer behind the catalog.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// How old the current view of the peer is; `None` before the first discovery.
    pub fn age(&self) -> Option<Duration> {
        match &*self.state.read() {
            View::Ready { at, .. } => Some(at.elapsed()),
            View::Pending(_) => None,
        }
    }

    /// Discovers the peer's tables again and replaces the view; on failure the last good view
    /// stays.
    pub async fn refresh(&self) -> Result<(), PeerError> {
        let discovered = self.peer.discover().await;
        let result = self.update(discovered);
        self.tried.store(true, std::sync::atomic::Ordering::SeqCst);
        result
    }

    /// Replaces the view with what a discovery found; a failure keeps the last good view.
    fn update(&self, discovered: Result<Discovered, PeerError>) -> Result<(), PeerError> {
        match discovered {
            Ok(discovered) => {
                let tables: usize = discovered.schemas.values().map(BTreeMap::len).sum();
                // Row counts for the planner's estimates, in the background: a peer with
                // large tables in slow formats must not hold up the start.
                let peer = self.peer.clone();
                let names: Vec<(String, String, String)> = discovered
                    .schemas
                    .iter()
                    .flat_map(|(schema, tables)| {
                        tables
                            .keys()
                            .map(|t| (discovered.catalog.clone(), schema.clone(), t.clone()))
                    })
                    .collect();
                let counting = tokio::spawn(async move {
                    for (catalog, schema, table) in names {
                        peer.count_rows_once(&catalog, &schema, &table).await;
                    }
                });
                *self.counting.lock() = Some(counting);
                let catalog = discovered.catalog.clone();
                let schemas = self.schemas_of(discovered);
                *self.state.write() = View::Ready {
                    catalog,
                    schemas,
                    at: Instant::now(),
                };
                info!(peer = %self.peer.name(), tables, "peer discovered");
                Ok(())
            }
            Err(err) => {
                let mut state = self.state.write();
                if let View::Pending(last) = &mut *state {
                    *last = err.clone();
                }
                if err.is_refusal() {
                    info!(peer = %self.peer.name(), "peer lists nothing without a token; callers reach its tables with their own");
                } else {
                    warn!(peer = %self.peer.name(), error = %err, "peer discovery failed; retrying in the background")
                }
                Err(err)
            }
        }
    }

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

    /// Whether the last discovery failed because the peer refused this node's request
    /// (an authenticating peer without public datasets).
    fn refused(&self) -> bool {
        matches!(&*self.state.read(), View::Pending(err) if err.is_refusal())
    }

    /// The peer's catalog name: as discovered, else as configured, else the peer's name.
    fn remote_catalog(&self) -> String {
        match &*self.state.read() {
            View::Ready { catalog, .. } => catalog.clone(),
            View::Pending(_) => self
                .peer
                .config()
                .catalog
                .clone()
                .unwrap_or_else(|| self.peer.name().to_string()),
        }
    }

    fn schemas_of(&self, discovered: Discovered) -> BTreeMap<String, Arc<PeerSchema>> {
        let catalog = discovered.catalog;
        discovered
            .schemas
            .into_iter()
            .map(|(schema, tables)| {
                let sources = tables
                    .into_iter()
                    .map(|(table, arrow_schema)| {
                        // The remote part names the table as the peer knows it, fully qualified.
                        let remote = RemoteTableRef::from(TableReference::full(
                            catalog.as_str(),
                            schema.as_str(),
                            table.as_str(),
                        ));
                        let source = SQLTableSource::new_with_schema(
                            Arc::clone(&self.provider),
                            remote,
                            arrow_schema,
                        );
                        (table, Arc::new(source))
                    })
                    .collect();
                (
                    schema,
                    Arc::new(PeerSchema {
                        tables: sources,
                        pushdown: self.peer.options().pushdown,
                    }),
                )
            })
            .collect()
    }
}

/// Refreshes the catalog every `interval` while it exists; `now`: the first discovery first.
fn spawn_refresh(catalog: Weak<PeerCatalog>, interval: Duration, now: bool) {
    tokio::spawn(async move {
        if now {
            match catalog.upgrade() {
                Some(catalog) => {
                    let _ = catalog.refresh().await;
                }
                None => return,
            }
        }
        loop {
            // Until the first discovery succeeds, try again sooner, unless the peer answered and
            // refused this node (it requires a token): that does not change within seconds.
            let pending = match catalog.upgrade() {
                Some(c) => c.age().is_none() && !c.refused(),
                None => return,
            };
            let wait = if pending {
                interval.min(Duration::from_secs(5))
            } else {
                interval
            };
            tokio::time::sleep(wait).await;
            let Some(catalog) = catalog.upgrade() else {
                return;
            };
            let _ = catalog.refresh().await;
        }
    });
}

impl CatalogProvider for PeerCatalog {
    fn schema_names(&self) -> Vec<String> {
        match &*self.state.read() {
            View::Ready { schemas, .. } => schemas.keys().cloned().collect(),
            View::Pending(_) => vec![],
        }
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match &*self.state.read() {
            View::Ready { schemas, .. } => schemas
                .get(name)
                .map(|s| Arc::clone(s) as Arc<dyn SchemaProvider>),
            View::Pending(err) => Some(Arc::new(UnavailableSchema(not_discovered(
                err,
                self.peer.config().url.as_str(),
            )))),
        }
    }
}

/// One schema of a peer.
#[derive(Debug)]
struct PeerSchema {
    tables: BTreeMap<String, Arc<SQLTableSource>>,
    pushdown: bool,
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

/// What a query naming a peer that was never discovered fails with: the reason discovery
/// failed, except that a discovery that timed out makes the peer unavailable (the query did
/// not run past a deadline of its own).
fn not_discovered(err: &PeerError, url: &str) -> PeerError {
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
struct UnavailableSchema(PeerError);

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A peer that accepts connections and never answers does not hold up registration, and
    /// queries naming it fail at once as unavailable, naming it.
    #[tokio::test]
    async fn a_silent_peer_is_pending_not_waited_for() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = vec![];
            while let Ok((conn, _)) = listener.accept().await {
                open.push(conn);
            }
        });
        let config = PeerConfig::parse_flag(&format!("silent=grpc://{addr}")).unwrap();
        let started = Instant::now();
        let catalog = PeerCatalog::connect_in_background(config, FederationOptions::default())
            .expect("a valid peer");
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(!catalog.is_discovered() && !catalog.was_tried());
        let schema = catalog.schema("public").expect("a schema that explains");
        let err = schema.table("lineitem").await.unwrap_err().to_string();
        assert!(
            err.contains("peer 'silent' is unavailable") && err.contains("not discovered yet"),
            "{err}"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
        held.abort();
    }
}
