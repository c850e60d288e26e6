//! The Polder node: an Urban Data Node serving a city's datasets over Arrow Flight SQL, with
//! its DCAT catalog over HTTP and SPARQL, and `polder sql`, the client that federates nodes.
//!
//! The `polder` binary (`src/main.rs`) only parses the command line, sets up logging and the
//! async runtime, and calls [`run`]. Everything else is this library, whose public modules the
//! integration tests (`tests/`) use as the binary does.
//!
//! # Code organisation
//!
//! - [`cli`]: the command line (most flags also environment variables).
//! - [`config`]: the node's TOML configuration, [`config::NodeConfig`], and its checks.
//! - [`startup`]: starting a node: datasets, catalog, Flight SQL and HTTP services, shutdown.
//! - [`datasets`]: loading datasets into the node's SQL catalog, and their readiness.
//! - [`sql`]: `polder sql`, the analyst's client: one query, a script, or a shell.
//! - [`demo`], [`token`]: `polder demo` (three sample cities) and `polder token`/`audit`.
//! - [`telemetry`]: logs (text or JSON), OpenTelemetry traces and metrics (`/metrics`, OTLP).
//! - `connections.rs`, `http.rs`, `catalog.rs` (private): connection budgets and timeouts,
//!   `/healthz`, `/readyz` and `/metrics`, the facts the catalog describes.
//!
//! # The path of a query
//!
//! `polder sql -c "SELECT ..."` against a node that federates two peers, from the command line
//! to the bytes a peer sends. A newcomer reads the five files marked ★; the others are the
//! steps between them.
//!
//! ```text
//! polder sql ─▶ node/src/sql/mod.rs ★            sql::run, sql::client_session
//!               node/src/sql/session.rs           runs each statement, writes answers
//!               federation/src/session.rs         the federated session: every part that
//!                                                 reads one node only becomes SQL for it
//!               federation/src/peer/executor.rs ★ Peer as SQLExecutor: the part's SQL as
//!                                                 Flight SQL CommandStatementQuery, then DoGet
//!   ══ Flight SQL (gRPC) ══▶ the serving node
//!               flight-sql/src/service/mod.rs ★   PolderFlightSqlService: the FlightSqlService
//!                                                 handlers GetFlightInfo / DoGet
//!               flight-sql/src/query/mod.rs ★     QueryEngine: a session per request (the
//!                                                 RequestSessions hook, query/hooks.rs), plan
//!                                                 (query/statement.rs), limits, execute
//!               access/src/session/mod.rs ★       PolicySessions: the caller's catalog, holding
//!                                                 only what the policy grants (session/
//!                                                 catalog.rs, access/src/guard.rs)
//!               federation/src/session.rs         the serving node's own peers are catalogs
//!                                                 too: their parts are cut out again
//!               federation/src/peer/executor.rs   Peer sends each part to its node
//!   ══ Flight SQL (gRPC) ══▶ the peer
//!               flight-sql/src/service/encode.rs  the peer answers DoGet: its result stream
//!                                                 encoded by FlightDataEncoderBuilder
//! ```
//!
//! In types:
//!
//! 1. [`sql::run`] reads statements ([`sql::Output`] writes the answers) and
//!    [`sql::client_session`] builds the client's DataFusion session from
//!    [`polder_federation::session_state`] and [`polder_federation::FederatedSession`]: each
//!    node is a catalog ([`polder_federation::PeerCatalog`]).
//! 2. The federation rules (datafusion-federation's optimizer rule, set up in
//!    `federation/src/session.rs`) cut out every subtree that reads from one node only;
//!    [`polder_federation::Peer`], datafusion-federation's `SQLExecutor` for one node, sends
//!    each as SQL and checks the batches against the expected schema.
//! 3. On the node, [`polder_flight_sql::PolderFlightSqlService`] (the arrow-flight
//!    `FlightSqlService` implementation) answers `GetFlightInfo` with a self-contained ticket
//!    ([`polder_flight_sql::StatementHandle`]) and `DoGet` with a stream.
//! 4. [`polder_flight_sql::QueryEngine::for_request`] asks the
//!    [`polder_flight_sql::RequestSessions`] hook for the caller's session:
//!    [`polder_access::PolicySessions`] when the node has an access policy, which wraps each
//!    granted dataset in a [`polder_access::guard::GuardedTable`] (row filters, masks). The
//!    engine plans within [`polder_flight_sql::QueryLimits`] and executes.
//! 5. A node that federates peers ([`startup`] registers them) plans as the client does, so a
//!    part of the plan goes on to the peer through the same [`polder_federation::Peer`]; the
//!    peer's [`polder_flight_sql::PolderFlightSqlService`] encodes its answer as Flight data.
//!
//! `EXPLAIN` shows, for every remote part, the node and the SQL sent to it
//! (`tests/slt/federated/explain.slt` pins it).
//!
//! # The path of a catalog or SPARQL request
//!
//! ```text
//! GET /catalog, GET|POST /sparql
//!   ─▶ node/src/startup.rs            the HTTP service: node/src/http.rs (/healthz,
//!                                     /readyz) merged with the catalog's router
//!   ─▶ catalog/src/http.rs            polder_catalog::router: content negotiation, the
//!                                     SPARQL 1.1 Protocol's parameters
//!   ─▶ catalog/src/store.rs           Catalog::query: limits, then evaluation ...
//!   ─▶ catalog/src/worker/spawn.rs    ... in a child process, `polder sparql-worker`
//!                                     (catalog/src/worker/process.rs, catalog/src/sparql.rs)
//! ```
//!
//! The catalog's triples are built once at startup: `node/src/catalog.rs` gathers the facts
//! of each table ([`polder_catalog::TableFacts`]), `catalog/src/describe/`
//! ([`polder_catalog::build`]) turns them into DCAT-AP-NL, and [`polder_catalog::Catalog`]
//! holds and serves them. The worker process is the `polder` binary itself, started with
//! [`SPARQL_WORKER`] as its first argument.

// The modules' docs link their private parts for readers of `cargo doc
// --document-private-items`; the links are checked all the same.
#![allow(rustdoc::private_intra_doc_links)]

mod catalog;
pub mod cli;
pub mod config;
mod connections;
pub mod datasets;
pub mod demo;
mod http;
pub mod sql;
pub mod startup;
pub mod telemetry;
pub mod token;

use crate::cli::Command;

/// The hidden subcommand that evaluates one SPARQL query in a child process of the node.
pub const SPARQL_WORKER: &str = "sparql-worker";

/// Stack of the main runtime's threads. `polder sql` plans and optimizes queries on them, and
/// DataFusion's planner and optimizer recurse over the plan: the default 2 MiB overflowed (the
/// process aborted) on three nested aggregates joined with a table. Only the pages used are
/// committed. A node plans on its query runtime, whose stacks are sized from
/// `limits.max_query_bytes` ([`polder_flight_sql::QueryRuntime`]).
pub const WORKER_STACK_BYTES: usize = 32 * 1024 * 1024;

/// Runs one subcommand of the `polder` binary (all but the SPARQL worker).
pub async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(args) => startup::serve(startup::effective_config(&args)?).await,
        Command::DemoData(args) => demo_data(&args.out),
        Command::Sql(args) => sql::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Token(command) => token::run(command),
        Command::Audit(command) => token::audit(command),
    }
}

/// `polder demo-data`: writes the sample cities' files and lists them.
fn demo_data(out: &std::path::Path) -> anyhow::Result<()> {
    for (city, tables) in polder_sample_data::write_all(out)? {
        for table in tables {
            println!(
                "{city}.{}\t{}\t{}",
                table.name,
                table.format,
                table.path.display()
            );
        }
    }
    Ok(())
}
