//! Publishing to Kafka with acknowledgements counted per topic.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use newsflow_settings::Settings;
use newsflow_telemetry::{DeliveryFailure, Metrics};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// Counts what Kafka acknowledged (acks=all) and what it refused.
struct Deliveries {
    metrics: Arc<Metrics>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        use rdkafka::message::Message;
        match result {
            Ok(message) => {
                self.metrics.produced(message.topic(), 1);
                self.acked.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.metrics.produce_error(delivery_failure(error));
                if self.failed.fetch_add(1, Ordering::Relaxed) < 10 {
                    tracing::error!(%error, "event not acknowledged");
                }
            }
        }
    }
}

/// Why Kafka did not take an event, as `newsflow_produce_errors_total`
/// labels it.
pub fn delivery_failure(error: &KafkaError) -> DeliveryFailure {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::MessageTimedOut) => DeliveryFailure::TimedOut,
        Some(RDKafkaErrorCode::MessageSizeTooLarge) => DeliveryFailure::TooLarge,
        Some(RDKafkaErrorCode::UnknownTopicOrPartition) => DeliveryFailure::UnknownTopic,
        Some(RDKafkaErrorCode::QueueFull) => DeliveryFailure::QueueFull,
        _ => DeliveryFailure::BrokerError,
    }
}

/// An idempotent, acks=all producer for events.
pub struct Publisher {
    producer: ThreadedProducer<Deliveries>,
    acked: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    queued: u64,
}

impl Publisher {
    /// Creates the producer with the settings' partitioner.
    pub fn new(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let producer = newsflow_kafka::create_client(
            &newsflow_kafka::producer_config(settings),
            Deliveries {
                metrics,
                acked: acked.clone(),
                failed: failed.clone(),
            },
            "creating the Kafka producer",
        )?;
        Ok(Publisher {
            producer,
            acked,
            failed,
            queued: 0,
        })
    }

    /// Queues one event, waiting while the local queue is full (the
    /// backpressure that keeps memory bounded).
    pub fn send(&mut self, topic: &str, key: &str, payload: &[u8]) -> anyhow::Result<()> {
        let mut record: BaseRecord<'_, str, [u8], ()> =
            BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.queued += 1;
                    return Ok(());
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => return Err(e).context(format!("queueing an event for `{topic}`")),
            }
        }
    }

    /// Events acknowledged so far.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    /// Waits for every queued event to be acknowledged or refused and
    /// returns (acknowledged, refused).
    pub fn finish(self, timeout: Duration) -> anyhow::Result<(u64, u64)> {
        self.producer
            .flush(timeout)
            .context("waiting for Kafka to acknowledge every event")?;
        Ok((
            self.acked.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        ))
    }
}
