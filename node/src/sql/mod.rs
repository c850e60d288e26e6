//! `polder sql`: the analyst's client. Each node of a federation is a SQL catalog; a query
//! runs here as a DataFusion plan whose single-node parts run on their nodes.
//!
//! - [`script`]: statements and meta-commands, with their lines, out of SQL text.
//! - [`session`]: running them: statements, meta-commands (`meta`), timing, output.
//! - [`shell`]: the interactive shell (history, Ctrl-C).
//! - [`nodes`]: which catalogs of each node the session federates.
//! - [`errors`]: how errors are worded; [`output`], [`progress`]: answers and progress.

mod errors;
mod geoparquet;
mod meta;
mod nodes;
mod output;
mod progress;
mod script;
mod session;
mod shell;

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::dml::CopyTo;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParserBuilder;
use datafusion::sql::sqlparser::dialect::GenericDialect;
use futures::StreamExt;
use polder_federation::{BearerToken, FederatedSession, FederationOptions, Manifest, PeerConfig};

pub use self::output::Output;
use self::progress::Progress;
use self::session::Session;
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
    if args.format == OutputFormat::Parquet && args.output.is_none() {
        bail!("--format parquet writes a file: give it with --output FILE");
    }
    let options = FederationOptions {
        peer_timeout: args.peer_timeout,
        pushdown: args.pushdown,
        compression: args.compression,
        bearer_token: args.token.clone().map(BearerToken),
        tls_ca: args.tls_ca.clone(),
        ..FederationOptions::default()
    };
    let peers = nodes::expand(peers, &options).await;
    let (ctx, federation) = client_session(&peers, &options).await?;
    for err in &federation.unavailable {
        eprintln!("polder: warning: {err}");
    }
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
    let out = Output::new(args.format, args.output.as_deref(), args.max_rows)?;
    let session = Arc::new(tokio::sync::Mutex::new(Session::new(
        ctx,
        &federation,
        out,
        &args,
    )));
    let (result, cancelled) = match script {
        Some(script) => (
            session.lock().await.run_script(&script, args.bail).await,
            false,
        ),
        None => match shell::run(Arc::clone(&session)).await {
            Ok(cancelled) => (Ok(()), cancelled),
            Err(err) => (Err(err), false),
        },
    };
    let finished = match session.try_lock() {
        Ok(mut session) => Some(session.finish()),
        Err(_) => None,
    };
    if cancelled || finished.is_none() {
        // A cancelled query may still be computing on a thread of the runtime (an operator
        // stops between batches), and the runtime waits for it on the way out: leave without
        // waiting. Answers were flushed as they ended.
        let code = match result.and(finished.unwrap_or(Ok(()))) {
            Ok(()) => 0,
            Err(err) => {
                eprintln!("polder: error: {}", errors::chain(&err));
                1
            }
        };
        let _ = std::io::Write::flush(&mut std::io::stdout());
        std::process::exit(code);
    }
    let finished = finished.unwrap_or(Ok(()));
    match result.and(finished) {
        Ok(()) => Ok(()),
        Err(err) => {
            // A Parquet or Arrow file without its footer is unreadable: leave none.
            if let (OutputFormat::Parquet | OutputFormat::Arrow, Some(path)) =
                (args.format, &args.output)
            {
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
    let state =
        polder_spatial::register(polder_federation::session_state(config, runtime, options));
    let ctx = SessionContext::new_with_state(polder_flight_sql::bounded::bound_functions(state));
    let federation = FederatedSession::register(&ctx, peers, options).await?;
    Ok((ctx, federation))
}

/// Runs every statement of `script` in order; stops at the first failure (`polder demo`).
pub async fn run_script(
    ctx: &SessionContext,
    script: &str,
    out: &mut Output,
) -> anyhow::Result<()> {
    for item in script::split(script) {
        if let script::Item::Sql { text, .. } = item {
            for plan in plan_statements(ctx, &text).await? {
                let stream = execute(ctx, plan.clone())
                    .await
                    .map_err(|e| errors::explain(ctx, &text, e))?;
                if prints(&plan) {
                    write_stream(ctx, &text, stream, out, &Progress::start(&[])).await?;
                } else {
                    drain(ctx, &text, stream).await?;
                }
            }
        }
    }
    Ok(())
}

/// The plans of the statements in `sql`.
async fn plan_statements(ctx: &SessionContext, sql: &str) -> anyhow::Result<Vec<LogicalPlan>> {
    let statements = DFParserBuilder::new(sql)
        .with_dialect(&GenericDialect {})
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(|e| errors::explain(ctx, sql, e))?;
    let mut plans = Vec::with_capacity(statements.len());
    for statement in statements {
        plans.push(
            ctx.state()
                .statement_to_plan(statement)
                .await
                .map_err(|e| errors::explain(ctx, sql, e))?,
        );
    }
    Ok(plans)
}

/// Whether a plan has an answer to show (DDL, `SET` and DML have none).
fn prints(plan: &LogicalPlan) -> bool {
    !matches!(
        plan,
        LogicalPlan::Ddl(_) | LogicalPlan::Statement(_) | LogicalPlan::Dml(_)
    )
}

/// Starts a plan. `COPY (query) TO` is planned around its query: the query alone is optimized
/// (and so federated: the nodes run their parts), then written here.
async fn execute(
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> datafusion::error::Result<SendableRecordBatchStream> {
    let physical = match plan {
        LogicalPlan::Copy(copy) => {
            let state = ctx.state();
            let input = state.optimize(&copy.input)?;
            let plan = LogicalPlan::Copy(CopyTo {
                input: Arc::new(input),
                ..copy
            });
            state
                .query_planner()
                .create_physical_plan(&plan, &state)
                .await?
        }
        plan => {
            ctx.execute_logical_plan(plan)
                .await?
                .create_physical_plan()
                .await?
        }
    };
    let mut stream = execute_stream(physical, ctx.task_ctx())?;
    // Driven by a task of its own, stopped when the answer is dropped: whoever reads the
    // answer waits only for the next batch, never inside an operator's work, so dropping the
    // reader (Ctrl-C) takes effect at once.
    let mut driven = RecordBatchReceiverStream::builder(stream.schema(), 2);
    let sender = driven.tx();
    driven.spawn(async move {
        while let Some(batch) = stream.next().await {
            if sender.send(batch).await.is_err() {
                break;
            }
        }
        Ok(())
    });
    Ok(driven.build())
}

async fn drain(
    ctx: &SessionContext,
    sql: &str,
    mut stream: SendableRecordBatchStream,
) -> anyhow::Result<()> {
    while let Some(batch) = stream.next().await {
        batch.map_err(|e| errors::explain(ctx, sql, e))?;
    }
    Ok(())
}

async fn write_stream(
    ctx: &SessionContext,
    sql: &str,
    mut stream: SendableRecordBatchStream,
    out: &mut Output,
    progress: &Progress,
) -> anyhow::Result<()> {
    out.begin(stream.schema())?;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(|e| errors::explain(ctx, sql, e))?;
        progress.add(batch.num_rows());
        out.write(&batch)?;
    }
    out.end()
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
