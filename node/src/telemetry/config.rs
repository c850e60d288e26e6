//! The `[telemetry]` section, the log format, and how the standard `OTEL_*` variables combine
//! with them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How log lines are written to standard error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, with the OpenTelemetry trace and span ids (`openTelemetry`).
    Json,
}

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OtlpProtocol {
    /// OTLP/gRPC (port 4317 by convention).
    #[serde(rename = "grpc")]
    Grpc,
    /// OTLP/HTTP with protobuf bodies (port 4318 by convention); the default.
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

impl OtlpProtocol {
    /// The name `OTEL_EXPORTER_OTLP_PROTOCOL` uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grpc => "grpc",
            Self::HttpProtobuf => "http/protobuf",
        }
    }

    fn parse(value: &str, source: &str) -> anyhow::Result<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "grpc" => Ok(Self::Grpc),
            "http/protobuf" => Ok(Self::HttpProtobuf),
            other => anyhow::bail!(
                "{source}: unsupported OTLP protocol '{other}': expected 'grpc' or 'http/protobuf'"
            ),
        }
    }
}

/// `[telemetry]`: where traces and metrics go. Export is off unless an endpoint is set, here or
/// in `OTEL_EXPORTER_OTLP_ENDPOINT` (the standard variables win over these keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's base URL (`http://collector:4318` for HTTP, `http://collector:4317` for
    /// gRPC); `/v1/traces` and `/v1/metrics` are appended for HTTP.
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (default).
    pub otlp_protocol: Option<OtlpProtocol>,
    /// The most finished spans waiting for export; more are dropped, never waited for.
    pub max_queued_spans: usize,
    /// How often metrics are exported over OTLP (`OTEL_METRIC_EXPORT_INTERVAL` wins).
    #[serde(with = "humantime_serde")]
    pub metrics_interval: Duration,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            otlp_protocol: None,
            max_queued_spans: 2048,
            metrics_interval: Duration::from_secs(60),
        }
    }
}

/// Where and how to export, once the variables and the section are combined.
#[derive(Debug, Clone)]
pub(crate) struct ExportSettings {
    pub(crate) protocol: OtlpProtocol,
    /// The section's endpoint, used only when no `OTEL_EXPORTER_OTLP_*ENDPOINT` variable is set
    /// (the exporters read those themselves).
    pub(crate) endpoint: Option<String>,
}

impl ExportSettings {
    /// The endpoint in effect, for the log.
    pub(crate) fn display_endpoint(&self) -> String {
        self.endpoint
            .clone()
            .or_else(|| env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
            .or_else(|| env("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .unwrap_or_default()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Export settings, or `None` when export is off: no endpoint anywhere, or
/// `OTEL_SDK_DISABLED=true`.
pub(crate) fn resolve_export(config: &TelemetryConfig) -> anyhow::Result<Option<ExportSettings>> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let from_env = env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some();
    let endpoint = match (&config.otlp_endpoint, from_env) {
        (_, true) => None,
        (Some(endpoint), false) => {
            let parsed = url::Url::parse(endpoint).map_err(|err| {
                anyhow::anyhow!("[telemetry] otlp_endpoint '{endpoint}' is not a URL: {err}")
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                anyhow::bail!(
                    "[telemetry] otlp_endpoint '{endpoint}' must be an http:// or https:// URL"
                );
            }
            Some(endpoint.trim_end_matches('/').to_string())
        }
        (None, false) => return Ok(None),
    };
    let protocol = if let Some(value) = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") {
        OtlpProtocol::parse(&value, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")?
    } else if let Some(value) = env("OTEL_EXPORTER_OTLP_PROTOCOL") {
        OtlpProtocol::parse(&value, "OTEL_EXPORTER_OTLP_PROTOCOL")?
    } else {
        config.otlp_protocol.unwrap_or(OtlpProtocol::HttpProtobuf)
    };
    Ok(Some(ExportSettings { protocol, endpoint }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_parse_by_their_standard_names() {
        assert_eq!(
            OtlpProtocol::parse("grpc", "x").unwrap(),
            OtlpProtocol::Grpc
        );
        assert_eq!(
            OtlpProtocol::parse(" HTTP/protobuf", "x").unwrap(),
            OtlpProtocol::HttpProtobuf
        );
        let err = OtlpProtocol::parse("http/json", "OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{err}"
        );
        assert!(err.to_string().contains("http/json"), "{err}");
    }

    #[test]
    fn the_section_parses_and_refuses_unknown_keys() {
        let config: TelemetryConfig = toml::from_str(
            "otlp_endpoint = 'http://collector:4317'\notlp_protocol = 'grpc'\nmetrics_interval = '15s'",
        )
        .unwrap();
        assert_eq!(config.otlp_protocol, Some(OtlpProtocol::Grpc));
        assert_eq!(config.metrics_interval, Duration::from_secs(15));
        assert_eq!(config.max_queued_spans, 2048);
        let err = toml::from_str::<TelemetryConfig>("endpoint = 'x'").unwrap_err();
        assert!(err.to_string().contains("endpoint"), "{err}");
    }
}
