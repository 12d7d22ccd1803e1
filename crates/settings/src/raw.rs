//! The shape of the configuration as written, and the one place its
//! defaults are written: every key optional, unknown keys refused. Values
//! are checked and typed in [`crate::validate`].

use std::collections::BTreeMap;
use std::path::PathBuf;

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
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Ingest {
    pub(crate) listen: String,
    pub(crate) auth_token: Option<String>,
    pub(crate) auth_token_file: Option<PathBuf>,
    pub(crate) allow_unauthenticated: bool,
    pub(crate) max_body_bytes: i64,
    pub(crate) request_timeout: String,
    pub(crate) header_timeout: String,
    pub(crate) max_connections: i64,
    pub(crate) max_rejected_details: i64,
    pub(crate) shutdown_delay: String,
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
            request_timeout: "30s".into(),
            header_timeout: "5s".into(),
            max_connections: 1024,
            max_rejected_details: 100,
            shutdown_delay: "5s".into(),
            max_queued_events: 100_000,
        }
    }
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
    pub(crate) grace_period: String,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            grace_period: "30s".into(),
        }
    }
}

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Watchdog {
    pub(crate) stall_after: String,
}

impl Default for Watchdog {
    fn default() -> Self {
        Watchdog {
            stall_after: "2m".into(),
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
    pub(crate) session_timeout: String,
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
            session_timeout: "30s".into(),
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
    pub(crate) flush_interval: String,
    pub(crate) flush_max_events: i64,
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

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Window {
    pub(crate) size: String,
    pub(crate) max_out_of_orderness: String,
    pub(crate) idle_timeout: String,
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

#[derive(Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Dedup {
    pub(crate) horizon: String,
}

impl Default for Dedup {
    fn default() -> Self {
        Dedup {
            horizon: "7d".into(),
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
