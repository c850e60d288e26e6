//! `polder-bench federation`: the 22 TPC-H queries over three nodes, against one node holding
//! every table, the same three nodes without runtime filters, and with pushdown off, in one run.
//!
//! All four nodes run in this process, each a Flight SQL service on loopback with its own
//! query runtime, as `polder serve` runs them. The client is the federated session `polder sql`
//! uses; views named after the TPC-H tables point at the node holding each table, so the
//! queries run unchanged. Per query it prints the median time of each mode, the ratios, and
//! the Arrow bytes the client received from the nodes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use polder_federation::{FederatedSession, FederationOptions, PeerConfig, PeerUrl, Traffic};
use polder_flight_sql::QueryRuntime;

use crate::tpch;

/// Which node holds which tables in the federated modes.
const PLACEMENT: &[(&str, &[&str])] = &[
    ("amsterdam", &["lineitem", "part"]),
    ("utrecht", &["orders", "customer"]),
    ("rotterdam", &["supplier", "partsupp", "nation", "region"]),
];
const ALL: &str = "everything";

/// Runs the benchmark.
pub async fn run(sf: f64, data: PathBuf, runs: usize, only: Vec<String>) -> anyhow::Result<()> {
    let dir = data.join(format!("tpch-sf{sf}"));
    eprintln!("generating TPC-H sf={sf} in {} (once)", dir.display());
    tpch::generate(sf, &dir)?;
    let queries = queries(&only)?;

    // The nodes: three holding the tables between them, one holding all of them.
    let mut nodes = vec![];
    let mut homes = BTreeMap::new();
    for (node, tables) in PLACEMENT {
        nodes.push(Node::start(node, tables, &dir).await?);
        for t in *tables {
            homes.insert(t.to_string(), node.to_string());
        }
    }
    let all_tables: Vec<&str> = homes.keys().map(String::as_str).collect();
    let everything = Node::start(ALL, &all_tables, &dir).await?;

    let three: Vec<PeerConfig> = nodes.iter().map(Node::peer).collect();
    let one = vec![everything.peer()];
    let pushdown = FederationOptions::default();
    let without = |options: FederationOptions| FederationOptions {
        runtime_filter_max_bytes: 0,
        ..options
    };
    let single = Mode::new("one node", &one, &homes, pushdown.clone(), true).await?;
    let federated = Mode::new("three nodes", &three, &homes, pushdown.clone(), false).await?;
    let unfiltered = Mode::new(
        "three nodes, no runtime filters",
        &three,
        &homes,
        without(pushdown.clone()),
        false,
    )
    .await?;
    let no_pushdown = Mode::new(
        "no pushdown",
        &three,
        &homes,
        FederationOptions {
            pushdown: false,
            ..pushdown
        },
        false,
    )
    .await?;
    let modes = [&single, &federated, &unfiltered, &no_pushdown];

    println!(
        "federation: TPC-H sf={sf}, median of {runs} runs; time in s, bytes = Arrow bytes \
         received from the nodes"
    );
    println!(
        "{:<5} {:>9} {:>9} {:>9} {:>9} {:>8} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "query",
        "one node",
        "3 nodes",
        "3n no-rf",
        "no push",
        "3n/one",
        "no-rf/3n",
        "nopush/3n",
        "bytes 3n",
        "by. no-rf",
        "by. nopush"
    );
    let mut totals = [Duration::ZERO; 4];
    for (name, sql) in &queries {
        // Warm-up, which also checks that every mode returns as many rows.
        let mut rows = vec![];
        for mode in modes {
            rows.push(
                mode.run(sql)
                    .await
                    .with_context(|| format!("{name} ({})", mode.name))?
                    .0,
            );
        }
        anyhow::ensure!(
            rows.iter().all(|r| *r == rows[0]),
            "{name}: row counts differ between modes: {rows:?}"
        );
        let mut times = [vec![], vec![], vec![], vec![]];
        let mut bytes = [0u64; 4];
        for run in 0..runs.max(1) {
            // Each run starts with another mode, so that no mode always follows the same one.
            for step in 0..modes.len() {
                let i = (run + step) % modes.len();
                let (_, elapsed, traffic) = modes[i].run(sql).await?;
                times[i].push(elapsed);
                bytes[i] = traffic.bytes;
            }
        }
        let medians: Vec<Duration> = times.iter_mut().map(|t| crate::median(t)).collect();
        for (total, m) in totals.iter_mut().zip(&medians) {
            *total += *m;
        }
        let bytes = format!(
            " {:>10} {:>10} {:>10}",
            human_bytes(bytes[1]),
            human_bytes(bytes[2]),
            human_bytes(bytes[3])
        );
        print_row(name, &medians, &bytes);
    }
    print_row("total", &totals, "");
    drop(nodes);
    drop(everything);
    Ok(())
}

/// One line of the table: each mode's time, the ratios, then `rest`.
fn print_row(name: &str, times: &[Duration], rest: &str) {
    let s = |i: usize| times[i].as_secs_f64();
    println!(
        "{:<5} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>7.2}x {:>8.2}x {:>9.2}x{rest}",
        name,
        s(0),
        s(1),
        s(2),
        s(3),
        s(1) / s(0),
        s(2) / s(1),
        s(3) / s(1),
    );
}

/// The TPC-H queries of the conformance suite, by name (`q01` ...), or those named in `only`.
fn queries(only: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance-tests/tpch/queries");
    let mut queries = vec![];
    for i in 1..=22 {
        let name = format!("q{i:02}");
        if !only.is_empty() && !only.contains(&name) {
            continue;
        }
        let sql = std::fs::read_to_string(dir.join(format!("{name}.sql")))
            .with_context(|| format!("reading {name}"))?;
        queries.push((name, sql));
    }
    anyhow::ensure!(!queries.is_empty(), "no queries selected");
    Ok(queries)
}

/// A node in this process: TPC-H tables in the catalog named after it, behind Flight SQL.
struct Node {
    name: String,
    addr: SocketAddr,
    _runtime: QueryRuntime,
}

impl Node {
    async fn start(name: &str, tables: &[&str], dir: &Path) -> anyhow::Result<Self> {
        let config =
            polder_flight_sql::session_config().with_default_catalog_and_schema(name, "public");
        let ctx = SessionContext::new_with_config(config);
        for table in tables {
            let path = dir.join(format!("{table}.parquet"));
            ctx.register_parquet(
                *table,
                path.to_str().context("path")?,
                ParquetReadOptions::default(),
            )
            .await?;
        }
        let (addr, runtime) = crate::serve(ctx).await?;
        Ok(Self {
            name: name.to_string(),
            addr,
            _runtime: runtime,
        })
    }

    fn peer(&self) -> PeerConfig {
        PeerConfig {
            name: self.name.clone(),
            url: PeerUrl::grpc(self.addr),
            catalog: None,
        }
    }
}

/// A client session: the federation of some nodes, with TPC-H views over them.
struct Mode {
    name: &'static str,
    ctx: SessionContext,
    federation: FederatedSession,
}

impl Mode {
    async fn new(
        name: &'static str,
        peers: &[PeerConfig],
        homes: &BTreeMap<String, String>,
        options: FederationOptions,
        single: bool,
    ) -> anyhow::Result<Self> {
        let options = FederationOptions {
            peer_timeout: Duration::from_secs(600),
            ..options
        };
        let state = polder_federation::session_state(
            polder_flight_sql::session_config(),
            Arc::new(RuntimeEnv::default()),
            &options,
        );
        let ctx = SessionContext::new_with_state(state);
        let federation = FederatedSession::register(&ctx, peers, &options).await?;
        anyhow::ensure!(
            federation.unavailable.is_empty(),
            "nodes unavailable: {:?}",
            federation.unavailable
        );
        for (table, home) in homes {
            let home = if single { ALL } else { home };
            ctx.sql(&format!(
                "CREATE VIEW {table} AS SELECT * FROM {home}.public.{table}"
            ))
            .await?
            .collect()
            .await?;
        }
        Ok(Self {
            name,
            ctx,
            federation,
        })
    }

    fn traffic(&self) -> Traffic {
        self.federation
            .catalogs
            .iter()
            .map(|c| c.peer().traffic())
            .fold(Traffic::default(), |a, b| Traffic {
                queries: a.queries + b.queries,
                rows: a.rows + b.rows,
                bytes: a.bytes + b.bytes,
            })
    }

    /// Runs `sql` to its end: rows, time, and what the nodes sent for it.
    async fn run(&self, sql: &str) -> anyhow::Result<(usize, Duration, Traffic)> {
        let before = self.traffic();
        let start = Instant::now();
        let stream = self.ctx.sql(sql).await?.execute_stream().await?;
        let rows = stream
            .try_fold(0, |n, b| async move { Ok(n + b.num_rows()) })
            .await?;
        let elapsed = start.elapsed();
        let after = self.traffic();
        Ok((
            rows,
            elapsed,
            Traffic {
                queries: after.queries - before.queries,
                rows: after.rows - before.rows,
                bytes: after.bytes - before.bytes,
            },
        ))
    }
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
