//! The `polder` binary: parses arguments, sets up logging and the async runtime, and hands
//! over to the library ([`polder_node::run`]).

use polder_node::cli::{Cli, Command};
use polder_node::{SPARQL_WORKER, WORKER_STACK_BYTES};
use tracing_subscriber::EnvFilter;

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
    let cli = Cli::parse_args();
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
    match polder_node::run(cli.command).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("polder: error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
