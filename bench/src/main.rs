//! Benchmarks and test-data generation for Polder; not shipped with the node.
//!
//! - `polder-bench tpch-gen --sf 0.01 --out DIR`: TPC-H tables as Parquet.
//! - `polder-bench flight-scan --sf 1`: scans TPC-H `lineitem` in-process with DataFusion and
//!   through a Flight SQL node over loopback, in the same run, and prints rows/s and the ratio.
//! - `polder-bench federation --sf 1`: the 22 TPC-H queries over three nodes, against one node
//!   holding every table and against three nodes without pushdown, with the bytes moved.
//! - `polder-bench latency` and `polder-bench concurrency`: small queries against the `polder`
//!   binary and roapi in the same run.
//! - `polder-bench footprint`: the sample node's start time, idle memory and binary size.

mod federation;
mod floor;
mod footprint;
mod latency;
mod otlp_sink;
mod servers;
mod shaping;
mod tpch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow_flight::sql::client::FlightSqlServiceClient;
use clap::{Parser, Subcommand};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use polder_flight_sql::{
    FlightSqlConfig, PolderFlightSqlService, QueryEngine, QueryLimits, QueryRuntime,
};
use tokio::net::TcpListener;
use tonic::transport::Channel;
use tonic::transport::server::TcpIncoming;

#[derive(Debug, Parser)]
#[command(
    name = "polder-bench",
    about = "Polder benchmarks and TPC-H data generation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write the TPC-H tables as Parquet files.
    TpchGen {
        /// Scale factor (1 = about 1 GB of raw data; lineitem has 6 million rows).
        #[arg(long, default_value_t = 0.01)]
        sf: f64,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Full scan of lineitem: in-process DataFusion against a Flight SQL node over loopback.
    FlightScan {
        /// TPC-H scale factor of the scanned table.
        #[arg(long, default_value_t = 1.0)]
        sf: f64,
        /// Where the generated TPC-H files are kept between runs.
        #[arg(long, default_value = "target/bench-data")]
        data: PathBuf,
        /// Timed runs of each side; the median is reported.
        #[arg(long, default_value_t = 5)]
        runs: usize,
        /// The roapi binary (default: `roapi` on the PATH or in .venv).
        #[arg(long)]
        roapi: Option<PathBuf>,
    },
    /// TPC-H over three nodes, against one node and against no pushdown.
    Federation {
        /// TPC-H scale factor.
        #[arg(long, default_value_t = 1.0)]
        sf: f64,
        /// Where the generated TPC-H files are kept between runs.
        #[arg(long, default_value = "target/bench-data")]
        data: PathBuf,
        /// Timed runs of each query in each mode; the median is reported.
        #[arg(long, default_value_t = 3)]
        runs: usize,
        /// Only these queries (q01 ... q22), comma-separated.
        #[arg(long, value_delimiter = ',')]
        queries: Vec<String>,
        /// Put every node behind its own shaped link, BANDWIDTH,RTT (e.g. 100mbit,20ms).
        #[arg(long)]
        link: Option<shaping::Link>,
        /// With --link: the result compressions measured, comma-separated (none, lz4, zstd).
        #[arg(long, value_delimiter = ',', default_value = "lz4,zstd")]
        compression: Vec<polder_federation::IpcCompression>,
    },
    /// Small-query latency (SELECT 1, a point lookup, GetTables, a prepared statement), Polder
    /// with and without auth and audit against roapi, p50/p99.
    Latency {
        #[command(flatten)]
        servers: ServerArgs,
        /// Timed rounds of each operation on each server.
        #[arg(long, default_value_t = 300)]
        rounds: usize,
        /// Also a Polder node exporting traces and metrics over OTLP (to a sink in this process).
        #[arg(long)]
        otlp: bool,
    },
    /// Many concurrent clients running point lookups for a while, Polder against roapi.
    Concurrency {
        #[command(flatten)]
        servers: ServerArgs,
        /// Concurrent clients, each on its own connection.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// How long each server is loaded.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        duration: Duration,
        /// Also load a Polder node with authentication, a policy and the audit log on.
        #[arg(long)]
        secured: bool,
        /// Also load a Polder node exporting traces and metrics over OTLP (to a sink in this
        /// process).
        #[arg(long)]
        otlp: bool,
    },
    /// The sample node's time to /readyz, idle resident memory and binary size.
    Footprint {
        /// The polder binary (default: the one beside polder-bench).
        #[arg(long)]
        polder: Option<PathBuf>,
        /// Cold starts measured; the median is reported.
        #[arg(long, default_value_t = 5)]
        starts: usize,
    },
}

/// The servers the side-by-side benchmarks start.
#[derive(Debug, clap::Args)]
struct ServerArgs {
    /// TPC-H scale factor of `lineitem`.
    #[arg(long, default_value_t = 0.1)]
    sf: f64,
    /// Where the generated TPC-H files are kept between runs.
    #[arg(long, default_value = "target/bench-data")]
    data: PathBuf,
    /// The polder binary (default: the one beside polder-bench; `cargo build --release --bins`).
    #[arg(long)]
    polder: Option<PathBuf>,
    /// The roapi binary (default: `roapi` on the PATH or in .venv; `pip install roapi==0.12.7`).
    #[arg(long)]
    roapi: Option<PathBuf>,
}

impl From<ServerArgs> for latency::Setup {
    fn from(args: ServerArgs) -> Self {
        latency::Setup {
            sf: args.sf,
            data: args.data,
            polder: args.polder,
            roapi: args.roapi,
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::TpchGen { sf, out } => {
            for path in tpch::generate(sf, &out)? {
                println!("{}", path.display());
            }
            Ok(())
        }
        Command::FlightScan {
            sf,
            data,
            runs,
            roapi,
        } => flight_scan(sf, data, runs, roapi).await,
        Command::Federation {
            sf,
            data,
            runs,
            queries,
            link,
            compression,
        } => {
            let links = federation::Links {
                link,
                compressions: compression,
            };
            federation::run(sf, data, runs, queries, links).await
        }
        Command::Latency {
            servers,
            rounds,
            otlp,
        } => latency::latency(servers.into(), rounds, otlp).await,
        Command::Concurrency {
            servers,
            clients,
            duration,
            secured,
            otlp,
        } => latency::concurrency(servers.into(), clients, duration, secured, otlp).await,
        Command::Footprint { polder, starts } => footprint::run(polder, starts).await,
    }
}

const SCAN: &str = "SELECT * FROM lineitem";

async fn flight_scan(
    sf: f64,
    data: PathBuf,
    runs: usize,
    roapi: Option<PathBuf>,
) -> anyhow::Result<()> {
    let dir = data.join(format!("tpch-sf{sf}"));
    eprintln!("generating TPC-H sf={sf} in {} (once)", dir.display());
    tpch::generate(sf, &dir)?;
    let lineitem = dir.join("lineitem.parquet");

    let ctx = SessionContext::new_with_config(polder_flight_sql::session_config());
    ctx.register_parquet(
        "lineitem",
        lineitem.to_str().context("path")?,
        ParquetReadOptions::default(),
    )
    .await?;

    // The node: the same session behind the Flight SQL service, on loopback.
    let (addr, query_runtime) = serve(ctx.clone()).await?;
    let bulk = |addr: SocketAddr| async move {
        let endpoint = Channel::from_shared(format!("http://{addr}"))?;
        anyhow::Ok(FlightSqlServiceClient::new(
            polder_flight_sql::service::bulk_endpoint(endpoint)
                .connect()
                .await?,
        ))
    };
    // The targets, all read by the same client: Polder with bulk client settings (as Polder's
    // own peers use) and with gRPC's defaults (16 KiB frames); the transport floor (the same
    // batches already in memory, sent by a bare Flight server); roapi serving the same file
    // (it keeps its tables decoded in memory).
    let mut targets = vec![
        (Target::InProcess, "in-process DataFusion"),
        (
            Target::Sql(bulk(addr).await?),
            "Polder, bulk client settings",
        ),
        (
            Target::Sql(FlightSqlServiceClient::new(
                Channel::from_shared(format!("http://{addr}"))?
                    .connect()
                    .await?,
            )),
            "Polder, gRPC default client settings",
        ),
    ];
    let batches = ctx.sql(SCAN).await?.collect().await?;
    let floor = floor::serve(batches).await?;
    targets.push((
        Target::Floor(bulk(floor).await?),
        "transport floor (bare DoGet)",
    ));
    let work = tempfile::tempdir()?;
    let _roapi = match servers::roapi_binary(roapi) {
        Some(binary) => {
            let server = servers::start_roapi(
                &binary,
                work.path(),
                &[("lineitem".to_string(), lineitem.clone())],
            )
            .await?;
            targets.push((Target::Sql(bulk(server.flight).await?), "roapi 0.12.7"));
            Some(server)
        }
        None => {
            eprintln!("roapi not found (pip install roapi==0.12.7, or --roapi PATH): left out");
            None
        }
    };

    // Warm up every path (file cache, connection), check they agree, then alternate timed runs
    // so that noise on this shared machine hits every side alike.
    let mut rows = None;
    for (target, label) in &mut targets {
        let n = target.scan(&ctx).await.with_context(|| label.to_string())?;
        anyhow::ensure!(
            rows.is_none_or(|rows| rows == n),
            "row counts differ: {rows:?} and {n} ({label})"
        );
        rows = Some(n);
    }
    let rows = rows.unwrap_or_default();
    let mut times = vec![vec![]; targets.len()];
    // Processor time of this process (client and the in-process servers) per target, to tell
    // a scan that waits from one that is bound by work on both cores; roapi's own is not seen.
    let mut cpu = vec![Duration::ZERO; targets.len()];
    for run in 0..runs.max(1) {
        for step in 0..targets.len() {
            let i = (run + step) % targets.len();
            let (start, used) = (Instant::now(), cpu_time());
            targets[i].0.scan(&ctx).await?;
            times[i].push(start.elapsed());
            cpu[i] += cpu_time() - used;
        }
    }
    println!("flight-scan: TPC-H sf={sf} lineitem, {rows} rows, median of {runs} runs");
    let medians: Vec<Duration> = times.iter_mut().map(|t| median(t)).collect();
    for (i, (_, label)) in targets.iter().enumerate() {
        let total: f64 = times[i].iter().map(Duration::as_secs_f64).sum();
        println!(
            "  {label:<38}: {:>12.0} rows/s ({:.3} s, {:.2} cores busy in this process)",
            rows as f64 / medians[i].as_secs_f64(),
            medians[i].as_secs_f64(),
            cpu[i].as_secs_f64() / total
        );
    }
    let time = |i: usize| medians[i].as_secs_f64();
    println!(
        "  ratio flight/in-process time: {:.2}x (default client settings: {:.2}x)",
        time(1) / time(0),
        time(2) / time(0)
    );
    println!("  ratio Polder/transport floor: {:.2}x", time(1) / time(3));
    if targets.len() > 4 {
        println!("  ratio Polder/roapi: {:.2}x", time(1) / time(4));
    }
    drop(query_runtime);
    Ok(())
}

/// Where a scan is read from.
enum Target {
    /// DataFusion in this process, no transport.
    InProcess,
    /// A Flight SQL server: `SELECT * FROM lineitem`.
    Sql(FlightSqlServiceClient<Channel>),
    /// The transport floor: a bare `DoGet`.
    Floor(FlightSqlServiceClient<Channel>),
}

impl Target {
    async fn scan(&mut self, ctx: &SessionContext) -> anyhow::Result<usize> {
        match self {
            Target::InProcess => in_process(ctx).await,
            Target::Sql(client) => latency::query(client, SCAN).await,
            Target::Floor(client) => {
                let stream = client.do_get(arrow_flight::Ticket::new("lineitem")).await?;
                Ok(stream
                    .try_fold(0, |n, b| async move { Ok(n + b.num_rows()) })
                    .await?)
            }
        }
    }
}

async fn in_process(ctx: &SessionContext) -> anyhow::Result<usize> {
    let stream = ctx.sql(SCAN).await?.execute_stream().await?;
    Ok(stream
        .try_fold(0, |n, b| async move { Ok(n + b.num_rows()) })
        .await?)
}

/// Serves `ctx` over Flight SQL on a free loopback port, as a node does: query plans run on a
/// runtime of their own, which lives as long as the returned handle.
async fn serve(ctx: SessionContext) -> anyhow::Result<(SocketAddr, QueryRuntime)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let runtime = QueryRuntime::new(&QueryLimits::default())?;
    let service = PolderFlightSqlService::new(
        QueryEngine::new(ctx, QueryLimits::default()).with_executor(runtime.handle()),
        FlightSqlConfig::default(),
    )?;
    tokio::spawn(
        PolderFlightSqlService::transport()
            .add_service(service.into_server())
            // As the node's own listener does: small replies go out without Nagle's delay.
            .serve_with_incoming(TcpIncoming::from(listener).with_nodelay(Some(true))),
    );
    Ok((addr, runtime))
}

/// User and system time of this process so far (Linux `/proc/self/stat`, in clock ticks of
/// 10 ms); zero where that file is missing.
fn cpu_time() -> Duration {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return Duration::ZERO;
    };
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the line: indexes 11 and 12 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

fn median(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
