//! Read-only SQL planning and streaming execution with explicit limits.
//!
//! [`QueryEngine`] admits each statement (a query slot and a deadline), plans it on the
//! executor (`statement.rs`), runs it once per bound parameter row (`params.rs`, `execute.rs`) and
//! wraps the result in the stream adapters of `stream.rs`; a node plugs in the session of each
//! request and the audit through `hooks.rs`. [`QueryLimits`] are the limits, and
//! [`QueryRuntime`] the executor sized for them.

mod execute;
mod hooks;
mod limits;
mod params;
mod runtime;
mod statement;
mod stream;

use std::future::Future;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument, instrument};

pub use hooks::{QueryAudit, RequestSessions};
pub use limits::QueryLimits;
pub use params::{bound_schema, parameter_schema};
pub use runtime::QueryRuntime;

use crate::error::{Error, Result};
use crate::telemetry::MeteredStream;
use hooks::blocking;
use statement::plan_statement;
use stream::{AbortOnDrop, AuditedStream, LimitedStream, forward};

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
        self.run_planned(sql, None, params).await
    }

    /// Runs `sql` as [`QueryEngine::run`] does, with `plan` as its plan when the caller planned
    /// it already (in this engine's session, for the same statement text).
    pub async fn run_planned(
        &self,
        sql: &str,
        plan: Option<LogicalPlan>,
        params: Vec<RecordBatch>,
    ) -> Result<SendableRecordBatchStream> {
        let planned = match (self.admit().await, plan) {
            (Ok(slot), Some(plan)) => Ok((plan, slot)),
            (Ok(slot), None) => self.plan_in(sql, &slot).await.map(|plan| (plan, slot)),
            (Err(err), _) => Err(err),
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
                let task = AbortOnDrop(executor.spawn(work.in_current_span()));
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
        let datasets = crate::telemetry::datasets_of(&plan);
        let plans = execute::bind_rows(plan, &params, self.limits.max_parameter_rows)?;
        // The schema of the bound plan: a parameter nothing else gives a type (`SELECT ? AS x`)
        // takes the type of the value bound to it. Analyzed: see `crate::workarounds`.
        let schema = crate::workarounds::answer_schema(&self.ctx.state(), &plans[0]);
        // The query's span: the datasets it reads, then the rows it sent and how it ended. It
        // lasts until the result ends; the plan's work (a peer's remote part) is its child.
        let span = tracing::info_span!(
            "query",
            datasets = %datasets.join(","),
            rows = tracing::field::Empty,
            outcome = tracing::field::Empty,
        );
        let start = execute::start(self.ctx.clone(), plans, Arc::clone(&schema));
        let stream = self
            .on_executor(start.instrument(span.clone()), slot.deadline, "planning")
            .await?;
        let inner = match &self.executor {
            None => stream,
            Some(executor) => span.in_scope(|| forward(executor, Arc::clone(&schema), stream)),
        };
        let limited = Box::pin(LimitedStream {
            schema,
            inner,
            deadline: Box::pin(tokio::time::sleep_until(slot.deadline)),
            timeout: self.limits.timeout,
            permit: Some(slot.permit),
        });
        Ok(Box::pin(MeteredStream::new(limited, datasets, span)))
    }
}

/// A query slot: taken from the node's concurrent-query limit, with the deadline of the
/// statement it admits. Planning and execution share it.
#[derive(Debug)]
struct Slot {
    permit: Arc<OwnedSemaphorePermit>,
    deadline: tokio::time::Instant,
}

#[cfg(test)]
mod tests;
