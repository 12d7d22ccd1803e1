//! Configuration for the newsflow binaries, read once at start-up.
//!
//! Layers, later wins: built-in defaults < a TOML file (`--config PATH`) <
//! environment variables `NEWSFLOW__SECTION__KEY` (for example
//! `NEWSFLOW__KAFKA__BROKERS=127.0.0.1:9092`). The result is validated into
//! [`Settings`]: durations are parsed, lists checked non-empty, and any
//! unknown key or bad value fails with an error naming the key.
//!
//! ```
//! let settings = newsflow_settings::load_from(None, std::iter::empty::<(String, String)>()).unwrap();
//! assert_eq!(settings.topics.articles, "news.articles");
//! assert_eq!(settings.window.size, std::time::Duration::from_secs(3600));
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use newsflow_core::{CountingRules, DecodeLimits};
use serde::Deserialize;

mod secret;
pub use secret::Secret;

/// A configuration problem, always naming the key it is about.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The file could not be read or parsed, or a key is unknown or of the
    /// wrong type (the config crate's message names the key).
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A key has a value outside its rule.
    #[error("configuration key `{key}`: {problem}")]
    Invalid {
        /// Dotted key, e.g. `window.size`.
        key: &'static str,
        /// What is wrong with its value.
        problem: String,
    },
}

/// Validated settings shared by both binaries; each reads the sections it
/// needs.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Broker connection and client identity.
    pub kafka: KafkaSettings,
    /// Topic names.
    pub topics: Topics,
    /// Where and how often Parquet is written.
    pub output: OutputSettings,
    /// Event-time windows.
    pub window: WindowSettings,
    /// Deduplication of redelivered events.
    pub dedup: DedupSettings,
    /// The /metrics, /healthz and /readyz listener.
    pub metrics: MetricsSettings,
    /// Input limits.
    pub limits: LimitSettings,
    /// Logging.
    pub log: LogSettings,
    /// Graceful shutdown.
    pub shutdown: ShutdownSettings,
    /// Detection of a worker that stopped making progress.
    pub watchdog: WatchdogSettings,
    /// The producer's HTTP ingest endpoint (`newsflow-producer serve`).
    pub ingest: IngestSettings,
}

/// `[ingest]`: the HTTP endpoint of `newsflow-producer serve`.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// `ingest.listen`: address of `POST /v1/events`. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// `ingest.auth_token` or `ingest.auth_token_file`: the bearer token
    /// clients must send. Required unless `ingest.allow_unauthenticated`.
    pub auth_token: Option<Secret>,
    /// `ingest.allow_unauthenticated`: accept requests without a token (a
    /// trusted network only). Default false.
    pub allow_unauthenticated: bool,
    /// `ingest.max_body_bytes`: larger request bodies get 413. Default 16 MiB.
    pub max_body_bytes: usize,
    /// `ingest.request_timeout`: one deadline for a whole request, from its
    /// first byte to the end of its body; a request that misses it gets 408,
    /// so slow clients cannot hold connections. Default `30s`.
    pub request_timeout: Duration,
    /// `ingest.header_timeout`: the first byte and all headers of a request
    /// must arrive within it after the connection opened (or the previous
    /// answer went out), so idle sockets are let go in seconds. Default `5s`.
    pub header_timeout: Duration,
    /// `ingest.max_connections`: connections held at once. At the cap, the
    /// connection idle the longest is closed for a new one; only when every
    /// connection is mid-request is a new one refused. Default 1024.
    pub max_connections: usize,
    /// `ingest.max_rejected_details`: rejected lines listed one by one in an
    /// answer; the rest are only counted by reason. Default 100.
    pub max_rejected_details: usize,
    /// `ingest.shutdown_delay`: after SIGTERM, `/readyz` turns red at once
    /// but requests are still accepted this long, so a load balancer stops
    /// routing before the port closes. Default `5s`.
    pub shutdown_delay: Duration,
    /// `ingest.max_queued_events`: events waiting for Kafka's
    /// acknowledgement; beyond it requests get 503 with Retry-After instead
    /// of buffering without bound. Default 100000.
    pub max_queued_events: usize,
}

impl IngestSettings {
    /// The token requests must carry, `None` when the operator chose an
    /// open endpoint; an error naming the key when neither is configured.
    pub fn required_token(&self) -> Result<Option<&Secret>, SettingsError> {
        match (&self.auth_token, self.allow_unauthenticated) {
            (Some(token), _) => Ok(Some(token)),
            (None, true) => Ok(None),
            (None, false) => Err(SettingsError::Invalid {
                key: "ingest.auth_token",
                problem: "is required by `serve` (or set ingest.auth_token_file, or \
                          ingest.allow_unauthenticated = true on a trusted network)"
                    .into(),
            }),
        }
    }
}

/// How clients reach the brokers: `kafka.security_protocol` with the
/// `[kafka.sasl]` and `[kafka.tls]` sections.
#[derive(Clone, Debug)]
pub struct KafkaSecurity {
    /// `kafka.security_protocol`: `plaintext` (default), `ssl`,
    /// `sasl_plaintext` or `sasl_ssl`.
    pub protocol: SecurityProtocol,
    /// Present exactly when the protocol uses SASL.
    pub sasl: Option<SaslSettings>,
    /// Used when the protocol uses TLS.
    pub tls: TlsSettings,
}

/// `kafka.security_protocol`
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SecurityProtocol {
    /// No encryption, no authentication (a local broker).
    Plaintext,
    /// TLS, optionally with a client certificate (mTLS).
    Ssl,
    /// SASL authentication without encryption.
    SaslPlaintext,
    /// SASL authentication over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name for it.
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }

    /// Whether connections are encrypted.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether clients authenticate with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

/// `[kafka.sasl]`
#[derive(Clone, Debug)]
pub struct SaslSettings {
    /// `kafka.sasl.mechanism`: `SCRAM-SHA-512` (default), `SCRAM-SHA-256` or `PLAIN`.
    pub mechanism: String,
    /// `kafka.sasl.username`.
    pub username: String,
    /// `kafka.sasl.password`, or read from `kafka.sasl.password_file`.
    pub password: Secret,
}

/// `[kafka.tls]` (PEM files)
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// `kafka.tls.ca_file`: CA certificates that sign the brokers'
    /// certificates. Default: the system's trust store.
    pub ca_file: Option<PathBuf>,
    /// `kafka.tls.cert_file`: client certificate, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// `kafka.tls.key_file`: the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// `kafka.tls.key_password` or `kafka.tls.key_password_file`: the
    /// private key's passphrase, if it has one.
    pub key_password: Option<Secret>,
    /// `kafka.tls.verify_hostname`: check that the broker's certificate
    /// names the host connected to. Default true.
    pub verify_hostname: bool,
}

/// `[shutdown]`
#[derive(Clone, Copy, Debug)]
pub struct ShutdownSettings {
    /// `shutdown.grace_period`: after SIGTERM, the longest the worker spends
    /// draining (flush, checkpoint, commit) before it exits non-zero anyway.
    /// Exiting early is safe: the next owner resumes from the last
    /// checkpoint. Keep it below the pod's termination grace period.
    /// Default `30s`.
    pub grace_period: Duration,
}

/// `[watchdog]`
#[derive(Clone, Copy, Debug)]
pub struct WatchdogSettings {
    /// `watchdog.stall_after`: a worker that owns partitions with lag but
    /// handled no record for this long reports not-ready and counts a stall.
    /// Default `2m`.
    pub stall_after: Duration,
}

/// `[kafka]`
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// `kafka.brokers`: bootstrap servers, comma-separated. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// `kafka.group_id`: consumer group of the workers. Default `newsflow`.
    pub group_id: String,
    /// `kafka.client_id`: client id sent to the broker. Default `newsflow`.
    pub client_id: String,
    /// `kafka.partitions`: partitions of each topic when newsflow creates it. Default 6.
    pub partitions: i32,
    /// `kafka.replication_factor`: replication of topics newsflow creates. Default 1.
    pub replication_factor: i32,
    /// `kafka.partitioner`: librdkafka partitioner of our producers. Default
    /// `murmur2_random`, the Java clients' hash, so third-party Java
    /// producers place an article on the same partition.
    pub partitioner: String,
    /// `kafka.session_timeout`: how long the group waits for a silent worker
    /// before giving its partitions to others. Default `30s`; the broker
    /// accepts 6s to 30min by default.
    pub session_timeout: Duration,
    /// `kafka.instance_id`: static group membership (`group.instance.id`).
    /// Set it to a stable per-pod name (a StatefulSet's pod name) and a
    /// restarted worker gets its partitions back at once instead of after a
    /// rebalance. Default none (dynamic membership).
    pub instance_id: Option<String>,
    /// Encryption and authentication.
    pub security: KafkaSecurity,
    /// `kafka.properties`: extra librdkafka properties (tuning), passed
    /// through as they are and applied last. Secrets are refused here: they
    /// belong in `kafka.sasl` and `kafka.tls`, which keep them out of logs.
    /// Default none.
    pub properties: BTreeMap<String, String>,
}

/// `[topics]`
#[derive(Clone, Debug)]
pub struct Topics {
    /// `topics.articles`: `article_published`, `source_confirmed`. Default `news.articles`.
    pub articles: String,
    /// `topics.comments`: `social_comment`. Default `news.comments`.
    pub comments: String,
    /// `topics.forum_posts`: `forum_post`. Default `news.forum-posts`.
    pub forum_posts: String,
    /// `topics.dead_letters`: rejected messages. Default `news.dead-letters`.
    pub dead_letters: String,
}

impl Topics {
    /// The three co-partitioned event topics, in a fixed order.
    pub fn event_topics(&self) -> [&str; 3] {
        [&self.articles, &self.comments, &self.forum_posts]
    }

    /// The topic an event type is published to.
    pub fn for_event_type(&self, event_type: newsflow_core::EventType) -> &str {
        use newsflow_core::EventType::*;
        match event_type {
            ArticlePublished | SourceConfirmed => &self.articles,
            SocialComment => &self.comments,
            ForumPost => &self.forum_posts,
        }
    }
}

/// `[output]`
#[derive(Clone, Debug)]
pub struct OutputSettings {
    /// `output.uri`: root of the three Delta tables: a local path,
    /// `file://`, `s3://bucket/prefix`, `gs://`, `az://` (or `abfss://`).
    /// Default `./var/lake`.
    pub uri: String,
    /// `[output.storage]`: object-store options applied on top of the
    /// environment's (`AWS_*`, `GOOGLE_*`, `AZURE_*`), by the option names
    /// of `object_store` (for instance `aws_endpoint`, `aws_allow_http`).
    /// Every value is treated as a secret. Default empty.
    pub storage: BTreeMap<String, Secret>,
    /// `output.flush_interval`: longest time events wait before their files
    /// are written and their offsets committed. Default `10s`.
    pub flush_interval: Duration,
    /// `output.flush_max_events`: events buffered before a flush is forced,
    /// bounding memory and the size of one file. Default 200000.
    pub flush_max_events: usize,
}

/// `[window]`
#[derive(Clone, Copy, Debug)]
pub struct WindowSettings {
    /// `window.size`: length of the tumbling engagement windows. Default `1h`.
    pub size: Duration,
    /// `window.max_out_of_orderness`: how far the watermark trails the
    /// largest event time seen. Default `5m`.
    pub max_out_of_orderness: Duration,
    /// `window.idle_timeout`: a partition that received no record for this
    /// long emits its open windows instead of waiting for its watermark, and
    /// stops holding back `newsflow_watermark_lag_seconds`. Default `30s`.
    pub idle_timeout: Duration,
}

/// `[dedup]`
#[derive(Clone, Copy, Debug)]
pub struct DedupSettings {
    /// `dedup.horizon`: redeliveries of an event id within this much event
    /// time count once. Default `7d`.
    pub horizon: Duration,
}

/// `[metrics]`
#[derive(Clone, Copy, Debug)]
pub struct MetricsSettings {
    /// `metrics.listen`: address of /metrics, /healthz, /readyz. Default:
    /// each binary's own (`127.0.0.1:9464` for the worker, `127.0.0.1:9465`
    /// for the producer), so both run side by side on one machine.
    pub listen: Option<SocketAddr>,
}

/// `[limits]`
#[derive(Clone, Copy, Debug)]
pub struct LimitSettings {
    /// `limits.max_message_bytes`: larger messages are dead-lettered. Default 262144 (256 KiB).
    pub max_message_bytes: usize,
}

/// `[log]`
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// `log.format`: `text` or `json`. Default `text`.
    pub format: LogFormat,
    /// `log.level`: a tracing filter such as `info` or `newsflow=debug`. Default `info`.
    pub level: String,
}

/// How log lines are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

impl Settings {
    /// The counting rules for the core, from `window` and `dedup`.
    pub fn counting_rules(&self) -> CountingRules {
        CountingRules {
            window_size: micros(self.window.size),
            dedup_horizon: micros(self.dedup.horizon),
            max_out_of_orderness: micros(self.window.max_out_of_orderness),
        }
    }

    /// The decoding limits for the core.
    pub fn decode_limits(&self) -> DecodeLimits {
        DecodeLimits {
            max_message_bytes: self.limits.max_message_bytes,
        }
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// Loads settings from the optional file and the process environment.
pub fn load(config_file: Option<&Path>) -> Result<Settings, SettingsError> {
    load_from(config_file, std::env::vars())
}

/// Loads settings from the optional file and the given environment, which
/// tests pass explicitly instead of mutating the process environment.
pub fn load_from<I>(config_file: Option<&Path>, env: I) -> Result<Settings, SettingsError>
where
    I: IntoIterator<Item = (String, String)>,
{
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("NEWSFLOW__"))
        .collect();
    let mut builder = Config::builder();
    if let Some(path) = config_file {
        let text = std::fs::read_to_string(path).map_err(|e| SettingsError::Invalid {
            key: "--config",
            problem: format!("cannot read {}: {e}", path.display()),
        })?;
        builder = builder.add_source(File::from_str(&text, FileFormat::Toml));
    }
    builder = builder.add_source(
        Environment::with_prefix("NEWSFLOW")
            .prefix_separator("__")
            .separator("__")
            .source(Some(env)),
    );
    let raw: raw::Root = builder.build()?.try_deserialize()?;
    raw.validate()
}

/// The shape of the configuration as written: every key optional with its
/// default, unknown keys refused.
mod raw {
    use super::*;

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    pub struct Root {
        kafka: Kafka,
        topics: TopicNames,
        output: Output,
        window: Window,
        dedup: Dedup,
        metrics: Metrics,
        limits: Limits,
        log: Log,
        shutdown: Shutdown,
        watchdog: Watchdog,
        ingest: Ingest,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Ingest {
        listen: String,
        auth_token: Option<String>,
        auth_token_file: Option<PathBuf>,
        allow_unauthenticated: bool,
        max_body_bytes: i64,
        request_timeout: String,
        header_timeout: String,
        max_connections: i64,
        max_rejected_details: i64,
        shutdown_delay: String,
        max_queued_events: i64,
    }

    impl Default for Ingest {
        fn default() -> Self {
            Ingest {
                listen: "127.0.0.1:8080".into(),
                auth_token: None,
                auth_token_file: None,
                allow_unauthenticated: false,
                max_body_bytes: 16 * 1024 * 1024,
                request_timeout: "30s".into(),
                header_timeout: "5s".into(),
                max_connections: 1024,
                max_rejected_details: 100,
                shutdown_delay: "5s".into(),
                max_queued_events: 100_000,
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Sasl {
        mechanism: Option<String>,
        username: Option<String>,
        password: Option<String>,
        password_file: Option<PathBuf>,
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Tls {
        ca_file: Option<PathBuf>,
        cert_file: Option<PathBuf>,
        key_file: Option<PathBuf>,
        key_password: Option<String>,
        key_password_file: Option<PathBuf>,
        verify_hostname: Option<bool>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Shutdown {
        grace_period: String,
    }

    impl Default for Shutdown {
        fn default() -> Self {
            Shutdown {
                grace_period: "30s".into(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Watchdog {
        stall_after: String,
    }

    impl Default for Watchdog {
        fn default() -> Self {
            Watchdog {
                stall_after: "2m".into(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Kafka {
        brokers: String,
        group_id: String,
        client_id: String,
        partitions: i64,
        replication_factor: i64,
        partitioner: String,
        session_timeout: String,
        instance_id: Option<String>,
        security_protocol: String,
        sasl: Sasl,
        tls: Tls,
        properties: BTreeMap<String, String>,
    }

    impl Default for Kafka {
        fn default() -> Self {
            Kafka {
                brokers: "127.0.0.1:9092".into(),
                group_id: "newsflow".into(),
                client_id: "newsflow".into(),
                partitions: 6,
                replication_factor: 1,
                partitioner: "murmur2_random".into(),
                session_timeout: "30s".into(),
                instance_id: None,
                security_protocol: "plaintext".into(),
                sasl: Sasl::default(),
                tls: Tls::default(),
                properties: BTreeMap::new(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct TopicNames {
        articles: String,
        comments: String,
        forum_posts: String,
        dead_letters: String,
    }

    impl Default for TopicNames {
        fn default() -> Self {
            TopicNames {
                articles: "news.articles".into(),
                comments: "news.comments".into(),
                forum_posts: "news.forum-posts".into(),
                dead_letters: "news.dead-letters".into(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Output {
        uri: String,
        storage: BTreeMap<String, String>,
        flush_interval: String,
        flush_max_events: i64,
    }

    impl Default for Output {
        fn default() -> Self {
            Output {
                uri: "./var/lake".into(),
                storage: BTreeMap::new(),
                flush_interval: "10s".into(),
                flush_max_events: 200_000,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Window {
        size: String,
        max_out_of_orderness: String,
        idle_timeout: String,
    }

    impl Default for Window {
        fn default() -> Self {
            Window {
                size: "1h".into(),
                max_out_of_orderness: "5m".into(),
                idle_timeout: "30s".into(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Dedup {
        horizon: String,
    }

    impl Default for Dedup {
        fn default() -> Self {
            Dedup {
                horizon: "7d".into(),
            }
        }
    }

    #[derive(Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Metrics {
        listen: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Limits {
        max_message_bytes: i64,
    }

    impl Default for Limits {
        fn default() -> Self {
            Limits {
                max_message_bytes: 256 * 1024,
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Log {
        format: String,
        level: String,
    }

    impl Default for Log {
        fn default() -> Self {
            Log {
                format: "text".into(),
                level: "info".into(),
            }
        }
    }

    fn invalid(key: &'static str, problem: impl Into<String>) -> SettingsError {
        SettingsError::Invalid {
            key,
            problem: problem.into(),
        }
    }

    fn non_empty(key: &'static str, value: String) -> Result<String, SettingsError> {
        if value.trim().is_empty() {
            Err(invalid(key, "must not be empty"))
        } else {
            Ok(value)
        }
    }

    fn duration(key: &'static str, value: &str) -> Result<Duration, SettingsError> {
        let d = duration_or_zero(key, value)?;
        if d.is_zero() {
            return Err(invalid(key, "must be longer than zero"));
        }
        Ok(d)
    }

    /// A duration that may be zero (`0s` turns a delay off).
    fn duration_or_zero(key: &'static str, value: &str) -> Result<Duration, SettingsError> {
        humantime::parse_duration(value).map_err(|e| {
            invalid(
                key,
                format!("`{value}` is not a duration like `10s` or `1h`: {e}"),
            )
        })
    }

    fn in_range(key: &'static str, value: i64, min: i64, max: i64) -> Result<i64, SettingsError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(key, format!("{value} is outside {min}..={max}")))
        }
    }

    /// A secret given inline or in a file, never both.
    fn secret(
        key: &'static str,
        inline: Option<String>,
        file_key: &'static str,
        file: Option<PathBuf>,
    ) -> Result<Option<Secret>, SettingsError> {
        match (inline, file) {
            (Some(_), Some(_)) => Err(invalid(
                key,
                format!("set either `{key}` or `{file_key}`, not both"),
            )),
            (Some(value), None) if value.is_empty() => Err(invalid(key, "must not be empty")),
            (Some(value), None) => Ok(Some(Secret::new(value))),
            (None, Some(path)) => secret::read_secret_file(&path)
                .map(Some)
                .map_err(|problem| invalid(file_key, problem)),
            (None, None) => Ok(None),
        }
    }

    fn readable_file(
        key: &'static str,
        path: Option<PathBuf>,
    ) -> Result<Option<PathBuf>, SettingsError> {
        if let Some(path) = &path {
            std::fs::File::open(path)
                .map_err(|e| invalid(key, format!("cannot read {}: {e}", path.display())))?;
        }
        Ok(path)
    }

    fn security(protocol: String, sasl: Sasl, tls: Tls) -> Result<KafkaSecurity, SettingsError> {
        let protocol = match protocol.to_ascii_lowercase().as_str() {
            "plaintext" => SecurityProtocol::Plaintext,
            "ssl" => SecurityProtocol::Ssl,
            "sasl_plaintext" => SecurityProtocol::SaslPlaintext,
            "sasl_ssl" => SecurityProtocol::SaslSsl,
            other => {
                return Err(invalid(
                    "kafka.security_protocol",
                    format!("`{other}` is not one of plaintext, ssl, sasl_plaintext, sasl_ssl"),
                ))
            }
        };
        let sasl_given = sasl.mechanism.is_some()
            || sasl.username.is_some()
            || sasl.password.is_some()
            || sasl.password_file.is_some();
        let sasl = if protocol.uses_sasl() {
            let mechanism = sasl.mechanism.unwrap_or_else(|| "SCRAM-SHA-512".into());
            if !["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"].contains(&mechanism.as_str()) {
                return Err(invalid(
                    "kafka.sasl.mechanism",
                    format!("`{mechanism}` is not one of SCRAM-SHA-512, SCRAM-SHA-256, PLAIN"),
                ));
            }
            let username = non_empty("kafka.sasl.username", sasl.username.unwrap_or_default())?;
            let password = secret(
                "kafka.sasl.password",
                sasl.password,
                "kafka.sasl.password_file",
                sasl.password_file,
            )?
            .ok_or_else(|| {
                invalid(
                    "kafka.sasl.password",
                    "is required by a SASL security protocol (or kafka.sasl.password_file)",
                )
            })?;
            Some(SaslSettings {
                mechanism,
                username,
                password,
            })
        } else if sasl_given {
            return Err(invalid(
                "kafka.sasl",
                format!(
                    "is set, but kafka.security_protocol is `{}`; use sasl_ssl or sasl_plaintext",
                    protocol.librdkafka_name()
                ),
            ));
        } else {
            None
        };
        let tls_given = tls.ca_file.is_some()
            || tls.cert_file.is_some()
            || tls.key_file.is_some()
            || tls.key_password.is_some()
            || tls.key_password_file.is_some();
        if tls_given && !protocol.uses_tls() {
            return Err(invalid(
                "kafka.tls",
                format!(
                    "is set, but kafka.security_protocol is `{}`; use ssl or sasl_ssl",
                    protocol.librdkafka_name()
                ),
            ));
        }
        let tls = TlsSettings {
            ca_file: readable_file("kafka.tls.ca_file", tls.ca_file)?,
            cert_file: readable_file("kafka.tls.cert_file", tls.cert_file)?,
            key_file: readable_file("kafka.tls.key_file", tls.key_file)?,
            key_password: secret(
                "kafka.tls.key_password",
                tls.key_password,
                "kafka.tls.key_password_file",
                tls.key_password_file,
            )?,
            verify_hostname: tls.verify_hostname.unwrap_or(true),
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(invalid(
                "kafka.tls.key_file",
                "kafka.tls.cert_file and kafka.tls.key_file go together (mutual TLS)",
            ));
        }
        Ok(KafkaSecurity {
            protocol,
            sasl,
            tls,
        })
    }

    /// librdkafka properties that carry secrets; they are refused in
    /// `kafka.properties`, whose values are not treated as secret.
    const SECRET_PROPERTIES: [&str; 5] = [
        "sasl.password",
        "ssl.key.password",
        "ssl.keystore.password",
        "ssl.key.pem",
        "sasl.oauthbearer.client.secret",
    ];

    fn properties(
        properties: BTreeMap<String, String>,
    ) -> Result<BTreeMap<String, String>, SettingsError> {
        if let Some(key) = properties
            .keys()
            .find(|k| SECRET_PROPERTIES.contains(&k.as_str()))
        {
            return Err(invalid(
                "kafka.properties",
                format!(
                    "`{key}` holds a secret; set kafka.sasl.password or kafka.tls.key_password \
                     (or their _file forms) instead, which are kept out of logs"
                ),
            ));
        }
        Ok(properties)
    }

    fn ingest(raw: Ingest) -> Result<IngestSettings, SettingsError> {
        let listen = raw.listen.parse().map_err(|e| {
            invalid(
                "ingest.listen",
                format!("`{}` is not an address like 0.0.0.0:8080: {e}", raw.listen),
            )
        })?;
        Ok(IngestSettings {
            listen,
            auth_token: secret(
                "ingest.auth_token",
                raw.auth_token,
                "ingest.auth_token_file",
                raw.auth_token_file,
            )?,
            allow_unauthenticated: raw.allow_unauthenticated,
            max_body_bytes: in_range(
                "ingest.max_body_bytes",
                raw.max_body_bytes,
                1024,
                1024 * 1024 * 1024,
            )? as usize,
            request_timeout: duration("ingest.request_timeout", &raw.request_timeout)?,
            header_timeout: duration("ingest.header_timeout", &raw.header_timeout)?,
            max_connections: in_range("ingest.max_connections", raw.max_connections, 1, 1_000_000)?
                as usize,
            max_rejected_details: in_range(
                "ingest.max_rejected_details",
                raw.max_rejected_details,
                0,
                100_000,
            )? as usize,
            shutdown_delay: duration_or_zero("ingest.shutdown_delay", &raw.shutdown_delay)?,
            max_queued_events: in_range(
                "ingest.max_queued_events",
                raw.max_queued_events,
                1,
                10_000_000,
            )? as usize,
        })
    }

    impl Root {
        pub fn validate(self) -> Result<Settings, SettingsError> {
            let k = self.kafka;
            let partitioner = match k.partitioner.as_str() {
                "murmur2_random" | "murmur2" | "consistent_random" | "consistent" | "random"
                | "fnv1a" | "fnv1a_random" => k.partitioner,
                other => {
                    return Err(invalid(
                        "kafka.partitioner",
                        format!("`{other}` is not a librdkafka partitioner"),
                    ))
                }
            };
            let kafka = KafkaSettings {
                brokers: non_empty("kafka.brokers", k.brokers)?,
                group_id: non_empty("kafka.group_id", k.group_id)?,
                client_id: non_empty("kafka.client_id", k.client_id)?,
                partitions: in_range("kafka.partitions", k.partitions, 1, 10_000)? as i32,
                replication_factor: in_range(
                    "kafka.replication_factor",
                    k.replication_factor,
                    1,
                    32,
                )? as i32,
                partitioner,
                session_timeout: duration("kafka.session_timeout", &k.session_timeout)?,
                instance_id: match k.instance_id {
                    Some(id) => Some(non_empty("kafka.instance_id", id)?),
                    None => None,
                },
                security: security(k.security_protocol, k.sasl, k.tls)?,
                properties: properties(k.properties)?,
            };

            let t = self.topics;
            let topics = Topics {
                articles: non_empty("topics.articles", t.articles)?,
                comments: non_empty("topics.comments", t.comments)?,
                forum_posts: non_empty("topics.forum_posts", t.forum_posts)?,
                dead_letters: non_empty("topics.dead_letters", t.dead_letters)?,
            };
            {
                let names = [
                    &topics.articles,
                    &topics.comments,
                    &topics.forum_posts,
                    &topics.dead_letters,
                ];
                for (i, a) in names.iter().enumerate() {
                    if names[i + 1..].contains(a) {
                        return Err(invalid(
                            "topics",
                            format!("topic `{a}` is named twice; each topic needs its own name"),
                        ));
                    }
                }
            }

            let uri = non_empty("output.uri", self.output.uri)?;
            // The scheme is checked here so a typo fails at start-up by
            // name; the lake checks the rest when it opens the store.
            if let Some((scheme, _)) = uri.split_once("://") {
                const SCHEMES: &[&str] =
                    &["file", "s3", "s3a", "gs", "az", "abfs", "abfss", "azure"];
                if !SCHEMES.contains(&scheme) {
                    return Err(invalid(
                        "output.uri",
                        format!(
                            "scheme `{scheme}://` is not supported; use a local path, file://, s3://, gs:// or az://"
                        ),
                    ));
                }
            }
            let storage = self
                .output
                .storage
                .into_iter()
                .map(|(key, value)| (key.to_ascii_lowercase(), Secret::new(value)))
                .collect();
            let output = OutputSettings {
                uri,
                storage,
                flush_interval: duration("output.flush_interval", &self.output.flush_interval)?,
                flush_max_events: in_range(
                    "output.flush_max_events",
                    self.output.flush_max_events,
                    1,
                    100_000_000,
                )? as usize,
            };

            let window = WindowSettings {
                size: duration("window.size", &self.window.size)?,
                max_out_of_orderness: duration(
                    "window.max_out_of_orderness",
                    &self.window.max_out_of_orderness,
                )?,
                idle_timeout: duration("window.idle_timeout", &self.window.idle_timeout)?,
            };
            if window.size.as_micros() < 1_000_000 || window.size.as_secs() > 7 * 86_400 {
                return Err(invalid("window.size", "must be between 1s and 7d"));
            }
            let dedup = DedupSettings {
                horizon: duration("dedup.horizon", &self.dedup.horizon)?,
            };
            let metrics = MetricsSettings {
                listen: match self.metrics.listen {
                    None => None,
                    Some(text) => Some(text.parse().map_err(|e| {
                        invalid(
                            "metrics.listen",
                            format!("`{text}` is not an address like 0.0.0.0:9464: {e}"),
                        )
                    })?),
                },
            };
            let limits = LimitSettings {
                max_message_bytes: in_range(
                    "limits.max_message_bytes",
                    self.limits.max_message_bytes,
                    1024,
                    64 * 1024 * 1024,
                )? as usize,
            };
            let log = LogSettings {
                format: match self.log.format.as_str() {
                    "text" => LogFormat::Text,
                    "json" => LogFormat::Json,
                    other => {
                        return Err(invalid(
                            "log.format",
                            format!("`{other}` is neither `text` nor `json`"),
                        ))
                    }
                },
                level: non_empty("log.level", self.log.level)?,
            };
            let shutdown = ShutdownSettings {
                grace_period: duration("shutdown.grace_period", &self.shutdown.grace_period)?,
            };
            let watchdog = WatchdogSettings {
                stall_after: duration("watchdog.stall_after", &self.watchdog.stall_after)?,
            };
            let ingest = ingest(self.ingest)?;
            Ok(Settings {
                ingest,
                kafka,
                topics,
                output,
                window,
                dedup,
                metrics,
                limits,
                log,
                shutdown,
                watchdog,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        load_from(None, env(pairs)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = load_from(None, env(&[])).unwrap();
        assert_eq!(s.kafka.brokers, "127.0.0.1:9092");
        assert_eq!(
            s.topics.event_topics(),
            ["news.articles", "news.comments", "news.forum-posts"]
        );
        assert_eq!(s.topics.dead_letters, "news.dead-letters");
        assert_eq!(s.output.uri, "./var/lake");
        assert_eq!(s.dedup.horizon, Duration::from_secs(7 * 86_400));
        assert_eq!(s.limits.max_message_bytes, 262_144);
        assert_eq!(s.kafka.partitioner, "murmur2_random");
    }

    #[test]
    fn environment_overrides_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("newsflow.toml");
        std::fs::write(
            &file,
            "[kafka]\nbrokers = \"file:1\"\ngroup_id = \"from-file\"\n[window]\nsize = \"15m\"\n",
        )
        .unwrap();
        let s = load_from(
            Some(&file),
            env(&[
                ("NEWSFLOW__KAFKA__GROUP_ID", "from-env"),
                ("NEWSFLOW__TOPICS__FORUM_POSTS", "fp"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(s.kafka.brokers, "file:1");
        assert_eq!(s.kafka.group_id, "from-env");
        assert_eq!(s.topics.forum_posts, "fp");
        assert_eq!(s.window.size, Duration::from_secs(900));
    }

    #[test]
    fn numbers_from_the_environment_are_parsed() {
        let s = load_from(None, env(&[("NEWSFLOW__KAFKA__PARTITIONS", "12")])).unwrap();
        assert_eq!(s.kafka.partitions, 12);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("NEWSFLOW__WINDOW__SIZE", "soon")], "window.size"),
            (&[("NEWSFLOW__DEDUP__HORIZON", "0s")], "dedup.horizon"),
            (
                &[("NEWSFLOW__METRICS__LISTEN", "nowhere")],
                "metrics.listen",
            ),
            (&[("NEWSFLOW__KAFKA__PARTITIONS", "0")], "kafka.partitions"),
            (&[("NEWSFLOW__KAFKA__PARTITIONS", "many")], "partitions"),
            (
                &[("NEWSFLOW__OUTPUT__URI", "ftp://host/lake")],
                "output.uri",
            ),
            (&[("NEWSFLOW__LOG__FORMAT", "xml")], "log.format"),
            (&[("NEWSFLOW__KAFKA__BROKERS", " ")], "kafka.brokers"),
        ];
        for (pairs, key) in cases {
            let message = error_of(pairs);
            assert!(
                message.contains(key),
                "error for {pairs:?} should name `{key}`: {message}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let message = error_of(&[("NEWSFLOW__KAFKA__BROKER", "x")]);
        assert!(message.contains("broker"), "{message}");
        let message = error_of(&[("NEWSFLOW__OUTPUTS__URI", "x")]);
        assert!(message.contains("outputs"), "{message}");
    }

    #[test]
    fn sasl_ssl_takes_secrets_from_the_environment_or_files() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not checked here").unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, "from-file\n").unwrap();
        let ca_path = ca.to_str().unwrap();
        let s = load_from(
            None,
            env(&[
                ("NEWSFLOW__KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
                ("NEWSFLOW__KAFKA__SASL__USERNAME", "newsflow"),
                ("NEWSFLOW__KAFKA__SASL__PASSWORD", "from-env"),
                ("NEWSFLOW__KAFKA__TLS__CA_FILE", ca_path),
            ]),
        )
        .unwrap();
        let sasl = s.kafka.security.sasl.as_ref().unwrap();
        assert_eq!(s.kafka.security.protocol, SecurityProtocol::SaslSsl);
        assert_eq!(sasl.mechanism, "SCRAM-SHA-512");
        assert_eq!(sasl.password.expose(), "from-env");
        assert!(s.kafka.security.tls.verify_hostname);
        let dump = format!("{s:?}");
        assert!(!dump.contains("from-env"), "secret in the settings dump");

        let s = load_from(
            None,
            env(&[
                ("NEWSFLOW__KAFKA__SECURITY_PROTOCOL", "sasl_plaintext"),
                ("NEWSFLOW__KAFKA__SASL__USERNAME", "newsflow"),
                (
                    "NEWSFLOW__KAFKA__SASL__PASSWORD_FILE",
                    password_file.to_str().unwrap(),
                ),
            ]),
        )
        .unwrap();
        assert_eq!(
            s.kafka.security.sasl.unwrap().password.expose(),
            "from-file"
        );
    }

    #[test]
    fn security_mistakes_name_their_key_and_never_the_secret() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("NEWSFLOW__KAFKA__SECURITY_PROTOCOL", "tls")],
                "kafka.security_protocol",
            ),
            (
                &[
                    ("NEWSFLOW__KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
                    ("NEWSFLOW__KAFKA__SASL__USERNAME", "u"),
                ],
                "kafka.sasl.password",
            ),
            (
                &[
                    ("NEWSFLOW__KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
                    ("NEWSFLOW__KAFKA__SASL__USERNAME", "u"),
                    ("NEWSFLOW__KAFKA__SASL__PASSWORD", "hunter2"),
                    ("NEWSFLOW__KAFKA__SASL__MECHANISM", "GSSAPI"),
                ],
                "kafka.sasl.mechanism",
            ),
            (
                &[("NEWSFLOW__KAFKA__SASL__PASSWORD", "hunter2")],
                "kafka.sasl",
            ),
            (
                &[
                    ("NEWSFLOW__KAFKA__SECURITY_PROTOCOL", "ssl"),
                    ("NEWSFLOW__KAFKA__TLS__CA_FILE", "/nonexistent/ca.pem"),
                ],
                "kafka.tls.ca_file",
            ),
            (
                &[
                    ("NEWSFLOW__KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
                    ("NEWSFLOW__KAFKA__SASL__USERNAME", "u"),
                    ("NEWSFLOW__KAFKA__SASL__PASSWORD", "hunter2"),
                    ("NEWSFLOW__KAFKA__SASL__PASSWORD_FILE", "/etc/hostname"),
                ],
                "kafka.sasl.password",
            ),
            (
                &[("NEWSFLOW__INGEST__MAX_BODY_BYTES", "10")],
                "ingest.max_body_bytes",
            ),
            (
                &[("NEWSFLOW__INGEST__AUTH_TOKEN_FILE", "/nonexistent/token")],
                "ingest.auth_token_file",
            ),
        ];
        for (pairs, key) in cases {
            let message = error_of(pairs);
            assert!(
                message.contains(key),
                "error for {pairs:?} should name `{key}`: {message}"
            );
            assert!(!message.contains("hunter2"), "secret in error: {message}");
        }
    }

    #[test]
    fn secrets_are_refused_in_pass_through_properties() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("newsflow.toml");
        std::fs::write(
            &file,
            "[kafka.properties]\n\"sasl.password\" = \"hunter2\"\n",
        )
        .unwrap();
        let message = load_from(Some(&file), env(&[])).unwrap_err().to_string();
        assert!(message.contains("kafka.properties"), "{message}");
        assert!(message.contains("sasl.password"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }

    #[test]
    fn serve_needs_a_token_unless_told_otherwise() {
        let s = load_from(None, env(&[])).unwrap();
        let message = s.ingest.required_token().unwrap_err().to_string();
        assert!(message.contains("ingest.auth_token"), "{message}");
        let s = load_from(
            None,
            env(&[("NEWSFLOW__INGEST__ALLOW_UNAUTHENTICATED", "true")]),
        )
        .unwrap();
        assert!(s.ingest.required_token().unwrap().is_none());
        let s = load_from(None, env(&[("NEWSFLOW__INGEST__AUTH_TOKEN", "t0ken")])).unwrap();
        assert!(s
            .ingest
            .required_token()
            .unwrap()
            .unwrap()
            .matches(b"t0ken"));
    }

    #[test]
    fn a_missing_file_is_an_error_naming_it() {
        let message = load_from(Some(Path::new("/nonexistent/newsflow.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("/nonexistent/newsflow.toml"), "{message}");
    }
}
