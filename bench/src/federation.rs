//! `polder-bench federation`: the 22 TPC-H queries over three nodes, against one node holding
//! every table, the same three nodes without runtime filters, and with pushdown off, in one run.
//!
//! All four nodes run in this process, each a Flight SQL service on loopback with its own
//! query runtime, as `polder serve` runs them. The client is the federated session `polder sql`
//! uses; views named after the TPC-H tables point at the node holding each table, so the
//! queries run unchanged. Per query it prints the median time of each mode, the ratios, and
//! the Arrow bytes the client received from the nodes.
//!
//! With `--link 100mbit,20ms` every node sits behind its own shaping proxy (`shaping.rs`), as
//! cities do behind their own links, and the modes are one node, three nodes, and three nodes
//! asking for each compression of `--compression`; the bytes are then those on the links.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use futures::TryStreamExt;
use polder_federation::{
    FederatedSession, FederationOptions, IpcCompression, PeerConfig, PeerUrl, Traffic,
};
use polder_flight_sql::QueryRuntime;

use crate::shaping::{Link, Proxy};
use crate::tpch;

/// Which node holds which tables in the federated modes.
const PLACEMENT: &[(&str, &[&str])] = &[
    ("amsterdam", &["lineitem", "part"]),
    ("utrecht", &["orders", "customer"]),
    ("rotterdam", &["supplier", "partsupp", "nation", "region"]),
];
const ALL: &str = "everything";

/// How the benchmark reaches the nodes.
#[derive(Debug, Clone, Default)]
pub struct Links {
    /// Each node behind a shaping proxy with this bandwidth and round-trip time.
    pub link: Option<Link>,
    /// With `link`: the compressions measured besides none.
    pub compressions: Vec<IpcCompression>,
}

/// Runs the benchmark.
pub async fn run(
    sf: f64,
    data: PathBuf,
    runs: usize,
    only: Vec<String>,
    links: Links,
) -> anyhow::Result<()> {
    let dir = data.join(format!("tpch-sf{sf}"));
    eprintln!("generating TPC-H sf={sf} in {} (once)", dir.display());
    tpch::generate(sf, &dir)?;
    let queries = queries(&only)?;

    // The nodes: three holding the tables between them, one holding all of them; each behind
    // its own link when the links are shaped.
    let mut nodes = vec![];
    let mut homes = BTreeMap::new();
    for (node, tables) in PLACEMENT {
        nodes.push(Node::start(node, tables, &dir, links.link).await?);
        for t in *tables {
            homes.insert(t.to_string(), node.to_string());
        }
    }
    let all_tables: Vec<&str> = homes.keys().map(String::as_str).collect();
    let everything = Node::start(ALL, &all_tables, &dir, links.link).await?;

    let three: Vec<PeerConfig> = nodes.iter().map(Node::peer).collect();
    let one = vec![everything.peer()];
    let pushdown = FederationOptions::default();
    let mut modes = vec![
        Mode::new("one node", "one node", &one, &homes, pushdown.clone(), true).await?,
        Mode::new(
            "three nodes",
            "3 nodes",
            &three,
            &homes,
            pushdown.clone(),
            false,
        )
        .await?,
    ];
    match links.link {
        None => {
            let unfiltered = FederationOptions {
                runtime_filter_max_bytes: 0,
                ..pushdown.clone()
            };
            modes.push(
                Mode::new(
                    "three nodes, no runtime filters",
                    "3n no-rf",
                    &three,
                    &homes,
                    unfiltered,
                    false,
                )
                .await?,
            );
            let scan_all = FederationOptions {
                pushdown: false,
                ..pushdown
            };
            modes.push(Mode::new("no pushdown", "no push", &three, &homes, scan_all, false).await?);
        }
        Some(_) => {
            for compression in &links.compressions {
                let compressed = FederationOptions {
                    compression: *compression,
                    ..pushdown.clone()
                };
                let label: &'static str = match compression {
                    IpcCompression::None => "3n none",
                    IpcCompression::Lz4 => "3n lz4",
                    IpcCompression::Zstd => "3n zstd",
                };
                modes.push(Mode::new(label, label, &three, &homes, compressed, false).await?);
            }
        }
    }
    let proxies: Vec<&Proxy> = nodes
        .iter()
        .chain([&everything])
        .filter_map(|n| n.proxy.as_ref())
        .collect();
    let wire = || proxies.iter().map(|p| p.bytes_down()).sum::<u64>();

    match links.link {
        None => println!(
            "federation: TPC-H sf={sf}, median of {runs} runs; time in s, bytes = Arrow bytes \
             received from the nodes"
        ),
        Some(link) => println!(
            "federation: TPC-H sf={sf}, median of {runs} runs, every node behind its own link of \
             {link}; time in s, bytes = bytes the nodes sent over the links"
        ),
    }
    print!("{:<5}", "query");
    for mode in &modes {
        print!(" {:>9}", mode.label);
    }
    print!(" {:>8}", "3n/one");
    for mode in &modes[2..] {
        print!(" {:>12}", format!("{}/3n", mode.label));
    }
    for mode in &modes[1..] {
        print!(" {:>12}", format!("by. {}", mode.label));
    }
    println!();
    let mut totals = vec![Duration::ZERO; modes.len()];
    let mut total_bytes = vec![0u64; modes.len()];
    for (name, sql) in &queries {
        // Warm-up, which also checks that every mode returns as many rows.
        let mut rows = vec![];
        for mode in &modes {
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
        let mut times = vec![vec![]; modes.len()];
        let mut bytes = vec![0u64; modes.len()];
        for run in 0..runs.max(1) {
            // Each run starts with another mode, so that no mode always follows the same one.
            for step in 0..modes.len() {
                let i = (run + step) % modes.len();
                let before = wire();
                let (_, elapsed, traffic) = modes[i].run(sql).await?;
                times[i].push(elapsed);
                bytes[i] = match links.link {
                    Some(_) => wire() - before,
                    None => traffic.bytes,
                };
            }
        }
        let medians: Vec<Duration> = times.iter_mut().map(|t| crate::median(t)).collect();
        for (total, m) in totals.iter_mut().zip(&medians) {
            *total += *m;
        }
        for (total, b) in total_bytes.iter_mut().zip(&bytes) {
            *total += *b;
        }
        print_row(name, &medians, &bytes);
    }
    print_row("total", &totals, &total_bytes);
    drop(nodes);
    drop(everything);
    Ok(())
}

/// One line of the table: each mode's time, the ratios, then the bytes of each mode but the
/// first.
fn print_row(name: &str, times: &[Duration], bytes: &[u64]) {
    let s = |i: usize| times[i].as_secs_f64();
    print!("{name:<5}");
    for i in 0..times.len() {
        print!(" {:>9.3}", s(i));
    }
    print!(" {:>7.2}x", s(1) / s(0));
    for i in 2..times.len() {
        print!(" {:>11.2}x", s(i) / s(1));
    }
    for b in &bytes[1..] {
        print!(" {:>12}", human_bytes(*b));
    }
    println!();
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

/// A node in this process: TPC-H tables in the catalog named after it, behind Flight SQL, and
/// behind a shaping proxy when the links are shaped.
struct Node {
    name: String,
    addr: SocketAddr,
    proxy: Option<Proxy>,
    _runtime: QueryRuntime,
}

impl Node {
    async fn start(
        name: &str,
        tables: &[&str],
        dir: &Path,
        link: Option<Link>,
    ) -> anyhow::Result<Self> {
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
        let proxy = match link {
            Some(link) => Some(Proxy::start(addr, link).await?),
            None => None,
        };
        Ok(Self {
            name: name.to_string(),
            addr,
            proxy,
            _runtime: runtime,
        })
    }

    /// How clients reach the node: through its link when there is one.
    fn peer(&self) -> PeerConfig {
        let addr = self.proxy.as_ref().map_or(self.addr, |p| p.addr);
        PeerConfig {
            name: self.name.clone(),
            url: PeerUrl::grpc(addr),
            catalog: None,
            compression: None,
        }
    }
}

/// A client session: the federation of some nodes, with TPC-H views over them.
struct Mode {
    name: &'static str,
    label: &'static str,
    ctx: SessionContext,
    federation: FederatedSession,
}

impl Mode {
    async fn new(
        name: &'static str,
        label: &'static str,
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
            label,
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
