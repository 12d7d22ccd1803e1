//! Loading, layering and validation, with every mistake named by its key;
//! and the README's table of defaults held to the raw shape's.

use std::time::Duration;

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
fn a_vacuum_retention_under_the_floor_needs_the_override() {
    for short in ["0s", "1s", "6days"] {
        let message = error_of(&[("NEWSFLOW__VACUUM__RETENTION", short)]);
        assert!(
            message.contains("vacuum.retention") && message.contains("allow_unsafe_retention"),
            "{short}: {message}"
        );
    }
    let s = load_from(None, env(&[("NEWSFLOW__VACUUM__RETENTION", "7days")])).unwrap();
    assert_eq!(s.vacuum.retention, MIN_SAFE_RETENTION);
    let s = load_from(
        None,
        env(&[
            ("NEWSFLOW__VACUUM__RETENTION", "0s"),
            ("NEWSFLOW__VACUUM__LOG_RETENTION", "0s"),
            ("NEWSFLOW__VACUUM__ALLOW_UNSAFE_RETENTION", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(s.vacuum.retention, Duration::ZERO);
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

/// Every property librdkafka marks sensitive (`_RK_SENSITIVE` in
/// rdkafka_conf.c of librdkafka 2.12), and a few that only look it.
const SENSITIVE_PROPERTIES: [&str; 16] = [
    "sasl.username",
    "sasl.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.client.credentials.client.secret",
    "sasl.oauthbearer.assertion.private.key.file",
    "sasl.oauthbearer.assertion.private.key.passphrase",
    "sasl.oauthbearer.assertion.private.key.pem",
    "ssl.key.location",
    "ssl.key.password",
    "ssl.key.pem",
    "ssl_key",
    "ssl.ca.pem",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "sasl.jaas.config",
];

#[test]
fn secret_properties_never_print_whether_refused_or_passed_through() {
    let dir = tempfile::tempdir().unwrap();
    for key in SENSITIVE_PROPERTIES {
        assert!(is_secret_property(key), "{key} is not recognised as secret");
        let value = format!("hunter2-{}", key.len());
        let file = dir.path().join("newsflow.toml");
        std::fs::write(
            &file,
            format!("[kafka.properties]\n\"{key}\" = \"{value}\"\n"),
        )
        .unwrap();
        let shown = match load_from(Some(&file), env(&[])) {
            Ok(settings) => {
                assert_eq!(settings.kafka.properties.get(key), Some(value.as_str()));
                format!("{settings:?} {settings:#?}")
            }
            Err(e) => e.to_string(),
        };
        assert!(!shown.contains(&value), "{key}'s value is shown: {shown}");
    }
    assert!(!is_secret_property("linger.ms"));
    assert!(!is_secret_property("ssl.endpoint.identification.algorithm"));
}

#[test]
fn a_toml_syntax_error_says_where_without_quoting_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("newsflow.toml");
    std::fs::write(
        &file,
        "[kafka.sasl]\nusername = \"u\"\npassword = \"hunter2\n",
    )
    .unwrap();
    let message = load_from(Some(&file), env(&[])).unwrap_err().to_string();
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("--config"), "{message}");
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
    // The token file is read by `serve` alone: a worker loads the same
    // configuration without the Secret mounted, and `serve` names the key.
    let s = load_from(
        None,
        env(&[("NEWSFLOW__INGEST__AUTH_TOKEN_FILE", "/nonexistent/token")]),
    )
    .expect("a missing token file does not stop other binaries");
    let message = s.ingest.required_token().unwrap_err().to_string();
    assert!(message.contains("ingest.auth_token_file"), "{message}");
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

/// Every README row whose default is written in backticks matches the
/// default in `raw.rs`, so the table cannot drift from the code.
#[test]
fn the_readme_table_states_the_defaults_of_the_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md"))
        .expect("README.md");
    let defaults = serde_json::to_value(crate::raw::Root::default()).expect("defaults serialize");
    let mut checked = 0;
    for row in readme.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split(" | ").collect();
        let (Some(key), Some(default)) = (
            cells[0]
                .strip_prefix("| `")
                .and_then(|k| k.strip_suffix('`')),
            cells[1].strip_prefix('`').and_then(|d| d.strip_suffix('`')),
        ) else {
            continue; // several keys in one row, or a default in words
        };
        let in_code = key
            .split('.')
            .try_fold(&defaults, |value, part| value.get(part))
            .and_then(|value| match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(text) => Some(text.clone()),
                other => Some(other.to_string()),
            });
        let in_code = in_code.or_else(|| {
            (key == "kafka.sasl.mechanism").then(|| crate::raw::SASL_MECHANISM.to_string())
        });
        // Durations compare by value: the code writes 7 days as `7days`.
        let as_duration = |text: &str| humantime::parse_duration(text).ok();
        let same = in_code.as_deref() == Some(default)
            || in_code
                .as_deref()
                .and_then(as_duration)
                .is_some_and(|d| as_duration(default) == Some(d));
        assert!(
            same,
            "README's default of `{key}` is `{default}`, the code's {in_code:?}"
        );
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} README rows were checked");
}

#[test]
fn footer_origins_come_as_a_list_or_as_commas_and_bad_ones_are_named() {
    let s = load_from(
        None,
        env(&[(
            "NEWSFLOW__FOOTER__CORS_ORIGINS",
            "https://news.example, http://127.0.0.1:8000",
        )]),
    )
    .unwrap();
    assert_eq!(
        s.footer.cors_origins,
        ["https://news.example", "http://127.0.0.1:8000"]
    );
    assert_eq!(s.footer.poll_interval, Duration::from_secs(1));
    assert_eq!(s.footer.max_ids, 100);

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("newsflow.toml");
    std::fs::write(&file, "[footer]\ncors_origins = [\"https://a.example\"]\n").unwrap();
    let s = load_from(Some(&file), env(&[])).unwrap();
    assert_eq!(s.footer.cors_origins, ["https://a.example"]);

    let e = error_of(&[(
        "NEWSFLOW__FOOTER__CORS_ORIGINS",
        "https://news.example/path",
    )]);
    assert!(e.contains("footer.cors_origins"), "{e}");
    let e = error_of(&[("NEWSFLOW__FOOTER__POLL_INTERVAL", "1ms")]);
    assert!(e.contains("footer.poll_interval"), "{e}");
    let e = error_of(&[("NEWSFLOW__FOOTER__MAX_IDS", "0")]);
    assert!(e.contains("footer.max_ids"), "{e}");
}
