//! Event time through the real broker: windows close when the watermark
//! passes them, a late event adds a row instead of being dropped, and an
//! idle partition emits its windows without waiting for a watermark, all
//! while the worker keeps running.

use std::time::{Duration, Instant};

use newsflow_e2e::{brokers, current_totals, engagement_sums, has_files, lake_sql, TestEnv};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

fn comment(id: &str, article: &str, at: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{id}","event_type":"social_comment","article_id":"{article}","occurred_at":"{at}","platform":"x"}}"#
    )
}

/// Engagement rows of an article: (window start as text, social_comments).
fn windows(env: &TestEnv, article: &str) -> Vec<(String, i64)> {
    if !has_files(env.lake_path(), "article_engagement") {
        return Vec::new();
    }
    lake_sql(
        env,
        &format!(
            "SELECT strftime(window_start, '%H:%M'), social_comments FROM article_engagement \
             WHERE article_id = '{article}' ORDER BY window_start, emitted_at"
        ),
    )
    .into_iter()
    .map(|r| (r[0].as_str().unwrap().to_string(), r[1].as_i64().unwrap()))
    .collect()
}

fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn watermark_late_events_and_idle_partitions() {
    let env = TestEnv::new("event-time", 2);
    assert!(
        env.producer(&["generate", "--count", "0"]).status.success(),
        "creating topics"
    );
    let [_, comments, _, _] = env.topics();

    let mut worker = env.spawn_worker_with(&[
        ("NEWSFLOW__WINDOW__MAX_OUT_OF_ORDERNESS", "10m"),
        ("NEWSFLOW__WINDOW__IDLE_TIMEOUT", "8s"),
        ("NEWSFLOW__OUTPUT__FLUSH_INTERVAL", "300ms"),
    ]);

    // Article "busy" lives on partition 0, article "quiet" on partition 1.
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let send = |partition: i32, article: &str, id: &str, at: &str| {
        let value = comment(id, article, at);
        producer
            .send(
                BaseRecord::to(&comments)
                    .partition(partition)
                    .key(article)
                    .payload(&value),
            )
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    };
    send(1, "quiet", "q1", "2026-11-01T10:05:00Z");
    send(0, "busy", "b1", "2026-11-01T10:15:00Z");
    send(0, "busy", "b2", "2026-11-01T10:45:00Z");
    let sent_at = Instant::now();
    send(0, "busy", "b3", "2026-11-01T11:20:00Z"); // watermark 11:10 passes the 10:00 window's end

    // The watermark closes busy's 10:00 window long before the shard is idle.
    wait_for("busy's 10:00 window", Duration::from_secs(30), || {
        !windows(&env, "busy").is_empty()
    });
    assert!(
        sent_at.elapsed() < Duration::from_secs(8),
        "closed by the watermark, not by idleness"
    );
    assert_eq!(
        windows(&env, "busy"),
        [("10:00".to_string(), 2)],
        "11:00 is still open"
    );

    // A late event for the closed window adds a row; nothing is dropped.
    send(0, "busy", "late", "2026-11-01T10:30:00Z");
    wait_for("the late row", Duration::from_secs(30), || {
        windows(&env, "busy").len() >= 2
    });
    assert_eq!(
        windows(&env, "busy")[..2],
        [("10:00".to_string(), 2), ("10:00".to_string(), 1)]
    );

    // The quiet partition never advances its watermark past 10:05, yet once
    // idle it emits its window, and then every sum matches its totals.
    wait_for(
        "quiet's window after idle_timeout",
        Duration::from_secs(40),
        || !windows(&env, "quiet").is_empty(),
    );
    wait_for(
        "busy's 11:00 window after idle_timeout",
        Duration::from_secs(40),
        || windows(&env, "busy").iter().any(|(w, _)| w == "11:00"),
    );
    let totals = current_totals(env.lake_path());
    let sums = engagement_sums(env.lake_path());
    assert_eq!(totals["busy"].social_comments, 4);
    assert_eq!(sums["busy"], (0, 4, 0));
    assert_eq!(sums["quiet"], (0, 1, 0));
    assert!(
        worker.child.try_wait().unwrap().is_none(),
        "all of this happened while the worker kept running"
    );
    worker.terminate();
}
