//! Bounded state: an article silent for a whole dedup horizon leaves
//! memory for a cold segment on disk, survives a SIGKILL there, and when it
//! returns its counting goes on exactly where it stopped.

use std::time::{Duration, Instant};

use newsflow_e2e::{
    assert_output_invariants, brokers, current_totals, metric_value, TestEnv, Worker,
};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const WORKER: &[(&str, &str)] = &[
    ("NEWSFLOW__DEDUP__HORIZON", "1h"),
    ("NEWSFLOW__WINDOW__SIZE", "10m"),
    ("NEWSFLOW__WINDOW__MAX_OUT_OF_ORDERNESS", "1m"),
    ("NEWSFLOW__OUTPUT__FLUSH_INTERVAL", "300ms"),
    ("NEWSFLOW__KAFKA__SESSION_TIMEOUT", "6s"),
    ("NEWSFLOW__KAFKA__INSTANCE_ID", "state-bounds-0"),
];

fn event(id: &str, article: &str, at: &str, kind: &str, fields: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{id}","event_type":"{kind}","article_id":"{article}","occurred_at":"{at}"{fields}}}"#
    )
}

fn wait_for_metric(worker: &Worker, series: &str, value: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric_value(&worker.metrics(), series) != Some(value) {
        assert!(Instant::now() < deadline, "{series} never reached {value}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn idle_articles_leave_memory_and_come_back_exactly() {
    let env = TestEnv::new("state-bounds", 1);
    assert!(
        env.producer(&["generate", "--count", "0"]).status.success(),
        "creating topics"
    );
    let [articles, comments, _, _] = env.topics();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let send = |topic: &str, article: &str, value: String| {
        producer
            .send(BaseRecord::to(topic).key(article).payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
        producer.flush(Duration::from_secs(10)).unwrap();
    };

    let worker = env.spawn_worker_with(WORKER);
    send(
        &articles,
        "old",
        event(
            "p",
            "old",
            "2026-11-01T10:00:00Z",
            "article_published",
            r#","title":"Old story","url":"u""#,
        ),
    );
    send(
        &articles,
        "old",
        event(
            "s1",
            "old",
            "2026-11-01T10:00:00Z",
            "source_confirmed",
            r#","source_id":"a.example""#,
        ),
    );
    send(
        &comments,
        "old",
        event(
            "c1",
            "old",
            "2026-11-01T10:05:00Z",
            "social_comment",
            r#","platform":"x""#,
        ),
    );
    send(
        &comments,
        "old",
        event(
            "c2",
            "old",
            "2026-11-01T10:06:00Z",
            "social_comment",
            r#","platform":"x""#,
        ),
    );
    wait_for_metric(&worker, "newsflow_articles_tracked", 1.0);

    // Three hours of event time later, old has been silent for a horizon.
    send(
        &comments,
        "new",
        event(
            "n1",
            "new",
            "2026-11-01T13:00:00Z",
            "social_comment",
            r#","platform":"x""#,
        ),
    );
    wait_for_metric(&worker, "newsflow_articles_cold", 1.0);
    assert_eq!(
        metric_value(&worker.metrics(), "newsflow_articles_tracked"),
        Some(1.0),
        "only new is in memory"
    );

    // The cold state is on disk, not only in this process.
    env.wait_until_committed(Duration::from_secs(30));
    worker.kill_9();
    let worker = env.spawn_worker_with(WORKER);

    // old returns: the same source in other letters, a new source, a comment.
    send(
        &articles,
        "old",
        event(
            "s2",
            "old",
            "2026-11-01T13:05:00Z",
            "source_confirmed",
            r#","source_id":"A.EXAMPLE""#,
        ),
    );
    send(
        &articles,
        "old",
        event(
            "s3",
            "old",
            "2026-11-01T13:06:00Z",
            "source_confirmed",
            r#","source_id":"b.example""#,
        ),
    );
    send(
        &comments,
        "old",
        event(
            "c3",
            "old",
            "2026-11-01T13:07:00Z",
            "social_comment",
            r#","platform":"x""#,
        ),
    );
    env.wait_until_committed(Duration::from_secs(60));
    wait_for_metric(&worker, "newsflow_articles_cold", 0.0);
    worker.terminate();

    let totals = current_totals(env.lake_path());
    let old = &totals["old"];
    assert_eq!(old.title.as_deref(), Some("Old story"));
    assert_eq!(
        (old.confirming_sources, old.social_comments, old.forum_posts),
        (2, 3, 0),
        "a.example once, b.example, and c1 c2 c3"
    );
    assert_eq!(totals["new"].social_comments, 1);
    assert_output_invariants(env.lake_path());
}
