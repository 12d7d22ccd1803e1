//! The metric definitions of the contract's section 7 and a few more, with
//! one method per happening.

use prometheus::{
    exponential_buckets, Encoder, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Buckets of `newsflow_end_to_end_latency_seconds`: from a tenth of a
/// second (a live stream) to a week (a backfill of old events).
const LATENCY_BUCKETS: [f64; 17] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21_600.0,
    86_400.0, 604_800.0,
];

/// Why the ingest endpoint closed a connection itself: the `reason` of
/// `newsflow_ingest_connections_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionClose {
    /// An idle connection let go for a new one at `ingest.max_connections`.
    Evicted,
    /// A new connection refused because every connection was mid-request.
    Refused,
    /// A connection whose request headers missed `ingest.header_timeout`.
    HeaderTimeout,
}

impl ConnectionClose {
    /// Every reason, for pre-registering the series.
    pub const ALL: [ConnectionClose; 3] = [
        ConnectionClose::Evicted,
        ConnectionClose::Refused,
        ConnectionClose::HeaderTimeout,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionClose::Evicted => "evicted",
            ConnectionClose::Refused => "refused",
            ConnectionClose::HeaderTimeout => "header_timeout",
        }
    }
}

/// Every metric newsflow exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
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
    stalls: prometheus::IntCounter,
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
    shards_fenced: prometheus::IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric (and the process collector, for
    /// CPU and memory, where the platform supports it).
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let events_consumed = counter(
            "newsflow_events_consumed_total",
            "Valid events read from Kafka, duplicates included.",
            &["topic", "event_type"],
        );
        let events_duplicate = counter(
            "newsflow_events_duplicate_total",
            "Events not counted because their event_id was already counted within the dedup horizon.",
            &["event_type"],
        );
        let events_dead_lettered = counter(
            "newsflow_events_dead_lettered_total",
            "Messages rejected by validation, by stable reason code.",
            &["reason"],
        );
        let files_written = counter(
            "newsflow_parquet_files_written_total",
            "Parquet files committed to the output.",
            &["dataset"],
        );
        let rows_written = counter(
            "newsflow_parquet_rows_written_total",
            "Rows in committed Parquet files.",
            &["dataset"],
        );
        let bytes_written = counter(
            "newsflow_parquet_bytes_written_total",
            "Bytes of committed Parquet files.",
            &["dataset"],
        );
        let events_produced = counter(
            "newsflow_events_produced_total",
            "Events acknowledged by Kafka (acks=all).",
            &["topic"],
        );
        let produce_errors = counter(
            "newsflow_produce_errors_total",
            "Events Kafka did not acknowledge, or lines refused before sending, by reason.",
            &["reason"],
        );
        let rebalances = counter(
            "newsflow_rebalances_total",
            "Consumer group rebalance events seen by this worker.",
            &["kind"],
        );
        let commits = counter(
            "newsflow_offset_commits_total",
            "Offset commits to the consumer group after a checkpoint, by result.",
            &["result"],
        );
        let flush_failures = counter(
            "newsflow_flush_failures_total",
            "Flushes that could not make their output durable and will be retried, by what failed (output, dead_letters).",
            &["stage"],
        );
        let ingest_requests = counter(
            "newsflow_ingest_requests_total",
            "HTTP ingest requests answered, by status code.",
            &["code"],
        );
        let ingest_events = counter(
            "newsflow_ingest_events_total",
            "Events received over HTTP, by outcome (accepted, rejected, unpublished).",
            &["outcome"],
        );
        let ingest_connections_closed = counter(
            "newsflow_ingest_connections_closed_total",
            "HTTP ingest connections the server closed before the client did: idle ones let go for a new one at ingest.max_connections (evicted), new ones refused because every connection was mid-request (refused), and ones whose headers missed ingest.header_timeout (header_timeout).",
            &["reason"],
        );
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "newsflow_consumer_lag_messages",
                "Messages between the partition's high watermark and the group's committed offset.",
            ),
            &["topic", "partition"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(consumer_lag.clone()))
            .expect("unique metric");
        let flush_duration = HistogramVec::new(
            HistogramOpts::new(
                "newsflow_flush_duration_seconds",
                "Time to encode and durably commit one flush's files of a dataset.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 16).expect("valid buckets")),
            &["dataset"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(flush_duration.clone()))
            .expect("unique metric");
        let watermark_lag = Gauge::new(
            "newsflow_watermark_lag_seconds",
            "Processing time minus the lowest event-time watermark of the assigned partitions.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(watermark_lag.clone()))
            .expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let partitions_assigned = gauge(
            "newsflow_partitions_assigned",
            "Shards (partition numbers of the co-partitioned event topics) owned by this worker.",
        );
        let articles_tracked = gauge(
            "newsflow_articles_tracked",
            "Articles held in counting state.",
        );
        let articles_cold = gauge(
            "newsflow_articles_cold",
            "Articles idle for a whole dedup horizon, held in cold segments on disk instead of memory.",
        );
        let dedup_entries = gauge(
            "newsflow_dedup_entries",
            "Event-id fingerprints held for deduplication within the horizon.",
        );
        let stalled = gauge(
            "newsflow_worker_stalled",
            "1 while the worker owns lagging partitions but handles no record (see watchdog.stall_after).",
        );
        let stalls = prometheus::IntCounter::new(
            "newsflow_worker_stalls_total",
            "Times the watchdog found the worker stalled.",
        )
        .expect("valid metric");
        registry
            .register(Box::new(stalls.clone()))
            .expect("unique metric");
        let histogram = |name: &str, help: &str, buckets: Vec<f64>| {
            let h = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets))
                .expect("valid metric");
            registry
                .register(Box::new(h.clone()))
                .expect("unique metric");
            h
        };
        let checkpoint_duration = histogram(
            "newsflow_checkpoint_duration_seconds",
            "Time to write and sync one shard's checkpoint.",
            exponential_buckets(0.0005, 2.0, 16).expect("valid buckets"),
        );
        let commit_duration = histogram(
            "newsflow_commit_duration_seconds",
            "Time of one synchronous offset commit to the consumer group.",
            exponential_buckets(0.0005, 2.0, 16).expect("valid buckets"),
        );
        let end_to_end_latency = histogram(
            "newsflow_end_to_end_latency_seconds",
            "From an event's occurred_at to the checkpoint that makes it durable in Parquet.",
            LATENCY_BUCKETS.to_vec(),
        );
        let dedup_memory = gauge(
            "newsflow_dedup_memory_bytes",
            "Heap bytes held by the event-id fingerprints of the dedup horizon.",
        );
        let fetch_queue = gauge(
            "newsflow_kafka_fetch_queue_messages",
            "Messages fetched by the client and not yet handled, over the assigned partitions.",
        );
        let broker_rtt = GaugeVec::new(
            Opts::new(
                "newsflow_kafka_broker_rtt_seconds",
                "Mean request round-trip time to each broker over the last statistics interval.",
            ),
            &["broker"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(broker_rtt.clone()))
            .expect("unique metric");
        let lake_commits = counter(
            "newsflow_lake_commits_total",
            "Delta commits by table and outcome: committed, conflict_retried (a race lost to another commit, tried again), fenced (a shard's flush left out because another owner committed for it).",
            &["table", "outcome"],
        );
        let lake_commit_duration = HistogramVec::new(
            HistogramOpts::new(
                "newsflow_lake_commit_duration_seconds",
                "Time to commit one flush to one Delta table, lost races and retries included.",
            )
            .buckets(exponential_buckets(0.001, 2.0, 16).expect("valid buckets")),
            &["table"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(lake_commit_duration.clone()))
            .expect("unique metric");
        let shards_fenced = prometheus::IntCounter::new(
            "newsflow_shards_fenced_total",
            "Shards this worker dropped because another owner committed for them (it had lost them, for instance while paused).",
        )
        .expect("valid metric");
        registry
            .register(Box::new(shards_fenced.clone()))
            .expect("unique metric");
        let build_info = IntGaugeVec::new(
            Opts::new(
                "newsflow_build_info",
                "Always 1; the version of the running binary.",
            ),
            &["version"],
        )
        .expect("valid metric");
        registry
            .register(Box::new(build_info.clone()))
            .expect("unique metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");

        Metrics {
            registry,
            events_consumed,
            events_duplicate,
            events_dead_lettered,
            consumer_lag,
            files_written,
            rows_written,
            bytes_written,
            flush_duration,
            watermark_lag,
            events_produced,
            produce_errors,
            partitions_assigned,
            rebalances,
            articles_tracked,
            articles_cold,
            dedup_entries,
            commits,
            stalled,
            stalls,
            flush_failures,
            ingest_requests,
            ingest_events,
            ingest_connections_closed,
            checkpoint_duration,
            commit_duration,
            end_to_end_latency,
            dedup_memory,
            broker_rtt,
            fetch_queue,
            lake_commits,
            lake_commit_duration,
            shards_fenced,
        }
    }

    /// Pre-creates the labelled series a dashboard expects to see at zero,
    /// so a rate over them exists before the first happening.
    pub fn preregister(&self, topics: &[&str]) {
        for reason in newsflow_core::RejectReason::ALL {
            self.events_dead_lettered
                .with_label_values(&[reason.code()]);
        }
        for event_type in newsflow_core::EventType::ALL {
            self.events_duplicate
                .with_label_values(&[event_type.as_str()]);
        }
        for topic in topics {
            self.events_produced.with_label_values(&[topic]);
        }
        for stage in ["output", "dead_letters"] {
            self.flush_failures.with_label_values(&[stage]);
        }
        for kind in ["assign", "revoke"] {
            self.rebalances.with_label_values(&[kind]);
        }
        for table in ["article_totals", "article_engagement", "events"] {
            for outcome in ["committed", "conflict_retried", "fenced"] {
                self.lake_commits.with_label_values(&[table, outcome]);
            }
        }
        // Lines refused before sending carry a reject reason; events Kafka
        // did not take carry a delivery reason.
        let delivery = [
            "timed_out",
            "too_large",
            "unknown_topic",
            "queue_full",
            "broker_error",
        ];
        let rejected = newsflow_core::RejectReason::ALL.map(|r| r.code());
        for reason in delivery.iter().chain(rejected.iter()) {
            self.produce_errors.with_label_values(&[reason]);
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
        table: &str,
        committed: u64,
        conflicts: u64,
        fenced: u64,
        seconds: f64,
    ) {
        for (outcome, n) in [
            ("committed", committed),
            ("conflict_retried", conflicts),
            ("fenced", fenced),
        ] {
            if n > 0 {
                self.lake_commits
                    .with_label_values(&[table, outcome])
                    .inc_by(n);
            }
        }
        self.lake_commit_duration
            .with_label_values(&[table])
            .observe(seconds);
    }

    /// A shard was fenced: another owner committed for it.
    pub fn shard_fenced(&self) {
        self.shards_fenced.inc();
    }

    /// `n` valid events of `event_type` were read from `topic`.
    pub fn consumed(&self, topic: &str, event_type: &str, n: u64) {
        self.events_consumed
            .with_label_values(&[topic, event_type])
            .inc_by(n);
    }

    /// `n` events were recognised as redeliveries and not counted again.
    pub fn duplicate(&self, event_type: &str, n: u64) {
        self.events_duplicate
            .with_label_values(&[event_type])
            .inc_by(n);
    }

    /// A message was rejected for `reason` (a stable code).
    pub fn dead_lettered(&self, reason: &str) {
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
    pub fn written(&self, dataset: &str, files: u64, rows: u64, bytes: u64, seconds: f64) {
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

    /// An event could not be produced, for `reason` (a stable code).
    pub fn produce_error(&self, reason: &str) {
        self.produce_errors(reason, 1);
    }

    /// `n` events could not be produced, all for `reason`.
    pub fn produce_errors(&self, reason: &str, n: u64) {
        self.produce_errors.with_label_values(&[reason]).inc_by(n);
    }

    /// The group assigned (`assign`) or revoked (`revoke`) partitions.
    pub fn rebalanced(&self, kind: &'static str) {
        self.rebalances.with_label_values(&[kind]).inc();
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
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// The watchdog found the worker stalled (`true`) or moving again.
    pub fn stalled(&self, stalled: bool) {
        if stalled {
            self.stalls.inc();
        }
        self.stalled.set(i64::from(stalled));
    }

    /// A flush failed at `stage` (`output` or `dead_letters`); it is retried.
    pub fn flush_failed(&self, stage: &'static str) {
        self.flush_failures.with_label_values(&[stage]).inc();
    }

    /// An HTTP ingest request was answered with `status`.
    pub fn ingest_request(&self, status: u16) {
        self.ingest_requests
            .with_label_values(&[&status.to_string()])
            .inc();
    }

    /// `n` events received over HTTP ended as `outcome`.
    pub fn ingest_events(&self, outcome: &'static str, n: u64) {
        self.ingest_events.with_label_values(&[outcome]).inc_by(n);
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
