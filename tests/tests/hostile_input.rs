//! Hostile input through the real broker: every kind of message the
//! contract rejects is dead-lettered with its reason, its original key and
//! bytes, and where it came from; the good messages around it are counted;
//! nothing from an event reaches a file path; and a dead-letter topic that
//! refuses writes holds the partition back instead of losing the message.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use newsflow_e2e::{
    brokers, committed_offset, current_totals, metric_value, read_dead_letters, wait_for, TestEnv,
};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn event(id: &str, article: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{id}","event_type":"social_comment","article_id":"{article}","occurred_at":"2026-11-01T10:00:00Z","platform":"x"}}"#
    )
}

/// A good comment on `article`, with `field` replaced by `value` (raw JSON).
fn with(field: &str, value: &str, article: &str) -> String {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&event("bad", article)).unwrap();
    object.insert(field.into(), serde_json::from_str(value).unwrap());
    serde_json::Value::Object(object).to_string()
}

fn without(field: &str) -> String {
    let mut object: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&event("bad", "ok")).unwrap();
    object.remove(field);
    serde_json::Value::Object(object).to_string()
}

/// One hostile message: its key, its bytes, and the reason it must get.
struct Case {
    name: &'static str,
    key: Option<String>,
    value: Vec<u8>,
    reason: &'static str,
}

fn case(
    name: &'static str,
    key: Option<&str>,
    value: impl Into<Vec<u8>>,
    reason: &'static str,
) -> Case {
    Case {
        name,
        key: key.map(String::from),
        value: value.into(),
        reason,
    }
}

fn catalogue() -> Vec<Case> {
    let long_id = "a".repeat(129);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let ok = Some("ok");
    vec![
        case(
            "invalid UTF-8",
            ok,
            vec![b'{', 0xff, 0xfe, b'}'],
            "invalid_utf8",
        ),
        case("not JSON", ok, "this is not json", "invalid_json"),
        case(
            "a lone UTF-16 surrogate escaped in article_id",
            ok,
            event("bad", r"ok\ud800"),
            "lone_surrogate",
        ),
        case("a JSON array", ok, "[1,2,3]", "not_an_object"),
        case("a JSON number", ok, "42", "not_an_object"),
        case("a JSON string", ok, "\"event\"", "not_an_object"),
        case("an empty message", ok, "", "empty_message"),
        case(
            "missing occurred_at",
            ok,
            without("occurred_at"),
            "missing_field",
        ),
        case("missing platform", ok, without("platform"), "missing_field"),
        case(
            "schema_version as a string",
            ok,
            with("schema_version", "\"1\"", "ok"),
            "wrong_type",
        ),
        case(
            "occurred_at as a number",
            ok,
            with("occurred_at", "1700000000", "ok"),
            "wrong_type",
        ),
        case(
            "unknown event_type",
            ok,
            with("event_type", "\"article_deleted\"", "ok"),
            "unknown_event_type",
        ),
        case(
            "schema_version 2",
            ok,
            with("schema_version", "2", "ok"),
            "unsupported_schema_version",
        ),
        case(
            "article_id with /",
            Some("a/b"),
            with("article_id", "\"a/b\"", "a/b"),
            "invalid_article_id",
        ),
        case(
            "article_id ..",
            Some(".."),
            with("article_id", "\"..\"", ".."),
            "invalid_article_id",
        ),
        case(
            "article_id with spaces",
            Some("a b"),
            with("article_id", "\"a b\"", "a b"),
            "invalid_article_id",
        ),
        case(
            "article_id of 129 characters",
            Some(long_id.as_str()),
            with("article_id", &format!("\"{long_id}\""), &long_id),
            "invalid_article_id",
        ),
        case(
            "key differs from article_id",
            Some("other"),
            event("k1", "ok"),
            "key_mismatch",
        ),
        case("null key", None, event("k2", "ok"), "missing_key"),
        case(
            "over the size limit",
            ok,
            format!("{{\"pad\":\"{}\"}}", "x".repeat(300_000)),
            "too_large",
        ),
        case("100,000-deep nested array", ok, deep, "invalid_json"),
        case(
            "duplicate keys",
            ok,
            event("dup", "ok").replace(
                "\"platform\":\"x\"",
                "\"platform\":\"x\",\"platform\":\"y\"",
            ),
            "duplicate_field",
        ),
        case(
            "timestamp without offset",
            ok,
            with("occurred_at", "\"2026-11-01T10:00:00\"", "ok"),
            "invalid_timestamp",
        ),
        case(
            "timestamp in year 9999",
            ok,
            with("occurred_at", "\"9999-01-01T00:00:00Z\"", "ok"),
            "invalid_timestamp",
        ),
        case(
            "empty article_id",
            Some(""),
            with("article_id", "\"\"", ""),
            "invalid_article_id",
        ),
        case(
            "empty event_id",
            ok,
            with("event_id", "\"\"", "ok"),
            "invalid_event_id",
        ),
        case(
            "empty platform",
            ok,
            with("platform", "\"\"", "ok"),
            "invalid_field",
        ),
        case(
            "event_id of 129 characters",
            ok,
            with("event_id", &format!("\"{long_id}\""), "ok"),
            "invalid_event_id",
        ),
    ]
}

fn raw_producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.max.bytes", "1000000")
        .create()
        .unwrap()
}

fn send(producer: &BaseProducer, topic: &str, key: Option<&str>, value: &[u8]) {
    let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    producer.send(record).map_err(|(e, _)| e).unwrap();
}

/// Every path under the lake is made of names the worker chose, never of
/// event text: dataset names, known event types, dates, numbered files.
fn assert_paths_are_ours(lake: &Path) {
    fn component_ok(name: &str) -> bool {
        let numbered = |prefix: &str, suffix: &str| {
            name.strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(suffix))
                .is_some_and(|r| {
                    !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit() || b == b'-')
                })
        };
        let date = ["emitted_date=", "window_date=", "occurred_date="]
            .iter()
            .filter_map(|p| name.strip_prefix(p))
            .any(|d| d.len() == 10 && d.bytes().all(|b| b.is_ascii_digit() || b == b'-'));
        let event_type = name.strip_prefix("event_type=").is_some_and(|t| {
            [
                "article_published",
                "source_confirmed",
                "social_comment",
                "forum_post",
            ]
            .contains(&t)
        });
        // The Delta log's own files: numbered commits, CRC files, log
        // checkpoints, the last-checkpoint hint.
        let log_file = name == "_last_checkpoint"
            || name
                .split('.')
                .next()
                .is_some_and(|n| n.len() == 20 && n.bytes().all(|b| b.is_ascii_digit()));
        [
            "article_totals",
            "article_engagement",
            "events",
            "_delta_log",
            "_newsflow",
            "shards",
        ]
        .contains(&name)
            || date
            || event_type
            || log_file
            || numbered("part-", ".zstd.parquet")
            || numbered("claim-", "")
            || numbered("checkpoint-", "")
            || numbered("cold-", ".json")
            || (name.len() == 5 && name.bytes().all(|b| b.is_ascii_digit()))
    }
    fn walk(dir: &Path, root: &Path) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            assert!(
                component_ok(&name),
                "unexpected path component {name:?} in {}",
                path.strip_prefix(root).unwrap().display()
            );
            if path.is_dir() {
                walk(&path, root);
            }
        }
    }
    walk(lake, lake);
}

#[test]
fn every_rejected_message_is_dead_lettered_with_its_reason_and_the_rest_is_counted() {
    let env = TestEnv::new("catalogue", 1);
    let [_, comments, _, dead_letters] = env.topics();
    publish_good_0(&env);

    // Offset 0 is good-0; then each bad message is followed by a good one.
    let cases = catalogue();
    let producer = raw_producer();
    let mut offsets = BTreeMap::new();
    for (i, case) in cases.iter().enumerate() {
        offsets.insert(1 + 2 * i as i64, case.name);
        send(&producer, &comments, case.key.as_deref(), &case.value);
        send(
            &producer,
            &comments,
            Some("ok"),
            event(&format!("good-{}", i + 1), "ok").as_bytes(),
        );
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let worker = env.spawn_worker();
    env.wait_until_committed(Duration::from_secs(90));
    let metrics = worker.metrics();
    worker.terminate();

    assert_eq!(
        current_totals(env.lake_path())["ok"].social_comments,
        cases.len() as i64 + 1,
        "every good message around the bad ones is counted"
    );
    let letters = read_dead_letters(&dead_letters, cases.len(), Duration::from_secs(30));
    assert_eq!(
        letters.len(),
        cases.len(),
        "one dead letter per bad message, no more"
    );
    for letter in &letters {
        let offset: i64 = letter.headers["newsflow.source.offset"].parse().unwrap();
        let name = offsets[&offset];
        let case = cases.iter().find(|c| c.name == name).unwrap();
        assert_eq!(letter.headers["newsflow.reason"], case.reason, "{name}");
        assert!(
            !letter.headers["newsflow.detail"].is_empty(),
            "{name}: a detail"
        );
        assert_eq!(letter.headers["newsflow.source.topic"], comments, "{name}");
        assert_eq!(letter.headers["newsflow.source.partition"], "0", "{name}");
        assert_eq!(letter.value, case.value, "{name}: the original bytes");
        assert_eq!(
            letter.key.as_deref(),
            case.key.as_deref().map(str::as_bytes),
            "{name}: the original key"
        );
    }
    let mut per_reason: BTreeMap<&str, f64> = BTreeMap::new();
    for case in &cases {
        *per_reason.entry(case.reason).or_default() += 1.0;
    }
    for (reason, count) in per_reason {
        let series = format!("newsflow_events_dead_lettered_total{{reason=\"{reason}\"}}");
        assert_eq!(metric_value(&metrics, &series), Some(count), "{series}");
    }
    assert_paths_are_ours(env.lake_path());
}

fn set_topic_config(topic: &str, key: &str, value: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let runtime = tokio_runtime();
    let config = AlterConfig::new(ResourceSpecifier::Topic(topic)).set(key, value);
    let results = runtime
        .block_on(admin.alter_configs(&[config], &AdminOptions::new()))
        .unwrap();
    for result in results {
        result.unwrap_or_else(|e| panic!("altering {topic}: {e:?}"));
    }
}

fn tokio_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_dead_letter_topic_that_refuses_writes_holds_the_partition_back_until_it_recovers() {
    let env = TestEnv::new("dlt-refuses", 1);
    let [_, comments, _, dead_letters] = env.topics();
    publish_good_0(&env);
    // A compacted topic refuses every record without a key, so the dead
    // letter of a keyless message is refused until this is undone. (A
    // refusal for size no longer holds anything back: the letter is sent
    // again shorter, see the oversized-message tests below.)
    set_topic_config(&dead_letters, "cleanup.policy", "compact");

    let producer = raw_producer();
    let garbage = "not json at all";
    send(&producer, &comments, None, garbage.as_bytes()); // offset 1
    for i in 1..=5 {
        send(
            &producer,
            &comments,
            Some("ok"),
            event(&format!("good-{i}"), "ok").as_bytes(),
        );
    }
    producer.flush(Duration::from_secs(30)).unwrap();

    let worker = env.spawn_worker();
    worker.wait_until_not_ready(&["dead letters"], Duration::from_secs(90));
    let failures = metric_value(
        &worker.metrics(),
        "newsflow_flush_failures_total{stage=\"dead_letters\"}",
    );
    assert!(
        failures.unwrap_or(0.0) >= 1.0,
        "flush failures counted: {failures:?}"
    );
    assert!(
        committed_offset(&env.group, &comments, 0) <= 1,
        "nothing committed past the message the dead-letter topic refused"
    );

    set_topic_config(&dead_letters, "cleanup.policy", "delete");
    env.wait_until_committed(Duration::from_secs(120));
    wait_for("readiness to return", Duration::from_secs(30), || {
        worker.readiness().0
    });
    worker.terminate();

    assert_eq!(current_totals(env.lake_path())["ok"].social_comments, 6);
    let letters = read_dead_letters(&dead_letters, 1, Duration::from_secs(30));
    assert!(!letters.is_empty());
    assert!(letters.iter().all(|l| l.value == garbage.as_bytes()));
    assert_eq!(letters[0].headers["newsflow.reason"], "invalid_json");
}

/// Random lowercase letters: incompressible enough that the producer's
/// compression cannot shrink a message under a size limit.
fn garbage(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = newsflow_core::SplitMix64::new(seed);
    (0..len).map(|_| b'a' + rng.below(26) as u8).collect()
}

/// A producer that may send messages up to the broker's own limit
/// (1,048,588 bytes by default), above the workers' dead-letter producer's.
fn large_message_producer() -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("message.max.bytes", "1048576")
        .set("compression.type", "none")
        .create()
        .unwrap()
}

/// Creates the test's topics by publishing good event `good-0` of
/// article `ok` (offset 0 of the comments topic).
fn publish_good_0(env: &TestEnv) {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.ndjson");
    std::fs::write(&first, event("good-0", "ok") + "\n").unwrap();
    assert!(env
        .producer(&["replay", first.to_str().unwrap()])
        .status
        .success());
}

/// Sends `bad` (messages the contract rejects) to the comments topic, each
/// followed by a good event of article `ok`, runs a worker until it caught
/// up, and returns the dead letters: every bad message must end there, and
/// every good event must be counted. Bad message `i` is at offset `2i+1`.
fn dead_letters_of(env: &TestEnv, bad: &[Vec<u8>]) -> Vec<newsflow_e2e::DeadLetter> {
    let [_, comments, _, dead_letters] = env.topics();
    let producer = large_message_producer();
    for (i, value) in bad.iter().enumerate() {
        send(&producer, &comments, Some("ok"), value);
        let good = event(&format!("good-{}", i + 1), "ok");
        send(&producer, &comments, Some("ok"), good.as_bytes());
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    // A worker that stalls on a message never catches up: this returns
    // only if every message was counted or dead-lettered and committed.
    let output = env.consume_until_caught_up();
    assert!(
        output.status.success(),
        "the worker failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        current_totals(env.lake_path())["ok"].social_comments,
        bad.len() as i64 + 1,
        "every good event after the bad ones is counted"
    );
    let letters = read_dead_letters(&dead_letters, bad.len(), Duration::from_secs(60));
    assert_eq!(letters.len(), bad.len(), "one dead letter per bad message");
    letters
}

/// The dead letter of the record at `offset`.
fn letter_of(letters: &[newsflow_e2e::DeadLetter], offset: i64) -> &newsflow_e2e::DeadLetter {
    letters
        .iter()
        .find(|l| l.headers.get("newsflow.source.offset") == Some(&offset.to_string()))
        .unwrap_or_else(|| panic!("no dead letter of offset {offset}"))
}

/// A letter carries its source coordinates, and either the whole value or
/// a prefix of it with the original size in `newsflow.truncated`.
fn assert_letter_carries(letter: &newsflow_e2e::DeadLetter, original: &[u8], max_bytes: usize) {
    let h = &letter.headers;
    assert!(h.contains_key("newsflow.source.topic"), "{h:?}");
    assert_eq!(h["newsflow.source.partition"], "0");
    assert!(h["newsflow.source.offset"].parse::<i64>().is_ok(), "{h:?}");
    assert!(!h["newsflow.reason"].is_empty());
    assert!(h["newsflow.detail"].chars().count() <= 241, "{h:?}");
    assert!(
        original.starts_with(&letter.value),
        "the letter's value is a prefix of the original"
    );
    assert!(
        letter.value.len() <= max_bytes,
        "{} bytes",
        letter.value.len()
    );
    if letter.value.len() < original.len() {
        assert_eq!(h["newsflow.truncated"], original.len().to_string());
        assert!(
            !letter.value.is_empty(),
            "a truncated letter keeps a prefix"
        );
    } else {
        assert!(!h.contains_key("newsflow.truncated"), "{h:?}");
    }
}

#[test]
fn messages_over_the_dead_letter_producer_s_limit_are_dead_lettered_truncated() {
    let env = TestEnv::new("dlt-oversized", 1);
    publish_good_0(&env);
    // Over the dead-letter producer's 1,000,000 bytes (the probe's size),
    // exactly at it, and an invalid timestamp whose detail once echoed the
    // whole value into a header, doubling the letter.
    let over = garbage(1_040_136, 1);
    let at = garbage(1_000_000, 2);
    let timestamp = format!(
        r#"{{"schema_version":1,"event_id":"t","event_type":"social_comment","article_id":"ok","occurred_at":"{}","platform":"x"}}"#,
        "9".repeat(200_000)
    )
    .into_bytes();
    let letters = dead_letters_of(&env, &[over.clone(), at.clone(), timestamp.clone()]);
    for (offset, original) in [(1, &over), (3, &at)] {
        let letter = letter_of(&letters, offset);
        assert_letter_carries(letter, original, 1_000_000);
        assert_eq!(letter.headers["newsflow.reason"], "too_large");
        assert!(letter.headers.contains_key("newsflow.truncated"));
    }
    let time_letter = letter_of(&letters, 5);
    assert_letter_carries(time_letter, &timestamp, 1_000_000);
    assert_eq!(time_letter.headers["newsflow.reason"], "invalid_timestamp");
    assert_eq!(time_letter.value, timestamp, "it fits whole");
}

#[test]
fn a_dead_letter_topic_with_a_smaller_limit_gets_truncated_letters() {
    let env = TestEnv::new("dlt-small-topic", 1);
    publish_good_0(&env);
    // The dead-letter topic's limit under the source topic's: the broker,
    // not the producer, refuses the first letter.
    let [_, _, _, dead_letters] = env.topics();
    set_topic_config(&dead_letters, "max.message.bytes", "65536");
    let big = garbage(300_000, 3);
    let small = b"{not json".to_vec();
    let letters = dead_letters_of(&env, &[big.clone(), small.clone()]);
    let big_letter = letter_of(&letters, 1);
    assert_letter_carries(big_letter, &big, 65_536);
    assert!(big_letter.headers.contains_key("newsflow.truncated"));
    assert_eq!(big_letter.headers["newsflow.reason"], "too_large");
    let small_letter = letter_of(&letters, 3);
    assert_eq!(small_letter.value, small, "a letter that fits is whole");
    assert_eq!(small_letter.headers["newsflow.reason"], "invalid_json");
}
