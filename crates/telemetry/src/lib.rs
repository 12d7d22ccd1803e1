//! Telemetry for newsflow binaries: the metrics facade, the
//! `/metrics` `/healthz` `/readyz` server, and log set-up.
//!
//! Call sites never spell a metric name: they call one method per happening
//! on [`Metrics`] (`metrics.consumed(topic, event_type, n)`), so names, labels
//! and units live in one place and label values stay bounded (topics,
//! partitions, event types, reason codes; never an article id or free text).
//!
//! ```
//! use newsflow_telemetry::{Binary, Metrics};
//! let metrics = Metrics::new(Binary::Producer);
//! metrics.produced("news.comments", 3);
//! assert!(metrics.render().contains("newsflow_events_produced_total{topic=\"news.comments\"} 3"));
//! ```

mod footer;
mod labels;
mod metrics;
mod progress;
mod series;
mod server;

pub use labels::{
    ConnectionClose, DeliveryFailure, FlushStage, FooterReload, FooterRoute, IngestOutcome,
    LakeOutcome, OffsetCommit, ProduceError, Rebalance, SkippedRow, Table,
};
pub use metrics::{Binary, Metrics};
pub use progress::{per_second, Progress, Rates};
pub use server::{bind, bind_on_own_thread, Health};

use newsflow_settings::{LogFormat, LogSettings};
use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber: text or JSON lines on stderr,
/// filtered by `log.level` (overridable with `RUST_LOG`). Binaries call it
/// once; libraries only emit.
pub fn init_logging(settings: &LogSettings) {
    let directives = std::env::var("RUST_LOG").unwrap_or_else(|_| settings.level.clone());
    let filter = EnvFilter::try_new(quiet_libraries(&directives))
        .unwrap_or_else(|_| EnvFilter::new(quiet_libraries("info")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.compact().init(),
    }
}

/// Libraries that log every step of routine work at `info`: the Delta
/// kernel writes several lines per commit. They are held at `warn` unless
/// the filter names them itself.
const CHATTY: &[&str] = &["delta_kernel", "delta_kernel_default_engine"];

/// `directives` with [`CHATTY`] libraries at `warn` unless they are named.
fn quiet_libraries(directives: &str) -> String {
    let mut filter = directives.to_string();
    for library in CHATTY {
        let named = directives
            .split(',')
            .any(|d| d.trim().split('=').next() == Some(*library));
        if !named {
            filter.push_str(&format!(",{library}=warn"));
        }
    }
    filter
}

/// Resolves on the first SIGTERM or SIGINT (Ctrl-C): how Kubernetes and a
/// terminal each ask a process to stop.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

#[cfg(test)]
mod tests {
    use super::quiet_libraries;

    #[test]
    fn chatty_libraries_are_held_at_warn_unless_named() {
        assert_eq!(
            quiet_libraries("info"),
            "info,delta_kernel=warn,delta_kernel_default_engine=warn"
        );
        assert_eq!(
            quiet_libraries("warn,delta_kernel=debug"),
            "warn,delta_kernel=debug,delta_kernel_default_engine=warn"
        );
    }
}
