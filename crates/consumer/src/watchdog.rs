//! The stall watchdog: a worker that owns partitions with lag but handles
//! no record for `watchdog.stall_after` is not doing its job, whatever the
//! reason (a wedged broker connection, a flush that never returns, a bug).
//! It then reports not-ready, so the orchestrator can act, and counts the
//! stall in a metric so dashboards and alerts see it.
//!
//! The check runs on the async runtime, not on the run loop's thread, so it
//! still fires when that thread is the thing that is stuck.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use newsflow_telemetry::{Health, Metrics};

/// Signs of life the run loop and the client statistics leave behind.
pub struct Liveness {
    started: Instant,
    /// Milliseconds after `started` when a record was last handled.
    last_progress_ms: AtomicI64,
    /// Sum of the lag of the owned partitions; -1 until the client knows.
    total_lag: AtomicI64,
    owns_partitions: AtomicBool,
}

impl Liveness {
    pub fn new() -> Self {
        Liveness {
            started: Instant::now(),
            last_progress_ms: AtomicI64::new(0),
            total_lag: AtomicI64::new(-1),
            owns_partitions: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> i64 {
        self.started.elapsed().as_millis() as i64
    }

    /// The run loop handled records.
    pub fn progressed(&self) {
        self.last_progress_ms
            .store(self.now_ms(), Ordering::Relaxed);
    }

    /// The client's latest view of the total lag.
    pub fn set_total_lag(&self, lag: i64) {
        self.total_lag.store(lag, Ordering::Relaxed);
    }

    /// The total lag, or -1 when unknown.
    pub fn total_lag(&self) -> i64 {
        self.total_lag.load(Ordering::Relaxed)
    }

    /// Whether the worker owns any partition now.
    pub fn set_owns_partitions(&self, owns: bool) {
        self.owns_partitions.store(owns, Ordering::Relaxed);
    }

    /// How long the worker has held lag without handling a record, if it
    /// is in that state.
    fn stalled_for(&self) -> Option<Duration> {
        if !self.owns_partitions.load(Ordering::Relaxed) || self.total_lag() <= 0 {
            return None;
        }
        let idle_ms = self.now_ms() - self.last_progress_ms.load(Ordering::Relaxed);
        Some(Duration::from_millis(idle_ms.max(0) as u64))
    }
}

/// Checks the worker every few seconds, for as long as the process runs.
pub async fn watch(
    liveness: Arc<Liveness>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    stall_after: Duration,
) {
    let period = (stall_after / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(period);
    let mut stalled = false;
    loop {
        ticker.tick().await;
        match liveness.stalled_for() {
            Some(idle) if idle >= stall_after => {
                if !stalled {
                    stalled = true;
                    metrics.stalled(true);
                    tracing::error!(lag = liveness.total_lag(), idle = ?idle, "worker holds lagging partitions but makes no progress");
                }
                health.set_problem(
                    "watchdog",
                    format!(
                        "stalled: {} messages of lag and no record handled for {}s",
                        liveness.total_lag(),
                        idle.as_secs()
                    ),
                );
            }
            _ if stalled => {
                stalled = false;
                metrics.stalled(false);
                tracing::info!("worker makes progress again");
                health.clear_problem("watchdog");
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lag_without_progress_turns_readiness_red_and_progress_turns_it_green() {
        let liveness = Arc::new(Liveness::new());
        let metrics = Arc::new(Metrics::new());
        let health = Health::new();
        health.set_ready();
        liveness.set_owns_partitions(true);
        liveness.set_total_lag(42);
        liveness.progressed();
        tokio::spawn(watch(
            liveness.clone(),
            metrics.clone(),
            health.clone(),
            Duration::from_millis(400),
        ));

        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(
            !health.is_ready(),
            "42 messages of lag and no progress for 1.2 s"
        );
        assert!(metrics.render().contains("newsflow_worker_stalled 1"));
        assert!(metrics.render().contains("newsflow_worker_stalls_total 1"));

        liveness.progressed();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(health.is_ready(), "records flow again");
        assert!(metrics.render().contains("newsflow_worker_stalled 0"));
    }

    #[tokio::test]
    async fn no_lag_is_no_stall_however_quiet() {
        let liveness = Arc::new(Liveness::new());
        let metrics = Arc::new(Metrics::new());
        let health = Health::new();
        health.set_ready();
        liveness.set_owns_partitions(true);
        liveness.set_total_lag(0);
        tokio::spawn(watch(
            liveness.clone(),
            metrics.clone(),
            health.clone(),
            Duration::from_millis(200),
        ));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(health.is_ready());
        assert!(metrics.render().contains("newsflow_worker_stalls_total 0"));
    }
}
