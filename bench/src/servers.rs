//! Real servers for the side-by-side benchmarks: the `polder` binary (`polder serve`, as an
//! operator runs it, optionally with authentication and the audit log on) and roapi (a Flight
//! SQL server on the same DataFusion, from its PyPI wheel), each a child process on loopback
//! that is killed when its [`Server`] is dropped.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use arrow_flight::sql::client::FlightSqlServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

/// How long a server may take to start before the benchmark gives up.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A Flight SQL server under test, running as a child process.
#[derive(Debug)]
pub struct Server {
    /// What the reports call it.
    pub label: String,
    /// Its Flight SQL address.
    pub flight: SocketAddr,
    /// Its HTTP address, where it has one (`/readyz`).
    pub http: Option<SocketAddr>,
    /// The bearer token its clients send, if it requires one.
    pub token: Option<String>,
    /// From the start of the process until it answered.
    pub started_in: Duration,
    child: Child,
}

impl Server {
    /// A new client connection (its own TCP connection) with the server's token.
    pub async fn client(&self) -> anyhow::Result<FlightSqlServiceClient<Channel>> {
        let channel = Endpoint::from_shared(format!("http://{}", self.flight))?
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {}", self.label))?;
        let mut client = FlightSqlServiceClient::new(channel);
        if let Some(token) = &self.token {
            client.set_token(token.clone());
        }
        Ok(client)
    }

    /// The process id, for reading its resource use.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}

/// The `polder` binary beside this one (both are built by `cargo build --release --bins`),
/// unless `given`.
pub fn polder_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(path) => path,
        None => std::env::current_exe()?
            .parent()
            .context("the benchmark binary has no directory")?
            .join("polder"),
    };
    anyhow::ensure!(
        path.is_file(),
        "{} not found: build it first (`cargo build --release --bins`) or pass --polder",
        path.display()
    );
    Ok(path)
}

/// The roapi binary: `given`, else `roapi` on the `PATH` or in the repository's `.venv`
/// (`pip install roapi==0.12.7`). `None` when there is none: the roapi columns are then left
/// out, and the report says so.
pub fn roapi_binary(given: Option<PathBuf>) -> Option<PathBuf> {
    if let Some(path) = given {
        return Some(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/roapi");
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("roapi"))
        .chain([venv])
        .find(|path| path.is_file())
}

/// What a Polder node under test serves and checks.
#[derive(Debug, Clone, Default)]
pub struct PolderOptions {
    /// Tables as `NAME=LOCATION`.
    pub tables: Vec<(String, PathBuf)>,
    /// Require tokens, apply a policy granting every table to the benchmark's caller, and keep
    /// the audit log.
    pub secured: bool,
    /// Start as a newcomer does, with no configuration file: the generated sample data.
    pub sample: bool,
    /// Export traces and metrics over OTLP/HTTP to this base URL.
    pub otlp: Option<String>,
}

/// Starts `polder serve` with `options`, its files in `work`, and waits until `/readyz` says
/// it is ready.
pub async fn start_polder(
    binary: &Path,
    label: &str,
    work: &Path,
    options: &PolderOptions,
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(work)?;
    let (flight, http) = (free_port()?, free_port()?);
    let mut command = Command::new(binary);
    command.arg("serve");
    if !options.sample {
        let config = work.join("node.toml");
        std::fs::write(&config, node_config(http))?;
        command
            .arg("--config")
            .arg(&config)
            .args(["--name", "bench"]);
    }
    command
        .arg("--flight")
        .arg(flight.to_string())
        .arg("--http")
        .arg(http.to_string());
    for (name, location) in &options.tables {
        command
            .arg("--table")
            .arg(format!("{name}={}", location.display()));
    }
    let mut token = None;
    if options.secured {
        let keys = work.join("keys");
        let _ = std::fs::remove_dir_all(&keys);
        run(Command::new(binary)
            .args(["token", "keygen", "--out"])
            .arg(&keys))
        .await?;
        let policy = work.join("policy.toml");
        let mut rules = String::new();
        for (name, _) in &options.tables {
            rules.push_str(&format!(
                "[[dataset]]\nname = \"{name}\"\n  [[dataset.rule]]\n  groups = [\"bench\"]\n  access = \"raw\"\n\n"
            ));
        }
        std::fs::write(&policy, rules)?;
        let audit = work.join("audit.jsonl");
        let _ = std::fs::remove_file(&audit);
        command
            .arg("--jwks")
            .arg(keys.join("jwks.json"))
            .args(["--issuer", "https://bench.local", "--audience", "bench"])
            .arg("--policy")
            .arg(&policy)
            .arg("--audit-log")
            .arg(&audit)
            .arg("--audit-key")
            .arg(keys.join("token-key.pem"));
        let minted = run(Command::new(binary)
            .args(["token", "mint", "--key"])
            .arg(keys.join("token-key.pem"))
            .args([
                "--issuer",
                "https://bench.local",
                "--audience",
                "bench",
                "--subject",
                "bench",
                "--group",
                "bench",
                "--ttl",
                "24h",
            ]))
        .await?;
        token = Some(minted.trim().to_string());
    }
    command.env("RUST_LOG", "warn");
    if let Some(endpoint) = &options.otlp {
        command
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf");
    }
    let started = Instant::now();
    let child = spawn(&mut command, &work.join("polder.log"))?;
    let mut server = Server {
        label: label.to_string(),
        flight,
        http: Some(http),
        token,
        started_in: Duration::ZERO,
        child,
    };
    wait_ready(&mut server, started, &work.join("polder.log")).await?;
    Ok(server)
}

/// Starts roapi serving `tables` over Flight SQL and waits until it answers a query.
pub async fn start_roapi(
    binary: &Path,
    work: &Path,
    tables: &[(String, PathBuf)],
) -> anyhow::Result<Server> {
    std::fs::create_dir_all(work)?;
    let (flight, http, postgres) = (free_port()?, free_port()?, free_port()?);
    let mut command = Command::new(binary);
    command
        .arg("--addr-flight-sql")
        .arg(flight.to_string())
        .arg("--addr-http")
        .arg(http.to_string())
        .arg("--addr-postgres")
        .arg(postgres.to_string());
    for (name, location) in tables {
        command
            .arg("--table")
            .arg(format!("{name}={}", location.display()));
    }
    let started = Instant::now();
    let child = spawn(&mut command, &work.join("roapi.log"))?;
    let mut server = Server {
        label: "roapi".into(),
        flight,
        http: None,
        token: None,
        started_in: Duration::ZERO,
        child,
    };
    wait_ready(&mut server, started, &work.join("roapi.log")).await?;
    Ok(server)
}

fn spawn(command: &mut Command, log: &Path) -> anyhow::Result<Child> {
    let out = std::fs::File::create(log)?;
    command
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {:?}", command.as_std().get_program()))
}

/// Runs a short command to its end and returns its standard output.
async fn run(command: &mut Command) -> anyhow::Result<String> {
    let output = command.stdin(Stdio::null()).output().await?;
    if !output.status.success() {
        bail!(
            "{:?} failed: {}",
            command.as_std(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Waits until the server is ready: `/readyz` answers 200 where there is an HTTP address, and
/// a Flight SQL client can run `SELECT 1`.
async fn wait_ready(server: &mut Server, started: Instant, log: &Path) -> anyhow::Result<()> {
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "{} exited ({status}) while starting; its log ({}):\n{}",
                server.label,
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if started.elapsed() > START_TIMEOUT {
            bail!("{} did not start within {START_TIMEOUT:?}", server.label);
        }
        let ready = match server.http {
            Some(http) => http_status(http, "/readyz").await.ok() == Some(200),
            None => true,
        };
        if ready && select_one(server).await.is_ok() {
            server.started_in = started.elapsed();
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn select_one(server: &Server) -> anyhow::Result<()> {
    let mut client = server.client().await?;
    crate::latency::query(&mut client, "SELECT 1").await?;
    Ok(())
}

/// The status code of `GET path` on `addr` (plain HTTP/1.1, one request per connection).
pub async fn http_status(addr: SocketAddr, path: &str) -> anyhow::Result<u16> {
    let mut stream = TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await?;
    let line = std::str::from_utf8(&head)?;
    line.get(9..12)
        .context("short status line")?
        .parse()
        .context("status code")
}

/// A loopback address with a port that was free a moment ago.
fn free_port() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The node's configuration: limits and catalog metadata as in `node.example.toml`, with the
/// HTTP address the catalog's links point at.
fn node_config(http: SocketAddr) -> String {
    format!(
        r#"[catalog]
base_url = "http://{http}"
title = "Benchmark node"
description = "A Polder node started by polder-bench."
license = "http://creativecommons.org/publicdomain/zero/1.0/"
access_rights = "public"
themes = ["REGI"]

[catalog.publisher]
name = "Polder benchmarks"
uri = "https://example.org/polder-bench"
type = "http://purl.org/adms/publishertype/LocalAuthority"

[catalog.contact_point]
name = "Benchmarks"
email = "bench@example.org"
"#
    )
}
