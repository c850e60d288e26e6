//! Benchmarks and test-data generation for Polder; not shipped with the node.
//!
//! - `polder-bench tpch-gen --sf 0.01 --out DIR`: TPC-H tables as Parquet.
//! - `polder-bench flight-scan --sf 1`: scans TPC-H `lineitem` in-process with DataFusion and
//!   through a Flight SQL node over loopback, in the same run, and prints rows/s and the ratio.
//! - `polder-bench federation --sf 1`: the 22 TPC-H queries over three nodes, against one node
//!   holding every table and against three nodes without pushdown, with the bytes moved.

mod federation;
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
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Channel;

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
    },
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
        Command::FlightScan { sf, data, runs } => flight_scan(sf, data, runs).await,
        Command::Federation {
            sf,
            data,
            runs,
            queries,
        } => federation::run(sf, data, runs, queries).await,
    }
}

const SCAN: &str = "SELECT * FROM lineitem";

async fn flight_scan(sf: f64, data: PathBuf, runs: usize) -> anyhow::Result<()> {
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
    // Two clients: one tuned for bulk results as Polder's own peers are, one with gRPC's
    // defaults (16 KiB frames), as a baseline for what the client's settings cost.
    let endpoint = Channel::from_shared(format!("http://{addr}"))?;
    let mut client = FlightSqlServiceClient::new(
        polder_flight_sql::service::bulk_endpoint(endpoint.clone())
            .connect()
            .await?,
    );
    let mut plain = FlightSqlServiceClient::new(endpoint.connect().await?);

    // Warm up both paths (file cache, connection), then alternate timed runs so that noise
    // on this shared machine hits both sides alike.
    let rows = in_process(&ctx).await?;
    for client in [&mut client, &mut plain] {
        let flight_rows = over_flight(client).await?;
        anyhow::ensure!(
            rows == flight_rows,
            "row counts differ: {rows} in-process, {flight_rows} over Flight"
        );
    }
    let mut local = vec![];
    let mut remote = vec![];
    let mut remote_plain = vec![];
    // Processor time of the whole process (client and server) per mode, to tell a scan that
    // waits from one that is bound by work on both cores.
    let mut cpu = [Duration::ZERO; 3];
    for _ in 0..runs.max(1) {
        let (start, used) = (Instant::now(), cpu_time());
        in_process(&ctx).await?;
        local.push(start.elapsed());
        cpu[0] += cpu_time() - used;
        let (start, used) = (Instant::now(), cpu_time());
        over_flight(&mut client).await?;
        remote.push(start.elapsed());
        cpu[1] += cpu_time() - used;
        let (start, used) = (Instant::now(), cpu_time());
        over_flight(&mut plain).await?;
        remote_plain.push(start.elapsed());
        cpu[2] += cpu_time() - used;
    }
    let busy = |cpu: Duration, walls: &[Duration]| {
        cpu.as_secs_f64() / walls.iter().map(Duration::as_secs_f64).sum::<f64>()
    };
    let busy = [
        busy(cpu[0], &local),
        busy(cpu[1], &remote),
        busy(cpu[2], &remote_plain),
    ];
    let local = median(&mut local);
    let remote = median(&mut remote);
    let remote_plain = median(&mut remote_plain);
    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!("flight-scan: TPC-H sf={sf} lineitem, {rows} rows, median of {runs} runs");
    println!(
        "  in-process DataFusion : {:>12.0} rows/s ({:.3} s, {:.2} cores busy)",
        rate(local),
        local.as_secs_f64(),
        busy[0]
    );
    println!(
        "  Flight SQL (loopback), bulk client settings: {:>12.0} rows/s ({:.3} s, {:.2} cores busy)",
        rate(remote),
        remote.as_secs_f64(),
        busy[1]
    );
    println!(
        "  Flight SQL, gRPC default client settings: {:>12.0} rows/s ({:.3} s, {:.2} cores busy)",
        rate(remote_plain),
        remote_plain.as_secs_f64(),
        busy[2]
    );
    println!(
        "  ratio flight/in-process time: {:.2}x (default client settings: {:.2}x)",
        remote.as_secs_f64() / local.as_secs_f64(),
        remote_plain.as_secs_f64() / local.as_secs_f64()
    );
    drop(query_runtime);
    Ok(())
}

async fn in_process(ctx: &SessionContext) -> anyhow::Result<usize> {
    let stream = ctx.sql(SCAN).await?.execute_stream().await?;
    Ok(stream
        .try_fold(0, |n, b| async move { Ok(n + b.num_rows()) })
        .await?)
}

async fn over_flight(client: &mut FlightSqlServiceClient<Channel>) -> anyhow::Result<usize> {
    let info = client.execute(SCAN.to_string(), None).await?;
    let mut rows = 0;
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.context("endpoint without ticket")?;
        let stream = client.do_get(ticket).await?;
        rows += stream
            .try_fold(0, |n, b| async move { Ok(n + b.num_rows()) })
            .await?;
    }
    Ok(rows)
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
            .serve_with_incoming(TcpListenerStream::new(listener)),
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
