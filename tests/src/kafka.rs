//! Reading Kafka back: dead letters and a group's committed offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::brokers;

/// A message read back from the dead-letter topic.
#[derive(Debug)]
pub struct DeadLetter {
    /// The original key.
    pub key: Option<Vec<u8>>,
    /// The original bytes.
    pub value: Vec<u8>,
    /// Headers by name.
    pub headers: BTreeMap<String, String>,
}

/// Reads messages of `topic` from the beginning until `count` arrived (and
/// a second more, to catch any extra) or `timeout` passed; callers assert
/// on what they got.
pub fn read_dead_letters(topic: &str, count: usize, timeout: Duration) -> Vec<DeadLetter> {
    use rdkafka::message::{Headers, Message};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("reader-{topic}-{}", std::process::id()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("dead-letter reader");
    consumer.subscribe(&[topic]).expect("subscribing");
    let mut letters = Vec::new();
    let deadline = Instant::now() + timeout;
    let mut settle: Option<Instant> = None;
    loop {
        if letters.len() >= count {
            let until = *settle.get_or_insert_with(|| Instant::now() + Duration::from_secs(1));
            if Instant::now() >= until {
                break;
            }
        }
        if Instant::now() >= deadline {
            break;
        }
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(200)) {
            let headers = message
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| {
                            (
                                h.key.to_string(),
                                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            letters.push(DeadLetter {
                key: message.key().map(<[u8]>::to_vec),
                value: message.payload().unwrap_or_default().to_vec(),
                headers,
            });
        }
    }
    letters
}

/// The group's committed offset of one partition (0 when none).
pub fn committed_offset(group: &str, topic: &str, partition: i32) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .expect("metadata client");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    match committed.elements()[0].offset() {
        Offset::Offset(o) => o,
        _ => 0,
    }
}
