//! The shape of the configuration as written, and the one place its
//! defaults are written: every key optional, unknown keys refused,
//! durations parsed on the way in (a bad one fails naming its key). Values
//! are checked and typed in [`crate::validate`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Root {
    pub(crate) kafka: Kafka,
    pub(crate) topics: TopicNames,
    pub(crate) output: Output,
    pub(crate) window: Window,
    pub(crate) dedup: Dedup,
    pub(crate) metrics: Metrics,
    pub(crate) limits: Limits,
    pub(crate) log: Log,
    pub(crate) shutdown: Shutdown,
    pub(crate) watchdog: Watchdog,
    pub(crate) ingest: Ingest,
    pub(crate) footer: Footer,
    pub(crate) compaction: Compaction,
    pub(crate) vacuum: Vacuum,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Compaction {
    pub(crate) target_file_size: i64,
    pub(crate) max_bin_memory: i64,
}

impl Default for Compaction {
    fn default() -> Self {
        Compaction {
            target_file_size: 128 * 1024 * 1024, // 128 MiB
            max_bin_memory: 384 * 1024 * 1024,   // 384 MiB
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Vacuum {
    #[serde(with = "duration_text")]
    pub(crate) retention: Duration,
    #[serde(with = "duration_text")]
    pub(crate) log_retention: Duration,
    pub(crate) allow_unsafe_retention: bool,
}

impl Default for Vacuum {
    fn default() -> Self {
        Vacuum {
            retention: Duration::from_secs(7 * 86400),      // 7d
            log_retention: Duration::from_secs(30 * 86400), // 30d
            allow_unsafe_retention: false,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Ingest {
    pub(crate) listen: String,
    pub(crate) auth_token: Option<String>,
    pub(crate) auth_token_file: Option<PathBuf>,
    pub(crate) allow_unauthenticated: bool,
    pub(crate) max_body_bytes: i64,
    #[serde(with = "duration_text")]
    pub(crate) request_timeout: Duration,
    #[serde(with = "duration_text")]
    pub(crate) header_timeout: Duration,
    pub(crate) max_connections: i64,
    pub(crate) max_rejected_details: i64,
    #[serde(with = "duration_text")]
    pub(crate) shutdown_delay: Duration,
    pub(crate) max_queued_events: i64,
}

impl Default for Ingest {
    fn default() -> Self {
        Ingest {
            listen: "127.0.0.1:8080".into(),
            auth_token: None,
            auth_token_file: None,
            allow_unauthenticated: false,
            max_body_bytes: 16 * 1024 * 1024,
            request_timeout: Duration::from_secs(30), // 30s
            header_timeout: Duration::from_secs(5),   // 5s
            max_connections: 1024,
            max_rejected_details: 100,
            shutdown_delay: Duration::from_secs(5), // 5s
            max_queued_events: 100_000,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Footer {
    pub(crate) listen: String,
    #[serde(with = "duration_text")]
    pub(crate) poll_interval: Duration,
    /// A TOML list, or one string of comma-separated origins (how an
    /// environment variable can say it).
    #[serde(deserialize_with = "list_or_commas")]
    pub(crate) cors_origins: Vec<String>,
    pub(crate) max_ids: i64,
    #[serde(with = "duration_text")]
    pub(crate) request_timeout: Duration,
    #[serde(with = "duration_text")]
    pub(crate) header_timeout: Duration,
    pub(crate) max_connections: i64,
    #[serde(with = "duration_text")]
    pub(crate) shutdown_delay: Duration,
}

impl Default for Footer {
    fn default() -> Self {
        Footer {
            listen: "127.0.0.1:8081".into(),
            poll_interval: Duration::from_secs(1), // 1s
            cors_origins: Vec::new(),
            max_ids: 100,
            request_timeout: Duration::from_secs(10), // 10s
            header_timeout: Duration::from_secs(5),   // 5s
            max_connections: 4096,
            shutdown_delay: Duration::from_secs(5), // 5s
        }
    }
}

/// A list given as a TOML array or as one comma-separated string.
fn list_or_commas<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        List(Vec<String>),
        Commas(String),
    }
    Ok(match Written::deserialize(d)? {
        Written::List(list) => list,
        Written::Commas(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

/// `kafka.sasl.mechanism` when the section names none. (The key stays
/// optional so that a `[kafka.sasl]` given with a protocol that has no SASL
/// is noticed.)
pub(crate) const SASL_MECHANISM: &str = "SCRAM-SHA-512";

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Sasl {
    pub(crate) mechanism: Option<String>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Tls {
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) cert_file: Option<PathBuf>,
    pub(crate) key_file: Option<PathBuf>,
    pub(crate) key_password: Option<String>,
    pub(crate) key_password_file: Option<PathBuf>,
    pub(crate) verify_hostname: bool,
}

impl Default for Tls {
    fn default() -> Self {
        Tls {
            ca_file: None,
            cert_file: None,
            key_file: None,
            key_password: None,
            key_password_file: None,
            verify_hostname: true,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Shutdown {
    #[serde(with = "duration_text")]
    pub(crate) grace_period: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            grace_period: Duration::from_secs(30), // 30s
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Watchdog {
    #[serde(with = "duration_text")]
    pub(crate) stall_after: Duration,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            stall_after: Duration::from_secs(120), // 2m
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Kafka {
    pub(crate) brokers: String,
    pub(crate) group_id: String,
    pub(crate) client_id: String,
    pub(crate) partitions: i64,
    pub(crate) replication_factor: i64,
    pub(crate) partitioner: String,
    #[serde(with = "duration_text")]
    pub(crate) session_timeout: Duration,
    pub(crate) instance_id: Option<String>,
    pub(crate) security_protocol: String,
    pub(crate) sasl: Sasl,
    pub(crate) tls: Tls,
    pub(crate) properties: BTreeMap<String, String>,
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
            session_timeout: Duration::from_secs(30), // 30s
            instance_id: None,
            security_protocol: "plaintext".into(),
            sasl: Sasl::default(),
            tls: Tls::default(),
            properties: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TopicNames {
    pub(crate) articles: String,
    pub(crate) comments: String,
    pub(crate) forum_posts: String,
    pub(crate) dead_letters: String,
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

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Output {
    pub(crate) uri: String,
    pub(crate) storage: BTreeMap<String, String>,
    #[serde(with = "duration_text")]
    pub(crate) flush_interval: Duration,
    pub(crate) flush_max_events: i64,
    pub(crate) log_checkpoint_interval: i64,
}

impl Default for Output {
    fn default() -> Self {
        Output {
            uri: "./var/lake".into(),
            storage: BTreeMap::new(),
            flush_interval: Duration::from_secs(10), // 10s
            flush_max_events: 200_000,
            log_checkpoint_interval: 100,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Window {
    #[serde(with = "duration_text")]
    pub(crate) size: Duration,
    #[serde(with = "duration_text")]
    pub(crate) max_out_of_orderness: Duration,
    #[serde(with = "duration_text")]
    pub(crate) idle_timeout: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            size: Duration::from_secs(3600),                // 1h
            max_out_of_orderness: Duration::from_secs(300), // 5m
            idle_timeout: Duration::from_secs(30),          // 30s
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Dedup {
    #[serde(with = "duration_text")]
    pub(crate) horizon: Duration,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            horizon: Duration::from_secs(604800), // 7d
        }
    }
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Metrics {
    pub(crate) listen: Option<String>,
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Limits {
    pub(crate) max_message_bytes: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_bytes: 256 * 1024,
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Log {
    pub(crate) format: String,
    pub(crate) level: String,
}

impl Default for Log {
    fn default() -> Self {
        Log {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Durations as people write them (`10s`, `1h`, `7d`), parsed on the way in.
mod duration_text {
    use std::time::Duration;

    use serde::{de::Error as _, Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| {
            D::Error::custom(format!(
                "`{text}` is not a duration like `10s` or `1h`: {e}"
            ))
        })
    }

    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*duration).to_string())
    }
}
