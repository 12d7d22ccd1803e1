//! The series themselves, grouped by what they watch, each group
//! registered only in the registry of the binary it belongs to.

use prometheus::core::Collector;
use prometheus::{
    exponential_buckets, Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter,
    IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Buckets of `newsflow_end_to_end_latency_seconds`: from a tenth of a
/// second (a live stream) to a week (a backfill of old events).
const LATENCY_BUCKETS: [f64; 17] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 21_600.0,
    86_400.0, 604_800.0,
];

/// What the worker reads and holds: events, lag, state, the consumer group and the watchdog.
pub(crate) struct CountingSeries {
    pub(crate) events_consumed: IntCounterVec,
    pub(crate) events_duplicate: IntCounterVec,
    pub(crate) events_dead_lettered: IntCounterVec,
    pub(crate) consumer_lag: IntGaugeVec,
    pub(crate) watermark_lag: Gauge,
    pub(crate) partitions_assigned: IntGauge,
    pub(crate) rebalances: IntCounterVec,
    pub(crate) articles_tracked: IntGauge,
    pub(crate) articles_cold: IntGauge,
    pub(crate) dedup_entries: IntGauge,
    pub(crate) stalled: IntGauge,
    pub(crate) stalls: IntCounter,
    pub(crate) dedup_memory: IntGauge,
    pub(crate) broker_rtt: GaugeVec,
    pub(crate) fetch_queue: IntGauge,
}

impl CountingSeries {
    /// Creates the series, registered in `registry` if given.
    pub(crate) fn new(registry: Option<&Registry>) -> Self {
        CountingSeries {
            events_consumed: counter_vec(registry, "newsflow_events_consumed_total",
                "Valid events read from Kafka, duplicates included.", &["topic", "event_type"]),
            events_duplicate: counter_vec(registry, "newsflow_events_duplicate_total",
                "Events not counted because their event_id was already counted within the dedup horizon.",
                &["event_type"]),
            events_dead_lettered: counter_vec(registry, "newsflow_events_dead_lettered_total",
                "Messages rejected by validation, by stable reason code.", &["reason"]),
            consumer_lag: gauge_vec(registry, "newsflow_consumer_lag_messages",
                "Messages between the partition's high watermark and the group's committed offset.",
                &["topic", "partition"]),
            watermark_lag: register(registry, Gauge::new("newsflow_watermark_lag_seconds",
                "Processing time minus the lowest event-time watermark of the assigned partitions.")
                .expect("valid metric")),
            partitions_assigned: gauge(registry, "newsflow_partitions_assigned",
                "Shards (partition numbers of the co-partitioned event topics) owned by this worker."),
            rebalances: counter_vec(registry, "newsflow_rebalances_total",
                "Consumer group rebalance events seen by this worker.", &["kind"]),
            articles_tracked: gauge(registry, "newsflow_articles_tracked", "Articles held in counting state."),
            articles_cold: gauge(registry, "newsflow_articles_cold",
                "Articles idle for a whole dedup horizon, held in cold segments on disk instead of memory."),
            dedup_entries: gauge(registry, "newsflow_dedup_entries",
                "Event-id fingerprints held for deduplication within the horizon."),
            stalled: gauge(registry, "newsflow_worker_stalled",
                "1 while the worker owns lagging partitions but handles no record (see watchdog.stall_after)."),
            stalls: counter(registry, "newsflow_worker_stalls_total", "Times the watchdog found the worker stalled."),
            dedup_memory: gauge(registry, "newsflow_dedup_memory_bytes",
                "Heap bytes held by the event-id fingerprints of the dedup horizon."),
            broker_rtt: register(registry, GaugeVec::new(Opts::new("newsflow_kafka_broker_rtt_seconds",
                "Mean request round-trip time to each broker over the last statistics interval."),
                &["broker"]).expect("valid metric")),
            fetch_queue: gauge(registry, "newsflow_kafka_fetch_queue_messages",
                "Messages fetched by the client and not yet handled, over the assigned partitions."),
        }
    }
}

/// What the worker writes: files, flushes, checkpoints, commits to the lake and the group.
pub(crate) struct OutputSeries {
    pub(crate) files_written: IntCounterVec,
    pub(crate) rows_written: IntCounterVec,
    pub(crate) bytes_written: IntCounterVec,
    pub(crate) flush_duration: HistogramVec,
    pub(crate) commits: IntCounterVec,
    pub(crate) flush_overdue: IntGauge,
    pub(crate) store_failures: IntCounter,
    pub(crate) flush_failures: IntCounterVec,
    pub(crate) checkpoint_duration: Histogram,
    pub(crate) commit_duration: Histogram,
    pub(crate) end_to_end_latency: Histogram,
    pub(crate) lake_commits: IntCounterVec,
    pub(crate) lake_commit_duration: HistogramVec,
    pub(crate) shards_fenced: IntCounter,
}

impl OutputSeries {
    /// Creates the series, registered in `registry` if given.
    pub(crate) fn new(registry: Option<&Registry>) -> Self {
        let fast = || exponential_buckets(0.0005, 2.0, 16).expect("valid buckets");
        let flushes = || exponential_buckets(0.001, 2.0, 16).expect("valid buckets");
        OutputSeries {
            files_written: counter_vec(registry, "newsflow_parquet_files_written_total",
                "Parquet files committed to the output.", &["dataset"]),
            rows_written: counter_vec(registry, "newsflow_parquet_rows_written_total",
                "Rows in committed Parquet files.", &["dataset"]),
            bytes_written: counter_vec(registry, "newsflow_parquet_bytes_written_total",
                "Bytes of committed Parquet files.", &["dataset"]),
            flush_duration: histogram_vec(registry, "newsflow_flush_duration_seconds",
                "Time to encode and durably commit one flush's files of a dataset.",
                flushes(), &["dataset"]),
            commits: counter_vec(registry, "newsflow_offset_commits_total",
                "Offset commits to the consumer group after a checkpoint, by result.", &["result"]),
            flush_overdue: gauge(registry, "newsflow_flush_overdue",
                "1 while a flush has been writing for longer than a flush interval, when the next one is due (the store is slow or unreachable)."),
            store_failures: counter(registry, "newsflow_store_errors_total",
                "Object-store calls that failed after the client's own retries (20 s at most); the flush or restore that made each is retried."),
            flush_failures: counter_vec(registry, "newsflow_flush_failures_total",
                "Flushes that could not make their output durable and will be retried, by what failed (output, dead_letters).",
                &["stage"]),
            checkpoint_duration: histogram(registry, "newsflow_checkpoint_duration_seconds",
                "Time to write and sync one shard's checkpoint.", fast()),
            commit_duration: histogram(registry, "newsflow_commit_duration_seconds",
                "Time of one synchronous offset commit to the consumer group.", fast()),
            end_to_end_latency: histogram(registry, "newsflow_end_to_end_latency_seconds",
                "From an event's occurred_at to the checkpoint that makes it durable in Parquet.",
                LATENCY_BUCKETS.to_vec()),
            lake_commits: counter_vec(registry, "newsflow_lake_commits_total",
                "Delta commits by table and outcome: committed, conflict_retried (a race lost to another commit, tried again), fenced (a shard's flush left out because another owner committed for it).",
                &["table", "outcome"]),
            lake_commit_duration: histogram_vec(registry, "newsflow_lake_commit_duration_seconds",
                "Time to commit one flush to one Delta table, lost races and retries included.",
                flushes(), &["table"]),
            shards_fenced: counter(registry, "newsflow_shards_fenced_total",
                "Shards this worker dropped because another owner committed for them (it had lost them, for instance while paused)."),
        }
    }
}

/// What the producer publishes and what HTTP ingest answers.
pub(crate) struct ProducerSeries {
    pub(crate) events_produced: IntCounterVec,
    pub(crate) produce_errors: IntCounterVec,
    pub(crate) ingest_requests: IntCounterVec,
    pub(crate) ingest_events: IntCounterVec,
    pub(crate) ingest_connections_closed: IntCounterVec,
}

impl ProducerSeries {
    /// Creates the series, registered in `registry` if given.
    pub(crate) fn new(registry: Option<&Registry>) -> Self {
        ProducerSeries {
            events_produced: counter_vec(registry, "newsflow_events_produced_total",
                "Events acknowledged by Kafka (acks=all).", &["topic"]),
            produce_errors: counter_vec(registry, "newsflow_produce_errors_total",
                "Events Kafka did not acknowledge, or lines refused before sending, by reason.",
                &["reason"]),
            ingest_requests: counter_vec(registry, "newsflow_ingest_requests_total",
                "HTTP ingest requests answered, by status code.", &["code"]),
            ingest_events: counter_vec(registry, "newsflow_ingest_events_total",
                "Events received over HTTP, by outcome (accepted, rejected, unpublished).", &["outcome"]),
            ingest_connections_closed: counter_vec(registry, "newsflow_ingest_connections_closed_total",
                "HTTP ingest connections the server closed before the client did: idle ones let go for a new one at ingest.max_connections (evicted), new ones refused because no connection could go (refused), and ones whose headers missed ingest.header_timeout (header_timeout).",
                &["reason"]),
        }
    }
}

/// Buckets of `newsflow_footer_request_duration_seconds`: from 50 µs (a
/// lookup answered from memory) to a second.
const FOOTER_LATENCY_BUCKETS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 0.25, 1.0,
];

/// What the footer service answers and how far it follows the table.
pub(crate) struct FooterSeries {
    pub(crate) requests: IntCounterVec,
    pub(crate) request_duration: HistogramVec,
    pub(crate) articles: IntGauge,
    pub(crate) index_bytes: IntGauge,
    pub(crate) table_version: IntGauge,
    pub(crate) commit_timestamp: Gauge,
    pub(crate) freshness: Gauge,
    pub(crate) stale: Gauge,
    pub(crate) reloads: IntCounterVec,
    pub(crate) log_read_failures: IntCounter,
    pub(crate) rows_skipped: IntCounterVec,
    pub(crate) files_unreadable: IntCounter,
    pub(crate) connections_closed: IntCounterVec,
}

impl FooterSeries {
    /// Creates the series, registered in `registry` if given.
    pub(crate) fn new(registry: Option<&Registry>) -> Self {
        #[rustfmt::skip]
        let series = FooterSeries {
            requests: counter_vec(registry, "newsflow_footer_requests_total",
                "Footer API requests answered, by route and status code.", &["route", "code"]),
            request_duration: histogram_vec(registry, "newsflow_footer_request_duration_seconds",
                "Time from a footer request's head to its answer, by route.",
                FOOTER_LATENCY_BUCKETS.to_vec(), &["route"]),
            articles: gauge(registry, "newsflow_footer_articles",
                "Articles whose current footer the service holds."),
            index_bytes: gauge(registry, "newsflow_footer_index_bytes",
                "Bytes of memory the held footers take (ids and titles included)."),
            table_version: gauge(registry, "newsflow_footer_table_version",
                "The version of article_totals the answers reflect."),
            commit_timestamp: gauge_f(registry, "newsflow_footer_table_commit_timestamp_seconds",
                "When the newest commit of article_totals the service applied was made (Unix seconds)."),
            freshness: gauge_f(registry, "newsflow_footer_freshness_seconds",
                "Seconds from the newest commit applied to the last read of the log: how old the answers are at most, if the table moves."),
            stale: gauge_f(registry, "newsflow_footer_stale_seconds",
                "Seconds since the log was last read successfully, while reading it fails; 0 when current. Answers carry X-Newsflow-Stale meanwhile."),
            reloads: counter_vec(registry, "newsflow_footer_reloads_total",
                "Full loads of the table's latest snapshot, by reason (start, log_gap, file_gone, table_rewritten).",
                &["reason"]),
            log_read_failures: counter(registry, "newsflow_footer_log_read_failures_total",
                "Reads of the table's log or files that failed (the store unreachable); answers go on from what is held."),
            rows_skipped: counter_vec(registry, "newsflow_footer_rows_skipped_total",
                "Rows of article_totals that are not footers and were left out, by reason.", &["reason"]),
            files_unreadable: counter(registry, "newsflow_footer_files_unreadable_total",
                "Data files of article_totals that could not be decoded and were left out."),
            connections_closed: counter_vec(registry, "newsflow_footer_connections_closed_total",
                "Footer API connections the server closed before the client did, by reason (evicted, refused, header_timeout).",
                &["reason"]),
        };
        series
    }
}

fn gauge_f(registry: Option<&Registry>, name: &str, help: &str) -> Gauge {
    register(registry, Gauge::new(name, help).expect("valid metric"))
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

pub(crate) fn gauge_vec(
    registry: Option<&Registry>,
    name: &str,
    help: &str,
    labels: &[&str],
) -> IntGaugeVec {
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
