//! The dead-letter producer: rejected messages go to `topics.dead_letters`
//! with their original key and bytes and headers naming why.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use newsflow_core::Rejection;
use newsflow_settings::Settings;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

/// Header names carried by every dead letter. They are part of the
/// contract: operators filter and replay by them.
pub mod headers {
    /// Stable snake_case reason code.
    pub const REASON: &str = "newsflow.reason";
    /// Human-readable detail.
    pub const DETAIL: &str = "newsflow.detail";
    /// Topic the message was read from.
    pub const SOURCE_TOPIC: &str = "newsflow.source.topic";
    /// Partition it was read from.
    pub const SOURCE_PARTITION: &str = "newsflow.source.partition";
    /// Offset it was read from.
    pub const SOURCE_OFFSET: &str = "newsflow.source.offset";
}

/// Counts failed deliveries so that the worker can refuse to checkpoint
/// past a dead letter Kafka did not take.
#[derive(Default)]
struct DeliveryTracker {
    failures: Arc<AtomicU64>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((error, _)) = result {
            tracing::error!(%error, "dead letter was not delivered");
            self.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The producer of dead letters.
pub struct DeadLetters {
    producer: ThreadedProducer<DeliveryTracker>,
    topic: String,
    failures: Arc<AtomicU64>,
    failures_seen: u64,
}

impl DeadLetters {
    /// Creates the producer; it connects lazily.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let tracker = DeliveryTracker::default();
        let failures = tracker.failures.clone();
        let producer = newsflow_kafka::producer_config(settings)
            .create_with_context(tracker)
            .context("creating the dead-letter producer")?;
        Ok(DeadLetters {
            producer,
            topic: settings.topics.dead_letters.clone(),
            failures,
            failures_seen: 0,
        })
    }

    /// Queues one dead letter. Blocks briefly while the local queue is full.
    pub fn send(
        &self,
        key: Option<&[u8]>,
        value: &[u8],
        rejection: &Rejection,
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        let partition_text = partition.to_string();
        let offset_text = offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::REASON,
                value: Some(rejection.reason.code()),
            })
            .insert(Header {
                key: headers::DETAIL,
                value: Some(rejection.detail.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_TOPIC,
                value: Some(topic),
            })
            .insert(Header {
                key: headers::SOURCE_PARTITION,
                value: Some(partition_text.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_OFFSET,
                value: Some(offset_text.as_str()),
            });
        let mut record: BaseRecord<'_, [u8], [u8], ()> =
            BaseRecord::to(&self.topic).payload(value).headers(headers);
        if let Some(key) = key {
            record = record.key(key);
        }
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((error, _)) => {
                    tracing::error!(%error, "dead letter could not be queued");
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Waits until every queued dead letter is acknowledged. Fails if any
    /// was not, so the caller does not checkpoint past it.
    pub fn make_durable(&mut self) -> anyhow::Result<()> {
        self.producer
            .flush(Duration::from_secs(30))
            .context("dead letters were not acknowledged within 30 s")?;
        let failures = self.failures.load(Ordering::Relaxed);
        if failures != self.failures_seen {
            self.failures_seen = failures;
            anyhow::bail!("Kafka refused dead letters; the records behind them will be read again");
        }
        Ok(())
    }
}
