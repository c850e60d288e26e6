//! The peer connector: a Flight SQL server as a source of tables.
//!
//! [`Peer`] is datafusion-federation's [`SQLExecutor`](datafusion_federation::sql::SQLExecutor)
//! for one peer. For each remote part of a plan it sends the unparsed SQL as a
//! `CommandStatementQuery`, reads every endpoint of the answer with `DoGet`, and checks each
//! batch against the schema the local plan expects: a column too many or too few, or a type
//! that cannot be cast, is a [`PeerError::SchemaMismatch`], never a silently different answer.
//! Every request, and every next message of a result stream, must arrive within
//! [`FederationOptions::peer_timeout`].
//!
//! - `connect`: the channel to a peer (plain or TLS) and the Flight client over it.
//! - `request`: one request under the peer timeout, its answer streamed, its errors classified.
//! - `discovery`: the peer's tables and schemas (`GetTables`, or one table's `SELECT *` plan).
//! - `estimate`: row counts of the peer's tables and the rows a remote part is expected to send.
//! - `conform`: a batch from the peer made the batch the plan expects, or a schema mismatch.
//! - `executor`: the [`SQLExecutor`](datafusion_federation::sql::SQLExecutor) the federation
//!   rules send remote parts to.
//! - `sql`: the SQL of the peer's own requests (counts, schemas), unparsed from plans.

mod conform;
mod connect;
mod discovery;
mod estimate;
mod executor;
mod request;
mod sql;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tonic::transport::Channel;

use crate::config::{BearerToken, FederationOptions, PeerConfig};
use crate::error::PeerError;

pub use discovery::Discovered;
pub(crate) use estimate::RowCounts;

/// A connection to one peer, cheap to clone.
#[derive(Debug, Clone)]
pub struct Peer {
    config: PeerConfig,
    options: FederationOptions,
    channel: Channel,
    traffic: Arc<Counters>,
    /// Row counts of the peer's tables, for the planner's estimates.
    row_counts: Arc<RowCounts>,
}

/// What a peer has sent for queries since the connection was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Remote parts sent to the peer.
    pub queries: u64,
    /// Rows received.
    pub rows: u64,
    /// Arrow bytes received (the values of the decoded batches).
    pub bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    queries: AtomicU64,
    rows: AtomicU64,
    bytes: AtomicU64,
}

impl Peer {
    /// A peer at `config.url`. The connection opens on first use (and reopens after failures),
    /// so a peer that is down now does not stop the caller from starting.
    pub fn new(config: PeerConfig, options: FederationOptions) -> Result<Self, PeerError> {
        config.validate()?;
        let channel = connect::channel_to(&config.name, &config.url, &options)?;
        Ok(Self {
            config,
            options,
            channel,
            traffic: Arc::default(),
            row_counts: Arc::default(),
        })
    }

    /// What the peer has sent for queries so far.
    pub fn traffic(&self) -> Traffic {
        Traffic {
            queries: self.traffic.queries.load(Ordering::Relaxed),
            rows: self.traffic.rows.load(Ordering::Relaxed),
            bytes: self.traffic.bytes.load(Ordering::Relaxed),
        }
    }

    /// The peer's name, its SQL catalog.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The peer's configuration.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    /// The limits in force.
    pub fn options(&self) -> &FederationOptions {
        &self.options
    }

    /// The same peer, sending `token` as the bearer token of every request: a coordinator
    /// forwards its caller's token, so that the peer applies its own policy to the caller.
    pub fn with_bearer(&self, token: &str) -> Peer {
        let mut peer = self.clone();
        peer.options.bearer_token = Some(BearerToken(token.to_string()));
        peer
    }

    fn protocol(&self, detail: String) -> PeerError {
        PeerError::Protocol {
            peer: self.config.name.clone(),
            detail,
        }
    }
}
