//! A span and metrics for every request the node serves: Flight RPCs ([`RpcTelemetry`]) and
//! HTTP requests (health, catalog, SPARQL: [`HttpTelemetry`]).
//!
//! The span is the child of the caller's W3C trace context (`traceparent` in the request's
//! metadata), so a peer's spans join the trace of the federated query that called it. It lasts
//! until the response body ends (a streamed `DoGet` included), and records the status (the gRPC
//! status from the trailers, or the HTTP status) and the bytes sent. Labels are bounded: the
//! Flight method among the protocol's ten (`other` for anything else), the HTTP route as
//! matched (`unmatched` for any other path), the status code. Nothing of a request's content
//! (SQL, SPARQL, parameters, tokens) is recorded.

use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::task::{Context, Poll};
use std::time::Instant;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, UpDownCounter};
use tracing::field::Empty;

/// The Flight service's methods: metric labels take one of these or `other`.
const FLIGHT_METHODS: [&str; 10] = [
    "Handshake",
    "ListFlights",
    "GetFlightInfo",
    "PollFlightInfo",
    "GetSchema",
    "DoGet",
    "DoPut",
    "DoExchange",
    "DoAction",
    "ListActions",
];

const LATENCY_BOUNDS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    120.0,
];

struct Instruments {
    rpc_requests: Counter<u64>,
    rpc_duration: Histogram<f64>,
    rpc_active: UpDownCounter<i64>,
    rpc_sent: Counter<u64>,
    http_requests: Counter<u64>,
    http_duration: Histogram<f64>,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let meter = polder_flight_sql::telemetry::meter();
    Instruments {
        rpc_requests: meter
            .u64_counter("polder.rpc.requests")
            .with_description("Flight RPCs answered, by method and gRPC status code")
            .build(),
        rpc_duration: meter
            .f64_histogram("polder.rpc.duration")
            .with_unit("s")
            .with_description(
                "Time from a Flight RPC's arrival to the end of its response (a streamed result \
                 included), by method",
            )
            .with_boundaries(LATENCY_BOUNDS.to_vec())
            .build(),
        rpc_active: meter
            .i64_up_down_counter("polder.rpc.active")
            .with_description("Flight RPCs in progress (a result still streaming included)")
            .build(),
        rpc_sent: meter
            .u64_counter("polder.rpc.sent")
            .with_unit("By")
            .with_description("Bytes of Flight responses sent (gRPC messages), by method")
            .build(),
        http_requests: meter
            .u64_counter("polder.http.requests")
            .with_description(
                "HTTP requests answered (health, catalog, SPARQL, metrics), by route and status",
            )
            .build(),
        http_duration: meter
            .f64_histogram("polder.http.duration")
            .with_unit("s")
            .with_description("Time to answer an HTTP request, by route")
            .with_boundaries(LATENCY_BOUNDS.to_vec())
            .build(),
    }
});

/// Registers the request instruments, so that they are listed before the first request.
pub fn register() {
    LazyLock::force(&INSTRUMENTS);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http,
}

/// The layer for the Flight SQL (gRPC) server.
#[derive(Debug, Clone)]
pub struct RpcTelemetry {
    node: Arc<str>,
}

impl RpcTelemetry {
    /// Spans of node `node`.
    pub fn new(node: &str) -> Self {
        Self { node: node.into() }
    }
}

/// The layer for the HTTP server (apply with `Router::layer`, so the matched route is known).
#[derive(Debug, Clone)]
pub struct HttpTelemetry {
    node: Arc<str>,
}

impl HttpTelemetry {
    /// Spans of node `node`.
    pub fn new(node: &str) -> Self {
        Self { node: node.into() }
    }
}

impl<S> tower_layer::Layer<S> for RpcTelemetry {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced {
            inner,
            node: Arc::clone(&self.node),
            protocol: Protocol::Grpc,
        }
    }
}

impl<S> tower_layer::Layer<S> for HttpTelemetry {
    type Service = Traced<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Traced {
            inner,
            node: Arc::clone(&self.node),
            protocol: Protocol::Http,
        }
    }
}

/// The service the layers make.
#[derive(Debug, Clone)]
pub struct Traced<S> {
    inner: S,
    node: Arc<str>,
    protocol: Protocol,
}

/// The Flight method a gRPC request calls, as counted: one of [`FLIGHT_METHODS`] or `other`.
fn flight_method<B>(request: &http::Request<B>) -> &'static str {
    let method = request.uri().path().rsplit('/').next().unwrap_or_default();
    FLIGHT_METHODS
        .iter()
        .find(|known| **known == method)
        .copied()
        .unwrap_or("other")
}

impl<S, RequestBody, ResponseBody> tower_service::Service<http::Request<RequestBody>> for Traced<S>
where
    S: tower_service::Service<http::Request<RequestBody>, Response = http::Response<ResponseBody>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<TracedBody<ResponseBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<RequestBody>) -> Self::Future {
        let started = Instant::now();
        let protocol = self.protocol;
        let (label, span) = match protocol {
            Protocol::Grpc => {
                let method = flight_method(&request);
                let span = tracing::info_span!(
                    "flight_rpc",
                    otel.name = %format!("FlightService/{method}"),
                    otel.kind = "server",
                    otel.status_code = Empty,
                    rpc.system = "grpc",
                    rpc.service = "arrow.flight.protocol.FlightService",
                    rpc.method = method,
                    rpc.grpc.status_code = Empty,
                    node = %self.node,
                    bytes = Empty,
                );
                INSTRUMENTS.rpc_active.add(1, &[]);
                (method.to_string(), span)
            }
            Protocol::Http => {
                let route = request
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map(|path| path.as_str().to_string())
                    .unwrap_or_else(|| "unmatched".to_string());
                let span = tracing::info_span!(
                    "http_request",
                    otel.name = %format!("{} {route}", request.method()),
                    otel.kind = "server",
                    otel.status_code = Empty,
                    http.request.method = %request.method(),
                    http.route = %route,
                    http.response.status_code = Empty,
                    node = %self.node,
                    bytes = Empty,
                );
                (route, span)
            }
        };
        polder_flight_sql::telemetry::set_remote_parent(&span, request.headers());
        let response = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let mut watch = Watch {
            protocol,
            label,
            span,
            started,
            bytes: 0,
            status: None,
            done: false,
        };
        Box::pin(async move {
            let result = {
                let span = watch.span.clone();
                tracing::Instrument::instrument(response, span).await
            };
            match result {
                Ok(response) => {
                    watch.status = match protocol {
                        // A status in the headers is a trailers-only response (an error, or
                        // an empty answer).
                        Protocol::Grpc => grpc_status(response.headers()),
                        Protocol::Http => Some(i64::from(response.status().as_u16())),
                    };
                    Ok(response.map(|inner| TracedBody { inner, watch }))
                }
                Err(err) => {
                    // The transport failed the request (no response at all).
                    watch.finish();
                    Err(err)
                }
            }
        })
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<i64> {
    headers
        .get("grpc-status")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
}

/// gRPC status codes by their canonical names.
fn grpc_code_name(code: i64) -> &'static str {
    match code {
        0 => "OK",
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => "UNKNOWN",
    }
}

/// One request's measurements, recorded once when its response ends or is dropped.
struct Watch {
    protocol: Protocol,
    label: String,
    span: tracing::Span,
    started: Instant,
    bytes: u64,
    status: Option<i64>,
    done: bool,
}

impl Watch {
    fn finish(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let elapsed = self.started.elapsed().as_secs_f64();
        let instruments = &*INSTRUMENTS;
        self.span.record("bytes", self.bytes as i64);
        match self.protocol {
            Protocol::Grpc => {
                // No status at all: the client went away before the end (CANCELLED).
                let code = self.status.unwrap_or(1);
                let name = grpc_code_name(code);
                self.span.record("rpc.grpc.status_code", code);
                if code != 0 {
                    self.span.record("otel.status_code", "ERROR");
                }
                let method = KeyValue::new("method", self.label.clone());
                instruments
                    .rpc_requests
                    .add(1, &[method.clone(), KeyValue::new("code", name)]);
                instruments
                    .rpc_duration
                    .record(elapsed, std::slice::from_ref(&method));
                instruments.rpc_sent.add(self.bytes, &[method]);
                instruments.rpc_active.add(-1, &[]);
            }
            Protocol::Http => {
                let status = self.status.unwrap_or(499);
                self.span.record("http.response.status_code", status);
                if status >= 500 {
                    self.span.record("otel.status_code", "ERROR");
                }
                let route = KeyValue::new("route", self.label.clone());
                instruments.http_requests.add(
                    1,
                    &[route.clone(), KeyValue::new("status", status.to_string())],
                );
                instruments.http_duration.record(elapsed, &[route]);
            }
        }
    }
}

/// A response body that counts its bytes, reads the gRPC status from its trailers, and ends
/// the request's span with it. Polled inside the span, so the work of a streamed result is
/// part of the request's trace.
pub struct TracedBody<B> {
    inner: B,
    watch: Watch,
}

impl<B> std::fmt::Debug for TracedBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TracedBody").finish_non_exhaustive()
    }
}

impl<B> http_body::Body for TracedBody<B>
where
    B: http_body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = {
            let _entered = this.watch.span.enter();
            Pin::new(&mut this.inner).poll_frame(cx)
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.watch.bytes += bytes::Buf::remaining(data) as u64;
                } else if let Some(trailers) = frame.trailers_ref()
                    && this.watch.protocol == Protocol::Grpc
                {
                    this.watch.status = grpc_status(trailers).or(this.watch.status);
                }
            }
            Poll::Ready(Some(Err(_))) | Poll::Ready(None) => this.watch.finish(),
            Poll::Pending => {}
        }
        if this.inner.is_end_stream() {
            this.watch.finish();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for TracedBody<B> {
    fn drop(&mut self) {
        self.watch.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flight_methods_are_bounded_labels() {
        let request = |path: &str| http::Request::builder().uri(path).body(()).unwrap();
        assert_eq!(
            flight_method(&request("/arrow.flight.protocol.FlightService/DoGet")),
            "DoGet"
        );
        assert_eq!(
            flight_method(&request(
                "/arrow.flight.protocol.FlightService/x%27%20OR%201=1"
            )),
            "other"
        );
        assert_eq!(grpc_code_name(16), "UNAUTHENTICATED");
        assert_eq!(grpc_code_name(99), "UNKNOWN");
    }
}
