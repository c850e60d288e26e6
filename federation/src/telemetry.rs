//! Metrics of the remote parts a node sends to its peers, per peer: how many, how long until
//! the answer started, how many failed. The peer's name is the only label (bounded by the
//! configuration); nothing of the SQL sent is recorded.

use std::pin::Pin;
use std::sync::LazyLock;
use std::task::{Context, Poll};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use futures::Stream;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};

use crate::error::PeerError;

struct PeerInstruments {
    parts: Counter<u64>,
    failures: Counter<u64>,
    latency: Histogram<f64>,
}

static PEER_INSTRUMENTS: LazyLock<PeerInstruments> = LazyLock::new(|| {
    let meter = polder_flight_sql::telemetry::meter();
    PeerInstruments {
        parts: meter
            .u64_counter("polder.peer.requests")
            .with_description("Remote parts sent to a peer, by peer")
            .build(),
        failures: meter
            .u64_counter("polder.peer.failures")
            .with_description(
                "Remote parts that failed (unreachable, timed out, refused, broken answer), by peer",
            )
            .build(),
        latency: meter
            .f64_histogram("polder.peer.latency")
            .with_unit("s")
            .with_description("Time from sending a remote part to its first batch, by peer")
            .with_boundaries(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ])
            .build(),
    }
});

/// Watches one remote part's answer: counts the part, times its first batch, counts a failure,
/// and records rows, bytes and outcome on the part's span.
pub(crate) struct PeerMeter {
    peer: KeyValue,
    span: tracing::Span,
}

impl PeerMeter {
    pub(crate) fn new(peer: &str, span: tracing::Span) -> Self {
        Self {
            peer: KeyValue::new("peer", peer.to_string()),
            span,
        }
    }

    pub(crate) fn watch<S>(self, inner: S) -> Watched<S>
    where
        S: Stream<Item = Result<RecordBatch, PeerError>>,
    {
        PEER_INSTRUMENTS
            .parts
            .add(1, std::slice::from_ref(&self.peer));
        Watched {
            inner,
            meter: self,
            started: Instant::now(),
            first: false,
            rows: 0,
            bytes: 0,
            done: false,
        }
    }
}

/// The answer of a remote part, watched by a [`PeerMeter`].
pub(crate) struct Watched<S> {
    inner: S,
    meter: PeerMeter,
    started: Instant,
    first: bool,
    rows: u64,
    bytes: u64,
    done: bool,
}

impl<S> Watched<S> {
    fn answered(&mut self) {
        if !self.first {
            self.first = true;
            let elapsed = self.started.elapsed().as_secs_f64();
            PEER_INSTRUMENTS
                .latency
                .record(elapsed, std::slice::from_ref(&self.meter.peer));
        }
    }

    fn finish(&mut self, outcome: &'static str) {
        if self.done {
            return;
        }
        self.done = true;
        let span = &self.meter.span;
        span.record("rows", self.rows as i64);
        span.record("bytes", self.bytes as i64);
        span.record("outcome", outcome);
        if outcome == "error" {
            PEER_INSTRUMENTS
                .failures
                .add(1, std::slice::from_ref(&self.meter.peer));
        }
    }
}

impl<S> Stream for Watched<S>
where
    S: Stream<Item = Result<RecordBatch, PeerError>> + Unpin,
{
    type Item = Result<RecordBatch, PeerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        match &next {
            Poll::Ready(Some(Ok(batch))) => {
                self.answered();
                self.rows += batch.num_rows() as u64;
                self.bytes += batch.get_array_memory_size() as u64;
            }
            Poll::Ready(Some(Err(_))) => self.finish("error"),
            Poll::Ready(None) => {
                self.answered();
                self.finish("ok");
            }
            Poll::Pending => {}
        }
        next
    }
}

impl<S> Drop for Watched<S> {
    fn drop(&mut self) {
        // The query no longer needs the rest (a LIMIT above, the client went away).
        self.finish("cancelled");
    }
}
