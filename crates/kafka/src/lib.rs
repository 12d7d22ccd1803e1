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

use newsflow_settings::{KafkaSecurity, Settings};
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
    /// The brokers cannot be reached, or refuse us.
    #[error("cannot connect to Kafka: {0}")]
    Connection(String),
    /// librdkafka refused the configuration; the message is librdkafka's
    /// with every secret value taken out ([`redact_secrets`]).
    #[error("kafka: {what}: {message}")]
    Creation {
        /// What we were creating.
        what: &'static str,
        /// librdkafka's error, redacted.
        message: String,
    },
}

/// librdkafka's errors quote property values (`Invalid value "…" for
/// configuration property "ssl.key.password"`): this takes the value of
/// every secret-looking property of `config` out of `text`.
pub fn redact_secrets(config: &ClientConfig, text: &str) -> String {
    // `config_map` hides some values already; `get` gives them all.
    config
        .config_map()
        .into_keys()
        .filter(|key| newsflow_settings::is_secret_property(key))
        .filter_map(|key| config.get(key).filter(|value| !value.is_empty()))
        .fold(text.to_string(), |text, value| {
            text.replace(value, "[redacted]")
        })
}

/// Creates a client of `config` with `context`; an error names `what` and
/// never a secret value.
pub fn create_client<C, T>(
    config: &ClientConfig,
    context: C,
    what: &'static str,
) -> Result<T, Error>
where
    C: rdkafka::ClientContext,
    T: rdkafka::config::FromClientConfigAndContext<C>,
{
    config
        .create_with_context(context)
        .map_err(|e| Error::Creation {
            what,
            message: redact_secrets(config, &e.to_string()),
        })
}

fn client_error(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> Error {
    let context = context.into();
    move |source| Error::Client { context, source }
}

/// Every client's configuration is built the same way: what all clients
/// share (brokers, client id, security), then the role's own properties,
/// then the pass-through `kafka.properties`, last so an operator can
/// override anything.
fn client_config(settings: &Settings, role: impl FnOnce(&mut ClientConfig)) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &settings.kafka.brokers)
        .set("client.id", &settings.kafka.client_id)
        .set("socket.keepalive.enable", "true");
    apply_security(&mut config, &settings.kafka.security);
    role(&mut config);
    for (key, value) in settings.kafka.properties.iter() {
        config.set(key, value);
    }
    config
}

/// A client with no role of its own: admin requests and metadata.
pub fn base_config(settings: &Settings) -> ClientConfig {
    client_config(settings, |_| {})
}

/// `kafka.security_protocol`, `[kafka.sasl]` and `[kafka.tls]` as librdkafka
/// properties. librdkafka itself prints sensitive properties as
/// `[redacted]` in its debug output.
fn apply_security(config: &mut ClientConfig, security: &KafkaSecurity) {
    config.set("security.protocol", security.protocol.librdkafka_name());
    if let Some(sasl) = &security.sasl {
        config
            .set("sasl.mechanism", &sasl.mechanism)
            .set("sasl.username", &sasl.username)
            .set("sasl.password", sasl.password.expose());
    }
    if security.protocol.uses_tls() {
        let tls = &security.tls;
        if let Some(ca) = &tls.ca_file {
            config.set("ssl.ca.location", ca.to_string_lossy());
        }
        if let (Some(cert), Some(key)) = (&tls.cert_file, &tls.key_file) {
            config
                .set("ssl.certificate.location", cert.to_string_lossy())
                .set("ssl.key.location", key.to_string_lossy());
        }
        if let Some(password) = &tls.key_password {
            config.set("ssl.key.password", password.expose());
        }
        config
            .set("enable.ssl.certificate.verification", "true")
            .set(
                "ssl.endpoint.identification.algorithm",
                if tls.verify_hostname { "https" } else { "none" },
            );
    }
}

/// The configuration of our event producers: idempotent, `acks=all`, one
/// partitioner for every topic (the contract's `murmur2_random` by default),
/// batching tuned for throughput.
pub fn producer_config(settings: &Settings) -> ClientConfig {
    producer_config_with(settings, &[])
}

/// [`producer_config`] with some of its defaults replaced by `overrides`
/// (which `kafka.properties` can still override in turn).
pub fn producer_config_with(settings: &Settings, overrides: &[(&str, String)]) -> ClientConfig {
    client_config(settings, |config| {
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", &settings.kafka.partitioner)
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            .set("batch.size", "1000000")
            .set("queue.buffering.max.messages", "1000000")
            .set("queue.buffering.max.kbytes", "1048576");
        for (key, value) in overrides {
            config.set(*key, value);
        }
    })
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
    client_config(settings, |config| {
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
            // The prefetch bound, per partition (librdkafka applies it to
            // each partition's fetch queue, not to the consumer's total):
            // a worker owning 6 shards has 18 such queues. At 256 MiB the
            // bound never applied and `queued.min.messages` (100,000 per
            // partition) let 190 MB of a worker's peak RSS sit in them
            // while draining a backlog; 4 MiB keeps the fetcher as far
            // ahead as the worker can use (docs/benchmarks.md, issue 24).
            .set("queued.max.messages.kbytes", "4096")
            // A partition's fetch reaches the consumer's queue as one run
            // of records. At the default 1 MiB (4 MiB and more once lz4 is
            // undone) a polled batch held 1.2-1.7 shards on average, which
            // left the worker's counting threads (one per core, a shard
            // each) mostly idle; at 256 KiB it holds about 4. Records
            // larger than this are still fetched whole.
            .set("max.partition.fetch.bytes", "262144")
            // When a partition's prefetch queue is over its threshold,
            // librdkafka postpones that partition's next fetch by this
            // long (default 1000 ms). A worker slower than the fetcher hit
            // the threshold on every partition, emptied its queues long
            // before the second was up, and waited in poll: 8.3 of 12 s of
            // an uncompressed 1.5M-event drain (docs/benchmarks.md). 10 ms
            // keeps the queues topped up.
            .set("fetch.queue.backoff.ms", "10");
        if let Some(instance) = &settings.kafka.instance_id {
            config.set("group.instance.id", instance);
        }
    })
}

/// Creates the three event topics and the dead-letter topic where they do
/// not exist, with `kafka.partitions` partitions (the dead-letter topic with
/// one fewer concern: it is not co-partitioned, but the same count is
/// harmless). Existing topics are left as they are.
pub async fn ensure_topics(settings: &Settings) -> Result<(), Error> {
    let admin: AdminClient<DefaultClientContext> = create_client(
        &base_config(settings),
        DefaultClientContext,
        "creating admin client",
    )?;
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

/// Collects the errors librdkafka reports in the background: failed
/// handshakes and logins arrive this way, not as request errors.
#[derive(Default)]
struct ErrorRecorder {
    seen: std::sync::Mutex<Vec<(Option<RDKafkaErrorCode>, String)>>,
}

impl rdkafka::ClientContext for ErrorRecorder {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() < 100 {
            seen.push((error.rdkafka_error_code(), reason.to_string()));
        }
    }
}

impl rdkafka::producer::ProducerContext for ErrorRecorder {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::producer::DeliveryResult<'_>, _: ()) {}
}

/// Names what an error reported during connection set-up means for the
/// operator, when it is one that retrying cannot fix.
fn connection_problem(code: Option<RDKafkaErrorCode>, reason: &str) -> Option<&'static str> {
    let authentication = matches!(
        code,
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed)
    ) || reason.contains("SASL authentication error");
    let tls = matches!(code, Some(RDKafkaErrorCode::SSL))
        || reason.contains("SSL handshake failed")
        || reason.contains("certificate");
    if authentication {
        Some("the brokers refused our credentials (kafka.sasl.username / kafka.sasl.password)")
    } else if tls {
        Some("the TLS handshake failed (is the brokers' certificate signed by kafka.tls.ca_file and issued for the host? do they accept kafka.tls.cert_file?)")
    } else {
        None
    }
}

/// Connects to the brokers once and reads the cluster's metadata, failing
/// fast and by name when the connection cannot work: a refused login
/// (wrong SASL credentials), a certificate either side does not trust, or
/// no broker answering within [`REQUEST_TIMEOUT`]. Both binaries call it at
/// start-up, so a misconfigured pod exits non-zero at once instead of
/// retrying forever with a vague log line.
pub fn verify_connection(settings: &Settings) -> Result<(), Error> {
    use rdkafka::producer::Producer as _;
    // A producer, because its poll hands background errors to the context
    // with librdkafka's explanation (a consumer's poll drops the text).
    let client: rdkafka::producer::BaseProducer<ErrorRecorder> = create_client(
        &base_config(settings),
        ErrorRecorder::default(),
        "creating a client",
    )?;
    let deadline = std::time::Instant::now() + REQUEST_TIMEOUT;
    loop {
        let attempt = client
            .client()
            .fetch_metadata(None, Duration::from_millis(500));
        if attempt.is_ok() {
            return Ok(());
        }
        client.poll(Duration::from_millis(100));
        let seen = client
            .context()
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for (code, reason) in &seen {
            if let Some(problem) = connection_problem(*code, reason) {
                return Err(Error::Connection(format!("{problem}: {reason}")));
            }
        }
        if std::time::Instant::now() >= deadline {
            let last = seen
                .last()
                .map(|(_, reason)| format!(": {reason}"))
                .unwrap_or_default();
            return Err(Error::Connection(format!(
                "no broker of `{}` answered within {REQUEST_TIMEOUT:?}{last}",
                settings.kafka.brokers
            )));
        }
    }
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
    let consumer: BaseConsumer = create_client(
        &base_config(settings),
        rdkafka::consumer::DefaultConsumerContext,
        "creating metadata client",
    )?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_errors_lose_every_secret_value() {
        let mut config = ClientConfig::new();
        config
            .set("sasl.password", "hunter2")
            .set(
                "sasl.oauthbearer.assertion.private.key.passphrase",
                "s3same",
            )
            .set("linger.ms", "five");
        let text = "Invalid value \"hunter2\" for \"SASL.PASSWORD\"; s3same; linger.ms: five";
        let redacted = redact_secrets(&config, text);
        assert!(
            !redacted.contains("hunter2") && !redacted.contains("s3same"),
            "{redacted}"
        );
        assert!(redacted.contains("five"), "only secrets go: {redacted}");
    }

    #[test]
    fn a_client_that_cannot_be_created_names_no_secret() {
        let mut config = ClientConfig::new();
        config
            .set("security.protocol", "ssl")
            .set("ssl.key.pem", "hunter2-creation")
            .set("ssl.key.password", "hunter2-creation");
        let error = create_client::<_, rdkafka::producer::BaseProducer>(
            &config,
            rdkafka::producer::DefaultProducerContext,
            "creating a producer",
        )
        .err()
        .expect("a key that is no PEM is refused");
        let text = error.to_string();
        assert!(text.contains("creating a producer"), "{text}");
        assert!(!text.contains("hunter2-creation"), "{text}");
    }
}
