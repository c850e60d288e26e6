//! Federated SQL across Urban Data Nodes.
//!
//! A *peer* is any Arrow Flight SQL server: another Polder node, or another vendor's. Each peer
//! becomes a SQL catalog of the local DataFusion session, named after it, so that one query can
//! join tables of several cities:
//!
//! ```sql
//! SELECT ... FROM utrecht.public.air_quality a JOIN amsterdam.public.traffic_counts t ON ...
//! ```
//!
//! Planning cuts every subtree of the plan that reads from one peer only out of the plan
//! (datafusion-federation's optimizer rule) and sends it to that peer as one SQL query, unparsed
//! from the plan: projections, filters and limits of scans, and joins, aggregates and sort +
//! limit over tables of the same peer all run where the data lives. What spans peers runs
//! locally over the peers' answers. `EXPLAIN` shows, per remote part, the peer and the SQL sent.
//!
//! - [`config`]: the peers of a federation and the limits on talking to them.
//! - [`peer`]: the peer connector, a Flight SQL client that runs the SQL of one remote part and
//!   checks what comes back against the expected schema.
//! - [`catalog`]: a peer's tables as a catalog, discovered over Flight SQL and refreshed.
//! - [`session`]: a DataFusion session that federates.
//! - `runtime_filter`: the keys a join has read on one node narrow what another node sends.
//! - `faithful`: parts rewritten before they are unparsed, where the unparser would write SQL
//!   that means something else.

pub mod catalog;
pub mod config;
pub mod dialect;
pub mod error;
mod faithful;
mod partial;
pub mod peer;
mod runtime_filter;
pub mod session;
mod telemetry;
mod values;
mod whole;

#[cfg(test)]
mod tests;

pub use catalog::PeerCatalog;
pub use config::{BearerToken, ConfigError, FederationOptions, Manifest, PeerConfig, PeerUrl};
pub use error::PeerError;
pub use peer::{Peer, Traffic};
pub use polder_flight_sql::IpcCompression;
pub use session::{FederatedSession, federated_state, session_state};
