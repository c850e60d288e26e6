//! Command-line interface of the `polder` binary. Every flag can also be set by an environment
//! variable with the `POLDER_` prefix.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Polder: an Urban Data Node serving a city's datasets over Arrow Flight SQL.
#[derive(Debug, Parser)]
#[command(name = "polder", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a node. With no datasets configured it serves generated sample data.
    Serve(ServeArgs),
    /// Write the synthetic sample city data (CSV, Parquet, GeoJSON) to a directory.
    DemoData(DemoDataArgs),
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
    /// A dataset as NAME=LOCATION (file, directory, glob or URL); repeatable.
    #[arg(
        long = "table",
        value_name = "NAME=LOCATION",
        env = "POLDER_TABLES",
        value_delimiter = ','
    )]
    pub tables: Vec<String>,
}

/// Flags of `polder demo-data`.
#[derive(Debug, Args)]
pub struct DemoDataArgs {
    /// Directory to write `<city>/<table>.<ext>` into.
    #[arg(long)]
    pub out: PathBuf,
}
