//! The metric definitions of the contract's section 7 and a few more, with
//! one method per happening.

use newsflow_core::{EventType, Rejection};
use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::labels::{
    ConnectionClose, FlushStage, IngestOutcome, LakeOutcome, OffsetCommit, ProduceError, Rebalance,
    Table,
};

/// Buckets of `newsflow_end_to_end_latency_seconds`: from a tenth of a
/// second (a live stream) to a week (a backfill of old events).
const LATENCY_BUCKETS: [f64; 17] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21_600.0,
    86_400.0, 604_800.0,
];

/// Which binary the metrics are for: each exports only its own series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// `newsflow-consumer`: counting, the lake, the consumer group.
    Worker,
    /// `newsflow-producer`: publishing and HTTP ingest.
    Producer,
}

/// Every metric newsflow exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    binary: Binary,
    events_consumed: IntCounterVec,
    events_duplicate: IntCounterVec,
    events_dead_lettered: IntCounterVec,
    consumer_lag: IntGaugeVec,
    files_written: IntCounterVec,
    rows_written: IntCounterVec,
    bytes_written: IntCounterVec,
    flush_duration: HistogramVec,
    watermark_lag: Gauge,
    events_produced: IntCounterVec,
    produce_errors: IntCounterVec,
    partitions_assigned: IntGauge,
    rebalances: IntCounterVec,
    articles_tracked: IntGauge,
    articles_cold: IntGauge,
    dedup_entries: IntGauge,
    commits: IntCounterVec,
    stalled: IntGauge,
    stalls: IntCounter,
    flush_overdue: IntGauge,
    store_failures: IntCounter,
    flush_failures: IntCounterVec,
    ingest_requests: IntCounterVec,
    ingest_events: IntCounterVec,
    ingest_connections_closed: IntCounterVec,
    checkpoint_duration: Histogram,
    commit_duration: Histogram,
    end_to_end_latency: Histogram,
    dedup_memory: IntGauge,
    broker_rtt: GaugeVec,
    fetch_queue: IntGauge,
    lake_commits: IntCounterVec,
    lake_commit_duration: HistogramVec,
    shards_fenced: IntCounter,
}

impl Metrics {
    /// Creates and registers every metric (and the process collector, for
    /// CPU and memory, where the platform supports it).
    pub fn new(binary: Binary) -> Self {
        let registry = Registry::new();
        // Each binary registers only its own series (an unregistered
        // metric still takes updates, which go nowhere), so a scrape shows
        // what that binary does and no series of the other at zero.
        let worker = (binary == Binary::Worker).then_some(&registry);
        let producer = (binary == Binary::Producer).then_some(&registry);
        let fast = || exponential_buckets(0.0005, 2.0, 16).expect("valid buckets");
        let flushes = || exponential_buckets(0.001, 2.0, 16).expect("valid buckets");
        let metrics = Metrics {
            events_consumed: counter_vec(worker, "newsflow_events_consumed_total",
                "Valid events read from Kafka, duplicates included.", &["topic", "event_type"]),
            events_duplicate: counter_vec(worker, "newsflow_events_duplicate_total",
                "Events not counted because their event_id was already counted within the dedup horizon.",
                &["event_type"]),
            events_dead_lettered: counter_vec(worker, "newsflow_events_dead_lettered_total",
                "Messages rejected by validation, by stable reason code.", &["reason"]),
            consumer_lag: gauge_vec(worker, "newsflow_consumer_lag_messages",
                "Messages between the partition's high watermark and the group's committed offset.",
                &["topic", "partition"]),
            files_written: counter_vec(worker, "newsflow_parquet_files_written_total",
                "Parquet files committed to the output.", &["dataset"]),
            rows_written: counter_vec(worker, "newsflow_parquet_rows_written_total",
                "Rows in committed Parquet files.", &["dataset"]),
            bytes_written: counter_vec(worker, "newsflow_parquet_bytes_written_total",
                "Bytes of committed Parquet files.", &["dataset"]),
            flush_duration: histogram_vec(worker, "newsflow_flush_duration_seconds",
                "Time to encode and durably commit one flush's files of a dataset.",
                flushes(), &["dataset"]),
            watermark_lag: register(worker, Gauge::new("newsflow_watermark_lag_seconds",
                "Processing time minus the lowest event-time watermark of the assigned partitions.")
                .expect("valid metric")),
            events_produced: counter_vec(producer, "newsflow_events_produced_total",
                "Events acknowledged by Kafka (acks=all).", &["topic"]),
            produce_errors: counter_vec(producer, "newsflow_produce_errors_total",
                "Events Kafka did not acknowledge, or lines refused before sending, by reason.",
                &["reason"]),
            partitions_assigned: gauge(worker, "newsflow_partitions_assigned",
                "Shards (partition numbers of the co-partitioned event topics) owned by this worker."),
            rebalances: counter_vec(worker, "newsflow_rebalances_total",
                "Consumer group rebalance events seen by this worker.", &["kind"]),
            articles_tracked: gauge(worker, "newsflow_articles_tracked", "Articles held in counting state."),
            articles_cold: gauge(worker, "newsflow_articles_cold",
                "Articles idle for a whole dedup horizon, held in cold segments on disk instead of memory."),
            dedup_entries: gauge(worker, "newsflow_dedup_entries",
                "Event-id fingerprints held for deduplication within the horizon."),
            commits: counter_vec(worker, "newsflow_offset_commits_total",
                "Offset commits to the consumer group after a checkpoint, by result.", &["result"]),
            stalled: gauge(worker, "newsflow_worker_stalled",
                "1 while the worker owns lagging partitions but handles no record (see watchdog.stall_after)."),
            stalls: counter(worker, "newsflow_worker_stalls_total", "Times the watchdog found the worker stalled."),
            flush_overdue: gauge(worker, "newsflow_flush_overdue",
                "1 while a flush has been writing for longer than a flush interval, when the next one is due (the store is slow or unreachable)."),
            store_failures: counter(worker, "newsflow_store_errors_total",
                "Object-store calls that failed after the client's own retries (20 s at most); the flush or restore that made each is retried."),
            flush_failures: counter_vec(worker, "newsflow_flush_failures_total",
                "Flushes that could not make their output durable and will be retried, by what failed (output, dead_letters).",
                &["stage"]),
            ingest_requests: counter_vec(producer, "newsflow_ingest_requests_total",
                "HTTP ingest requests answered, by status code.", &["code"]),
            ingest_events: counter_vec(producer, "newsflow_ingest_events_total",
                "Events received over HTTP, by outcome (accepted, rejected, unpublished).", &["outcome"]),
            ingest_connections_closed: counter_vec(producer, "newsflow_ingest_connections_closed_total",
                "HTTP ingest connections the server closed before the client did: idle ones let go for a new one at ingest.max_connections (evicted), new ones refused because no connection could go (refused), and ones whose headers missed ingest.header_timeout (header_timeout).",
                &["reason"]),
            checkpoint_duration: histogram(worker, "newsflow_checkpoint_duration_seconds",
                "Time to write and sync one shard's checkpoint.", fast()),
            commit_duration: histogram(worker, "newsflow_commit_duration_seconds",
                "Time of one synchronous offset commit to the consumer group.", fast()),
            end_to_end_latency: histogram(worker, "newsflow_end_to_end_latency_seconds",
                "From an event's occurred_at to the checkpoint that makes it durable in Parquet.",
                LATENCY_BUCKETS.to_vec()),
            dedup_memory: gauge(worker, "newsflow_dedup_memory_bytes",
                "Heap bytes held by the event-id fingerprints of the dedup horizon."),
            broker_rtt: register(worker, GaugeVec::new(Opts::new("newsflow_kafka_broker_rtt_seconds",
                "Mean request round-trip time to each broker over the last statistics interval."),
                &["broker"]).expect("valid metric")),
            fetch_queue: gauge(worker, "newsflow_kafka_fetch_queue_messages",
                "Messages fetched by the client and not yet handled, over the assigned partitions."),
            lake_commits: counter_vec(worker, "newsflow_lake_commits_total",
                "Delta commits by table and outcome: committed, conflict_retried (a race lost to another commit, tried again), fenced (a shard's flush left out because another owner committed for it).",
                &["table", "outcome"]),
            lake_commit_duration: histogram_vec(worker, "newsflow_lake_commit_duration_seconds",
                "Time to commit one flush to one Delta table, lost races and retries included.",
                flushes(), &["table"]),
            shards_fenced: counter(worker, "newsflow_shards_fenced_total",
                "Shards this worker dropped because another owner committed for them (it had lost them, for instance while paused)."),
            registry,
            binary,
        };
        gauge_vec(
            Some(&metrics.registry),
            "newsflow_build_info",
            "Always 1; the version of the running binary.",
            &["version"],
        )
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        #[cfg(target_os = "linux")]
        metrics
            .registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("each metric is registered once");
        metrics
    }

    /// Pre-creates the labelled series a dashboard expects to see at zero,
    /// so a rate over them exists before the first happening: those of
    /// this binary only (`topics` are the producer's).
    pub fn preregister(&self, topics: &[&str]) {
        match self.binary {
            Binary::Worker => self.preregister_worker(),
            Binary::Producer => self.preregister_producer(topics),
        }
    }

    fn preregister_worker(&self) {
        for reason in newsflow_core::RejectReason::ALL {
            self.events_dead_lettered
                .with_label_values(&[reason.code()]);
        }
        for event_type in newsflow_core::EventType::ALL {
            self.events_duplicate
                .with_label_values(&[event_type.as_str()]);
        }
        for stage in FlushStage::ALL {
            self.flush_failures.with_label_values(&[stage.as_str()]);
        }
        for kind in Rebalance::ALL {
            self.rebalances.with_label_values(&[kind.as_str()]);
        }
        for table in Table::ALL {
            for outcome in LakeOutcome::ALL {
                self.lake_commits
                    .with_label_values(&[table.as_str(), outcome.as_str()]);
            }
        }
        for result in OffsetCommit::ALL {
            self.commits.with_label_values(&[result.as_str()]);
        }
    }

    fn preregister_producer(&self, topics: &[&str]) {
        for topic in topics {
            self.events_produced.with_label_values(&[topic]);
        }
        for reason in ProduceError::all() {
            self.produce_errors.with_label_values(&[reason.as_str()]);
        }
        for reason in ConnectionClose::ALL {
            self.ingest_connections_closed
                .with_label_values(&[reason.as_str()]);
        }
    }

    /// A flush's commit to the Delta table `table`: commits made, races
    /// lost and retried, shards left out because they were fenced, and the
    /// time it all took.
    pub fn lake_committed(
        &self,
        table: Table,
        committed: u64,
        conflicts: u64,
        fenced: u64,
        seconds: f64,
    ) {
        for (outcome, n) in [
            (LakeOutcome::Committed, committed),
            (LakeOutcome::ConflictRetried, conflicts),
            (LakeOutcome::Fenced, fenced),
        ] {
            if n > 0 {
                self.lake_commits
                    .with_label_values(&[table.as_str(), outcome.as_str()])
                    .inc_by(n);
            }
        }
        self.lake_commit_duration
            .with_label_values(&[table.as_str()])
            .observe(seconds);
    }

    /// A shard was fenced: another owner committed flush `found` to
    /// `table` for it while ours was `ours`. Logged and counted; the worker
    /// drops the shard.
    pub fn shard_fenced(&self, shard: i32, table: Table, found: u64, ours: u64) {
        tracing::warn!(
            shard,
            table = table.as_str(),
            found,
            ours,
            "fenced: another owner committed for this shard; dropping it"
        );
        self.shards_fenced.inc();
    }

    /// `n` valid events of `event_type` were read from `topic`.
    pub fn consumed(&self, topic: &str, event_type: EventType, n: u64) {
        self.events_consumed
            .with_label_values(&[topic, event_type.as_str()])
            .inc_by(n);
    }

    /// `n` events were recognised as redeliveries and not counted again.
    pub fn duplicate(&self, event_type: EventType, n: u64) {
        self.events_duplicate
            .with_label_values(&[event_type.as_str()])
            .inc_by(n);
    }

    /// A message at `topic`/`partition`/`offset` failed validation and goes
    /// to the dead-letter topic: logged with its detail, and counted by
    /// reason.
    pub fn dead_lettered(&self, rejection: &Rejection, topic: &str, partition: i32, offset: i64) {
        let reason = rejection.reason.code();
        tracing::warn!(topic, partition, offset, reason, detail = %rejection.detail, "dead-lettered a message");
        self.events_dead_lettered.with_label_values(&[reason]).inc();
    }

    /// The lag of one assigned partition, as the client last saw it.
    pub fn lag(&self, topic: &str, partition: i32, messages: i64) {
        self.consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(messages);
    }

    /// A partition is no longer ours: its lag is someone else's to report.
    pub fn forget_lag(&self, topic: &str, partition: i32) {
        let _ = self
            .consumer_lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    /// Files of `dataset` were committed.
    pub fn written(&self, dataset: Table, files: u64, rows: u64, bytes: u64, seconds: f64) {
        let dataset = dataset.as_str();
        self.files_written
            .with_label_values(&[dataset])
            .inc_by(files);
        self.rows_written.with_label_values(&[dataset]).inc_by(rows);
        self.bytes_written
            .with_label_values(&[dataset])
            .inc_by(bytes);
        if files > 0 {
            self.flush_duration
                .with_label_values(&[dataset])
                .observe(seconds);
        }
    }

    /// The watermark of the slowest assigned partition trails the wall
    /// clock by this many seconds.
    pub fn watermark_lag(&self, seconds: f64) {
        self.watermark_lag.set(seconds);
    }

    /// Kafka acknowledged `n` events on `topic`.
    pub fn produced(&self, topic: &str, n: u64) {
        self.events_produced.with_label_values(&[topic]).inc_by(n);
    }

    /// An event could not be produced, for `reason`.
    pub fn produce_error(&self, reason: impl Into<ProduceError>) {
        self.produce_errors(reason, 1);
    }

    /// `n` events could not be produced, all for `reason`.
    pub fn produce_errors(&self, reason: impl Into<ProduceError>, n: u64) {
        self.produce_errors
            .with_label_values(&[reason.into().as_str()])
            .inc_by(n);
    }

    /// The group assigned or revoked partitions.
    pub fn rebalanced(&self, kind: Rebalance) {
        self.rebalances.with_label_values(&[kind.as_str()]).inc();
    }

    /// Number of shards this worker owns now.
    pub fn partitions_assigned(&self, n: usize) {
        self.partitions_assigned.set(n as i64);
    }

    /// Size of the counting state.
    pub fn state_size(
        &self,
        articles: usize,
        cold_articles: usize,
        dedup_entries: usize,
        dedup_bytes: usize,
    ) {
        self.articles_tracked.set(articles as i64);
        self.articles_cold.set(cold_articles as i64);
        self.dedup_entries.set(dedup_entries as i64);
        self.dedup_memory.set(dedup_bytes as i64);
    }

    /// A checkpoint took `seconds` to write.
    pub fn checkpointed(&self, seconds: f64) {
        self.checkpoint_duration.observe(seconds);
    }

    /// Events with these ages (seconds from their event time) became durable.
    pub fn durable(&self, ages: impl Iterator<Item = f64>) {
        let local = self.end_to_end_latency.local();
        for age in ages {
            local.observe(age.max(0.0));
        }
        local.flush();
    }

    /// The client's statistics: mean round trip per broker, fetched
    /// messages waiting.
    pub fn kafka_client(&self, broker_rtt: &[(String, f64)], fetch_queue: i64) {
        for (broker, seconds) in broker_rtt {
            self.broker_rtt.with_label_values(&[broker]).set(*seconds);
        }
        self.fetch_queue.set(fetch_queue);
    }

    /// An offset commit finished, successfully or not, in `seconds`.
    pub fn committed(&self, ok: bool, seconds: f64) {
        self.commit_duration.observe(seconds);
        self.commits
            .with_label_values(&[OffsetCommit::of(ok).as_str()])
            .inc();
    }

    /// The watchdog found the worker stalled (`true`) or moving again.
    pub fn stalled(&self, stalled: bool) {
        if stalled {
            self.stalls.inc();
        }
        self.stalled.set(i64::from(stalled));
    }

    /// Whether a flush has been writing for too long (logged by the
    /// watchdog, which knows for how long).
    pub fn flush_overdue(&self, overdue: bool) {
        self.flush_overdue.set(i64::from(overdue));
    }

    /// The lake's count of failed store calls, each logged where it
    /// happened; the counter follows it.
    pub fn store_failures_seen(&self, total: u64) {
        let counted = self.store_failures.get();
        if total > counted {
            self.store_failures.inc_by(total - counted);
        }
    }

    /// A flush failed at `stage` with `problem`: logged and counted. The
    /// shards concerned start over from their last commit.
    pub fn flush_failed(&self, stage: FlushStage, problem: &dyn std::fmt::Display) {
        tracing::error!(stage = stage.as_str(), problem = %problem, "flush failed; the shards restart from their last commit");
        self.flush_failures
            .with_label_values(&[stage.as_str()])
            .inc();
    }

    /// An HTTP ingest request was answered with `status`.
    pub fn ingest_request(&self, status: u16) {
        self.ingest_requests
            .with_label_values(&[&status.to_string()])
            .inc();
    }

    /// `n` events received over HTTP ended as `outcome`.
    pub fn ingest_events(&self, outcome: IngestOutcome, n: u64) {
        self.ingest_events
            .with_label_values(&[outcome.as_str()])
            .inc_by(n);
    }

    /// The ingest endpoint closed a connection for `reason`.
    pub fn ingest_connection_closed(&self, reason: ConnectionClose) {
        self.ingest_connections_closed
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("text encoding of gathered metrics cannot fail");
        String::from_utf8(buffer).expect("prometheus text is UTF-8")
    }
}

/// Registers `metric` (when its binary's `registry` is given) and hands
/// it back: every constructor below ends here.
fn register<M: Collector + Clone + 'static>(registry: Option<&Registry>, metric: M) -> M {
    if let Some(registry) = registry {
        registry
            .register(Box::new(metric.clone()))
            .expect("each metric is registered once");
    }
    metric
}

fn counter(registry: Option<&Registry>, name: &str, help: &str) -> IntCounter {
    register(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn counter_vec(
    registry: Option<&Registry>,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntCounterVec {
    register(
        registry,
        IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn gauge(registry: Option<&Registry>, name: &str, help: &str) -> IntGauge {
    register(registry, IntGauge::new(name, help).expect("valid metric"))
}

fn gauge_vec(registry: Option<&Registry>, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric"),
    )
}

fn histogram(registry: Option<&Registry>, name: &str, help: &str, buckets: Vec<f64>) -> Histogram {
    register(
        registry,
        Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
            .expect("valid metric"),
    )
}

fn histogram_vec(
    registry: Option<&Registry>,
    name: &str,
    help: &str,
    buckets: Vec<f64>,
    labels: &[&str],
) -> HistogramVec {
    register(
        registry,
        HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("valid metric"),
    )
}
