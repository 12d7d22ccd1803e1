//! Reading Kafka back: dead letters and a group's committed offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::{brokers, Stream, TestEnv};

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

impl TestEnv {
    /// Counts a stream of `events` from `seed` with one worker to the end,
    /// stops it, and moves the group's offsets back to the start: the
    /// tables and checkpoints hold every record, the group none of them.
    pub fn counted_with_group_offsets_rewound(&self, seed: u64, events: u64) -> Stream {
        self.create_topics(seed);
        let stream = self.stream(seed, events, 0).finish();
        let worker = self.spawn_worker();
        self.wait_until_committed(Duration::from_secs(120));
        worker.terminate();
        self.rewind_group_offsets();
        assert_eq!(
            self.committed_total(),
            0,
            "the group's offsets were rewound"
        );
        stream
    }

    /// Moves the group's committed offsets of the three event topics back
    /// to the start of each partition, as a worker leaves them when it dies
    /// after its tables' commit and before its first offset commit. Only
    /// while no worker of the group runs.
    pub fn rewind_group_offsets(&self) {
        let mut start = self.event_partitions();
        start
            .set_all_offsets(Offset::Offset(0))
            .expect("offset 0 is a valid position");
        let consumer = self.group_client();
        let deadline = Instant::now() + Duration::from_secs(60);
        // The group may still hold the last worker's membership for a
        // moment; a commit from outside it is refused until then.
        while let Err(e) = consumer.commit(&start, CommitMode::Sync) {
            assert!(
                Instant::now() < deadline,
                "rewinding the group's offsets: {e}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Deletes every topic under this test's prefix. Best effort: a topic
    /// left behind costs nothing but the local broker's start-up, which
    /// loads every partition it holds; after some hundred `make test`
    /// runs it outlasted `kafka.sh up`'s 90 s.
    pub(crate) fn delete_topics(&self) {
        if let Err(e) = self.try_delete_topics() {
            eprintln!("not deleting the test's topics: {e}");
        }
    }

    fn try_delete_topics(&self) -> KafkaResult<()> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .create()?;
        let metadata = admin
            .inner()
            .fetch_metadata(None, Duration::from_secs(10))?;
        let mine = format!("{}.", self.prefix);
        let names: Vec<&str> = metadata
            .topics()
            .iter()
            .map(|topic| topic.name())
            .filter(|name| name.starts_with(&mine))
            .collect();
        if names.is_empty() {
            return Ok(());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the admin client");
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        runtime.block_on(admin.delete_topics(&names, &options))?;
        Ok(())
    }
}
