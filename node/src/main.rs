//! The `polder` binary: parses arguments, sets up logging and the async runtime, and hands
//! over to the library ([`polder_node::run`]).

use polder_node::cli::{Cli, Command};
use polder_node::telemetry::{LogFormat, TelemetrySettings};
use polder_node::{SPARQL_WORKER, WORKER_STACK_BYTES};

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
    // A node's telemetry needs its name and `[telemetry]`: its configuration is read here,
    // once, and the node started from it.
    let (settings, config) = match &cli.command {
        Command::Serve(args) => match polder_node::startup::effective_config(args) {
            Ok(config) => (
                TelemetrySettings {
                    log_format: args.log_format,
                    default_level,
                    node: Some((config.node.name.clone(), config.telemetry.clone())),
                },
                Some(config),
            ),
            Err(err) => return failure(&err),
        },
        _ => (
            TelemetrySettings {
                log_format: LogFormat::Text,
                default_level,
                node: None,
            },
            None,
        ),
    };
    let telemetry = match polder_node::telemetry::install_global(&settings) {
        Ok(telemetry) => telemetry,
        Err(err) => return failure(&err),
    };
    let result = match config {
        Some(config) => polder_node::startup::serve(config).await,
        None => polder_node::run(cli.command).await,
    };
    // What is still queued is exported (within the exporters' timeouts), off the runtime.
    if telemetry.is_exporting() {
        let _ = tokio::task::spawn_blocking(|| telemetry.shutdown()).await;
    }
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => failure(&err),
    }
}

fn failure(err: &anyhow::Error) -> std::process::ExitCode {
    eprintln!("polder: error: {err:#}");
    std::process::ExitCode::FAILURE
}
