//! The stream adapters around a running plan: [`forward`] hands batches over from the
//! executor, [`LimitedStream`] ends a result at its deadline and holds its query slot, and
//! [`AuditedStream`] reports the result's end to the audit.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use futures::{Stream, StreamExt};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;

use super::hooks::{QueryAudit, in_background};
use crate::error::{Error, Result};
use tracing::Instrument;

/// Polls `stream` on `executor` and hands its batches over through a small channel, so the
/// plan's work runs there. Dropping the returned stream aborts the task, which drops the plan
/// and cancels its operators.
pub(super) fn forward(
    executor: &tokio::runtime::Handle,
    schema: SchemaRef,
    mut stream: SendableRecordBatchStream,
) -> SendableRecordBatchStream {
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    // The plan's spans (peers' remote parts) stay children of the query's.
    let task = executor.spawn(
        async move {
            while let Some(item) = stream.next().await {
                if tx.send(item).await.is_err() {
                    break; // the client is gone or the deadline passed
                }
            }
        }
        .in_current_span(),
    );
    let batches = futures::stream::unfold((rx, AbortOnDrop(task)), |(mut rx, task)| async move {
        rx.recv().await.map(|item| (item, (rx, task)))
    });
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, batches))
}

/// A task that is aborted when its handle is dropped; awaiting it gives the task's output.
pub(super) struct AbortOnDrop<T>(pub(super) tokio::task::JoinHandle<T>);

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
pub(super) struct LimitedStream {
    pub(super) schema: SchemaRef,
    pub(super) inner: SendableRecordBatchStream,
    pub(super) deadline: Pin<Box<Sleep>>,
    pub(super) timeout: Duration,
    pub(super) permit: Option<Arc<OwnedSemaphorePermit>>,
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
pub(super) struct AuditedStream {
    pub(super) schema: SchemaRef,
    pub(super) inner: SendableRecordBatchStream,
    pub(super) audit: Option<Arc<dyn QueryAudit>>,
    pub(super) rows: u64,
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
