//! From the raw shape to the typed settings: every value checked, and
//! every problem named by its key.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::raw::{self, Footer, Ingest, Root, Sasl, Tls};
use crate::types::*;
use crate::{secret, KafkaProperties, Secret, SettingsError};

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

/// A duration that must be longer than zero.
fn positive(key: &'static str, value: Duration) -> Result<Duration, SettingsError> {
    if value.is_zero() {
        return Err(invalid(key, "must be longer than zero"));
    }
    Ok(value)
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
    Ok(KafkaSecurity {
        protocol,
        sasl: sasl_settings(protocol, sasl)?,
        tls: tls_settings(protocol, tls)?,
    })
}

/// `[kafka.sasl]`: required with a SASL protocol, refused without one.
fn sasl_settings(
    protocol: SecurityProtocol,
    sasl: Sasl,
) -> Result<Option<SaslSettings>, SettingsError> {
    let given = sasl.mechanism.is_some()
        || sasl.username.is_some()
        || sasl.password.is_some()
        || sasl.password_file.is_some();
    if !protocol.uses_sasl() {
        if given {
            return Err(invalid(
                "kafka.sasl",
                format!(
                    "is set, but kafka.security_protocol is `{}`; use sasl_ssl or sasl_plaintext",
                    protocol.librdkafka_name()
                ),
            ));
        }
        return Ok(None);
    }
    let mechanism = sasl.mechanism.unwrap_or_else(|| raw::SASL_MECHANISM.into());
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
    Ok(Some(SaslSettings {
        mechanism,
        username,
        password,
    }))
}

/// `[kafka.tls]`: files that must be readable, refused without TLS.
fn tls_settings(protocol: SecurityProtocol, tls: Tls) -> Result<TlsSettings, SettingsError> {
    let given = tls.ca_file.is_some()
        || tls.cert_file.is_some()
        || tls.key_file.is_some()
        || tls.key_password.is_some()
        || tls.key_password_file.is_some();
    if given && !protocol.uses_tls() {
        return Err(invalid(
            "kafka.tls",
            format!(
                "is set, but kafka.security_protocol is `{}`; use ssl or sasl_ssl",
                protocol.librdkafka_name()
            ),
        ));
    }
    let settings = TlsSettings {
        ca_file: readable_file("kafka.tls.ca_file", tls.ca_file)?,
        cert_file: readable_file("kafka.tls.cert_file", tls.cert_file)?,
        key_file: readable_file("kafka.tls.key_file", tls.key_file)?,
        key_password: secret(
            "kafka.tls.key_password",
            tls.key_password,
            "kafka.tls.key_password_file",
            tls.key_password_file,
        )?,
        verify_hostname: tls.verify_hostname,
    };
    if settings.cert_file.is_some() != settings.key_file.is_some() {
        return Err(invalid(
            "kafka.tls.key_file",
            "kafka.tls.cert_file and kafka.tls.key_file go together (mutual TLS)",
        ));
    }
    Ok(settings)
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

fn properties(properties: BTreeMap<String, String>) -> Result<KafkaProperties, SettingsError> {
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
    Ok(KafkaProperties::new(properties))
}

fn ingest(raw: Ingest) -> Result<IngestSettings, SettingsError> {
    Ok(IngestSettings {
        listen: address("ingest.listen", &raw.listen, "0.0.0.0:8080")?,
        // The file is only read by `serve` (`required_token`): a worker
        // loading the same configuration has no such Secret mounted.
        auth_token: match (&raw.auth_token, &raw.auth_token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "ingest.auth_token",
                    "set either `ingest.auth_token` or `ingest.auth_token_file`, not both",
                ))
            }
            _ => secret(
                "ingest.auth_token",
                raw.auth_token,
                "ingest.auth_token_file",
                None,
            )?,
        },
        auth_token_file: raw.auth_token_file,
        allow_unauthenticated: raw.allow_unauthenticated,
        max_body_bytes: in_range(
            "ingest.max_body_bytes",
            raw.max_body_bytes,
            1024,
            1024 * 1024 * 1024,
        )? as usize,
        request_timeout: positive("ingest.request_timeout", raw.request_timeout)?,
        header_timeout: positive("ingest.header_timeout", raw.header_timeout)?,
        max_connections: in_range("ingest.max_connections", raw.max_connections, 1, 1_000_000)?
            as usize,
        max_rejected_details: in_range(
            "ingest.max_rejected_details",
            raw.max_rejected_details,
            0,
            100_000,
        )? as usize,
        shutdown_delay: raw.shutdown_delay,
        max_queued_events: in_range(
            "ingest.max_queued_events",
            raw.max_queued_events,
            1,
            10_000_000,
        )? as usize,
    })
}

fn footer(raw: Footer) -> Result<FooterSettings, SettingsError> {
    for origin in &raw.cors_origins {
        check_origin(origin).map_err(|problem| invalid("footer.cors_origins", problem))?;
    }
    Ok(FooterSettings {
        listen: address("footer.listen", &raw.listen, "0.0.0.0:8081")?,
        poll_interval: in_duration_range(
            "footer.poll_interval",
            raw.poll_interval,
            Duration::from_millis(100),
            Duration::from_secs(3600),
        )?,
        cors_origins: raw.cors_origins,
        max_ids: in_range("footer.max_ids", raw.max_ids, 1, 1000)? as usize,
        request_timeout: positive("footer.request_timeout", raw.request_timeout)?,
        header_timeout: positive("footer.header_timeout", raw.header_timeout)?,
        max_connections: in_range("footer.max_connections", raw.max_connections, 1, 1_000_000)?
            as usize,
        shutdown_delay: raw.shutdown_delay,
    })
}

/// An origin as browsers send it: `scheme://host[:port]`, no path; or `*`.
fn check_origin(origin: &str) -> Result<(), String> {
    if origin == "*" {
        return Ok(());
    }
    let rest = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or_else(|| format!("`{origin}` is not an origin like https://news.example"))?;
    let host_ok = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !host_ok {
        return Err(format!(
            "`{origin}` is not an origin like https://news.example (no path, no trailing slash)"
        ));
    }
    Ok(())
}

fn in_duration_range(
    key: &'static str,
    value: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, SettingsError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(invalid(
            key,
            format!("{value:?} is outside {min:?}..={max:?}"),
        ))
    }
}

impl Root {
    /// Checks every section; the first problem, named by its key.
    pub(crate) fn validate(self) -> Result<Settings, SettingsError> {
        Ok(Settings {
            kafka: kafka(self.kafka)?,
            topics: topics(self.topics)?,
            output: output(self.output)?,
            window: window(self.window)?,
            dedup: DedupSettings {
                horizon: positive("dedup.horizon", self.dedup.horizon)?,
            },
            metrics: MetricsSettings {
                listen: match self.metrics.listen {
                    None => None,
                    Some(text) => Some(address("metrics.listen", &text, "0.0.0.0:9464")?),
                },
            },
            limits: LimitSettings {
                max_message_bytes: in_range(
                    "limits.max_message_bytes",
                    self.limits.max_message_bytes,
                    1024,
                    64 * 1024 * 1024,
                )? as usize,
            },
            log: log(self.log)?,
            shutdown: ShutdownSettings {
                grace_period: positive("shutdown.grace_period", self.shutdown.grace_period)?,
            },
            watchdog: WatchdogSettings {
                stall_after: positive("watchdog.stall_after", self.watchdog.stall_after)?,
            },
            ingest: ingest(self.ingest)?,
            footer: footer(self.footer)?,
            compaction: CompactionSettings {
                target_file_size: in_range(
                    "compaction.target_file_size",
                    self.compaction.target_file_size,
                    1024 * 1024,
                    4 * 1024 * 1024 * 1024,
                )? as u64,
                max_bin_memory: in_range(
                    "compaction.max_bin_memory",
                    self.compaction.max_bin_memory,
                    16 * 1024 * 1024,
                    64 * 1024 * 1024 * 1024,
                )? as u64,
            },
            vacuum: vacuum(self.vacuum)?,
        })
    }
}

fn vacuum(raw: raw::Vacuum) -> Result<VacuumSettings, SettingsError> {
    // A short retention deletes files that a reader's snapshot or a
    // running compaction still needs (a table then points at a file that
    // is gone). Below the floor only on purpose, as Delta Lake's
    // `retentionDurationCheck.enabled = false`; even then vacuum spares
    // files written in the last hour (newsflow-lake's maintenance module).
    if raw.retention < MIN_SAFE_RETENTION && !raw.allow_unsafe_retention {
        return Err(invalid(
            "vacuum.retention",
            format!(
                "{} is below the safe floor of {}: files a reader or a running compaction still needs would be deleted; set vacuum.allow_unsafe_retention = true to go lower anyway",
                humantime::format_duration(raw.retention),
                humantime::format_duration(MIN_SAFE_RETENTION)
            ),
        ));
    }
    if raw.log_retention < raw.retention {
        return Err(invalid(
            "vacuum.log_retention",
            format!(
                "{} is shorter than vacuum.retention ({}): vacuum opens the version that was latest at the retention's start, so its log must still be there",
                humantime::format_duration(raw.log_retention),
                humantime::format_duration(raw.retention)
            ),
        ));
    }
    Ok(VacuumSettings {
        retention: raw.retention,
        log_retention: raw.log_retention,
    })
}

fn address(key: &'static str, text: &str, example: &str) -> Result<SocketAddr, SettingsError> {
    text.parse().map_err(|e| {
        invalid(
            key,
            format!("`{text}` is not an address like {example}: {e}"),
        )
    })
}

fn kafka(k: raw::Kafka) -> Result<KafkaSettings, SettingsError> {
    let partitioner = match k.partitioner.as_str() {
        "murmur2_random" | "murmur2" | "consistent_random" | "consistent" | "random" | "fnv1a"
        | "fnv1a_random" => k.partitioner,
        other => {
            return Err(invalid(
                "kafka.partitioner",
                format!("`{other}` is not a librdkafka partitioner"),
            ))
        }
    };
    Ok(KafkaSettings {
        brokers: non_empty("kafka.brokers", k.brokers)?,
        group_id: non_empty("kafka.group_id", k.group_id)?,
        client_id: non_empty("kafka.client_id", k.client_id)?,
        partitions: in_range("kafka.partitions", k.partitions, 1, 10_000)? as i32,
        replication_factor: in_range("kafka.replication_factor", k.replication_factor, 1, 32)?
            as i32,
        partitioner,
        session_timeout: positive("kafka.session_timeout", k.session_timeout)?,
        instance_id: match k.instance_id {
            Some(id) => Some(non_empty("kafka.instance_id", id)?),
            None => None,
        },
        security: security(k.security_protocol, k.sasl, k.tls)?,
        properties: properties(k.properties)?,
    })
}

fn topics(t: raw::TopicNames) -> Result<Topics, SettingsError> {
    let topics = Topics {
        articles: non_empty("topics.articles", t.articles)?,
        comments: non_empty("topics.comments", t.comments)?,
        forum_posts: non_empty("topics.forum_posts", t.forum_posts)?,
        dead_letters: non_empty("topics.dead_letters", t.dead_letters)?,
    };
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
    Ok(topics)
}

fn output(o: raw::Output) -> Result<OutputSettings, SettingsError> {
    let uri = non_empty("output.uri", o.uri)?;
    // The scheme is checked here so a typo fails at start-up by name; the
    // lake checks the rest when it opens the store.
    if let Some((scheme, _)) = uri.split_once("://") {
        const SCHEMES: &[&str] = &["file", "s3", "s3a", "gs", "az", "abfs", "abfss", "azure"];
        if !SCHEMES.contains(&scheme) {
            return Err(invalid(
                "output.uri",
                format!(
                    "scheme `{scheme}://` is not supported; use a local path, file://, s3://, gs:// or az://"
                ),
            ));
        }
    }
    let storage = o
        .storage
        .into_iter()
        .map(|(key, value)| (key.to_ascii_lowercase(), Secret::new(value)))
        .collect();
    Ok(OutputSettings {
        uri,
        storage,
        flush_interval: positive("output.flush_interval", o.flush_interval)?,
        flush_max_events: in_range(
            "output.flush_max_events",
            o.flush_max_events,
            1,
            100_000_000,
        )? as usize,
        log_checkpoint_interval: in_range(
            "output.log_checkpoint_interval",
            o.log_checkpoint_interval,
            1,
            1_000_000,
        )? as u64,
    })
}

fn window(w: raw::Window) -> Result<WindowSettings, SettingsError> {
    let window = WindowSettings {
        size: w.size,
        max_out_of_orderness: positive("window.max_out_of_orderness", w.max_out_of_orderness)?,
        idle_timeout: positive("window.idle_timeout", w.idle_timeout)?,
    };
    if window.size.as_micros() < 1_000_000 || window.size.as_secs() > 7 * 86_400 {
        return Err(invalid("window.size", "must be between 1s and 7d"));
    }
    Ok(window)
}

fn log(l: raw::Log) -> Result<LogSettings, SettingsError> {
    Ok(LogSettings {
        format: match l.format.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => {
                return Err(invalid(
                    "log.format",
                    format!("`{other}` is neither `text` nor `json`"),
                ))
            }
        },
        level: non_empty("log.level", l.level)?,
    })
}
