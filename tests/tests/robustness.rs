//! Bad input and bad configuration: clear errors, nothing lost, no crash.

use std::time::Duration;

use newsflow_e2e::{brokers, current_totals, http_get, TestEnv};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn comment(id: &str, article: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{id}","event_type":"social_comment","article_id":"{article}","occurred_at":"2026-11-01T10:00:00Z","platform":"x"}}"#
    )
}

#[test]
fn malformed_messages_are_dead_lettered_and_the_rest_is_counted() {
    let env = TestEnv::new("dead-letters", 1);
    let [_, comments, _, dead_letters] = env.topics();
    // Create the topics the way users do: through the producer.
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.ndjson");
    std::fs::write(&first, comment("c0", "a1") + "\n").unwrap();
    assert!(env
        .producer(&["replay", first.to_str().unwrap()])
        .status
        .success());

    // Then write raw bytes that no producer of ours would send.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let sends: Vec<(Option<&str>, Vec<u8>)> = vec![
        (Some("a1"), b"not json at all".to_vec()),
        (Some("a1"), comment("c1", "a1").into_bytes()),
        (Some("a1"), vec![0xff, 0xfe, 0x00]),
        (Some("other"), comment("c2", "a1").into_bytes()),
        (None, comment("c3", "a1").into_bytes()),
        (
            Some("a1"),
            comment("c4", "a1")
                .replace("\"schema_version\":1", "\"schema_version\":2")
                .into_bytes(),
        ),
        (Some("a1"), comment("c5", "a1").into_bytes()),
    ];
    for (key, value) in &sends {
        let mut record: BaseRecord<'_, str, [u8]> =
            BaseRecord::to(&comments).payload(value.as_slice());
        if let Some(key) = key {
            record = record.key(*key);
        }
        producer.send(record).map_err(|(e, _)| e).unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    env.consume_until_caught_up();
    assert_eq!(
        current_totals(env.lake_path())["a1"].social_comments,
        3,
        "c0, c1 and c5 count"
    );

    // Every rejected message is in the dead-letter topic with its reason.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", format!("{}-dlq-reader", env.group))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&dead_letters]).unwrap();
    let mut reasons = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while reasons.len() < 5 && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(500)) {
            let headers = message.headers().expect("dead letters carry headers");
            let header = |name: &str| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            assert_eq!(
                header("newsflow.source.topic").as_deref(),
                Some(comments.as_str())
            );
            assert!(header("newsflow.source.offset").is_some());
            assert!(!header("newsflow.detail").unwrap_or_default().is_empty());
            reasons.push(header("newsflow.reason").unwrap());
        }
    }
    reasons.sort();
    assert_eq!(
        reasons,
        [
            "invalid_json",
            "invalid_utf8",
            "key_mismatch",
            "missing_key",
            "unsupported_schema_version"
        ]
    );
}

#[test]
fn a_bad_configuration_value_stops_start_up_naming_its_key() {
    let env = TestEnv::new("bad-config", 1);
    for (key, value, named) in [
        ("NEWSFLOW__WINDOW__SIZE", "soon", "window.size"),
        ("NEWSFLOW__KAFKA__GROUPID", "x", "groupid"),
        (
            "NEWSFLOW__OUTPUT__FLUSH_INTERVAL",
            "-1s",
            "output.flush_interval",
        ),
    ] {
        for binary in ["newsflow-consumer", "newsflow-producer"] {
            let args: &[&str] = if binary == "newsflow-consumer" {
                &["run"]
            } else {
                &["generate", "--count", "1"]
            };
            let output = std::process::Command::new(newsflow_e2e::binary(binary))
                .envs(env.vars())
                .env(key, value)
                .args(args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(
                !output.status.success(),
                "{binary} started with {key}={value}"
            );
            assert!(
                stderr.contains(named),
                "{binary}: error for {key}={value} does not name `{named}`: {stderr}"
            );
        }
    }
}

#[test]
fn a_running_worker_serves_health_readiness_and_the_contract_metrics() {
    let env = TestEnv::new("endpoints", 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("one.ndjson");
    std::fs::write(&file, comment("c0", "a1") + "\n").unwrap();
    assert!(env
        .producer(&["replay", file.to_str().unwrap()])
        .status
        .success());
    let worker = env.spawn_worker();
    env.wait_until_committed(Duration::from_secs(60));

    let health = http_get(worker.port, "/healthz").unwrap();
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let ready = http_get(worker.port, "/readyz").unwrap();
    assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
    let metrics = worker.metrics();
    for name in [
        "newsflow_events_consumed_total{",
        "newsflow_events_duplicate_total{",
        "newsflow_events_dead_lettered_total{",
        "newsflow_parquet_files_written_total{",
        "newsflow_parquet_rows_written_total{",
        "newsflow_parquet_bytes_written_total{",
        "newsflow_flush_duration_seconds_bucket{",
        "newsflow_watermark_lag_seconds ",
        "process_resident_memory_bytes ",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    assert!(
        metrics.contains("newsflow_parquet_files_written_total{dataset=\"events\"} 1"),
        "{metrics}"
    );
    worker.terminate();
}
