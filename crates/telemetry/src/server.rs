//! The HTTP listener for `/metrics`, `/healthz` and `/readyz`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::Metrics;

/// Liveness and readiness, set by the binary, read by probes.
#[derive(Default)]
pub struct Health {
    ready: AtomicBool,
    not_ready_because: Mutex<String>,
}

impl Health {
    /// A new state: live, not yet ready.
    pub fn new() -> Arc<Self> {
        Arc::new(Health {
            ready: AtomicBool::new(false),
            not_ready_because: Mutex::new("starting".into()),
        })
    }

    /// Marks the process ready to do its work.
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    /// Marks the process not ready, with a reason shown by `/readyz`.
    pub fn set_not_ready(&self, because: impl Into<String>) {
        *self
            .not_ready_because
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = because.into();
        self.ready.store(false, Ordering::Release);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

/// Binds `listen` now (so a busy port fails start-up with a clear error)
/// and serves the three endpoints on the current tokio runtime until the
/// process ends.
pub async fn bind(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("metrics.listen {listen}: cannot listen: {e}"),
        )
    })?;
    let local = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready_handler))
        .with_state(AppState { metrics, health });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    Ok(local)
}

async fn metrics_handler(
    State(state): State<AppState>,
) -> ([(axum::http::header::HeaderName, &'static str); 1], String) {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn ready_handler(State(state): State<AppState>) -> (StatusCode, String) {
    if state.health.is_ready() {
        (StatusCode::OK, "ready\n".into())
    } else {
        let because = state
            .health
            .not_ready_because
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {because}\n"),
        )
    }
}
