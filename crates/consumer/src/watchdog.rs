//! The stall watchdog: a worker that owns partitions with lag but handles
//! no record for `watchdog.stall_after` is not doing its job, whatever the
//! reason (a wedged broker connection, a flush that never returns, a bug).
//! It then reports not-ready, so the orchestrator can act, and counts the
//! stall in a metric so dashboards and alerts see it.
//!
//! It also watches the flush in flight: one that has been writing for
//! longer than a flush interval (the next one is due) means the store is
//! slow or unreachable
//! (its calls retry for up to 20 s each before a flush fails), and
//! `/readyz` says so long before the flush gives up.
//!
//! The checks run on the async runtime, not on the run loop's thread, so
//! they still fire when that thread is the thing that is stuck.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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
    /// Milliseconds after `started` when the flush in flight began; -1
    /// when none is.
    flush_started_ms: AtomicI64,
    /// The lake's count of failed store calls, published from here: the
    /// run loop may be the one blocked on the store.
    store_failures: OnceLock<Arc<AtomicU64>>,
}

impl Liveness {
    pub fn new() -> Self {
        Liveness {
            started: Instant::now(),
            last_progress_ms: AtomicI64::new(0),
            total_lag: AtomicI64::new(-1),
            owns_partitions: AtomicBool::new(false),
            flush_started_ms: AtomicI64::new(-1),
            store_failures: OnceLock::new(),
        }
    }

    /// The lake's count of failed store calls, for the metrics.
    pub fn watch_store_failures(&self, count: Arc<AtomicU64>) {
        let _ = self.store_failures.set(count);
    }

    fn store_failures(&self) -> u64 {
        self.store_failures
            .get()
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    /// When the flush in flight began, if one is.
    pub fn set_flush_started(&self, at: Option<Instant>) {
        let ms = at.map_or(-1, |at| {
            at.saturating_duration_since(self.started).as_millis() as i64
        });
        self.flush_started_ms.store(ms, Ordering::Relaxed);
    }

    /// How long the flush in flight has been writing, if one is.
    fn flush_running_for(&self) -> Option<Duration> {
        let started = self.flush_started_ms.load(Ordering::Relaxed);
        (started >= 0).then(|| Duration::from_millis((self.now_ms() - started).max(0) as u64))
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

/// What the watchdog holds the worker to.
pub struct Limits {
    /// `watchdog.stall_after`: lag without progress for this long is a stall.
    pub stall_after: Duration,
    /// A flush writing for longer than this is overdue.
    pub flush_overdue_after: Duration,
    /// The output root, named in the readiness reason.
    pub output: String,
}

impl Limits {
    /// A flush is overdue once the next one is due, a flush interval after
    /// it started, and never before 10 s (a debug build on a busy machine
    /// takes a few seconds for one). With the default 10 s interval,
    /// `/readyz` is red at most 20 s after the store stops answering.
    pub fn flush_overdue_after(flush_interval: Duration) -> Duration {
        flush_interval.max(Duration::from_secs(10))
    }
}

/// Checks the worker every few seconds, for as long as the process runs.
pub async fn watch(
    liveness: Arc<Liveness>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    limits: Limits,
) {
    let shortest = limits.stall_after.min(limits.flush_overdue_after);
    let period = (shortest / 4).clamp(Duration::from_millis(250), Duration::from_secs(5));
    let mut ticker = tokio::time::interval(period);
    let stall_after = limits.stall_after;
    let mut stalled = false;
    let mut overdue = false;
    loop {
        ticker.tick().await;
        overdue = check_flush(&liveness, &metrics, &health, &limits, overdue);
        metrics.store_failures_seen(liveness.store_failures());
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

/// Turns readiness red while the flush in flight is overdue, and green
/// again once it is not; returns whether it is overdue now.
fn check_flush(
    liveness: &Liveness,
    metrics: &Metrics,
    health: &Health,
    limits: &Limits,
    was_overdue: bool,
) -> bool {
    match liveness.flush_running_for() {
        Some(running) if running >= limits.flush_overdue_after => {
            if !was_overdue {
                metrics.flush_overdue(true);
                tracing::warn!(store = limits.output, running = ?running, "a flush has not finished writing to the store; it may be unreachable");
            }
            health.set_problem(
                "flush",
                format!(
                    "a flush to {} has been writing for {}s (overdue after {}s): the store is slow or unreachable",
                    limits.output,
                    running.as_secs(),
                    limits.flush_overdue_after.as_secs()
                ),
            );
            true
        }
        _ if was_overdue => {
            metrics.flush_overdue(false);
            tracing::info!(store = limits.output, "the overdue flush finished");
            health.clear_problem("flush");
            false
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use newsflow_telemetry::Binary;

    use super::*;

    fn limits(stall_after: Duration) -> Limits {
        Limits {
            stall_after,
            flush_overdue_after: Duration::from_secs(3600),
            output: "file:///lake/".into(),
        }
    }

    #[tokio::test]
    async fn an_overdue_flush_turns_readiness_red_until_it_finishes() {
        let liveness = Arc::new(Liveness::new());
        let metrics = Arc::new(Metrics::new(Binary::Worker));
        let health = Health::new();
        health.set_ready();
        tokio::spawn(watch(
            liveness.clone(),
            metrics.clone(),
            health.clone(),
            Limits {
                stall_after: Duration::from_secs(3600),
                flush_overdue_after: Duration::from_millis(400),
                output: "s3://bucket/lake/".into(),
            },
        ));
        liveness.set_flush_started(Some(Instant::now()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(health.is_ready(), "a flush of 0.2 s is not overdue");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert!(!health.is_ready(), "a flush of 0.8 s is");
        assert!(
            health.not_ready_because().contains("s3://bucket/lake/"),
            "{}",
            health.not_ready_because()
        );
        assert!(metrics.render().contains("newsflow_flush_overdue 1"));
        liveness.set_flush_started(None);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(health.is_ready(), "the flush finished");
        assert!(metrics.render().contains("newsflow_flush_overdue 0"));
    }

    #[tokio::test]
    async fn lag_without_progress_turns_readiness_red_and_progress_turns_it_green() {
        let liveness = Arc::new(Liveness::new());
        let metrics = Arc::new(Metrics::new(Binary::Worker));
        let health = Health::new();
        health.set_ready();
        liveness.set_owns_partitions(true);
        liveness.set_total_lag(42);
        liveness.progressed();
        tokio::spawn(watch(
            liveness.clone(),
            metrics.clone(),
            health.clone(),
            limits(Duration::from_millis(400)),
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
        let metrics = Arc::new(Metrics::new(Binary::Worker));
        let health = Health::new();
        health.set_ready();
        liveness.set_owns_partitions(true);
        liveness.set_total_lag(0);
        tokio::spawn(watch(
            liveness.clone(),
            metrics.clone(),
            health.clone(),
            limits(Duration::from_millis(200)),
        ));
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert!(health.is_ready());
        assert!(metrics.render().contains("newsflow_worker_stalls_total 0"));
    }
}
