//! The consumer's librdkafka context: rebalance callbacks hand partitions to
//! and from the [`Worker`], statistics become lag gauges.
//!
//! librdkafka calls these from inside `poll()`, on the run loop's own
//! thread, between two records. So a revocation is handled after the last
//! record of the partition and before anything else: no signal has to cross
//! threads, and the run loop never holds the worker's lock while polling.

use std::sync::{Arc, Mutex};

use newsflow_telemetry::Metrics;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use crate::watchdog::Liveness;
use crate::worker::Worker;

/// Shared between the run loop and librdkafka's callbacks.
pub struct WorkerContext {
    pub worker: Arc<Mutex<Worker>>,
    pub metrics: Arc<Metrics>,
    pub topics: [String; 3],
    /// Where the total lag is reported, for progress lines and the watchdog.
    pub liveness: Arc<Liveness>,
}

impl WorkerContext {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Worker> {
        // A panic while holding the lock would already have stopped the
        // process (panic = abort is not set, but the run loop exits on any
        // panic); recover the guard rather than poison every later call.
        self.worker.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        let mut total = 0;
        for topic in &self.topics {
            let Some(stats) = statistics.topics.get(topic) else {
                continue;
            };
            for (partition, p) in &stats.partitions {
                if *partition < 0 || !p.desired {
                    continue;
                }
                // librdkafka reports -1 until it knows both ends.
                if p.consumer_lag >= 0 {
                    self.metrics.lag(topic, *partition, p.consumer_lag);
                    total += p.consumer_lag;
                }
            }
        }
        self.liveness.set_total_lag(total);
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance {
            self.metrics.rebalanced("revoke");
            let commit = self.lock().revoke(revoked, crate::now_micros());
            if let Some(offsets) = commit {
                let ok = consumer.commit(&offsets, CommitMode::Sync).is_ok();
                self.metrics.committed(ok);
            }
            tracing::info!(
                partitions = revoked.count(),
                "partitions revoked after flushing them"
            );
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(assigned) => {
                self.metrics.rebalanced("assign");
                let mut worker = self.lock();
                worker.assign(assigned);
                tracing::info!(shards = ?worker.shards(), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance error"),
        }
    }
}
