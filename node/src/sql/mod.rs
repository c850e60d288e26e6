//! `polder sql`: the analyst's client. Each node of a federation is a SQL catalog; a query
//! runs here as a DataFusion plan whose single-node parts run on their nodes.

mod output;
mod progress;

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use futures::StreamExt;
use polder_federation::{BearerToken, FederatedSession, FederationOptions, Manifest, PeerConfig};

pub use self::output::Output;
use self::progress::Progress;
use crate::cli::{OutputFormat, SqlArgs};

/// The longest SQL script or statement accepted, in bytes.
const MAX_SCRIPT_BYTES: usize = 16 * 1024 * 1024;
/// Memory the client's own part of a query may use, in bytes; beyond it operators spill or
/// the query fails with ResourceExhausted.
const MEMORY_LIMIT_BYTES: usize = 4 * 1024 * 1024 * 1024;

/// Runs `polder sql`.
pub async fn run(args: SqlArgs) -> anyhow::Result<()> {
    let peers = peers_of(&args.nodes, args.federation.as_deref())?;
    if let Some(token) = &args.token
        && (token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()))
    {
        bail!("--token must be a bearer token: visible ASCII characters, no spaces");
    }
    let options = FederationOptions {
        peer_timeout: args.peer_timeout,
        pushdown: args.pushdown,
        bearer_token: args.token.clone().map(BearerToken),
        tls_ca: args.tls_ca.clone(),
        ..FederationOptions::default()
    };
    let (ctx, federation) = client_session(&peers, &options).await?;
    for err in &federation.unavailable {
        eprintln!("polder: warning: {err}");
    }
    if args.format == OutputFormat::Parquet && args.output.is_none() {
        bail!("--format parquet writes a file: give it with --output FILE");
    }
    let mut out = Output::new(args.format, args.output.as_deref(), args.max_rows)?;
    let script = match (&args.command, &args.file) {
        (Some(sql), _) => Some(sql.clone()),
        (None, Some(path)) => {
            Some(read_limited(File::open(path).with_context(|| {
                format!("cannot open the script {}", path.display())
            })?)?)
        }
        (None, None) if !std::io::stdin().is_terminal() => Some(read_limited(std::io::stdin())?),
        (None, None) => None,
    };
    let result = match script {
        Some(script) => run_script(&ctx, &script, &mut out).await,
        None => shell(&ctx, &mut out).await,
    };
    match result {
        Ok(()) => out.finish(),
        Err(err) => {
            // A Parquet file without its footer is unreadable: leave none rather than that.
            if let (OutputFormat::Parquet, Some(path)) = (args.format, &args.output) {
                let _ = std::fs::remove_file(path);
            }
            Err(err)
        }
    }
}

/// The peers named by `--node` flags and a `--federation` manifest; a flag replaces a manifest
/// entry of the same name.
pub fn peers_of(flags: &[String], manifest: Option<&Path>) -> anyhow::Result<Vec<PeerConfig>> {
    let mut peers = match manifest {
        Some(path) => Manifest::load(path).map_err(anyhow::Error::msg)?.nodes,
        None => vec![],
    };
    for spec in flags {
        let peer =
            PeerConfig::parse_flag(spec).map_err(|e| anyhow::anyhow!("invalid --node: {e}"))?;
        crate::startup::set_peer(&mut peers, peer);
    }
    if peers.is_empty() {
        bail!("no nodes to query: give --node NAME=URL (repeatable) or --federation FILE");
    }
    polder_federation::config::check_peers(&peers).map_err(anyhow::Error::msg)?;
    Ok(peers)
}

/// A client session with every peer as a catalog. Session-local views and tables go to the
/// default catalog `datafusion.public`.
pub async fn client_session(
    peers: &[PeerConfig],
    options: &FederationOptions,
) -> anyhow::Result<(SessionContext, FederatedSession)> {
    let config = polder_flight_sql::session_config().with_information_schema(true);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(MEMORY_LIMIT_BYTES, 1.0)
        .build_arc()?;
    let state = polder_federation::session_state(config, runtime, options);
    let ctx = SessionContext::new_with_state(polder_flight_sql::bounded::bound_functions(state));
    let federation = FederatedSession::register(&ctx, peers, options).await?;
    Ok((ctx, federation))
}

/// Runs every statement of `script` in order; stops at the first failure.
pub async fn run_script(
    ctx: &SessionContext,
    script: &str,
    out: &mut Output,
) -> anyhow::Result<()> {
    let statements = DFParserBuilder::new(script)
        .with_dialect(&GenericDialect {})
        .build()?
        .parse_statements()
        .map_err(|e| anyhow::anyhow!("invalid_request: {e}"))?;
    for statement in statements {
        let plan = ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(explain_error)?;
        run_plan(ctx, plan, out).await?;
    }
    Ok(())
}

async fn run_plan(ctx: &SessionContext, plan: LogicalPlan, out: &mut Output) -> anyhow::Result<()> {
    let prints = !matches!(
        plan,
        LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) | LogicalPlan::Dml(_)
    );
    let df = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(explain_error)?;
    let mut stream = df.execute_stream().await.map_err(explain_error)?;
    if !prints {
        while let Some(batch) = stream.next().await {
            batch.map_err(explain_error)?;
        }
        return Ok(());
    }
    let progress = Progress::start();
    out.begin(stream.schema())?;
    let result = async {
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(explain_error)?;
            progress.add(batch.num_rows());
            out.write(&batch)?;
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    progress.stop();
    result?;
    out.end()
}

/// An error as the node would report it: its kind, then what happened.
fn explain_error(err: datafusion::error::DataFusionError) -> anyhow::Error {
    let err = polder_flight_sql::Error::from_datafusion(err);
    anyhow::anyhow!("{}: {err}", err.code())
}

fn read_limited(reader: impl Read) -> anyhow::Result<String> {
    let mut text = String::new();
    reader
        .take(MAX_SCRIPT_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .context("cannot read the SQL")?;
    if text.len() > MAX_SCRIPT_BYTES {
        bail!("the SQL is longer than {MAX_SCRIPT_BYTES} bytes");
    }
    Ok(text)
}

/// The interactive shell: statements end with `;` and may span lines; `\q` quits.
async fn shell(ctx: &SessionContext, out: &mut Output) -> anyhow::Result<()> {
    let mut editor = rustyline::DefaultEditor::new()?;
    let history = std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".polder_history"));
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    eprintln!("polder sql: statements end with ';'. \\q quits.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "polder> "
        } else {
            "     -> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() && matches!(trimmed, "\\q" | "quit" | "exit") {
                    break;
                }
                if trimmed.is_empty() && buffer.is_empty() {
                    continue;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if trimmed.ends_with(';') {
                    let _ = editor.add_history_entry(buffer.trim());
                    if let Err(err) = run_script(ctx, &buffer, out).await {
                        eprintln!("error: {err:#}");
                    }
                    buffer.clear();
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => buffer.clear(),
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(err) => return Err(err.into()),
        }
    }
    if let Some(path) = &history {
        let _ = editor.save_history(path);
    }
    Ok(())
}

