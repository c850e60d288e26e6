//! Arrow Flight SQL for Polder nodes.
//!
//! [`PolderFlightSqlService`] answers the Flight SQL protocol over a DataFusion
//! [`SessionContext`](datafusion::prelude::SessionContext) whose catalogs hold the node's
//! datasets. Start at [`service`]: each Flight SQL command has one handler there, all thin over
//! [`QueryEngine`], which plans read-only SQL and streams results under explicit limits.
//!
//! ```text
//! client ──GetFlightInfo(SQL)──▶ service ──plan──▶ QueryEngine ──▶ FlightInfo{ticket = SQL}
//! client ──DoGet(ticket)───────▶ service ──(plan)+execute──▶ RecordBatch stream ──▶ FlightData
//! ```
//!
//! `DoGet` takes the plan `GetFlightInfo` made when it reaches the same replica (`service/
//! planned.rs`) and plans again otherwise; results are compressed when the client asks
//! ([`compression`]).
//!
//! Tickets and prepared-statement handles are self-contained ([`StatementHandle`]), so any
//! replica of a node can answer a `DoGet` for a ticket another replica issued.
//!
//! A statement's path through the crate, one file each:
//!
//! 1. `service/mod.rs`: the command's handler ([`PolderFlightSqlService`]);
//! 2. `query/mod.rs`: [`QueryEngine`] admits it (a query slot and a deadline) on the executor;
//! 3. `query/statement.rs`: its length, placeholders, depth and read-only checks, and planning;
//! 4. `query/execute.rs`: physical plans, one per bound parameter row, started as one stream
//!    (ended at the deadline by `query/stream.rs`);
//! 5. `service/encode.rs`: the batches cut to fit Flight messages and encoded.
//!
//! Around it: [`bounded`] keeps scalar functions within the memory limit, [`depth`] bounds
//! nesting, [`workarounds`] and [`join_memory`] adjust DataFusion's planning, and [`error`]
//! maps every failure to one gRPC status.

pub mod bounded;
pub mod coalesce;
pub mod compression;
pub mod depth;
pub mod error;
pub mod explain;
pub mod fit;
pub mod handle;
pub mod in_subquery;
pub mod join_memory;
pub mod metadata;
pub mod query;
pub mod service;
pub mod telemetry;
pub mod wire;
pub mod workarounds;

pub use compression::{COMPRESSION_HEADER, IpcCompression};
pub use error::{Error, Result};
pub use handle::StatementHandle;
pub use metadata::ServerInfo;
pub use query::{QueryAudit, QueryEngine, QueryLimits, QueryRuntime, RequestSessions};
pub use service::{FlightSqlConfig, PolderFlightSqlService};

/// The DataFusion settings a node's session needs for Flight SQL clients: strings and binary
/// values as the classic Arrow `Utf8`/`Binary` types, which every client reads (view types are
/// newer, and a view array sent over IPC carries all the buffers it points into).
pub fn session_config() -> datafusion::prelude::SessionConfig {
    let mut config = datafusion::prelude::SessionConfig::new();
    let options = config.options_mut();
    options.execution.parquet.schema_force_view_types = false;
    options.sql_parser.map_string_types_to_utf8view = false;
    // Logical and physical planning disagree on the nullability of some CASE expressions; the
    // answer's types are checked instead (see `workarounds`).
    options.execution.skip_physical_aggregate_schema_check = true;
    config
}
