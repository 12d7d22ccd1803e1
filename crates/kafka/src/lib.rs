//! Kafka for newsflow: how our clients are configured, and how the topics
//! they need are created and checked.
//!
//! This crate knows librdkafka's property names so the binaries do not.
//! It deliberately knows nothing about events or counting.
//!
//! ```no_run
//! # async fn demo(settings: &newsflow_settings::Settings) -> Result<(), newsflow_kafka::Error> {
//! newsflow_kafka::ensure_topics(settings).await?;
//! let partitions = newsflow_kafka::check_co_partitioned(settings)?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use newsflow_settings::Settings;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

/// How long metadata and admin requests may take before we give up.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// What can go wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client library reported an error.
    #[error("kafka: {context}: {source}")]
    Client {
        /// What we were doing.
        context: String,
        /// librdkafka's error.
        #[source]
        source: rdkafka::error::KafkaError,
    },
    /// The event topics do not share one partition count, so one worker
    /// would not see every event of an article.
    #[error("topics are not co-partitioned: {0}")]
    NotCoPartitioned(String),
}

fn client_error(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    let context = context.into();
    move |source| Error::Client { context, source }
}

/// Properties every client shares: brokers, client id, and the pass-through
/// `kafka.properties` (security settings and tuning), applied last so an
/// operator can override anything.
pub fn base_config(settings: &Settings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("client.id", &settings.kafka.client_id)
        .set("socket.keepalive.enable", "true");
    for (key, value) in &settings.kafka.properties {
        config.set(key, value);
    }
    config
}

/// The configuration of our event producers: idempotent, `acks=all`, one
/// partitioner for every topic (the contract's `murmur2_random` by default),
/// batching tuned for throughput.
pub fn producer_config(settings: &Settings) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", &settings.kafka.partitioner)
        .set("compression.type", "lz4")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576");
    for (key, value) in &settings.kafka.properties {
        config.set(key, value);
    }
    config
}

/// The configuration of the worker's group consumer.
///
/// Offsets are never committed automatically: the worker commits them itself
/// after the Parquet files and the checkpoint they cover are durable. The
/// group assigns partitions of the articles topic with the cooperative-sticky
/// assignor (incremental rebalances); the worker takes the same partition
/// numbers of the other two topics itself, so one worker owns all events of
/// an article.
pub fn consumer_config(settings: &Settings) -> ClientConfig {
    let mut config = base_config(settings);
    config
        .set("group.id", &settings.kafka.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "cooperative-sticky")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000")
        .set(
            "session.timeout.ms",
            settings.kafka.session_timeout.as_millis().to_string(),
        )
        .set("max.poll.interval.ms", "300000")
        .set("fetch.min.bytes", "65536")
        .set("fetch.wait.max.ms", "100")
        .set("queued.max.messages.kbytes", "262144");
    if let Some(instance) = &settings.kafka.instance_id {
        config.set("group.instance.id", instance);
    }
    for (key, value) in &settings.kafka.properties {
        config.set(key, value);
    }
    config
}

/// Creates the three event topics and the dead-letter topic where they do
/// not exist, with `kafka.partitions` partitions (the dead-letter topic with
/// one fewer concern: it is not co-partitioned, but the same count is
/// harmless). Existing topics are left as they are.
pub async fn ensure_topics(settings: &Settings) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = base_config(settings)
        .create()
        .map_err(client_error("creating admin client"))?;
    let replication = settings.kafka.replication_factor;
    let names = [
        settings.topics.articles.as_str(),
        settings.topics.comments.as_str(),
        settings.topics.forum_posts.as_str(),
        settings.topics.dead_letters.as_str(),
    ];
    let new_topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                settings.kafka.partitions,
                TopicReplication::Fixed(replication),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(REQUEST_TIMEOUT));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(client_error("creating topics"))?;
    for result in results {
        match result {
            Ok(name) => {
                tracing::info!(topic = %name, partitions = settings.kafka.partitions, "created topic")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Client {
                    context: format!("creating topic `{name}`"),
                    source: rdkafka::error::KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}

/// Returns the partition count of a topic, or `None` when it does not exist.
pub fn partition_count<C: Consumer>(consumer: &C, topic: &str) -> Result<Option<i32>, Error> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(client_error(format!("reading metadata of `{topic}`")))?;
    Ok(metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len() as i32)
        .filter(|n| *n > 0))
}

/// Checks that the three event topics exist with the same partition count
/// and returns it. A worker refuses to start otherwise: with different
/// counts, the events of one article would be split across workers.
pub fn check_co_partitioned(settings: &Settings) -> Result<i32, Error> {
    let consumer: BaseConsumer = base_config(settings)
        .create()
        .map_err(client_error("creating metadata client"))?;
    let mut counts = Vec::new();
    for topic in settings.topics.event_topics() {
        match partition_count(&consumer, topic)? {
            Some(n) => counts.push((topic, n)),
            None => {
                return Err(Error::NotCoPartitioned(format!(
                    "topic `{topic}` does not exist (create it, or run `newsflow-producer` once, which creates missing topics)"
                )))
            }
        }
    }
    let first = counts[0].1;
    if counts.iter().any(|(_, n)| *n != first) {
        let listing: Vec<String> = counts.iter().map(|(t, n)| format!("{t}={n}")).collect();
        return Err(Error::NotCoPartitioned(format!(
            "partition counts differ ({}); the event topics must have equal counts",
            listing.join(", ")
        )));
    }
    Ok(first)
}
