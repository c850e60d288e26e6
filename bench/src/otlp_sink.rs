//! A collector that accepts every OTLP/HTTP export and keeps only counts: what the node under
//! test pays for exporting traces and metrics, without a collector's own cost in the figures.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;

/// Exports received and their bytes.
#[derive(Debug, Default)]
pub struct Received {
    pub requests: AtomicU64,
    pub bytes: AtomicU64,
}

/// Serves `POST /v1/traces` and `/v1/metrics` on a free loopback port; returns its base URL.
pub async fn start() -> anyhow::Result<(String, Arc<Received>)> {
    let received = Arc::new(Received::default());
    let app = Router::new()
        .route("/v1/traces", post(accept))
        .route("/v1/metrics", post(accept))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((url, received))
}

/// An empty export response message: the protobuf encoding of a message with no fields.
async fn accept(
    State(received): State<Arc<Received>>,
    body: Bytes,
) -> ([(&'static str, &'static str); 1], Vec<u8>) {
    received.requests.fetch_add(1, Ordering::Relaxed);
    received
        .bytes
        .fetch_add(body.len() as u64, Ordering::Relaxed);
    ([("content-type", "application/x-protobuf")], Vec::new())
}
