//! Telemetry the query path reports: W3C trace context in gRPC metadata, and the metrics of
//! queries by dataset.
//!
//! This crate uses the OpenTelemetry API only: spans are `tracing` spans (the binary bridges
//! them to OpenTelemetry), metrics go to the global meter, and both are no-ops until the binary
//! installs a provider (`node/src/telemetry.rs`). Nothing here records SQL text, literals,
//! claims or values: datasets are the names of the tables a plan scans, after planning.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{RecordBatchStream, SendableRecordBatchStream};
use futures::Stream;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Meter};
use opentelemetry::propagation::{Extractor, Injector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The instrumentation scope of every Polder instrument.
pub const SCOPE: &str = "polder";

/// The meter every Polder instrument comes from.
pub fn meter() -> Meter {
    opentelemetry::global::meter(SCOPE)
}

/// The trace context of `headers` (W3C `traceparent`/`tracestate`), made the parent of `span`.
/// Headers without one leave the span a root.
pub fn set_remote_parent(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // A span that is not sampled or not exported ignores it.
    let _ = span.set_parent(parent);
}

/// The current span's trace context as header pairs (`traceparent`, `tracestate`), for a
/// request to a peer. Empty when tracing is off.
pub fn trace_headers() -> Vec<(String, String)> {
    let context = tracing::Span::current().context();
    let mut headers = HeaderPairs(Vec::new());
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut headers)
    });
    headers.0
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|key| key.as_str()).collect()
    }
}

struct HeaderPairs(Vec<(String, String)>);

impl Injector for HeaderPairs {
    fn set(&mut self, key: &str, value: String) {
        self.0.push((key.to_string(), value));
    }
}

/// The datasets a plan reads: the names of the tables it scans (without catalog and schema),
/// sorted. Their number is bounded by the node's tables and its peers' tables, so they are fit
/// to label metrics.
pub fn datasets_of(plan: &LogicalPlan) -> Vec<String> {
    let mut names = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            names.insert(scan.table_name.table().to_string());
        }
        Ok(TreeNodeRecursion::Continue)
    });
    names.into_iter().collect()
}

struct QueryInstruments {
    queries: Counter<u64>,
    rows: Counter<u64>,
}

static QUERY_INSTRUMENTS: LazyLock<QueryInstruments> = LazyLock::new(|| {
    let meter = meter();
    QueryInstruments {
        queries: meter
            .u64_counter("polder.queries")
            .with_description(
                "Queries that read a dataset, by dataset and outcome (ok, error, cancelled); a \
                 query reading several datasets counts once for each",
            )
            .build(),
        rows: meter
            .u64_counter("polder.query.rows")
            .with_description("Rows sent in answers, by dataset read")
            .build(),
    }
});

/// A result stream that counts its rows and, when it ends, the query in
/// `polder_queries_total` by dataset and outcome, and its rows in `polder_query_rows_total`.
/// The query's span it holds records `rows` and `outcome`, and ends with it.
pub(crate) struct MeteredStream {
    inner: SendableRecordBatchStream,
    datasets: Vec<String>,
    rows: u64,
    outcome: Option<&'static str>,
    span: tracing::Span,
}

impl MeteredStream {
    pub(crate) fn new(
        inner: SendableRecordBatchStream,
        datasets: Vec<String>,
        span: tracing::Span,
    ) -> Self {
        Self {
            inner,
            datasets,
            rows: 0,
            outcome: None,
            span,
        }
    }

    fn finish(&mut self, outcome: &'static str) {
        if self.outcome.is_some() {
            return;
        }
        self.outcome = Some(outcome);
        self.span.record("rows", self.rows as i64);
        self.span.record("outcome", outcome);
        let instruments = &*QUERY_INSTRUMENTS;
        for dataset in &self.datasets {
            let dataset = KeyValue::new("dataset", dataset.clone());
            instruments
                .queries
                .add(1, &[dataset.clone(), KeyValue::new("outcome", outcome)]);
            instruments.rows.add(self.rows, &[dataset]);
        }
    }
}

impl Stream for MeteredStream {
    type Item = datafusion::error::Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = self.inner.as_mut().poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(batch))) => self.rows += batch.num_rows() as u64,
            Poll::Ready(Some(Err(_))) => self.finish("error"),
            Poll::Ready(None) => self.finish("ok"),
            Poll::Pending => {}
        }
        next
    }
}

impl RecordBatchStream for MeteredStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for MeteredStream {
    fn drop(&mut self) {
        // Dropped before its end: the client went away or stopped reading.
        self.finish("cancelled");
    }
}
