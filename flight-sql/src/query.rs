//! Read-only SQL planning and streaming execution with explicit limits.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, SessionState};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{SQLOptions, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{SetExpr, Statement as SqlStatement};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
use futures::{Stream, StreamExt};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tracing::instrument;

use crate::error::{Error, Result};

/// Limits on what one query may use.
#[derive(Debug, Clone)]
pub struct QueryLimits {
    /// Longest SQL text accepted, in bytes.
    pub max_query_bytes: usize,
    /// Wall-clock time from planning to the last batch.
    pub timeout: Duration,
    /// Queries running at once; further queries wait up to `queue_timeout` for a slot.
    pub max_concurrent: usize,
    /// How long a query waits for a slot before it is refused.
    pub queue_timeout: Duration,
    /// Most parameter rows bound to one prepared statement.
    pub max_parameter_rows: usize,
    /// Deepest nesting of expressions, subqueries and set operations in a statement (see
    /// [`crate::depth`]).
    pub max_query_depth: usize,
}

impl Default for QueryLimits {
    fn default() -> Self {
        Self {
            max_query_bytes: 256 * 1024,
            timeout: Duration::from_secs(300),
            max_concurrent: 16,
            queue_timeout: Duration::from_secs(30),
            max_parameter_rows: 10_000,
            max_query_depth: 256,
        }
    }
}

/// Stack each thread of the [`QueryRuntime`] gets per byte of the longest SQL text accepted.
///
/// A statement deeper than the depth limit is refused, but the parser has already built its
/// tree, and dropping that tree recurses once per level; a chain of binary operators costs two
/// bytes of SQL per level. 256 bytes of stack per byte of SQL leaves room for the deepest tree
/// the longest statement can build, and for planning statements within the depth limit.
const STACK_PER_QUERY_BYTE: usize = 256;
/// Least and most stack of a query runtime thread (only the pages a thread touches are used).
const STACK_BYTES: std::ops::RangeInclusive<usize> = (16 << 20)..=(1 << 30);

/// The runtime statements are parsed and planned on and plans execute on (see
/// [`QueryEngine::with_executor`]), one worker thread per core, each with a stack sized for
/// the longest statement the limits accept. It shuts down without waiting when dropped, which
/// may happen inside another runtime (where dropping a plain `Runtime` panics).
#[derive(Debug)]
pub struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    /// Starts the runtime for statements within `limits`; its threads are named
    /// `polder-query`.
    pub fn new(limits: &QueryLimits) -> std::io::Result<Self> {
        let stack = limits
            .max_query_bytes
            .saturating_mul(STACK_PER_QUERY_BYTE)
            .clamp(*STACK_BYTES.start(), *STACK_BYTES.end());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("polder-query")
            .thread_stack_size(stack)
            .enable_all()
            .build()?;
        Ok(Self(Some(runtime)))
    }

    /// A handle to spawn on it.
    pub fn handle(&self) -> tokio::runtime::Handle {
        self.0
            .as_ref()
            .expect("present until dropped")
            .handle()
            .clone()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Chooses the session each request is planned against. A node with an access policy gives
/// every caller a session holding only what that caller may see; the identity comes from the
/// request's extensions, put there by the authentication layer in front of the service.
#[tonic::async_trait]
pub trait RequestSessions: Send + Sync + std::fmt::Debug + 'static {
    /// The session for a request with `extensions`, derived from the node's `base` session,
    /// and where to record what the request's query releases. It may ask other nodes (what a
    /// federation peer lists for the caller), so it is async.
    async fn session(
        &self,
        base: &SessionContext,
        extensions: &tonic::Extensions,
    ) -> Result<(SessionContext, Option<Arc<dyn QueryAudit>>)>;
}

/// Records what one request's query does (an audit log): called by [`QueryEngine::run`].
///
/// The methods may block on I/O (a durable write): the engine calls them on Tokio's blocking
/// pool, never on a thread that serves requests.
pub trait QueryAudit: Send + Sync + std::fmt::Debug {
    /// Planning refused the statement.
    fn refused(&self, sql: &str, error: &Error);
    /// The statement is planned and about to run; an error refuses it before any row is sent.
    fn started(&self, sql: &str) -> Result<()>;
    /// The result ended: all rows sent, failed, or abandoned by the client (`error` says which).
    fn finished(&self, rows: u64, error: Option<&Error>);
}

/// Plans and runs read-only SQL against the node's session.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    limits: QueryLimits,
    slots: Arc<Semaphore>,
    executor: Option<tokio::runtime::Handle>,
    sessions: Option<Arc<dyn RequestSessions>>,
    audit: Option<Arc<dyn QueryAudit>>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine")
            .field("session_id", &self.ctx.session_id())
            .field("limits", &self.limits)
            .finish()
    }
}

impl QueryEngine {
    /// An engine over `ctx` with `limits`.
    pub fn new(ctx: SessionContext, limits: QueryLimits) -> Self {
        let slots = Arc::new(Semaphore::new(limits.max_concurrent.max(1)));
        Self {
            ctx,
            limits,
            slots,
            executor: None,
            sessions: None,
            audit: None,
        }
    }

    /// Plans each request against the session `sessions` chooses for it (see
    /// [`QueryEngine::for_request`]).
    pub fn with_sessions(mut self, sessions: Arc<dyn RequestSessions>) -> Self {
        self.sessions = Some(sessions);
        self
    }

    /// The engine for one request: the same limits, query slots and executor, over the session
    /// chosen for the request's caller.
    pub async fn for_request(&self, extensions: &tonic::Extensions) -> Result<QueryEngine> {
        let Some(sessions) = &self.sessions else {
            return Ok(self.clone());
        };
        let (ctx, audit) = sessions.session(&self.ctx, extensions).await?;
        Ok(QueryEngine {
            ctx,
            audit,
            ..self.clone()
        })
    }

    /// Plans `sql` as [`QueryEngine::plan`] does; a statement refused while planning is
    /// recorded in the request's audit.
    pub async fn plan_audited(&self, sql: &str) -> Result<LogicalPlan> {
        let planned = match self.admit().await {
            Ok(slot) => self.plan_in(sql, &slot).await,
            Err(err) => Err(err),
        };
        self.audit_refusal(sql, &planned).await;
        planned
    }

    async fn audit_refusal<T>(&self, sql: &str, outcome: &Result<T>) {
        if let (Err(err), Some(audit)) = (outcome, &self.audit) {
            let (audit, sql, err) = (Arc::clone(audit), sql.to_string(), err.clone());
            // A write that fails is logged by the audit; the refusal stands either way.
            let _ = blocking(move || audit.refused(&sql, &err)).await;
        }
    }

    /// Plans and runs `sql` (once per parameter row), recording it in the request's audit:
    /// a refusal, the start (whose failure refuses the query) and the end with the rows sent.
    /// Planning and running hold one query slot and share one deadline.
    pub async fn run(
        &self,
        sql: &str,
        params: Vec<RecordBatch>,
    ) -> Result<SendableRecordBatchStream> {
        let planned = match self.admit().await {
            Ok(slot) => self.plan_in(sql, &slot).await.map(|plan| (plan, slot)),
            Err(err) => Err(err),
        };
        self.audit_refusal(sql, &planned).await;
        let (plan, slot) = planned?;
        let Some(audit) = self.audit.clone() else {
            return self.execute_in(plan, params, slot).await;
        };
        let (started, statement) = (Arc::clone(&audit), sql.to_string());
        blocking(move || started.started(&statement)).await??;
        let stream = match self.execute_in(plan, params, slot).await {
            Ok(stream) => stream,
            Err(err) => {
                let (audit, failure) = (Arc::clone(&audit), err.clone());
                let _ = blocking(move || audit.finished(0, Some(&failure))).await;
                return Err(err);
            }
        };
        Ok(Box::pin(AuditedStream {
            schema: stream.schema(),
            inner: stream,
            audit: Some(audit),
            rows: 0,
        }))
    }

    /// Runs query plans on `executor`, a runtime of their own, instead of the caller's.
    ///
    /// DataFusion's operators are CPU-bound: on the runtime that also serves gRPC they can
    /// take every worker thread, and then nothing else runs, not even the timers that end
    /// queries at their deadline. On a dedicated runtime they compete only with each other;
    /// requests, timeouts and health checks stay responsive.
    pub fn with_executor(mut self, executor: tokio::runtime::Handle) -> Self {
        self.executor = Some(executor);
        self
    }

    /// The session the engine plans against.
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The engine's limits.
    pub fn limits(&self) -> &QueryLimits {
        &self.limits
    }

    /// Parses and plans `sql`, refusing anything that is not a read-only query.
    ///
    /// Positional `?` placeholders (as JDBC, ODBC and ADBC clients send them) are numbered
    /// `$1, $2, ...` in order of appearance before planning. Planning takes a query slot and
    /// runs within the query timeout, on the executor when there is one.
    pub async fn plan(&self, sql: &str) -> Result<LogicalPlan> {
        let slot = self.admit().await?;
        self.plan_in(sql, &slot).await
    }

    /// Waits for a query slot (up to the queue timeout); the slot's deadline starts now.
    async fn admit(&self) -> Result<Slot> {
        let permit = tokio::time::timeout(
            self.limits.queue_timeout,
            Arc::clone(&self.slots).acquire_owned(),
        )
        .await
        .map_err(|_| {
            Error::ResourceExhausted(format!(
                "the node is running {} queries already; try again later",
                self.limits.max_concurrent
            ))
        })?
        .map_err(|_| Error::Internal("query slots closed".into()))?;
        Ok(Slot {
            permit: Arc::new(permit),
            deadline: tokio::time::Instant::now() + self.limits.timeout,
        })
    }

    /// Plans `sql` within `slot`: on the executor, whose threads have stacks for the deepest
    /// statement the limits accept, and stopped at the slot's deadline.
    async fn plan_in(&self, sql: &str, slot: &Slot) -> Result<LogicalPlan> {
        let (ctx, limits, sql) = (self.ctx.clone(), self.limits.clone(), sql.to_string());
        let permit = Arc::clone(&slot.permit);
        let work = async move {
            // The slot stays taken until planning really ends, also after a timeout.
            let _permit = permit;
            plan_statement(&ctx, &limits, &sql).await
        };
        self.on_executor(work, slot.deadline, "planning").await
    }

    /// Runs `work` on the executor (inline without one) until `deadline`, then aborts it.
    async fn on_executor<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T>> + Send + 'static,
        deadline: tokio::time::Instant,
        what: &str,
    ) -> Result<T> {
        let timeout = self.limits.timeout;
        let late = || {
            Error::Timeout(format!(
                "query exceeded the node's timeout of {timeout:?} while {what}"
            ))
        };
        match &self.executor {
            None => tokio::time::timeout_at(deadline, work)
                .await
                .map_err(|_| late())?,
            Some(executor) => {
                let task = AbortOnDrop(executor.spawn(work));
                tokio::time::timeout_at(deadline, task)
                    .await
                    .map_err(|_| late())?
            }
        }
    }

    /// Runs `plan` once per parameter row (once when `params` is empty) and streams the results.
    #[instrument(skip_all)]
    pub async fn execute(
        &self,
        plan: LogicalPlan,
        params: Vec<RecordBatch>,
    ) -> Result<SendableRecordBatchStream> {
        let slot = self.admit().await?;
        self.execute_in(plan, params, slot).await
    }

    /// Runs `plan` within `slot`, which the result stream holds until it ends.
    async fn execute_in(
        &self,
        plan: LogicalPlan,
        params: Vec<RecordBatch>,
        slot: Slot,
    ) -> Result<SendableRecordBatchStream> {
        let explains = matches!(plan, LogicalPlan::Explain(_) | LogicalPlan::Analyze(_));
        let rows = parameter_rows(&params, self.limits.max_parameter_rows)?;
        let plans = if rows.is_empty() {
            vec![plan]
        } else {
            rows.into_iter()
                .map(|values| plan.clone().with_param_values(values))
                .collect::<Result<Vec<_>, _>>()?
        };
        // The schema of the bound plan: a parameter nothing else gives a type (`SELECT ? AS x`)
        // takes the type of the value bound to it. Analyzed: see `crate::workarounds`.
        let schema = crate::workarounds::answer_schema(&self.ctx.state(), &plans[0]);
        let ctx = self.ctx.clone();
        let output_schema = Arc::clone(&schema);
        let start = async move {
            let state = ctx.state();
            let mut streams = Vec::with_capacity(plans.len());
            for plan in plans {
                let physical = cooperative(state.create_physical_plan(&plan).await?)?;
                crate::workarounds::check_answer_types(&output_schema, &physical.schema())?;
                streams.push(execute_stream(physical, ctx.task_ctx())?);
            }
            let mut stream: SendableRecordBatchStream = if streams.len() == 1 {
                streams.pop().expect("one stream")
            } else {
                Box::pin(
                    datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
                        output_schema,
                        futures::stream::iter(streams).flatten(),
                    ),
                )
            };
            if explains {
                stream = crate::explain::without_paths(stream);
            }
            // Gathered where the plan runs, before the hand-over, so that batches are gathered
            // from what the plan has ready, not from what the channel holds.
            Ok::<_, Error>(crate::coalesce::coalesced(
                stream,
                state.config().batch_size(),
            ))
        };
        let stream = self.on_executor(start, slot.deadline, "planning").await?;
        let inner = match &self.executor {
            None => stream,
            Some(executor) => forward(executor, Arc::clone(&schema), stream),
        };
        Ok(Box::pin(LimitedStream {
            schema,
            inner,
            deadline: Box::pin(tokio::time::sleep_until(slot.deadline)),
            timeout: self.limits.timeout,
            permit: Some(slot.permit),
        }))
    }
}

/// A query slot: taken from the node's concurrent-query limit, with the deadline of the
/// statement it admits. Planning and execution share it.
#[derive(Debug)]
struct Slot {
    permit: Arc<OwnedSemaphorePermit>,
    deadline: tokio::time::Instant,
}

/// Parses `sql`, bounds its depth and plans it, refusing anything that is not a read-only
/// query. Runs where the stack is sized for the limits (see [`QueryRuntime`]).
#[instrument(skip_all, fields(sql_bytes = sql.len()))]
async fn plan_statement(
    ctx: &SessionContext,
    limits: &QueryLimits,
    sql: &str,
) -> Result<LogicalPlan> {
    if sql.len() > limits.max_query_bytes {
        return Err(Error::InvalidRequest(format!(
            "query is {} bytes long; this node accepts at most {} bytes",
            sql.len(),
            limits.max_query_bytes
        )));
    }
    if sql.trim().is_empty() {
        return Err(Error::InvalidRequest("query is empty".into()));
    }
    let sql = number_positional_placeholders(sql)?;
    let state = ctx.state();
    let options = state.config().options();
    let dialect = options.sql_parser.dialect;
    let statement =
        state
            .sql_to_statement(&sql, &dialect)
            .map_err(|err| match err.find_root() {
                DataFusionError::SQL(parse, _)
                    if matches!(parse.as_ref(), ParserError::RecursionLimitExceeded) =>
                {
                    crate::depth::too_deep(options.sql_parser.recursion_limit.get())
                }
                _ => Error::from_datafusion(err),
            })?;
    crate::depth::check_depth(&statement, limits.max_query_depth)?;
    check_read_only(&statement)?;
    let plan = state.statement_to_plan(statement).await?;
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
        .verify_plan(&plan)
        .map_err(|e| Error::Forbidden(format!("the node is read-only: {}", e.message())))?;
    Ok(plan)
}

/// The schema of `plan`'s answer with the first row of `params` bound (as it is without
/// parameters): what `GetFlightInfo` of a prepared statement with bound parameters states.
/// Analyzed in `state`: see [`crate::workarounds::answer_schema`].
pub fn bound_schema(
    state: &SessionState,
    plan: &LogicalPlan,
    params: &[RecordBatch],
) -> Result<SchemaRef> {
    let first = params
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.slice(0, 1));
    let schema = match parameter_rows(first.as_slice(), 1)?.pop() {
        Some(values) => {
            crate::workarounds::answer_schema(state, &plan.clone().with_param_values(values)?)
        }
        None => crate::workarounds::answer_schema(state, plan),
    };
    Ok(schema)
}

/// The parameters a planned statement expects, as a schema with one field per placeholder
/// (`$1`, `$2`, ... in order); a type the planner could not infer is `Null`.
pub fn parameter_schema(plan: &LogicalPlan) -> Result<Schema> {
    let mut fields: Vec<(String, Option<DataType>)> =
        plan.get_parameter_types()?.into_iter().collect();
    fields.sort_by_key(|(name, _)| placeholder_index(name).unwrap_or(usize::MAX));
    Ok(Schema::new(
        fields
            .into_iter()
            .map(|(name, ty)| Field::new(name, ty.unwrap_or(DataType::Null), true))
            .collect::<Vec<_>>(),
    ))
}

fn placeholder_index(name: &str) -> Option<usize> {
    name.strip_prefix('$')?.parse().ok()
}

/// Turns bound parameter batches into one list of values per row.
fn parameter_rows(batches: &[RecordBatch], max_rows: usize) -> Result<Vec<ParamValues>> {
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    if total > max_rows {
        return Err(Error::ResourceExhausted(format!(
            "{total} parameter rows bound; this node accepts at most {max_rows}"
        )));
    }
    let mut rows = Vec::with_capacity(total);
    for batch in batches {
        for row in 0..batch.num_rows() {
            let values = batch
                .columns()
                .iter()
                .map(|column| ScalarValue::try_from_array(column, row))
                .collect::<Result<Vec<_>, DataFusionError>>()?;
            rows.push(ParamValues::from(values));
        }
    }
    Ok(rows)
}

/// Rewrites positional `?` placeholders to `$1, $2, ...`; `?` inside literals and comments is
/// left alone because the tokenizer sees those as one token.
fn number_positional_placeholders(sql: &str) -> Result<String> {
    if !sql.contains('?') {
        return Ok(sql.to_string());
    }
    let tokens = Tokenizer::new(&GenericDialect {}, sql)
        .tokenize()
        .map_err(|e| Error::InvalidRequest(format!("SQL error: {e}")))?;
    let mut next = 0;
    let mut out = String::with_capacity(sql.len() + 8);
    for token in tokens {
        match token {
            Token::Placeholder(p) if p == "?" => {
                next += 1;
                out.push_str(&format!("${next}"));
            }
            other => out.push_str(&other.to_string()),
        }
    }
    Ok(out)
}

/// Refuses every statement that is not a query: the node is read-only.
fn check_read_only(statement: &DFStatement) -> Result<()> {
    let refuse = |what: &str| {
        Err(Error::Forbidden(format!(
            "the node is read-only: {what} statements are not allowed"
        )))
    };
    match statement {
        DFStatement::Statement(inner) => match inner.as_ref() {
            SqlStatement::Query(query) => match writes(&query.body) {
                Some(kind) => refuse(kind),
                None => Ok(()),
            },
            SqlStatement::ShowTables { .. } | SqlStatement::ShowColumns { .. } => Ok(()),
            SqlStatement::Explain { statement, .. } => {
                check_read_only(&DFStatement::Statement(statement.clone()))
            }
            other => refuse(&statement_kind(&other.to_string())),
        },
        DFStatement::Explain(explain) => check_read_only(&explain.statement),
        DFStatement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE"),
        DFStatement::CopyTo(_) => refuse("COPY"),
        DFStatement::Reset(_) => refuse("RESET"),
    }
}

/// The kind of write a query body holds (`WITH ... INSERT ...` is a query whose body is an
/// insert), without recursion: a chain of set operations may be long.
fn writes(body: &SetExpr) -> Option<&'static str> {
    let mut pending = vec![body];
    while let Some(node) = pending.pop() {
        match node {
            SetExpr::Insert(_) => return Some("INSERT"),
            SetExpr::Update(_) => return Some("UPDATE"),
            SetExpr::Delete(_) => return Some("DELETE"),
            SetExpr::Merge(_) => return Some("MERGE"),
            SetExpr::Query(query) => pending.push(&query.body),
            SetExpr::SetOperation { left, right, .. } => {
                pending.push(left);
                pending.push(right);
            }
            SetExpr::Select(_) | SetExpr::Values(_) | SetExpr::Table(_) => {}
        }
    }
    None
}

/// The leading keywords of a statement, for error messages (never its literals).
fn statement_kind(text: &str) -> String {
    let mut words = text.split_whitespace();
    let first = words.next().unwrap_or("").to_uppercase();
    match first.as_str() {
        "CREATE" | "DROP" | "ALTER" | "TRUNCATE" => {
            let second = words.next().unwrap_or("").to_uppercase();
            format!("{first} {second}").trim().to_string()
        }
        _ => first,
    }
}

/// Makes every operator of `plan` yield to the scheduler when its task has used up its
/// budget, not only the leaves (DataFusion's own rule). A join can produce batch after batch
/// without polling its inputs; without a yield point in between, a query past its deadline
/// could not be aborted and would keep its worker thread until it finished.
fn cooperative(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    Ok(plan
        .transform_up(|node| {
            if node.children().is_empty() || node.is::<CooperativeExec>() {
                return Ok(Transformed::no(node));
            }
            Ok(Transformed::yes(
                Arc::new(CooperativeExec::new(node)) as Arc<dyn ExecutionPlan>
            ))
        })?
        .data)
}

/// Polls `stream` on `executor` and hands its batches over through a small channel, so the
/// plan's work runs there. Dropping the returned stream aborts the task, which drops the plan
/// and cancels its operators.
fn forward(
    executor: &tokio::runtime::Handle,
    schema: SchemaRef,
    mut stream: SendableRecordBatchStream,
) -> SendableRecordBatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    let task = executor.spawn(async move {
        while let Some(item) = stream.next().await {
            if tx.send(item).await.is_err() {
                break; // the client is gone or the deadline passed
            }
        }
    });
    let batches = futures::stream::unfold((rx, AbortOnDrop(task)), |(mut rx, task)| async move {
        rx.recv().await.map(|item| (item, (rx, task)))
    });
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, batches))
}

/// A task that is aborted when its handle is dropped; awaiting it gives the task's output.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> Future for AbortOnDrop<Result<T>> {
    type Output = Result<T>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A panic is the task's failure, reported as the node's fault; the node serves on.
        Pin::new(&mut self.0).poll(cx).map(|joined| {
            joined.unwrap_or_else(|err| Err(Error::Internal(format!("query task failed: {err}"))))
        })
    }
}

/// A result stream that ends with a timeout error at its deadline and holds a query slot until
/// it is dropped.
struct LimitedStream {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    deadline: Pin<Box<Sleep>>,
    timeout: Duration,
    permit: Option<Arc<OwnedSemaphorePermit>>,
}

impl Stream for LimitedStream {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.permit.is_none() {
            return Poll::Ready(None);
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            // Drop the plan now, which cancels its tasks, rather than when the client goes.
            self.inner = Box::pin(
                datafusion::physical_plan::stream::EmptyRecordBatchStream::new(Arc::clone(
                    &self.schema,
                )),
            );
            self.permit = None;
            let timeout = self.timeout;
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(
                Error::Timeout(format!("query exceeded the node's timeout of {timeout:?}")),
            )))));
        }
        let next = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(None) = next {
            self.permit = None;
        }
        next
    }
}

/// Counts the rows a result sends and reports its end to the audit exactly once.
struct AuditedStream {
    schema: SchemaRef,
    inner: SendableRecordBatchStream,
    audit: Option<Arc<dyn QueryAudit>>,
    rows: u64,
}

impl Stream for AuditedStream {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(batch))) => self.rows += batch.num_rows() as u64,
            Poll::Ready(Some(Err(err))) => {
                // Ours (a timeout, a peer's refusal) keeps its kind; the rest is reported as is.
                let err = match err.find_root() {
                    DataFusionError::External(inner) => inner.downcast_ref::<Error>().cloned(),
                    _ => None,
                }
                .unwrap_or_else(|| Error::Internal(err.strip_backtrace()));
                if let Some(audit) = self.audit.take() {
                    let rows = self.rows;
                    in_background(move || audit.finished(rows, Some(&err)));
                }
            }
            Poll::Ready(None) => {
                if let Some(audit) = self.audit.take() {
                    let rows = self.rows;
                    in_background(move || audit.finished(rows, None));
                }
            }
            Poll::Pending => {}
        }
        next
    }
}

impl Drop for AuditedStream {
    fn drop(&mut self) {
        if let Some(audit) = self.audit.take() {
            let rows = self.rows;
            in_background(move || {
                audit.finished(
                    rows,
                    Some(&Error::InvalidRequest(
                        "the client stopped reading the result".into(),
                    )),
                )
            });
        }
    }
}

/// Runs blocking `work` (an audit write) on Tokio's blocking pool and waits for it without
/// holding up the request threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    match tokio::task::spawn_blocking(work).await {
        Ok(value) => Ok(value),
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(Error::Upstream("the node is shutting down".into())),
    }
}

/// Runs blocking `work` on Tokio's blocking pool without waiting for it (from a stream's poll
/// or drop, which cannot wait); inline where there is no runtime.
fn in_background(work: impl FnOnce() + Send + 'static) {
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(work);
        }
        Err(_) => work(),
    }
}

impl datafusion::physical_plan::RecordBatchStream for AuditedStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

impl datafusion::physical_plan::RecordBatchStream for LimitedStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_question_marks_outside_literals() {
        assert_eq!(
            number_positional_placeholders("SELECT '?' AS q, a FROM t WHERE a > ? AND b = ?")
                .unwrap(),
            "SELECT '?' AS q, a FROM t WHERE a > $1 AND b = $2"
        );
        assert_eq!(
            number_positional_placeholders("SELECT 1").unwrap(),
            "SELECT 1"
        );
    }

    async fn engine() -> QueryEngine {
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_information_schema(true),
        );
        ctx.sql("CREATE TABLE t(a BIGINT, b VARCHAR) AS VALUES (1, 'x'), (2, 'y'), (3, 'z')")
            .await
            .unwrap();
        QueryEngine::new(ctx, QueryLimits::default())
    }

    #[tokio::test]
    async fn refuses_writes_and_ddl() {
        let engine = engine().await;
        for sql in [
            "INSERT INTO t VALUES (4, 'w')",
            "CREATE TABLE u(a INT)",
            "DROP TABLE t",
            "CREATE EXTERNAL TABLE e STORED AS CSV LOCATION '/etc/passwd'",
            "COPY t TO '/tmp/out.csv'",
            "SET datafusion.execution.batch_size = 1",
            "EXPLAIN INSERT INTO t VALUES (4, 'w')",
            "CREATE VIEW v AS SELECT 1",
            "WITH x AS (SELECT 4 AS a, 'w' AS b) INSERT INTO t SELECT * FROM x",
            "WITH x AS (SELECT 1) UPDATE t SET a = 5",
            "WITH x AS (SELECT 1) DELETE FROM t",
        ] {
            let err = engine.plan(sql).await.unwrap_err();
            assert!(matches!(err, Error::Forbidden(_)), "{sql}: {err:?}");
        }
        assert!(engine.plan("EXPLAIN SELECT * FROM t").await.is_ok());
        assert!(engine.plan("SHOW TABLES").await.is_ok());
    }

    /// EXPLAIN shows plans, not where the data lies on the server.
    #[tokio::test]
    async fn explain_withholds_file_paths() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret-mount-air.csv");
        std::fs::write(&file, "a,b\n1,x\n2,y\n").unwrap();
        let ctx = SessionContext::new();
        ctx.register_csv("air", file.to_str().unwrap(), Default::default())
            .await
            .unwrap();
        let engine = QueryEngine::new(ctx, QueryLimits::default());
        for sql in [
            "EXPLAIN SELECT * FROM air",
            "EXPLAIN VERBOSE SELECT a FROM air WHERE b = 'x'",
            "EXPLAIN ANALYZE SELECT count(*) FROM air",
        ] {
            let stream = engine.run(sql, vec![]).await.unwrap();
            let batches: Vec<RecordBatch> = stream
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<_, _>>()
                .unwrap();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
                .unwrap()
                .to_string();
            assert!(text.contains("file_groups="), "{sql}: {text}");
            assert!(!text.contains("secret-mount"), "{sql}: {text}");
        }
    }

    #[tokio::test]
    async fn refuses_overlong_and_empty_queries() {
        let engine = engine().await;
        let long = format!("SELECT 1 -- {}", "x".repeat(300 * 1024));
        assert!(
            matches!(engine.plan(&long).await, Err(Error::InvalidRequest(m)) if m.contains("bytes"))
        );
        assert!(matches!(
            engine.plan("  ").await,
            Err(Error::InvalidRequest(_))
        ));
    }

    #[tokio::test]
    async fn binds_parameter_rows() {
        let engine = engine().await;
        let plan = engine
            .plan("SELECT b FROM t WHERE a > ? ORDER BY b")
            .await
            .unwrap();
        let schema = parameter_schema(&plan).unwrap();
        assert_eq!(schema.field(0).name(), "$1");
        assert_eq!(schema.field(0).data_type(), &DataType::Int64);
        let params = RecordBatch::try_from_iter([(
            "p",
            Arc::new(datafusion::arrow::array::Int64Array::from(vec![1, 2])) as _,
        )])
        .unwrap();
        let stream = engine.execute(plan, vec![params]).await.unwrap();
        let batches: Vec<_> = stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()
            .unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 2 + 1);
    }

    #[tokio::test]
    async fn stops_at_the_deadline() {
        let ctx = SessionContext::new();
        let limits = QueryLimits {
            timeout: Duration::from_millis(300),
            ..QueryLimits::default()
        };
        let engine = QueryEngine::new(ctx, limits);
        let plan = engine
            .plan("SELECT count(*) FROM generate_series(1, 1000000000) a")
            .await
            .unwrap();
        // The deadline covers physical planning too: the timeout comes from starting the
        // stream or from its first item.
        let err = match engine.execute(plan, vec![]).await {
            Err(err) => err.to_string(),
            Ok(mut stream) => {
                tokio::time::sleep(Duration::from_millis(400)).await;
                let err = stream.next().await.unwrap().unwrap_err().to_string();
                assert!(stream.next().await.is_none());
                err
            }
        };
        assert!(err.contains("timeout"), "{err}");
    }

    fn chain(terms: usize, op: &str) -> String {
        format!(
            "SELECT {} AS x",
            std::iter::repeat_n("1", terms).collect::<Vec<_>>().join(op)
        )
    }

    /// An executor with one worker thread, and a current-thread runtime for the caller.
    fn runtimes() -> (tokio::runtime::Runtime, tokio::runtime::Runtime) {
        let executor = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        (executor, caller)
    }

    fn engine_on(executor: &tokio::runtime::Runtime, limits: QueryLimits) -> QueryEngine {
        QueryEngine::new(SessionContext::new(), limits).with_executor(executor.handle().clone())
    }

    async fn answer(engine: &QueryEngine, sql: &str) -> Result<Vec<RecordBatch>> {
        let stream = engine.run(sql, vec![]).await?;
        stream
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .map(|batch| batch.map_err(Error::from_datafusion))
            .collect()
    }

    /// Deep statements are refused with a message naming the limit, never crash the process,
    /// and statements within the limit are answered; the engine serves on after each.
    #[test]
    fn refuses_statements_nested_deeper_than_the_limit() {
        let limits = QueryLimits::default();
        let executor = QueryRuntime::new(&limits).unwrap();
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let engine = QueryEngine::new(SessionContext::new(), limits.clone())
            .with_executor(executor.handle());
        let longest = |piece: &str| {
            // The longest statement of repeated `piece`s the length limit accepts.
            let n = (limits.max_query_bytes - 32) / piece.len();
            format!("SELECT 1{}", piece.repeat(n))
        };
        let mut parens = "1".to_string();
        for _ in 0..1000 {
            parens = format!("({parens})");
        }
        let mut subqueries = "SELECT 1".to_string();
        for _ in 0..300 {
            subqueries = format!("SELECT ({subqueries})");
        }
        caller.block_on(async {
            for sql in [
                chain(1_900, "+"),
                chain(5_000, " OR "),
                chain(5_000, " AND "),
                chain(5_000, " || "),
                longest("+1"),
                longest(" OR 1"),
                longest(" UNION ALL SELECT 1"),
                vec!["SELECT 1"; 2_000].join(" UNION ALL "),
                format!("SELECT {parens}"),
                subqueries.clone(),
                format!("EXPLAIN {}", chain(1_900, "+")),
                format!(
                    "SELECT * FROM (VALUES (1)) t(a) WHERE {}",
                    vec!["a = 1"; 2_000].join(" OR ")
                ),
            ] {
                let err = engine.plan(&sql).await.unwrap_err();
                assert!(
                    matches!(&err, Error::InvalidRequest(m) if m.contains("levels deep")),
                    "{}...: {err:?}",
                    &sql[..60]
                );
                let batches = answer(&engine, "SELECT 41 + 1 AS answer").await.unwrap();
                assert_eq!(batches[0].num_rows(), 1);
            }
            // Just within the limit: planned and answered.
            let within = limits.max_query_depth - 8;
            let batches = answer(&engine, &chain(within, "+")).await.unwrap();
            let sum =
                datafusion::arrow::compute::cast(batches[0].column(0), &DataType::Int64).unwrap();
            assert_eq!(
                sum.as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .unwrap()
                    .value(0),
                within as i64
            );
            let unions = vec!["SELECT 1 AS x"; within].join(" UNION ALL ");
            let batches = answer(&engine, &format!("SELECT count(*) FROM ({unions})"))
                .await
                .unwrap();
            assert_eq!(batches[0].num_rows(), 1);
        });
    }

    /// Planning takes a query slot: with every slot held by a running result, a statement
    /// waits for one and is refused when the queue timeout passes.
    #[test]
    fn planning_takes_a_query_slot() {
        let (executor, caller) = runtimes();
        let engine = engine_on(
            &executor,
            QueryLimits {
                max_concurrent: 1,
                queue_timeout: Duration::from_millis(100),
                ..QueryLimits::default()
            },
        );
        caller.block_on(async {
            let running = engine.run("SELECT 1", vec![]).await.unwrap();
            let err = engine.plan("SELECT 2").await.unwrap_err();
            assert!(matches!(err, Error::ResourceExhausted(_)), "{err:?}");
            drop(running);
            engine.plan("SELECT 2").await.unwrap();
        });
        executor.shutdown_background();
    }

    /// Through a dedicated executor, plans that outlive their deadline end with the timeout
    /// error and are aborted: the executor's only thread is free again for the next query.
    /// (That the node stays responsive under CPU-bound load is checked end to end by the
    /// conformance suite, test_limits.py.)
    #[test]
    fn dedicated_executor_keeps_the_caller_responsive() {
        let (executor, caller) = runtimes();
        let engine = QueryEngine::new(
            SessionContext::new(),
            QueryLimits {
                timeout: Duration::from_millis(200),
                ..QueryLimits::default()
            },
        )
        .with_executor(executor.handle().clone());
        caller.block_on(async {
            for _ in 0..3 {
                let plan = engine
                    .plan("SELECT count(*) FROM generate_series(1, 100000000000) a WHERE a.value % 7 = 3")
                    .await
                    .unwrap();
                let mut stream = engine.execute(plan, vec![]).await.unwrap();
                let err = stream.next().await.unwrap().unwrap_err();
                assert!(err.to_string().contains("timeout"), "{err}");
            }
            // The executor's one thread is free: the aborted plans are gone.
            let plan = engine.plan("SELECT 41 + 1 AS answer").await.unwrap();
            let mut stream = engine.execute(plan, vec![]).await.unwrap();
            let batch = stream.next().await.unwrap().unwrap();
            assert_eq!(batch.num_rows(), 1);
        });
        executor.shutdown_background();
    }
}
