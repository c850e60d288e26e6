//! The OTLP exporters, run on the node's runtime.
//!
//! The SDK exports from threads of its own (the batch span processor, the periodic metric
//! reader), but the gRPC and HTTP clients need a Tokio runtime: [`OnRuntime`] runs each export
//! on the node's. It also counts spans exported and spans lost to a failed export, and logs the
//! first failure only: a collector that is down must not flood the log.

use std::fmt;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::KeyValue;
use opentelemetry::metrics::Counter;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::Temporality;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tokio::runtime::Handle;

use super::config::{ExportSettings, OtlpProtocol};

/// How long one export may take unless `OTEL_EXPORTER_OTLP_TIMEOUT` says otherwise.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

static SPANS: LazyLock<Counter<u64>> = LazyLock::new(|| {
    polder_flight_sql::telemetry::meter()
        .u64_counter("polder.telemetry.spans")
        .with_description(
            "Spans handed to the OTLP exporter, by outcome (exported, failed: lost to an export \
             that failed)",
        )
        .build()
});

static WARNED: AtomicBool = AtomicBool::new(false);

fn export_failed(what: &str, err: &dyn fmt::Display) {
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            error = %err,
            "cannot export {what} over OTLP; queries are not affected. Later failures are counted in polder_telemetry_spans_total{{outcome=\"failed\"}} and not logged"
        );
    }
}

fn timeout() -> Duration {
    std::env::var("OTEL_EXPORTER_OTLP_TIMEOUT")
        .ok()
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .map(Duration::from_millis)
        .unwrap_or(EXPORT_TIMEOUT)
}

/// Builds an OTLP exporter from `$builder` (a span or metric exporter builder: the same
/// methods on different types) as `$export` says, its HTTP path `$path`.
macro_rules! otlp_exporter {
    ($builder:expr, $export:expr, $runtime:expr, $path:literal) => {{
        let export: &ExportSettings = $export;
        match export.protocol {
            OtlpProtocol::Grpc => {
                let mut builder = $builder.with_tonic().with_timeout(timeout());
                if let Some(endpoint) = &export.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                builder.build()?
            }
            OtlpProtocol::HttpProtobuf => {
                let mut builder = $builder
                    .with_http()
                    .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                    .with_http_client(RuntimeHttpClient::new($runtime))
                    .with_timeout(timeout());
                if let Some(endpoint) = &export.endpoint {
                    builder = builder.with_endpoint(format!("{endpoint}{}", $path));
                }
                builder.build()?
            }
        }
    }};
}

/// The OTLP span exporter `export` describes.
pub(super) fn span_exporter(
    export: &ExportSettings,
    runtime: Handle,
) -> anyhow::Result<OnRuntime<opentelemetry_otlp::SpanExporter>> {
    let inner = otlp_exporter!(
        opentelemetry_otlp::SpanExporter::builder(),
        export,
        runtime.clone(),
        "/v1/traces"
    );
    Ok(OnRuntime { inner, runtime })
}

/// The OTLP metric exporter `export` describes.
pub(super) fn metric_exporter(
    export: &ExportSettings,
    runtime: Handle,
) -> anyhow::Result<OnRuntime<opentelemetry_otlp::MetricExporter>> {
    let inner = otlp_exporter!(
        opentelemetry_otlp::MetricExporter::builder(),
        export,
        runtime.clone(),
        "/v1/metrics"
    );
    Ok(OnRuntime { inner, runtime })
}

/// An exporter whose exports run on the node's runtime (see the module's documentation).
#[derive(Debug)]
pub(super) struct OnRuntime<E> {
    inner: E,
    runtime: Handle,
}

impl<E> OnRuntime<E> {
    /// Runs `work` to its end on the runtime; the SDK's export threads are not the runtime's,
    /// so blocking them is what they are for.
    fn block_on<T>(&self, work: impl Future<Output = T>) -> T {
        self.runtime.block_on(work)
    }
}

impl SpanExporter for OnRuntime<opentelemetry_otlp::SpanExporter> {
    fn export(&self, batch: Vec<SpanData>) -> impl Future<Output = OTelSdkResult> + Send {
        let spans = batch.len() as u64;
        let result = self.block_on(self.inner.export(batch));
        match &result {
            Ok(()) => SPANS.add(spans, &[KeyValue::new("outcome", "exported")]),
            Err(err) => {
                SPANS.add(spans, &[KeyValue::new("outcome", "failed")]);
                export_failed("spans", err);
            }
        }
        std::future::ready(result)
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

impl PushMetricExporter for OnRuntime<opentelemetry_otlp::MetricExporter> {
    fn export(&self, metrics: &ResourceMetrics) -> impl Future<Output = OTelSdkResult> + Send {
        let result = self.block_on(self.inner.export(metrics));
        if let Err(err) = &result {
            export_failed("metrics", err);
        }
        std::future::ready(result)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> Temporality {
        self.inner.temporality()
    }
}

/// OpenTelemetry's hyper client, with its requests spawned on the node's runtime (the
/// exporter is built outside any task and may be called from any thread).
#[derive(Debug, Clone)]
struct RuntimeHttpClient {
    inner: opentelemetry_http::hyper::HyperClient,
    runtime: Handle,
}

impl RuntimeHttpClient {
    fn new(runtime: Handle) -> Self {
        let _entered = runtime.enter();
        Self {
            inner: opentelemetry_http::hyper::HyperClient::with_default_connector(timeout(), None),
            runtime,
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for RuntimeHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let inner = self.inner.clone();
        self.runtime
            .spawn(async move { inner.send_bytes(request).await })
            .await
            .map_err(|err| -> HttpError { Box::new(err) })?
    }
}
