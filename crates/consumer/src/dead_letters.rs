//! The dead-letter producer: rejected messages go to `topics.dead_letters`
//! with their original key and bytes and headers naming why.
//!
//! **Every message ends in the topic, whatever its size.** The broker
//! delivers messages up to the source topic's limit, but the dead letter
//! carries headers on top, and the dead-letter topic's own limit (or the
//! producer's `message.max.bytes`) can be smaller. A letter that cannot
//! fit carries a prefix of the original bytes and says so
//! ([`headers::TRUNCATED`]); one the broker still refuses as too large is
//! sent again shorter. A letter refused for any other reason fails the
//! flush, so nothing is checkpointed past it and it is sent again.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use newsflow_core::Rejection;
use newsflow_settings::Settings;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
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
    /// Present when the letter carries only a prefix of the original value:
    /// the original value's size in bytes.
    pub const TRUNCATED: &str = "newsflow.truncated";
    /// Present when the letter carries only a prefix of the original key:
    /// the original key's size in bytes.
    pub const KEY_TRUNCATED: &str = "newsflow.key.truncated";
}

/// librdkafka's default `message.max.bytes`, when `kafka.properties` does
/// not set it.
const DEFAULT_MESSAGE_MAX_BYTES: usize = 1_000_000;

/// Room left in a letter's size budget for what librdkafka adds around
/// key, value and headers (record and batch framing, at most about 100
/// bytes), with a margin.
const FRAMING_BYTES: usize = 512;

/// The smallest budget a refused letter is shrunk to. A dead-letter topic
/// whose limit is below this takes no letter at all: a misconfiguration
/// that fails the flush (and `/readyz` says so) instead of losing letters.
const MIN_LETTER_BYTES: usize = 1024;

/// What a dead letter says about the message it carries. It travels with
/// the letter until Kafka acknowledges it, so that a letter the broker
/// refuses as too large can be sent again shorter with the same headers.
#[derive(Clone, Debug)]
struct About {
    reason: &'static str,
    detail: String,
    topic: String,
    partition: i32,
    offset: i64,
    /// The original value's size in bytes (the letter's may be shorter).
    value_size: usize,
    /// The original key's size in bytes.
    key_size: usize,
}

impl About {
    /// The letter's headers, naming a truncation where `key` or `value`
    /// is shorter than the original.
    fn headers(&self, key_kept: usize, value_kept: usize) -> OwnedHeaders {
        let text = |value: &dyn ToString| value.to_string();
        let mut fields = vec![
            (headers::REASON, self.reason.to_string()),
            (headers::DETAIL, self.detail.clone()),
            (headers::SOURCE_TOPIC, self.topic.clone()),
            (headers::SOURCE_PARTITION, text(&self.partition)),
            (headers::SOURCE_OFFSET, text(&self.offset)),
        ];
        if value_kept < self.value_size {
            fields.push((headers::TRUNCATED, text(&self.value_size)));
        }
        if key_kept < self.key_size {
            fields.push((headers::KEY_TRUNCATED, text(&self.key_size)));
        }
        fields
            .iter()
            .fold(OwnedHeaders::new(), |all, (key, value)| {
                all.insert(Header {
                    key,
                    value: Some(value.as_str()),
                })
            })
    }

    /// Bytes the headers take at most (names, values, and the truncation
    /// headers as if both were present).
    fn headers_size(&self) -> usize {
        const NAMES_AND_NUMBERS: usize = 200;
        NAMES_AND_NUMBERS + self.reason.len() + self.detail.len() + self.topic.len()
    }
}

/// How much of a key and a value fits a letter of at most `budget` bytes:
/// everything when it fits; otherwise the key keeps at most half of what
/// the headers leave, and the value the rest.
fn fit(about: &About, key_len: usize, value_len: usize, budget: usize) -> (usize, usize) {
    let room = budget.saturating_sub(about.headers_size() + FRAMING_BYTES);
    if key_len + value_len <= room {
        return (key_len, value_len);
    }
    let key_kept = key_len.min(room / 2);
    (key_kept, value_len.min(room - key_kept))
}

/// A letter the broker refused as too large, copied out of the delivery
/// report to be sent again shorter.
struct Refused {
    about: About,
    key: Option<Vec<u8>>,
    value: Vec<u8>,
}

/// Tracks deliveries: counts failed ones, so that the worker can refuse to
/// checkpoint past a dead letter Kafka did not take, and keeps the ones
/// refused as too large.
#[derive(Default)]
struct DeliveryTracker {
    failures: Arc<AtomicU64>,
    too_large: Arc<Mutex<Vec<Refused>>>,
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    type DeliveryOpaque = Box<About>;

    fn delivery(&self, result: &DeliveryResult<'_>, about: Self::DeliveryOpaque) {
        let Err((error, message)) = result else {
            return;
        };
        if is_too_large(error) {
            self.too_large
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Refused {
                    about: *about,
                    key: message.key().map(<[u8]>::to_vec),
                    value: message.payload().unwrap_or_default().to_vec(),
                });
            return;
        }
        tracing::error!(%error, topic = about.topic, partition = about.partition, offset = about.offset, "dead letter was not delivered");
        self.failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether Kafka refused a letter for its size (librdkafka's own check
/// against `message.max.bytes`, or the broker's against the topic's
/// `max.message.bytes`).
fn is_too_large(error: &KafkaError) -> bool {
    error.rdkafka_error_code() == Some(RDKafkaErrorCode::MessageSizeTooLarge)
}

/// The producer of dead letters.
pub struct DeadLetters {
    producer: ThreadedProducer<DeliveryTracker>,
    topic: String,
    failures: Arc<AtomicU64>,
    failures_seen: u64,
    too_large: Arc<Mutex<Vec<Refused>>>,
    /// The largest letter to send, in bytes: the producer's
    /// `message.max.bytes` at first, halved each time Kafka refuses a
    /// letter of that size.
    budget: usize,
}

impl DeadLetters {
    /// Creates the producer; it connects lazily.
    pub fn new(settings: &Settings) -> anyhow::Result<Self> {
        let tracker = DeliveryTracker::default();
        let failures = tracker.failures.clone();
        let too_large = tracker.too_large.clone();
        let config = newsflow_kafka::producer_config(settings);
        let budget = config
            .get("message.max.bytes")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_MESSAGE_MAX_BYTES);
        let producer =
            newsflow_kafka::create_client(&config, tracker, "creating the dead-letter producer")?;
        Ok(DeadLetters {
            producer,
            topic: settings.topics.dead_letters.clone(),
            failures,
            failures_seen: 0,
            too_large,
            budget,
        })
    }

    /// Queues one dead letter. Blocks briefly while the local queue is full.
    pub fn send(
        &mut self,
        key: Option<&[u8]>,
        value: &[u8],
        rejection: &Rejection,
        topic: &str,
        partition: i32,
        offset: i64,
    ) {
        let about = About {
            reason: rejection.reason.code(),
            detail: rejection.detail.clone(),
            topic: topic.to_string(),
            partition,
            offset,
            value_size: value.len(),
            key_size: key.map_or(0, <[u8]>::len),
        };
        self.queue(about, key, value);
    }

    /// Queues a letter cut to the current budget; halves the budget and
    /// cuts again while librdkafka refuses it as too large.
    fn queue(&mut self, about: About, key: Option<&[u8]>, value: &[u8]) {
        loop {
            let (key_kept, value_kept) =
                fit(&about, key.map_or(0, <[u8]>::len), value.len(), self.budget);
            let headers = about.headers(key_kept, value_kept);
            let mut record: BaseRecord<'_, [u8], [u8], Box<About>> =
                BaseRecord::with_opaque_to(&self.topic, Box::new(about.clone()))
                    .payload(&value[..value_kept])
                    .headers(headers);
            if let Some(key) = key {
                record = record.key(&key[..key_kept]);
            }
            match self.send_waiting_for_room(record) {
                Ok(()) => return,
                Err(error) if is_too_large(&error) && self.shrink() => continue,
                Err(error) => {
                    tracing::error!(%error, topic = about.topic, partition = about.partition, offset = about.offset, "dead letter could not be queued");
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
    }

    /// Sends `record`, waiting while the local queue is full.
    fn send_waiting_for_room(
        &self,
        mut record: BaseRecord<'_, [u8], [u8], Box<About>>,
    ) -> Result<(), KafkaError> {
        loop {
            match self.producer.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err((error, _)) => return Err(error),
            }
        }
    }

    /// Halves the letter budget after Kafka refused a letter as too large;
    /// false when it is at its floor already.
    fn shrink(&mut self) -> bool {
        if self.budget <= MIN_LETTER_BYTES {
            return false;
        }
        self.budget = (self.budget / 2).max(MIN_LETTER_BYTES);
        tracing::warn!(
            topic = self.topic,
            budget_bytes = self.budget,
            "Kafka refused a dead letter as too large; sending letters of at most this size"
        );
        true
    }

    /// Waits until every queued dead letter is acknowledged, sending the
    /// ones refused as too large again shorter. Fails if any was not
    /// acknowledged, so the caller does not checkpoint past it.
    pub fn make_durable(&mut self) -> anyhow::Result<()> {
        loop {
            self.producer
                .flush(Duration::from_secs(30))
                .context("dead letters were not acknowledged within 30 s")?;
            let refused = std::mem::take(
                &mut *self
                    .too_large
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
            );
            if refused.is_empty() {
                break;
            }
            if !self.shrink() {
                self.failures
                    .fetch_add(refused.len() as u64, Ordering::Relaxed);
                tracing::error!(
                    topic = self.topic,
                    letters = refused.len(),
                    "the dead-letter topic refuses even {MIN_LETTER_BYTES}-byte letters; raise its max.message.bytes"
                );
                break;
            }
            for letter in refused {
                self.queue(letter.about, letter.key.as_deref(), &letter.value);
            }
        }
        let failures = self.failures.load(Ordering::Relaxed);
        if failures != self.failures_seen {
            self.failures_seen = failures;
            anyhow::bail!("Kafka refused dead letters; the records behind them will be read again");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn about(value_size: usize, key_size: usize) -> About {
        About {
            reason: "too_large",
            detail: "d".repeat(100),
            topic: "news.comments".into(),
            partition: 3,
            offset: 42,
            value_size,
            key_size,
        }
    }

    #[test]
    fn a_letter_that_fits_is_sent_whole() {
        let a = about(1000, 10);
        assert_eq!(fit(&a, 10, 1000, 1_000_000), (10, 1000));
    }

    #[test]
    fn a_letter_over_its_budget_keeps_a_prefix_within_it() {
        for budget in [1_000_000, 65_536, 4096, MIN_LETTER_BYTES] {
            let a = about(1_040_136, 8);
            let (key, value) = fit(&a, 8, 1_040_136, budget);
            assert_eq!(key, 8, "a small key is kept whole");
            assert!(value < 1_040_136);
            assert!(
                key + value + a.headers_size() + FRAMING_BYTES <= budget,
                "budget {budget}: {key} + {value}"
            );
        }
    }

    #[test]
    fn a_huge_key_is_cut_too_and_leaves_room_for_the_value() {
        let a = about(500_000, 900_000);
        let (key, value) = fit(&a, 900_000, 500_000, 1_000_000);
        assert!(key < 900_000 && value > 0);
        assert!(key + value + a.headers_size() + FRAMING_BYTES <= 1_000_000);
    }

    #[test]
    fn truncation_is_named_in_the_headers_with_the_original_sizes() {
        use rdkafka::message::Headers;
        let a = about(1_040_136, 900_000);
        let names = |h: OwnedHeaders| -> Vec<(String, String)> {
            h.iter()
                .map(|h| {
                    (
                        h.key.to_string(),
                        String::from_utf8_lossy(h.value.unwrap()).into_owned(),
                    )
                })
                .collect()
        };
        let whole = names(a.headers(900_000, 1_040_136));
        assert!(whole.iter().all(|(k, _)| !k.contains("truncated")));
        let cut = names(a.headers(100, 1000));
        assert!(cut.contains(&(headers::TRUNCATED.into(), "1040136".into())));
        assert!(cut.contains(&(headers::KEY_TRUNCATED.into(), "900000".into())));
        assert!(cut.contains(&(headers::SOURCE_OFFSET.into(), "42".into())));
    }
}
