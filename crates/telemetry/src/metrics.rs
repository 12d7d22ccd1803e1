//! The metric definitions of the contract's section 7 and a few more, with
//! one method per happening.

use newsflow_core::{EventType, Rejection};
use prometheus::{Encoder, Registry, TextEncoder};

use crate::labels::{
    ConnectionClose, FlushStage, IngestOutcome, LakeOutcome, OffsetCommit, ProduceError, Rebalance,
    Table,
};
use crate::series::{gauge_vec, CountingSeries, FooterSeries, OutputSeries, ProducerSeries};

/// Which binary the metrics are for: each exports only its own series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binary {
    /// `newsflow-consumer`: counting, the lake, the consumer group.
    Worker,
    /// `newsflow-producer`: publishing and HTTP ingest.
    Producer,
    /// `newsflow-footer`: the footer API.
    Footer,
}

/// Every metric newsflow exports, registered in its own registry.
pub struct Metrics {
    registry: Registry,
    binary: Binary,
    counting: CountingSeries,
    output: OutputSeries,
    producer: ProducerSeries,
    pub(crate) footer: FooterSeries,
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
        let footer = (binary == Binary::Footer).then_some(&registry);
        let metrics = Metrics {
            footer: FooterSeries::new(footer),
            counting: CountingSeries::new(worker),
            output: OutputSeries::new(worker),
            producer: ProducerSeries::new(producer),
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
            Binary::Footer => self.preregister_footer(),
        }
    }

    fn preregister_worker(&self) {
        for reason in newsflow_core::RejectReason::ALL {
            self.counting
                .events_dead_lettered
                .with_label_values(&[reason.code()]);
        }
        for event_type in newsflow_core::EventType::ALL {
            self.counting
                .events_duplicate
                .with_label_values(&[event_type.as_str()]);
        }
        for stage in FlushStage::ALL {
            self.output
                .flush_failures
                .with_label_values(&[stage.as_str()]);
        }
        for kind in Rebalance::ALL {
            self.counting.rebalances.with_label_values(&[kind.as_str()]);
        }
        for table in Table::ALL {
            for outcome in LakeOutcome::ALL {
                self.output
                    .lake_commits
                    .with_label_values(&[table.as_str(), outcome.as_str()]);
            }
        }
        for result in OffsetCommit::ALL {
            self.output.commits.with_label_values(&[result.as_str()]);
        }
    }

    fn preregister_producer(&self, topics: &[&str]) {
        for topic in topics {
            self.producer.events_produced.with_label_values(&[topic]);
        }
        for reason in ProduceError::all() {
            self.producer
                .produce_errors
                .with_label_values(&[reason.as_str()]);
        }
        for reason in ConnectionClose::ALL {
            self.producer
                .ingest_connections_closed
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
                self.output
                    .lake_commits
                    .with_label_values(&[table.as_str(), outcome.as_str()])
                    .inc_by(n);
            }
        }
        self.output
            .lake_commit_duration
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
        self.output.shards_fenced.inc();
    }

    /// `n` valid events of `event_type` were read from `topic`.
    pub fn consumed(&self, topic: &str, event_type: EventType, n: u64) {
        self.counting
            .events_consumed
            .with_label_values(&[topic, event_type.as_str()])
            .inc_by(n);
    }

    /// `n` events were recognised as redeliveries and not counted again.
    pub fn duplicate(&self, event_type: EventType, n: u64) {
        self.counting
            .events_duplicate
            .with_label_values(&[event_type.as_str()])
            .inc_by(n);
    }

    /// A message at `topic`/`partition`/`offset` failed validation and goes
    /// to the dead-letter topic: logged with its detail, and counted by
    /// reason.
    pub fn dead_lettered(&self, rejection: &Rejection, topic: &str, partition: i32, offset: i64) {
        let reason = rejection.reason.code();
        tracing::warn!(topic, partition, offset, reason, detail = %rejection.detail, "dead-lettered a message");
        self.counting
            .events_dead_lettered
            .with_label_values(&[reason])
            .inc();
    }

    /// The lag of one assigned partition, as the client last saw it.
    pub fn lag(&self, topic: &str, partition: i32, messages: i64) {
        self.counting
            .consumer_lag
            .with_label_values(&[topic, &partition.to_string()])
            .set(messages);
    }

    /// A partition is no longer ours: its lag is someone else's to report.
    pub fn forget_lag(&self, topic: &str, partition: i32) {
        let _ = self
            .counting
            .consumer_lag
            .remove_label_values(&[topic, &partition.to_string()]);
    }

    /// Files of `dataset` were committed.
    pub fn written(&self, dataset: Table, files: u64, rows: u64, bytes: u64, seconds: f64) {
        let dataset = dataset.as_str();
        self.output
            .files_written
            .with_label_values(&[dataset])
            .inc_by(files);
        self.output
            .rows_written
            .with_label_values(&[dataset])
            .inc_by(rows);
        self.output
            .bytes_written
            .with_label_values(&[dataset])
            .inc_by(bytes);
        if files > 0 {
            self.output
                .flush_duration
                .with_label_values(&[dataset])
                .observe(seconds);
        }
    }

    /// The watermark of the slowest assigned partition trails the wall
    /// clock by this many seconds.
    pub fn watermark_lag(&self, seconds: f64) {
        self.counting.watermark_lag.set(seconds);
    }

    /// Kafka acknowledged `n` events on `topic`.
    pub fn produced(&self, topic: &str, n: u64) {
        self.producer
            .events_produced
            .with_label_values(&[topic])
            .inc_by(n);
    }

    /// An event could not be produced, for `reason`.
    pub fn produce_error(&self, reason: impl Into<ProduceError>) {
        self.produce_errors(reason, 1);
    }

    /// `n` events could not be produced, all for `reason`.
    pub fn produce_errors(&self, reason: impl Into<ProduceError>, n: u64) {
        self.producer
            .produce_errors
            .with_label_values(&[reason.into().as_str()])
            .inc_by(n);
    }

    /// The group assigned or revoked partitions.
    pub fn rebalanced(&self, kind: Rebalance) {
        self.counting
            .rebalances
            .with_label_values(&[kind.as_str()])
            .inc();
    }

    /// Number of shards this worker owns now.
    pub fn partitions_assigned(&self, n: usize) {
        self.counting.partitions_assigned.set(n as i64);
    }

    /// Size of the counting state.
    pub fn state_size(
        &self,
        articles: usize,
        cold_articles: usize,
        dedup_entries: usize,
        dedup_bytes: usize,
    ) {
        self.counting.articles_tracked.set(articles as i64);
        self.counting.articles_cold.set(cold_articles as i64);
        self.counting.dedup_entries.set(dedup_entries as i64);
        self.counting.dedup_memory.set(dedup_bytes as i64);
    }

    /// A checkpoint took `seconds` to write.
    pub fn checkpointed(&self, seconds: f64) {
        self.output.checkpoint_duration.observe(seconds);
    }

    /// Events with these ages (seconds from their event time) became durable.
    pub fn durable(&self, ages: impl Iterator<Item = f64>) {
        let local = self.output.end_to_end_latency.local();
        for age in ages {
            local.observe(age.max(0.0));
        }
        local.flush();
    }

    /// The client's statistics: mean round trip per broker, fetched
    /// messages waiting.
    pub fn kafka_client(&self, broker_rtt: &[(String, f64)], fetch_queue: i64) {
        for (broker, seconds) in broker_rtt {
            self.counting
                .broker_rtt
                .with_label_values(&[broker])
                .set(*seconds);
        }
        self.counting.fetch_queue.set(fetch_queue);
    }

    /// An offset commit finished, successfully or not, in `seconds`.
    pub fn committed(&self, ok: bool, seconds: f64) {
        self.output.commit_duration.observe(seconds);
        self.output
            .commits
            .with_label_values(&[OffsetCommit::of(ok).as_str()])
            .inc();
    }

    /// The watchdog found the worker stalled (`true`) or moving again.
    pub fn stalled(&self, stalled: bool) {
        if stalled {
            self.counting.stalls.inc();
        }
        self.counting.stalled.set(i64::from(stalled));
    }

    /// Whether a flush has been writing for too long (logged by the
    /// watchdog, which knows for how long).
    pub fn flush_overdue(&self, overdue: bool) {
        self.output.flush_overdue.set(i64::from(overdue));
    }

    /// The lake's count of failed store calls, each logged where it
    /// happened; the counter follows it.
    pub fn store_failures_seen(&self, total: u64) {
        let counted = self.output.store_failures.get();
        if total > counted {
            self.output.store_failures.inc_by(total - counted);
        }
    }

    /// A flush failed at `stage` with `problem`: logged and counted. The
    /// shards concerned start over from their last commit.
    pub fn flush_failed(&self, stage: FlushStage, problem: &dyn std::fmt::Display) {
        tracing::error!(stage = stage.as_str(), problem = %problem, "flush failed; the shards restart from their last commit");
        self.output
            .flush_failures
            .with_label_values(&[stage.as_str()])
            .inc();
    }

    /// An HTTP ingest request was answered with `status`.
    pub fn ingest_request(&self, status: u16) {
        self.producer
            .ingest_requests
            .with_label_values(&[&status.to_string()])
            .inc();
    }

    /// `n` events received over HTTP ended as `outcome`.
    pub fn ingest_events(&self, outcome: IngestOutcome, n: u64) {
        self.producer
            .ingest_events
            .with_label_values(&[outcome.as_str()])
            .inc_by(n);
    }

    /// The ingest endpoint closed a connection for `reason`.
    pub fn ingest_connection_closed(&self, reason: ConnectionClose) {
        self.producer
            .ingest_connections_closed
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
