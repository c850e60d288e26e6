//! The node's telemetry: logs (text or JSON), OpenTelemetry traces bridged from `tracing`,
//! and metrics, served on `GET /metrics` in the Prometheus text format and exported over OTLP.
//!
//! The libraries record spans with `tracing` and metrics on OpenTelemetry's global meter; this
//! module installs what makes them real:
//!
//! - a tracer provider, always (so the W3C trace context of a request reaches the node's peers
//!   even when this node exports nothing), with an OTLP batch exporter when an endpoint is set
//!   (`OTEL_EXPORTER_OTLP_ENDPOINT` or `[telemetry] otlp_endpoint`);
//! - a meter provider with a Prometheus reader ([`Telemetry::metrics_text`]) and, with an
//!   endpoint, a periodic OTLP reader;
//! - the `tracing` subscriber: the log layer (filtered by `POLDER_LOG`) and the OpenTelemetry
//!   layer (the `polder_*` crates' spans at INFO, whatever the log level).
//!
//! A collector that is down or slow never holds a query up: spans wait in a bounded queue and
//! are exported from the SDK's own thread; when the queue is full they are dropped. Exports
//! that fail are counted (`polder_telemetry_spans_total{outcome="failed"}`) and the first
//! failure is logged once.

mod config;
mod export;
mod requests;

pub use config::{LogFormat, OtlpProtocol, TelemetryConfig};
pub use requests::{HttpTelemetry, RpcTelemetry};

use std::sync::Arc;

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The `service.name` of every span and metric the node exports (unless `OTEL_SERVICE_NAME`
/// says otherwise).
pub const SERVICE_NAME: &str = "polder";

/// The crates whose spans become OpenTelemetry spans.
const TRACED_CRATES: [&str; 6] = [
    "polder_node",
    "polder_flight_sql",
    "polder_federation",
    "polder_access",
    "polder_catalog",
    "polder_connectors",
];

/// What the logs look like and where telemetry goes.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// Text or one JSON object per line.
    pub log_format: LogFormat,
    /// The level when `POLDER_LOG` is not set.
    pub default_level: &'static str,
    /// The node's name (`service.instance.id`) and its `[telemetry]` section, for `serve`;
    /// `None` for the client commands (they export nothing).
    pub node: Option<(String, TelemetryConfig)>,
}

/// The installed telemetry. Dropping it does not flush; call [`Telemetry::shutdown`].
#[derive(Debug, Clone)]
pub struct Telemetry {
    registry: prometheus::Registry,
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    exporting: bool,
}

impl Telemetry {
    /// Installs logging, tracing and metrics for this process. Call once, inside the runtime
    /// (the OTLP exporters run their requests on it).
    pub fn install(settings: &TelemetrySettings) -> anyhow::Result<Self> {
        let (instance, config) = match &settings.node {
            Some((name, config)) => (Some(name.as_str()), config.clone()),
            None => (None, TelemetryConfig::default()),
        };
        let export = match &settings.node {
            Some(_) => config::resolve_export(&config)?,
            None => None,
        };
        let resource = resource(instance);
        let runtime = tokio::runtime::Handle::current();

        let mut tracer_provider = SdkTracerProvider::builder().with_resource(resource.clone());
        if let Some(export) = &export {
            let exporter = export::span_exporter(export, runtime.clone())
                .context("cannot set up the OTLP trace exporter")?;
            // OTEL_BSP_* variables are read by the builder and win over the section.
            let mut batch = BatchConfigBuilder::default();
            if std::env::var_os("OTEL_BSP_MAX_QUEUE_SIZE").is_none() {
                batch = batch.with_max_queue_size(config.max_queued_spans.max(1));
            }
            if std::env::var_os("OTEL_BSP_MAX_EXPORT_BATCH_SIZE").is_none() {
                batch = batch.with_max_export_batch_size(config.max_queued_spans.clamp(1, 512));
            }
            let batch = batch.build();
            tracer_provider = tracer_provider.with_span_processor(
                BatchSpanProcessor::builder(exporter)
                    .with_batch_config(batch)
                    .build(),
            );
        }
        let tracer_provider = tracer_provider.build();

        let registry = prometheus::Registry::new();
        let prometheus_reader = opentelemetry_prometheus::exporter()
            .with_registry(registry.clone())
            .scope_info_enabled(false)
            .build()
            .context("cannot set up the Prometheus metrics reader")?;
        let mut meter_provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_reader(prometheus_reader);
        if let Some(export) = &export {
            let exporter = export::metric_exporter(export, runtime)
                .context("cannot set up the OTLP metric exporter")?;
            let mut reader = PeriodicReader::builder(exporter);
            if std::env::var_os("OTEL_METRIC_EXPORT_INTERVAL").is_none() {
                reader = reader.with_interval(config.metrics_interval);
            }
            meter_provider = meter_provider.with_reader(reader.build());
        }
        let meter_provider = meter_provider.build();

        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(tracer_provider.clone());
        opentelemetry::global::set_meter_provider(meter_provider.clone());

        install_subscriber(settings, &tracer_provider)?;
        if let Some(export) = &export {
            tracing::info!(
                endpoint = %export.display_endpoint(),
                protocol = export.protocol.as_str(),
                "exporting traces and metrics over OTLP"
            );
        }
        Ok(Self {
            registry,
            tracer_provider,
            meter_provider,
            exporting: export.is_some(),
        })
    }

    /// The node's metrics in the Prometheus text format (version 0.0.4).
    pub fn metrics_text(&self) -> Result<String, prometheus::Error> {
        let families = self.registry.gather();
        prometheus::TextEncoder::new().encode_to_string(&families)
    }

    /// Whether traces and metrics are exported over OTLP.
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// Exports what is still queued (within the exporters' timeouts) and stops the exporters.
    /// Blocks: call it from a blocking thread.
    pub fn shutdown(&self) {
        if let Err(err) = self.tracer_provider.shutdown() {
            tracing::debug!(error = %err, "trace exporter shutdown");
        }
        if let Err(err) = self.meter_provider.shutdown() {
            tracing::debug!(error = %err, "metric exporter shutdown");
        }
    }
}

/// `service.name` (polder, unless `OTEL_SERVICE_NAME` is set), `service.instance.id` (the node's
/// name), `service.version`, and what `OTEL_RESOURCE_ATTRIBUTES` adds.
fn resource(instance: Option<&str>) -> Resource {
    let mut builder = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        builder = builder.with_service_name(SERVICE_NAME);
    }
    builder = builder.with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    if let Some(instance) = instance {
        builder =
            builder.with_attribute(KeyValue::new("service.instance.id", instance.to_string()));
    }
    builder.build()
}

fn install_subscriber(
    settings: &TelemetrySettings,
    tracer_provider: &SdkTracerProvider,
) -> anyhow::Result<()> {
    let directives =
        std::env::var("POLDER_LOG").unwrap_or_else(|_| settings.default_level.to_string());
    let logs_filter = || {
        EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(settings.default_level))
    };
    // Spans of the traced crates exist at INFO whatever the log level, so that traces are
    // complete; the log layer's own filter keeps the log at the level asked for. (A per-layer
    // filter on the OpenTelemetry layer instead lost spans created right after an event that
    // only the log layer wanted.)
    let mut global = logs_filter();
    for name in TRACED_CRATES {
        if !directives.contains(name) {
            global =
                global.add_directive(format!("{name}=info").parse().expect("a valid directive"));
        }
    }
    // Events never become span events: a debug line may hold what a span must not (SQL).
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer_provider.tracer(SERVICE_NAME))
        .with_counting_event_filter(tracing_subscriber::filter::filter_fn(|_| false));
    let logs = match settings.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_filter(logs_filter())
            .boxed(),
        LogFormat::Json => {
            let mut json = json_subscriber::JsonLayer::stderr();
            json.with_timer("timestamp", tracing_subscriber::fmt::time::SystemTime);
            json.with_level("level");
            json.with_target("target");
            json.with_flattened_event();
            json.with_current_span("span");
            json.with_opentelemetry_ids(true);
            json.with_filter(logs_filter()).boxed()
        }
    };
    tracing_subscriber::registry()
        .with(global)
        .with(otel)
        .with(logs)
        .try_init()
        .context("cannot install the log subscriber")
}

/// Shared handle for the HTTP service's `/metrics`.
pub type SharedTelemetry = Arc<Telemetry>;

static INSTALLED: std::sync::OnceLock<Telemetry> = std::sync::OnceLock::new();

/// The telemetry the binary installed, if any (integration tests run without).
pub fn installed() -> Option<&'static Telemetry> {
    INSTALLED.get()
}

/// Installs telemetry (see [`Telemetry::install`]) as this process's, once.
pub fn install_global(settings: &TelemetrySettings) -> anyhow::Result<&'static Telemetry> {
    let telemetry = Telemetry::install(settings)?;
    // DataFusion's tasks (repartitioning, joins) keep the span that spawned them, so a peer's
    // remote part stays in the query's trace.
    let _ = datafusion::common::runtime::set_join_set_tracer(&SPAN_TRACER);
    requests::register();
    polder_access::telemetry::register();
    Ok(INSTALLED.get_or_init(|| telemetry))
}

/// Makes the current span the parent of DataFusion's spawned tasks.
struct SpanTracer;

static SPAN_TRACER: SpanTracer = SpanTracer;

impl datafusion::common::runtime::JoinSetTracer for SpanTracer {
    fn trace_future(
        &self,
        fut: futures::future::BoxFuture<'static, Box<dyn std::any::Any + Send>>,
    ) -> futures::future::BoxFuture<'static, Box<dyn std::any::Any + Send>> {
        Box::pin(tracing::Instrument::in_current_span(fut))
    }

    fn trace_block(
        &self,
        f: Box<dyn FnOnce() -> Box<dyn std::any::Any + Send> + Send>,
    ) -> Box<dyn FnOnce() -> Box<dyn std::any::Any + Send> + Send> {
        let span = tracing::Span::current();
        Box::new(move || span.in_scope(f))
    }
}

static MEMORY_GAUGE: std::sync::OnceLock<opentelemetry::metrics::ObservableGauge<u64>> =
    std::sync::OnceLock::new();

/// Reports the bytes the query memory pool has reserved (`polder_memory_reserved_bytes`).
pub fn observe_memory(pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool>) {
    MEMORY_GAUGE.get_or_init(|| {
        polder_flight_sql::telemetry::meter()
            .u64_observable_gauge("polder.memory.reserved")
            .with_unit("By")
            .with_description("Bytes reserved by running queries in the node's memory pool")
            .with_callback(move |gauge| gauge.observe(pool.reserved() as u64, &[]))
            .build()
    });
}
