//! The typed settings the binaries read, after validation. Defaults are
//! written once, in [`crate::raw`]; the README's table repeats them for
//! readers, and a test holds the two together.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use newsflow_core::{CountingRules, DecodeLimits};

use crate::{KafkaProperties, Secret, SettingsError};

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
    /// `[footer]`.
    pub footer: FooterSettings,
    /// Compaction of small files (`newsflow-lake compact`).
    pub compaction: CompactionSettings,
    /// What vacuum keeps (`newsflow-lake vacuum`).
    pub vacuum: VacuumSettings,
}

/// `[compaction]`
#[derive(Clone, Copy, Debug)]
pub struct CompactionSettings {
    /// `compaction.target_file_size`: bytes a compacted file aims at; files
    /// smaller than this are packed together.
    pub target_file_size: u64,
    /// `compaction.max_bin_memory`: decoded bytes one rewrite holds at
    /// most; a bin whose rows decode to more is cut into several files.
    pub max_bin_memory: u64,
}

/// `[vacuum]`
#[derive(Clone, Copy, Debug)]
pub struct VacuumSettings {
    /// `vacuum.retention`: how long a data file outside the table log is
    /// kept, so readers that opened an older version can finish.
    pub retention: Duration,
    /// `vacuum.log_retention`: how long log entries are kept (the versions a
    /// reader can travel back to); at least `vacuum.retention`.
    pub log_retention: Duration,
}

/// The shortest `vacuum.retention` accepted without
/// `vacuum.allow_unsafe_retention`: Delta Lake's own default check (a
/// week), which outlasts any reader's snapshot and any compaction.
pub const MIN_SAFE_RETENTION: Duration = Duration::from_secs(7 * 86400);

/// `[ingest]`: the HTTP endpoint of `newsflow-producer serve`.
#[derive(Clone, Debug)]
pub struct IngestSettings {
    /// `ingest.listen`: address of `POST /v1/events`.
    pub listen: SocketAddr,
    /// `ingest.auth_token`: the bearer token clients must send, given
    /// inline. Required (or the file) unless `ingest.allow_unauthenticated`.
    pub auth_token: Option<Secret>,
    /// `ingest.auth_token_file`: the same token in a file, read only by
    /// `serve` ([`IngestSettings::required_token`]): the workers and the
    /// lake's jobs load the same configuration without that Secret mounted.
    pub auth_token_file: Option<PathBuf>,
    /// `ingest.allow_unauthenticated`: accept requests without a token (a
    /// trusted network only).
    pub allow_unauthenticated: bool,
    /// `ingest.max_body_bytes`: larger request bodies get 413.
    pub max_body_bytes: usize,
    /// `ingest.request_timeout`: one deadline for a whole request, from its
    /// first byte to the end of its body; a request that misses it gets 408, so
    /// slow clients cannot hold connections.
    pub request_timeout: Duration,
    /// `ingest.header_timeout`: the first byte and all headers of a request
    /// must arrive within it after the connection opened (or the previous
    /// answer went out), so idle sockets are let go in seconds.
    pub header_timeout: Duration,
    /// `ingest.max_connections`: connections held at once. At the cap, the
    /// connection idle the longest is closed for a new one; only when every
    /// connection is mid-request is a new one refused.
    pub max_connections: usize,
    /// `ingest.max_rejected_details`: rejected lines listed one by one in an
    /// answer; the rest are only counted by reason.
    pub max_rejected_details: usize,
    /// `ingest.shutdown_delay`: after SIGTERM, `/readyz` turns red at once but
    /// requests are still accepted this long, so a load balancer stops routing
    /// before the port closes.
    pub shutdown_delay: Duration,
    /// `ingest.max_queued_events`: events waiting for Kafka's acknowledgement;
    /// beyond it requests get 503 with Retry-After instead of buffering without
    /// bound.
    pub max_queued_events: usize,
}

/// `[footer]`: the footer API of `newsflow-footer serve`.
#[derive(Clone, Debug)]
pub struct FooterSettings {
    /// `footer.listen`: address of the footer API.
    pub listen: SocketAddr,
    /// `footer.poll_interval`: how often the `article_totals` log is read
    /// for new commits; answers say `Cache-Control: max-age` of it.
    pub poll_interval: Duration,
    /// `footer.cors_origins`: site origins (`https://news.example`) whose
    /// pages may fetch footers from a browser; `*` allows any. None by
    /// default.
    pub cors_origins: Vec<String>,
    /// `footer.max_ids`: ids one `/v1/footers?ids=` request may ask for.
    pub max_ids: usize,
    /// `footer.request_timeout`: one deadline for a whole request.
    pub request_timeout: Duration,
    /// `footer.header_timeout`: a request's head must arrive within it.
    pub header_timeout: Duration,
    /// `footer.max_connections`: connections held at once; idle ones go
    /// first when it is reached.
    pub max_connections: usize,
    /// `footer.shutdown_delay`: after SIGTERM, `/readyz` is red but
    /// requests are still answered this long.
    pub shutdown_delay: Duration,
}

impl IngestSettings {
    /// The token requests must carry, `None` when the operator chose an
    /// open endpoint; an error naming the key when neither is configured.
    pub fn required_token(&self) -> Result<Option<Secret>, SettingsError> {
        if let Some(path) = &self.auth_token_file {
            return crate::secret::read_secret_file(path)
                .map(Some)
                .map_err(|problem| SettingsError::Invalid {
                    key: "ingest.auth_token_file",
                    problem,
                });
        }
        match (&self.auth_token, self.allow_unauthenticated) {
            (Some(token), _) => Ok(Some(token.clone())),
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
    /// `kafka.security_protocol`: `plaintext`, `ssl`,
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
    /// `kafka.sasl.mechanism`: `SCRAM-SHA-512`, `SCRAM-SHA-256` or `PLAIN`.
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
    /// certificates.
    pub ca_file: Option<PathBuf>,
    /// `kafka.tls.cert_file`: client certificate, for mutual TLS.
    pub cert_file: Option<PathBuf>,
    /// `kafka.tls.key_file`: the client certificate's private key.
    pub key_file: Option<PathBuf>,
    /// `kafka.tls.key_password` or `kafka.tls.key_password_file`: the
    /// private key's passphrase, if it has one.
    pub key_password: Option<Secret>,
    /// `kafka.tls.verify_hostname`: check that the broker's certificate names
    /// the host connected to.
    pub verify_hostname: bool,
}

/// `[shutdown]`
#[derive(Clone, Copy, Debug)]
pub struct ShutdownSettings {
    /// `shutdown.grace_period`: after SIGTERM, the longest the worker spends
    /// draining (flush, checkpoint, commit) before it exits non-zero anyway.
    /// Exiting early is safe: the next owner resumes from the last checkpoint.
    /// Keep it below the pod's termination grace period.
    pub grace_period: Duration,
}

/// `[watchdog]`
#[derive(Clone, Copy, Debug)]
pub struct WatchdogSettings {
    /// `watchdog.stall_after`: a worker that owns partitions with lag but
    /// handled no record for this long reports not-ready and counts a stall.
    pub stall_after: Duration,
}

/// `[kafka]`
#[derive(Clone, Debug)]
pub struct KafkaSettings {
    /// `kafka.brokers`: bootstrap servers, comma-separated.
    pub brokers: String,
    /// `kafka.group_id`: consumer group of the workers.
    pub group_id: String,
    /// `kafka.client_id`: client id sent to the broker.
    pub client_id: String,
    /// `kafka.partitions`: partitions of each topic when newsflow creates it.
    pub partitions: i32,
    /// `kafka.replication_factor`: replication of topics newsflow creates.
    pub replication_factor: i32,
    /// `kafka.partitioner`: librdkafka partitioner of our producers.
    pub partitioner: String,
    /// `kafka.session_timeout`: how long the group waits for a silent worker
    /// before giving its partitions to others.
    pub session_timeout: Duration,
    /// `kafka.instance_id`: static group membership (`group.instance.id`). Set
    /// it to a stable per-pod name (a StatefulSet's pod name) and a restarted
    /// worker gets its partitions back at once instead of after a rebalance.
    pub instance_id: Option<String>,
    /// Encryption and authentication.
    pub security: KafkaSecurity,
    /// `kafka.properties`: extra librdkafka properties (tuning), passed through
    /// as they are and applied last. The secrets `kafka.sasl` and
    /// `kafka.tls` have a key for are refused here; any other secret-looking
    /// property's value is redacted wherever it would print.
    pub properties: KafkaProperties,
}

/// `[topics]`
#[derive(Clone, Debug)]
pub struct Topics {
    /// `topics.articles`: `article_published`, `source_confirmed`.
    pub articles: String,
    /// `topics.comments`: `social_comment`.
    pub comments: String,
    /// `topics.forum_posts`: `forum_post`.
    pub forum_posts: String,
    /// `topics.dead_letters`: rejected messages.
    pub dead_letters: String,
}

impl Topics {
    /// The three co-partitioned event topics, in a fixed order.
    pub fn event_topics(&self) -> [&str; 3] {
        [&self.articles, &self.comments, &self.forum_posts]
    }

    /// The topic an event type is published to.
    pub fn for_event_type(&self, event_type: newsflow_core::EventType) -> &str {
        use newsflow_core::EventTopic;
        match event_type.topic() {
            EventTopic::Articles => &self.articles,
            EventTopic::Comments => &self.comments,
            EventTopic::ForumPosts => &self.forum_posts,
        }
    }
}

/// `[output]`
#[derive(Clone, Debug)]
pub struct OutputSettings {
    /// `output.uri`: root of the three Delta tables: a local path, `file://`,
    /// `s3://bucket/prefix`, `gs://`, `az://` (or `abfss://`).
    pub uri: String,
    /// `[output.storage]`: object-store options applied on top of the
    /// environment's (`AWS_*`, `GOOGLE_*`, `AZURE_*`), by the option names of
    /// `object_store` (for instance `aws_endpoint`, `aws_allow_http`). Every
    /// value is treated as a secret.
    pub storage: BTreeMap<String, Secret>,
    /// `output.flush_interval`: longest time events wait before their files are
    /// written and their offsets committed.
    pub flush_interval: Duration,
    /// `output.flush_max_events`: events buffered before a flush is forced,
    /// bounding memory and the size of one file.
    pub flush_max_events: usize,
    /// `output.log_checkpoint_interval`: a worker writes a table's log
    /// checkpoint after this many commits to it, so opening the table reads
    /// one Parquet file and at most this many JSON commits.
    pub log_checkpoint_interval: u64,
}

impl OutputSettings {
    /// The `[output.storage]` options in the clear, for the object store
    /// (the only place they are exposed).
    pub fn storage_options(&self) -> BTreeMap<String, String> {
        self.storage
            .iter()
            .map(|(key, value)| (key.clone(), value.expose().to_string()))
            .collect()
    }
}

/// `[window]`
#[derive(Clone, Copy, Debug)]
pub struct WindowSettings {
    /// `window.size`: length of the tumbling engagement windows.
    pub size: Duration,
    /// `window.max_out_of_orderness`: how far the watermark trails the largest
    /// event time seen.
    pub max_out_of_orderness: Duration,
    /// `window.idle_timeout`: a partition that received no record for this long
    /// emits its open windows instead of waiting for its watermark, and stops
    /// holding back `newsflow_watermark_lag_seconds`.
    pub idle_timeout: Duration,
}

/// `[dedup]`
#[derive(Clone, Copy, Debug)]
pub struct DedupSettings {
    /// `dedup.horizon`: redeliveries of an event id within this much event time
    /// count once.
    pub horizon: Duration,
}

/// `[metrics]`
#[derive(Clone, Copy, Debug)]
pub struct MetricsSettings {
    /// `metrics.listen`: address of /metrics, /healthz, /readyz.
    pub listen: Option<SocketAddr>,
}

/// `[limits]`
#[derive(Clone, Copy, Debug)]
pub struct LimitSettings {
    /// `limits.max_message_bytes`: larger messages are dead-lettered.
    pub max_message_bytes: usize,
}

/// `[log]`
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// `log.format`: `text` or `json`.
    pub format: LogFormat,
    /// `log.level`: a tracing filter such as `info` or `newsflow=debug`.
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
