//! The node's HTTP service: liveness and readiness for operators and orchestrators.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::datasets::SharedReadiness;

/// Routes of the HTTP service.
///
/// `/readyz` lists the datasets by name, except the `hidden` ones (see the access policy).
pub fn router(readiness: SharedReadiness, hidden: BTreeSet<String>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state((readiness, Arc::new(hidden)))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(
    State((readiness, hidden)): State<(SharedReadiness, Arc<BTreeSet<String>>)>,
) -> impl IntoResponse {
    let mut snapshot = readiness.read().expect("lock").clone();
    snapshot.tables.retain(|t| !hidden.contains(t));
    snapshot.skipped.retain(|t, _| !hidden.contains(t));
    let status = if snapshot.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(snapshot))
}
