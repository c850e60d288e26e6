//! The node's HTTP service: liveness and readiness for operators and orchestrators.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::datasets::SharedReadiness;

/// Routes of the HTTP service.
pub fn router(readiness: SharedReadiness) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(readiness)
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(readiness): State<SharedReadiness>) -> impl IntoResponse {
    let snapshot = readiness.read().expect("lock").clone();
    let status = if snapshot.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(snapshot))
}
