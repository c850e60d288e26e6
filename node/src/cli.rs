//! Command-line interface of the `polder` binary. Most flags can also be set by an environment
//! variable with the `POLDER_` prefix (`--help` names it; `docs/config-reference.md` lists them
//! per subcommand).
//!
//! A repeatable flag takes one value per use, taken whole: a location may hold a comma (a file
//! named `a,b.csv`). Its environment variable (`POLDER_TABLES`, `POLDER_PEERS`, `POLDER_NODES`)
//! holds a comma-separated list instead, split by [`Cli::parse_args`].

// The flags' doc comments are their `--help` text, where `[auth]` and `[[nodes]]` are TOML
// tables, not links.
#![allow(rustdoc::broken_intra_doc_links)]

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::parser::ValueSource;
use clap::{ArgMatches, Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// Polder: an Urban Data Node serving a city's datasets over Arrow Flight SQL.
#[derive(Debug, Parser)]
#[command(name = "polder", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// Parses the process's arguments and environment; exits with clap's message on an error.
    pub fn parse_args() -> Self {
        Self::try_parse_args_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    /// Parses `args` (the program name first) and the environment. Unlike [`Parser::parse`],
    /// splits the environment variables of repeatable flags on commas (never the flags).
    pub fn try_parse_args_from<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let matches = Self::command().try_get_matches_from(args)?;
        let mut cli = Self::from_arg_matches(&matches)?;
        let from_env = |subcommand: &str, id: &str| {
            matches
                .subcommand_matches(subcommand)
                .and_then(|m: &ArgMatches| m.value_source(id))
                == Some(ValueSource::EnvVariable)
        };
        match &mut cli.command {
            Command::Serve(args) => {
                if from_env("serve", "tables") {
                    args.tables = split_env_list(&args.tables);
                }
                if from_env("serve", "peers") {
                    args.peers = split_env_list(&args.peers);
                }
            }
            Command::Sql(args) if from_env("sql", "nodes") => {
                args.nodes = split_env_list(&args.nodes);
            }
            _ => {}
        }
        Ok(cli)
    }
}

/// The items of a comma-separated list from an environment variable.
fn split_env_list(values: &[String]) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::to_string)
        .collect()
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node. With no datasets configured it serves generated sample data.
    Serve(Box<ServeArgs>),
    /// Write the synthetic sample city data (CSV, Parquet, GeoJSON) to a directory.
    DemoData(DemoDataArgs),
    /// Query one or more nodes with SQL: one query, a script, or an interactive shell.
    Sql(SqlArgs),
    /// Start three sample cities as a federation, run example queries across them, keep serving.
    Demo(DemoArgs),
    /// Development keys and tokens: `keygen` writes a key pair and its JWKS, `mint` signs a token.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The audit log: `verify` checks that no record was changed, removed or cut off.
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// `polder audit` subcommands.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check a log's hash chain and its checkpoints' signatures; exits non-zero when broken,
    /// or when records are not covered by a signed checkpoint (see --allow-unsigned).
    Verify(VerifyArgs),
}

/// Flags of `polder audit verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The audit log file.
    #[arg(long)]
    pub log: PathBuf,
    /// The public JWKS of the signing key (as `polder token keygen` wrote it).
    #[arg(long, value_name = "FILE")]
    pub jwks: PathBuf,
    /// Accept a log that no signed checkpoint covers, or whose records after the last
    /// checkpoint are more than it promised (e.g. a log copied without its checkpoints):
    /// those records are then checked only as a chain, which anyone who can write the file can
    /// recompute. Without it such a log fails.
    #[arg(long)]
    pub allow_unsigned: bool,
}

/// `polder token` subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Write a new Ed25519 private key (PEM) and its public JWKS into a directory.
    Keygen(KeygenArgs),
    /// Print a token signed with a local private key, for development and tests.
    Mint(Box<MintArgs>),
}

/// Flags of `polder token keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Directory to write `token-key.pem` (private, mode 0600) and `jwks.json` (public) into.
    #[arg(long)]
    pub out: PathBuf,
    /// The key id (`kid`) in the JWKS.
    #[arg(long, default_value = "polder-dev")]
    pub kid: String,
}

/// Flags of `polder token mint`.
#[derive(Debug, Args)]
pub struct MintArgs {
    /// The PEM private key to sign with.
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The key id (`kid`) put in the token's header.
    #[arg(long, default_value = "polder-dev")]
    pub kid: String,
    /// The signature algorithm: EdDSA (keygen's keys), RS256, PS256, ES256, ...
    #[arg(long, default_value = "EdDSA")]
    pub alg: String,
    /// The issuer (`iss`).
    #[arg(long)]
    pub issuer: String,
    /// The audience (`aud`).
    #[arg(long)]
    pub audience: String,
    /// The subject (`sub`).
    #[arg(long)]
    pub subject: String,
    /// A group (`groups`); repeatable.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// A role (`roles`); repeatable.
    #[arg(long = "role", value_name = "ROLE")]
    pub roles: Vec<String>,
    /// The organisation (`org`).
    #[arg(long)]
    pub org: Option<String>,
    /// Why the data is asked for (`purpose`).
    #[arg(long)]
    pub purpose: Option<String>,
    /// How long the token is valid.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
}

/// Flags of `polder serve`; each overrides the config file.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// TOML config file (see node/config/node.example.toml).
    #[arg(long, env = "POLDER_CONFIG")]
    pub config: Option<PathBuf>,
    /// The node's name, used as its SQL catalog.
    #[arg(long, env = "POLDER_NAME")]
    pub name: Option<String>,
    /// Address of the Flight SQL service, e.g. 0.0.0.0:50051.
    #[arg(long, env = "POLDER_FLIGHT")]
    pub flight: Option<SocketAddr>,
    /// Address of the HTTP service (health, readiness), e.g. 0.0.0.0:8080.
    #[arg(long, env = "POLDER_HTTP")]
    pub http: Option<SocketAddr>,
    /// A dataset as NAME=LOCATION (file, directory, glob or URL); repeatable. The value is
    /// taken whole, commas included; POLDER_TABLES is a comma-separated list.
    #[arg(long = "table", value_name = "NAME=LOCATION", env = "POLDER_TABLES")]
    pub tables: Vec<String>,
    /// Another node to federate, as NAME=URL (grpc://host:port); repeatable. Its tables become
    /// the SQL catalog NAME for this node's clients. POLDER_PEERS is a comma-separated list.
    #[arg(long = "peer", value_name = "NAME=URL", env = "POLDER_PEERS")]
    pub peers: Vec<String>,
    /// A federation manifest (TOML, [[nodes]] name/url) whose nodes are all peers; this node's
    /// own entry in it is skipped.
    #[arg(long, value_name = "FILE", env = "POLDER_FEDERATION")]
    pub federation: Option<PathBuf>,
    /// Require bearer tokens signed by a key of this JWKS (a file, or an https:// URL). With
    /// --issuer and --audience it sets up [auth]; datasets are then readable only as the
    /// access policy (--policy) allows.
    #[arg(long, value_name = "FILE|URL", env = "POLDER_JWKS")]
    pub jwks: Option<String>,
    /// The one accepted token issuer (`iss`).
    #[arg(long, value_name = "ISSUER", env = "POLDER_ISSUER")]
    pub issuer: Option<String>,
    /// The audience (`aud`) tokens must carry.
    #[arg(long, value_name = "AUDIENCE", env = "POLDER_AUDIENCE")]
    pub audience: Option<String>,
    /// The access policy file (TOML; see docs/security-guide.md).
    #[arg(long, value_name = "FILE", env = "POLDER_POLICY")]
    pub policy: Option<PathBuf>,
    /// Record every query in this append-only, hash-chained audit log (needs --audit-key).
    #[arg(
        long,
        value_name = "FILE",
        env = "POLDER_AUDIT_LOG",
        requires = "audit_key"
    )]
    pub audit_log: Option<PathBuf>,
    /// The Ed25519 private key (PEM) that signs the audit log's checkpoints.
    #[arg(
        long,
        value_name = "FILE",
        env = "POLDER_AUDIT_KEY",
        requires = "audit_log"
    )]
    pub audit_key: Option<PathBuf>,
    /// Serve Flight SQL over TLS with this certificate chain (PEM; with --tls-key).
    #[arg(long, value_name = "FILE", env = "POLDER_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "FILE", env = "POLDER_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Log lines as text, or as one JSON object per line with the OpenTelemetry trace id.
    #[arg(long, value_enum, default_value_t = crate::telemetry::LogFormat::Text, env = "POLDER_LOG_FORMAT")]
    pub log_format: crate::telemetry::LogFormat,
    /// Trust the certificate authorities in this PEM file (as well as the system's) for peers
    /// reached with grpc+tls://.
    #[arg(long, value_name = "FILE", env = "POLDER_PEER_TLS_CA")]
    pub peer_tls_ca: Option<PathBuf>,
}

/// Output formats of `polder sql`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// An aligned text table (the first `--max-rows` rows of each result).
    Table,
    /// CSV with a header row.
    Csv,
    /// Newline-delimited JSON, one object per row.
    Json,
    /// Parquet, zstd-compressed, with every column's Arrow type and GeoParquet metadata for
    /// GeoArrow WKB columns (needs `--output`).
    Parquet,
    /// An Arrow IPC file (needs `--output`).
    Arrow,
}

/// Flags of `polder sql`.
#[derive(Debug, Args)]
pub struct SqlArgs {
    /// A node to query, as NAME=URL (grpc://host:port) or NAME=URL#CATALOG; repeatable. NAME
    /// is its SQL catalog, with the node's own catalog (or CATALOG of the node); the node's
    /// further catalogs (the peers it federates) appear under their own names. POLDER_NODES
    /// is a comma-separated list.
    #[arg(long = "node", value_name = "NAME=URL", env = "POLDER_NODES")]
    pub nodes: Vec<String>,
    /// A federation manifest (TOML, [[nodes]] name/url) listing the nodes to query.
    #[arg(long, value_name = "FILE", env = "POLDER_FEDERATION")]
    pub federation: Option<PathBuf>,
    /// Run this SQL (one or more statements separated by ';') and exit.
    #[arg(
        short = 'c',
        long = "command",
        value_name = "SQL",
        conflicts_with = "file"
    )]
    pub command: Option<String>,
    /// Run the statements of this file and exit.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// How results are written.
    #[arg(long, value_enum, default_value = "table")]
    pub format: OutputFormat,
    /// Write results to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Rows of each result shown in `table` format (the rest are counted).
    #[arg(long, default_value_t = 40)]
    pub max_rows: usize,
    /// How long a node may take to answer, and to send each next batch.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = humantime::parse_duration)]
    pub peer_timeout: std::time::Duration,
    /// Trust the certificate authorities in this PEM file (as well as the system's) for nodes
    /// reached with grpc+tls://.
    #[arg(long, value_name = "FILE", env = "POLDER_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// A bearer token sent to every node (for nodes that require authentication).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "POLDER_TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Send every query whole to where its data lives (default). `--no-pushdown` scans remote
    /// tables whole and computes here: only for measuring what pushdown gains.
    #[arg(long = "no-pushdown", action = clap::ArgAction::SetFalse)]
    pub pushdown: bool,
    /// Ask the nodes to compress results (Arrow IPC bodies): none, lz4 or zstd. Worth it on a
    /// slow link; costs the nodes' and this machine's processor time.
    #[arg(
        long,
        value_name = "CODEC",
        default_value = "none",
        env = "POLDER_COMPRESSION"
    )]
    pub compression: polder_federation::IpcCompression,
    /// In a script (`-c`, `-f`, piped input), stop at the first failed statement. Without it
    /// every statement runs, each failure is reported with its line, and the exit code says
    /// whether any failed.
    #[arg(long)]
    pub bail: bool,
    /// Print each statement's run time (`Run Time: 0.123 s`) on standard error, as
    /// `.timer on` does.
    #[arg(long)]
    pub timer: bool,
}

/// Flags of `polder demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print the example queries' answers and exit instead of serving.
    #[arg(long)]
    pub once: bool,
    /// Flight SQL port of the first city; the others take the next ports. 0 picks free ports.
    #[arg(long, default_value_t = 50051)]
    pub flight_port: u16,
    /// HTTP port of the first city; the others take the next ports. 0 picks free ports.
    #[arg(long, default_value_t = 8080)]
    pub http_port: u16,
}

/// Flags of `polder demo-data`.
#[derive(Debug, Args)]
pub struct DemoDataArgs {
    /// Directory to write `<city>/<table>.<ext>` into.
    #[arg(long)]
    pub out: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(args: &[&str]) -> ServeArgs {
        let argv = ["polder", "serve"].iter().chain(args);
        match Cli::try_parse_args_from(argv).expect("parses").command {
            Command::Serve(args) => *args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn a_flag_value_keeps_its_commas() {
        let args = serve_args(&[
            "--table",
            "trips=data/{2024,2025}.csv",
            "--table",
            "stops=data/a,b.csv",
            "--peer",
            "utrecht=grpc://u:50051",
        ]);
        assert_eq!(
            args.tables,
            ["trips=data/{2024,2025}.csv", "stops=data/a,b.csv"]
        );
        assert_eq!(args.peers, ["utrecht=grpc://u:50051"]);
    }

    #[test]
    fn a_list_from_the_environment_splits_on_commas() {
        assert_eq!(
            split_env_list(&["a=x.csv,b=y.csv".into()]),
            ["a=x.csv", "b=y.csv"]
        );
        assert_eq!(split_env_list(&["a=x.csv".into()]), ["a=x.csv"]);
    }

    #[test]
    fn sql_nodes_are_taken_whole() {
        let cli = Cli::try_parse_args_from(["polder", "sql", "--node", "a=grpc://h:1#x,y"])
            .expect("parses");
        let Command::Sql(args) = cli.command else {
            panic!("not sql");
        };
        assert_eq!(args.nodes, ["a=grpc://h:1#x,y"]);
    }
}
