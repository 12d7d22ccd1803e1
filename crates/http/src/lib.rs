//! The HTTP hardening both newsflow servers share (`newsflow-producer
//! serve`'s ingest endpoint and `newsflow-footer serve`): a deadline for
//! each request's head and one for the whole request, a cap on
//! connections that lets the idle and the strangers go first, and a
//! shutdown that finishes the requests in flight. The routes are the
//! server's own; this crate only owns the sockets (see [`connections`]).

pub mod connections;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use newsflow_telemetry::Health;

pub use connections::{accept_until, CloseObserver, ConnectionLimits, RequestStarted};

/// Resolves `delay` after `shutdown` does, with `/readyz` red from the
/// moment it does: the order a load balancer needs to stop routing here
/// before the port closes. `section` names the server's settings in the
/// log line (`ingest`, `footer`: its `shutdown_delay`). Pass it to
/// [`accept_until`] as the moment to stop accepting.
pub async fn unready_then_stop(
    shutdown: impl Future<Output = ()>,
    health: Arc<Health>,
    delay: Duration,
    section: &'static str,
) {
    shutdown.await;
    health.set_not_ready("shutting down");
    tracing::info!(
        "shutdown requested: /readyz is red; still answering for {delay:?} \
         ({section}.shutdown_delay) while load balancers stop routing here"
    );
    tokio::time::sleep(delay).await;
}
