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
    /// `kafka.properties`: extra librdkafka properties, passed through as
    /// they are (e.g. `security.protocol`). Default none.
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
    /// `output.uri`: root of the Parquet datasets, a local path. Default `./var/lake`.
    pub root: PathBuf,
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
        flush_interval: String,
        flush_max_events: i64,
    }

    impl Default for Output {
        fn default() -> Self {
            Output {
                uri: "./var/lake".into(),
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
        let d = humantime::parse_duration(value).map_err(|e| {
            invalid(
                key,
                format!("`{value}` is not a duration like `10s` or `1h`: {e}"),
            )
        })?;
        if d.is_zero() {
            return Err(invalid(key, "must be longer than zero"));
        }
        Ok(d)
    }

    fn in_range(key: &'static str, value: i64, min: i64, max: i64) -> Result<i64, SettingsError> {
        if (min..=max).contains(&value) {
            Ok(value)
        } else {
            Err(invalid(key, format!("{value} is outside {min}..={max}")))
        }
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
                properties: k.properties,
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
            let root = match uri.split_once("://") {
                None => PathBuf::from(&uri),
                Some(("file", path)) => PathBuf::from(path),
                Some((scheme, _)) => {
                    return Err(invalid(
                        "output.uri",
                        format!(
                            "scheme `{scheme}://` is not supported by this build; use a local path"
                        ),
                    ))
                }
            };
            let output = OutputSettings {
                root,
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
            Ok(Settings {
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
        assert_eq!(s.output.root, PathBuf::from("./var/lake"));
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
                &[("NEWSFLOW__OUTPUT__URI", "s3://bucket/lake")],
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
    fn a_missing_file_is_an_error_naming_it() {
        let message = load_from(Some(Path::new("/nonexistent/newsflow.toml")), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(message.contains("/nonexistent/newsflow.toml"), "{message}");
    }
}
