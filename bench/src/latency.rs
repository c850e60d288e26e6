//! `polder-bench latency` and `polder-bench concurrency`: small queries over loopback, Polder
//! against roapi in the same run, with the same client (arrow-rs' Flight SQL client).
//!
//! - **latency**: one connection per server; `SELECT 1`, a point lookup, `GetTables` and a
//!   prepared statement re-executed with a new parameter each time, each timed from the request
//!   to the last byte of its answer (GetFlightInfo then DoGet, as every Flight SQL client does).
//!   Rounds alternate between the servers so that noise on a shared machine hits all alike.
//! - **concurrency**: many clients, each on its own connection, running point lookups for a
//!   fixed time against one server at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use arrow::array::{ArrayRef, Int64Array, RecordBatch};
use arrow::datatypes::{Field, Schema};
use arrow_flight::FlightInfo;
use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::{FlightSqlServiceClient, PreparedStatement};
use futures::TryStreamExt;
use parking_lot::Mutex;
use tonic::transport::Channel;

use crate::otlp_sink;
use crate::servers::{self, PolderOptions, Server};
use crate::tpch;

/// Where the servers under test come from and what they serve.
#[derive(Debug, Clone)]
pub struct Setup {
    /// TPC-H scale factor of `lineitem`.
    pub sf: f64,
    /// Where generated TPC-H files are kept.
    pub data: PathBuf,
    /// The `polder` binary (default: beside this one).
    pub polder: Option<PathBuf>,
    /// The roapi binary (default: on the PATH or in `.venv`).
    pub roapi: Option<PathBuf>,
}

/// The servers of one run: roapi where it is installed, Polder as it is by default, Polder
/// with authentication, a policy and the audit log on, and Polder exporting traces and
/// metrics over OTLP to a sink in this process.
struct Servers {
    all: Vec<Server>,
    sink: Option<Arc<otlp_sink::Received>>,
    _work: tempfile::TempDir,
}

impl Servers {
    /// What the OTLP sink received, for the report.
    fn report_sink(&self) {
        if let Some(sink) = &self.sink {
            println!(
                "OTLP sink received {} exports, {:.1} MiB",
                sink.requests.load(std::sync::atomic::Ordering::Relaxed),
                sink.bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / (1 << 20) as f64
            );
        }
    }
}

impl Setup {
    async fn start(&self, secured: bool, otlp: bool) -> anyhow::Result<Servers> {
        let dir = self.data.join(format!("tpch-sf{}", self.sf));
        eprintln!(
            "generating TPC-H sf={} in {} (once)",
            self.sf,
            dir.display()
        );
        tpch::generate(self.sf, &dir)?;
        let tables = vec![("lineitem".to_string(), dir.join("lineitem.parquet"))];
        let work = tempfile::tempdir()?;
        let polder = servers::polder_binary(self.polder.clone())?;
        let mut all = vec![];
        match servers::roapi_binary(self.roapi.clone()) {
            Some(roapi) => {
                all.push(servers::start_roapi(&roapi, &work.path().join("roapi"), &tables).await?)
            }
            None => eprintln!(
                "roapi not found (pip install roapi==0.12.7, or --roapi PATH): Polder alone"
            ),
        }
        let plain = PolderOptions {
            tables: tables.clone(),
            ..PolderOptions::default()
        };
        all.push(
            servers::start_polder(&polder, "polder", &work.path().join("plain"), &plain).await?,
        );
        if secured {
            let options = PolderOptions {
                tables: tables.clone(),
                secured: true,
                ..PolderOptions::default()
            };
            all.push(
                servers::start_polder(
                    &polder,
                    "polder auth+audit",
                    &work.path().join("secured"),
                    &options,
                )
                .await?,
            );
        }
        let mut sink = None;
        if otlp {
            let (url, received) = otlp_sink::start().await?;
            sink = Some(received);
            let options = PolderOptions {
                tables: tables.clone(),
                otlp: Some(url),
                ..PolderOptions::default()
            };
            all.push(
                servers::start_polder(
                    &polder,
                    "polder + OTLP",
                    &work.path().join("otlp"),
                    &options,
                )
                .await?,
            );
        }
        for server in &all {
            eprintln!(
                "{}: flight=grpc://{} (ready after {:.0} ms)",
                server.label,
                server.flight,
                server.started_in.as_secs_f64() * 1e3
            );
        }
        Ok(Servers {
            all,
            sink,
            _work: work,
        })
    }
}

/// The small operations the latency benchmark times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    SelectOne,
    Point,
    PointInfo,
    PointGet,
    GetTables,
    Prepared,
}

impl Op {
    const ALL: [Op; 6] = [
        Op::SelectOne,
        Op::Point,
        Op::PointInfo,
        Op::PointGet,
        Op::GetTables,
        Op::Prepared,
    ];

    fn name(self) -> &'static str {
        match self {
            Op::SelectOne => "SELECT 1",
            Op::Point => "point lookup",
            Op::PointInfo => "  its GetFlightInfo",
            Op::PointGet => "  its DoGet",
            Op::GetTables => "GetTables",
            Op::Prepared => "prepared, new parameter",
        }
    }
}

const POINT: &str = "SELECT count(*) FROM lineitem WHERE l_orderkey = ";
const PREPARED: &str = "SELECT count(*) FROM lineitem WHERE l_orderkey = $1";

/// An order key for round `i`: spread over the table, so that no two rounds in a row read the
/// same place (TPC-H order keys are sparse; a missing one is still a lookup).
fn order_key(i: usize, sf: f64) -> i64 {
    let keys = (6_000_000.0 * sf).max(1.0) as i64;
    (i as i64 * 7919) % keys + 1
}

/// One client per server and what it keeps between rounds.
struct Session {
    client: FlightSqlServiceClient<Channel>,
    prepared: Option<PreparedStatement<Channel>>,
    /// The point lookup's `FlightInfo` of the last round, for timing `DoGet` alone.
    point: Option<FlightInfo>,
}

/// Runs the latency benchmark.
pub async fn latency(setup: Setup, rounds: usize, otlp: bool) -> anyhow::Result<()> {
    let servers = setup.start(true, otlp).await?;
    let mut sessions = vec![];
    for server in &servers.all {
        let mut client = server.client().await?;
        let prepared = client
            .prepare(PREPARED.to_string(), None)
            .await
            .with_context(|| format!("{}: preparing", server.label))?;
        sessions.push(Session {
            client,
            prepared: Some(prepared),
            point: None,
        });
    }
    let rounds = rounds.max(2);
    println!(
        "latency: small queries over loopback, TPC-H sf={} lineitem, arrow-rs Flight SQL client, \
         one connection per server, {rounds} rounds; p50 / p99 in ms",
        setup.sf
    );
    print!("{:<24}", "operation");
    for server in &servers.all {
        print!(" {:>20}", server.label);
    }
    let roapi = servers.all.iter().position(|s| s.label == "roapi");
    if roapi.is_some() {
        print!(" {:>16}", "polder/roapi p50");
    }
    println!();
    let mut unsupported = vec![];
    for op in Op::ALL {
        // Warm-up: the file in the page cache, the statement's first planning. A server that
        // refuses the operation is left out of it (roapi has no bound parameters).
        let mut supported = vec![true; sessions.len()];
        for (i, session) in sessions.iter_mut().enumerate() {
            for round in 0..5 {
                if let Err(err) = run_op(op, session, round, setup.sf).await {
                    let label = &servers.all[i].label;
                    anyhow::ensure!(label == "roapi", "{label}: {}: {err:#}", op.name());
                    unsupported.push(format!("{label}: {}: {err}", op.name()));
                    supported[i] = false;
                    break;
                }
            }
        }
        let mut times = vec![vec![]; sessions.len()];
        for round in 0..rounds {
            for step in 0..sessions.len() {
                let i = (round + step) % sessions.len();
                if supported[i] {
                    let start = Instant::now();
                    run_op(op, &mut sessions[i], round, setup.sf).await?;
                    times[i].push(start.elapsed());
                }
            }
        }
        print!("{:<24}", op.name());
        let mut p50s = vec![];
        for samples in &mut times {
            if samples.is_empty() {
                p50s.push(None);
                print!(" {:>20}", "not supported");
                continue;
            }
            let (p50, p99) = percentiles(samples);
            p50s.push(Some(p50));
            print!(" {:>20}", format!("{} / {}", ms(p50), ms(p99)));
        }
        let polder = servers.all.iter().position(|s| s.label == "polder");
        if let Some((Some(polder), Some(roapi))) =
            roapi.map(|r| (polder.and_then(|p| p50s[p]), p50s[r]))
        {
            print!(" {:>15.2}x", polder.as_secs_f64() / roapi.as_secs_f64());
        }
        println!();
    }
    for line in unsupported {
        println!("  {line}");
    }
    // The work itself, without any transport: the same statements in-process with DataFusion
    // over the same file, with a node's session settings.
    let ctx =
        datafusion::prelude::SessionContext::new_with_config(polder_flight_sql::session_config());
    let file = setup
        .data
        .join(format!("tpch-sf{}", setup.sf))
        .join("lineitem.parquet");
    ctx.register_parquet(
        "lineitem",
        file.to_str().context("path")?,
        datafusion::prelude::ParquetReadOptions::default(),
    )
    .await?;
    for (name, sql) in [
        ("SELECT 1", "SELECT 1".to_string()),
        ("point lookup", format!("{POINT}4242")),
    ] {
        let mut samples = vec![];
        for round in 0..rounds + 5 {
            let start = Instant::now();
            ctx.sql(&sql).await?.collect().await?;
            if round >= 5 {
                samples.push(start.elapsed());
            }
        }
        let (p50, p99) = percentiles(&mut samples);
        println!(
            "  in-process DataFusion, {name}: {} / {} ms",
            ms(p50),
            ms(p99)
        );
    }
    servers.report_sink();
    Ok(())
}

async fn run_op(op: Op, session: &mut Session, round: usize, sf: f64) -> anyhow::Result<usize> {
    let client = &mut session.client;
    match op {
        Op::SelectOne => query(client, "SELECT 1").await,
        Op::Point => query(client, &format!("{POINT}{}", order_key(round, sf))).await,
        Op::PointInfo => {
            let sql = format!("{POINT}{}", order_key(round, sf));
            session.point = Some(client.execute(sql, None).await?);
            Ok(0)
        }
        Op::PointGet => {
            // The ticket of the GetFlightInfo timed last (a new one each round of that).
            let info = session.point.clone().context("no FlightInfo")?;
            fetch(client, info).await
        }
        Op::GetTables => {
            let info = client
                .get_tables(CommandGetTables {
                    include_schema: false,
                    ..Default::default()
                })
                .await?;
            fetch(client, info).await
        }
        Op::Prepared => {
            let prepared = session.prepared.as_mut().context("not prepared")?;
            let field = prepared
                .parameter_schema()?
                .fields()
                .first()
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(Field::new("$1", arrow::datatypes::DataType::Int64, true))
                });
            let key: ArrayRef = Arc::new(Int64Array::from(vec![order_key(round, sf)]));
            let key = arrow::compute::cast(&key, field.data_type())?;
            let schema = Arc::new(Schema::new(vec![field.as_ref().clone()]));
            prepared.set_parameters(RecordBatch::try_new(schema, vec![key])?)?;
            let info = prepared.execute().await?;
            fetch(client, info).await
        }
    }
}

/// Runs `sql` to its last row: GetFlightInfo, then DoGet on every endpoint. Returns the rows.
pub async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> anyhow::Result<usize> {
    let info = client.execute(sql.to_string(), None).await?;
    fetch(client, info).await
}

async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: FlightInfo,
) -> anyhow::Result<usize> {
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

/// Runs the concurrency benchmark: `clients` connections running point lookups for
/// `duration` against each server in turn.
pub async fn concurrency(
    setup: Setup,
    clients: usize,
    duration: Duration,
    secured: bool,
    otlp: bool,
) -> anyhow::Result<()> {
    let servers = setup.start(secured, otlp).await?;
    println!(
        "concurrency: {clients} clients, each on its own connection, point lookups on TPC-H \
         sf={} lineitem for {:.0} s per server",
        setup.sf,
        duration.as_secs_f64()
    );
    println!(
        "{:<20} {:>10} {:>10} {:>10} {:>10} {:>8}",
        "server", "queries/s", "p50 ms", "p99 ms", "max ms", "errors"
    );
    for server in &servers.all {
        let mut connections = vec![];
        for _ in 0..clients {
            connections.push(server.client().await?);
        }
        let samples = Arc::new(Mutex::new(Vec::<Duration>::new()));
        let errors = Arc::new(Mutex::new(Vec::<String>::new()));
        let start = Instant::now();
        let deadline = start + duration;
        let mut tasks = vec![];
        for (c, mut client) in connections.into_iter().enumerate() {
            let (samples, errors, sf) = (Arc::clone(&samples), Arc::clone(&errors), setup.sf);
            tasks.push(tokio::spawn(async move {
                let mut mine = vec![];
                let mut round = c * 1000;
                while Instant::now() < deadline {
                    let begun = Instant::now();
                    match query(&mut client, &format!("{POINT}{}", order_key(round, sf))).await {
                        Ok(_) => mine.push(begun.elapsed()),
                        Err(err) => errors.lock().push(format!("{err:#}")),
                    }
                    round += 1;
                }
                samples.lock().extend(mine);
            }));
        }
        for task in tasks {
            task.await?;
        }
        let elapsed = start.elapsed();
        let mut samples = std::mem::take(&mut *samples.lock());
        let errors = std::mem::take(&mut *errors.lock());
        anyhow::ensure!(
            !samples.is_empty(),
            "{}: no query succeeded: {errors:?}",
            server.label
        );
        let count = samples.len();
        let (p50, p99) = percentiles(&mut samples);
        let max = samples.last().copied().unwrap_or_default();
        println!(
            "{:<20} {:>10.0} {:>10} {:>10} {:>10} {:>8}",
            server.label,
            count as f64 / elapsed.as_secs_f64(),
            ms(p50),
            ms(p99),
            ms(max),
            errors.len()
        );
        if let Some(first) = errors.first() {
            println!("  first error: {first}");
        }
    }
    servers.report_sink();
    Ok(())
}

/// The median and the 99th percentile (nearest rank); sorts `samples`.
fn percentiles(samples: &mut [Duration]) -> (Duration, Duration) {
    samples.sort();
    let at =
        |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.5), at(0.99))
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}
