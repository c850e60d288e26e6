//! The node's HTTP service: liveness, readiness, metrics and the conformance classes claimed.

use std::collections::BTreeSet;
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use polder_catalog::ConformanceClass;
use polder_federation::PeerCatalog;

use crate::datasets::SharedReadiness;

/// The node's peers, once registered.
pub type SharedPeers = Arc<OnceLock<Vec<Arc<PeerCatalog>>>>;

type ReadyState = (SharedReadiness, Arc<BTreeSet<String>>, SharedPeers);

/// Routes of the HTTP service.
///
/// `/readyz` lists the datasets by name, except the `hidden` ones (see the access policy), and
/// each peer's state: `discovering` (the first discovery is under way), `unavailable` (it
/// failed; retried in the background) or `discovered`. Peers do not hold readiness.
///
/// `/conformance` lists the UDN conformance classes the node claims, as OGC API - Common does:
/// `{"conformsTo": ["https://w3id.org/udn/spec/1.0/conf/core", ...]}`.
pub fn router(
    readiness: SharedReadiness,
    hidden: BTreeSet<String>,
    peers: SharedPeers,
    classes: &[ConformanceClass],
) -> Router {
    let conformance = serde_json::json!({
        "conformsTo": classes.iter().map(|c| c.uri()).collect::<Vec<_>>(),
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state((readiness, Arc::new(hidden), peers))
        .route(
            "/conformance",
            get(move || std::future::ready(Json(conformance.clone()))),
        )
}

/// The node's metrics in the Prometheus text format (docs/operations.md lists them). Labels are
/// method and status names, route templates, dataset and peer names: never a request's
/// content, a token or a value.
async fn metrics() -> axum::response::Response {
    let Some(telemetry) = crate::telemetry::installed() else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are not collected in this process\n",
        )
            .into_response();
    };
    match telemetry.metrics_text() {
        Ok(text) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {err}\n"),
        )
            .into_response(),
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State((readiness, hidden, peers)): State<ReadyState>) -> impl IntoResponse {
    let mut snapshot = readiness.read().clone();
    snapshot.tables.retain(|t| !hidden.contains(t));
    snapshot.skipped.retain(|t, _| !hidden.contains(t));
    snapshot.citizen.retain(|t, _| !hidden.contains(t));
    let status = if snapshot.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = serde_json::to_value(&snapshot).expect("readiness serializes");
    if let Some(peers) = peers.get().filter(|peers| !peers.is_empty()) {
        let peers: serde_json::Map<String, serde_json::Value> = peers
            .iter()
            .map(|peer| {
                let state = if peer.is_discovered() {
                    "discovered"
                } else if peer.was_tried() {
                    // Retried in the background.
                    "unavailable"
                } else {
                    "discovering"
                };
                (peer.peer().name().to_string(), state.into())
            })
            .collect();
        body["peers"] = peers.into();
    }
    (status, Json(body))
}
