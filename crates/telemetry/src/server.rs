//! The HTTP listener for `/metrics`, `/healthz` and `/readyz`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use crate::Metrics;

/// Readiness, set by the binary, read by `/readyz`. The process is ready
/// when no source reports a problem: its life cycle (starting, draining),
/// the stall watchdog, a failing output, each independently, so one source
/// clearing its problem cannot hide another's.
pub struct Health {
    problems: Mutex<BTreeMap<&'static str, String>>,
}

/// The problem source that [`Health::set_ready`] and
/// [`Health::set_not_ready`] manage.
const LIFECYCLE: &str = "lifecycle";

impl Health {
    /// A new state: live, not yet ready ("starting").
    pub fn new() -> Arc<Self> {
        let mut problems = BTreeMap::new();
        problems.insert(LIFECYCLE, "starting".to_string());
        Arc::new(Health {
            problems: Mutex::new(problems),
        })
    }

    fn problems(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, String>> {
        self.problems.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The process has started (or finished draining nothing): ready,
    /// unless another source reports a problem.
    pub fn set_ready(&self) {
        self.clear_problem(LIFECYCLE);
    }

    /// The process is starting or stopping, for the reason shown by `/readyz`.
    pub fn set_not_ready(&self, because: impl Into<String>) {
        self.set_problem(LIFECYCLE, because);
    }

    /// `source` reports a problem that makes the process not ready.
    pub fn set_problem(&self, source: &'static str, because: impl Into<String>) {
        self.problems().insert(source, because.into());
    }

    /// `source` no longer has a problem.
    pub fn clear_problem(&self, source: &'static str) {
        self.problems().remove(source);
    }

    /// Whether the process is ready.
    pub fn is_ready(&self) -> bool {
        self.problems().is_empty()
    }

    /// Why the process is not ready, one `source: reason` per problem.
    pub fn not_ready_because(&self) -> String {
        let problems = self.problems();
        let reasons: Vec<String> = problems.iter().map(|(s, r)| format!("{s}: {r}")).collect();
        reasons.join("; ")
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

/// [`bind`] on a thread and runtime of its own, so that probes and scrapes
/// are answered however busy the process's own runtime is (an ingest
/// endpoint validating large bodies): Kubernetes restarts a pod whose
/// `/healthz` misses its one-second timeout a few times in a row.
pub fn bind_on_own_thread(
    listen: SocketAddr,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) -> std::io::Result<SocketAddr> {
    let (bound, bound_seen) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("newsflow-probes".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = bound.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                let _ = bound.send(bind(listen, metrics, health).await);
                std::future::pending::<()>().await;
            });
        })?;
    bound_seen.recv().unwrap_or_else(|_| {
        Err(std::io::Error::other(
            "the metrics listener's thread ended before binding",
        ))
    })
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
        let because = state.health.not_ready_because();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {because}\n"),
        )
    }
}
