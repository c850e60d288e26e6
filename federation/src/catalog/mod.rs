//! A peer's tables as a SQL catalog of the local session.
//!
//! The peer's tables and schemas are discovered with Flight SQL `GetTables` when the catalog is
//! made, and again every [`FederationOptions::refresh_interval`] in the background; a failed
//! refresh keeps the last good view. Until a first discovery succeeds, every table of the
//! catalog answers with the error that prevented it, naming the peer.
//!
//! - `schema`: the schemas of the catalog, and how a remote table appears to the planner.
//! - `caller`: the catalog as one caller sees it, through the caller's own token.

mod caller;
mod schema;

use std::collections::BTreeMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use datafusion::catalog::{CatalogProvider, SchemaProvider};
use datafusion::common::TableReference;
use datafusion::error::Result;
use datafusion_federation::sql::{RemoteTableRef, SQLFederationProvider, SQLTableSource};
use parking_lot::{Mutex, RwLock};
use tracing::{info, warn};

use crate::config::{FederationOptions, PeerConfig};
use crate::error::PeerError;
use crate::peer::{Discovered, Peer};
use schema::{PeerSchema, UnavailableSchema, not_discovered};

pub(crate) use schema::table_provider;

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
    listings: Mutex<caller::Listings>,
}

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
            listings: Mutex::new(caller::listings()),
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
                self.count_rows_in_background(&discovered);
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
                if let View::Pending(last) = &mut *self.state.write() {
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

    /// Counts the rows of the discovered tables for the planner's estimates, in the background:
    /// a peer with large tables in slow formats must not hold up the start.
    fn count_rows_in_background(&self, discovered: &Discovered) {
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
