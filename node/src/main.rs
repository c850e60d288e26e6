//! The `polder` binary: parses arguments, sets up tracing and hands over to [`startup`].

mod catalog;
mod cli;
mod config;
mod connections;
mod datasets;
mod demo;
mod http;
#[cfg(test)]
mod runtime_filter_test;
#[cfg(test)]
mod slt;
mod sql;
mod startup;
mod token;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};

/// The hidden subcommand that evaluates one SPARQL query in a child process of the node.
pub const SPARQL_WORKER: &str = "sparql-worker";

/// Stack of the main runtime's threads. `polder sql` plans and optimizes queries on them, and
/// DataFusion's planner and optimizer recurse over the plan: the default 2 MiB overflowed (the
/// process aborted) on three nested aggregates joined with a table. Only the pages used are
/// committed. A node plans on its query runtime, whose stacks are sized from
/// `limits.max_query_bytes` (polder_flight_sql::QueryRuntime).
const WORKER_STACK_BYTES: usize = 32 * 1024 * 1024;

fn main() -> std::process::ExitCode {
    // The SPARQL worker starts per query: no runtime, no logging, no argument parsing.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some(SPARQL_WORKER) {
        return polder_catalog::worker::run(&args[2..]);
    }
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
    {
        Ok(runtime) => runtime.block_on(run()),
        Err(err) => {
            eprintln!("polder: error: cannot start the async runtime: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The client and the demo print answers; their log shows only what went wrong.
    let default_level = match cli.command {
        // The shell reports what went wrong itself, once (a peer it cannot reach, a query's
        // error); warnings logged as well would say it twice.
        Command::Sql(_) => "error",
        Command::Demo(_) | Command::Token(_) | Command::Audit(_) => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("POLDER_LOG").unwrap_or_else(|_| EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let result = match cli.command {
        Command::Serve(args) => startup::serve(args).await,
        Command::DemoData(args) => demo_data(&args.out),
        Command::Sql(args) => sql::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Token(command) => token::run(command),
        Command::Audit(command) => token::audit(command),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("polder: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

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
