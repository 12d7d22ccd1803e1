//! The consumer's librdkafka context: rebalance callbacks hand partitions to
//! and from the [`Worker`], statistics become lag gauges.
//!
//! librdkafka calls these from inside `poll()`, on the run loop's own
//! thread, between two records. So a revocation is handled after the last
//! record of the partition and before anything else: no signal has to cross
//! threads, and the run loop never holds the worker's lock while polling.

use std::sync::{Arc, Mutex};

use newsflow_telemetry::{Metrics, Rebalance};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::ClientContext;
use rdkafka::TopicPartitionList;

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

/// A partition's lag as the group sees it. librdkafka reports
/// `consumer_lag` as -1 until the group has committed an offset; before
/// that, every retained record is still to be consumed as far as the group
/// (and any lag tool) knows, so the lag is counted from the low watermark.
/// Without that, a worker that never manages to write its output would show
/// no lag at all, and the lag alert would not fire for it.
fn group_lag(p: &rdkafka::statistics::Partition) -> Option<i64> {
    if p.consumer_lag >= 0 {
        Some(p.consumer_lag)
    } else if p.hi_offset >= 0 {
        Some(p.hi_offset - p.committed_offset.max(p.lo_offset).max(0))
    } else {
        None
    }
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
        let rtt: Vec<(String, f64)> = statistics
            .brokers
            .values()
            .filter(|b| b.nodeid >= 0)
            .filter_map(|b| {
                let window = b.rtt.as_ref()?;
                (window.cnt > 0).then(|| (b.nodename.clone(), window.avg as f64 / 1e6))
            })
            .collect();
        let mut fetch_queue = 0;
        let mut total = 0;
        for topic in &self.topics {
            let Some(stats) = statistics.topics.get(topic) else {
                continue;
            };
            for (partition, p) in &stats.partitions {
                if *partition < 0 || !p.desired {
                    continue;
                }
                fetch_queue += p.fetchq_cnt;
                if let Some(lag) = group_lag(p) {
                    self.metrics.lag(topic, *partition, lag);
                    total += lag;
                }
            }
        }
        self.liveness.set_total_lag(total);
        self.metrics.kafka_client(&rtt, fetch_queue);
    }
}

impl WorkerContext {
    /// The same partition numbers of all three event topics: what owning
    /// the `articles` partitions in `group_partitions` means.
    fn co_partitions(&self, group_partitions: &TopicPartitionList) -> TopicPartitionList {
        let mut all = TopicPartitionList::new();
        for element in group_partitions.elements() {
            for topic in &self.topics {
                all.add_partition(topic, element.partition());
            }
        }
        all
    }
}

/// Group membership is driven by the articles topic alone, with the
/// cooperative-sticky assignor: a rebalance moves only the partitions that
/// change owner, and the others keep being read. The callback then takes
/// or gives up the same partition numbers of the comments and forum-posts
/// topics too, so one worker still owns every event of an article (the
/// co-partitioning the contract promises, which no built-in assignor keeps
/// across three topics except the eager `range`).
impl ConsumerContext for WorkerContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        group_partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let shards = self.co_partitions(group_partitions);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assigned(consumer, &shards, cooperative)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoked(consumer, &shards, cooperative)
            }
            other => tracing::error!(error = ?other, "rebalance error"),
        }
    }
}

impl WorkerContext {
    /// Partitions given to this worker: their shards are restored before
    /// they are fetched.
    fn assigned(
        &self,
        consumer: &BaseConsumer<Self>,
        shards: &TopicPartitionList,
        cooperative: bool,
    ) {
        self.metrics.rebalanced(Rebalance::Assign);
        let (owned, resumed) = {
            let mut worker = self.lock();
            let resumed = worker.assign(shards);
            (worker.shards(), resumed)
        };
        // Before the fetch starts, so that it starts there too.
        if resumed.count() > 0 {
            commit_offsets(consumer, &resumed);
        }
        let result = if cooperative {
            consumer.incremental_assign(shards)
        } else {
            consumer.assign(shards)
        };
        match result {
            Ok(()) => tracing::info!(shards = ?owned, "partitions assigned"),
            Err(e) => tracing::error!(error = %e, "assigning partitions failed"),
        }
    }

    /// Partitions taken away: flushed, checkpointed and committed first,
    /// unless they were lost.
    fn revoked(
        &self,
        consumer: &BaseConsumer<Self>,
        shards: &TopicPartitionList,
        cooperative: bool,
    ) {
        self.metrics.rebalanced(Rebalance::Revoke);
        if consumer.assignment_lost() {
            // The group already gave these partitions to someone else (our
            // session expired): writing now could race the new owner. Drop
            // the unflushed progress; the new owner resumes from the last
            // checkpoint.
            tracing::warn!(
                partitions = shards.count(),
                "partitions lost; dropping unflushed state"
            );
            self.lock().drop_shards(shards);
        } else {
            let commit = self.lock().revoke(shards, crate::now_micros());
            if let Some(offsets) = commit {
                commit_offsets(consumer, &offsets);
            }
        }
        let result = if cooperative {
            consumer.incremental_unassign(shards)
        } else {
            consumer.unassign()
        };
        match result {
            Ok(()) => tracing::info!(
                partitions = shards.count(),
                "partitions revoked after flushing them"
            ),
            Err(e) => tracing::error!(error = %e, "unassigning partitions failed"),
        }
    }
}

/// Commits offsets the tables already hold to the group, timed and counted.
/// A failure is not fatal: the tables' logs are the source of truth, and
/// the next commit carries the same offsets forward; the group's offsets
/// only trail for lag tools.
pub fn commit_offsets(consumer: &BaseConsumer<WorkerContext>, offsets: &TopicPartitionList) {
    let started = std::time::Instant::now();
    let result = consumer.commit(offsets, CommitMode::Sync);
    let seconds = started.elapsed().as_secs_f64();
    if let Err(e) = &result {
        tracing::warn!(error = %e, "offset commit failed; will retry with the next flush");
    }
    consumer
        .context()
        .metrics
        .committed(result.is_ok(), seconds);
}
