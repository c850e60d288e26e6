//! Arrow Flight SQL for Polder nodes.
//!
//! [`PolderFlightSqlService`] answers the Flight SQL protocol over a DataFusion
//! [`SessionContext`](datafusion::prelude::SessionContext) whose catalogs hold the node's
//! datasets. Start at [`service`]: each Flight SQL command has one handler there, all thin over
//! [`QueryEngine`], which plans read-only SQL and streams results under explicit limits.
//!
//! ```text
//! client ──GetFlightInfo(SQL)──▶ service ──plan──▶ QueryEngine ──▶ FlightInfo{ticket = SQL}
//! client ──DoGet(ticket)───────▶ service ──plan+execute──▶ RecordBatch stream ──▶ FlightData
//! ```
//!
//! Tickets and prepared-statement handles are self-contained ([`StatementHandle`]), so any
//! replica of a node can answer a `DoGet` for a ticket another replica issued.

pub mod error;
pub mod handle;
pub mod metadata;
pub mod query;
pub mod service;

pub use error::{Error, Result};
pub use handle::StatementHandle;
pub use metadata::ServerInfo;
pub use query::{QueryEngine, QueryLimits};
pub use service::{FlightSqlConfig, PolderFlightSqlService};
