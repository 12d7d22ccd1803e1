//! The footer service in trouble: its store gone and back (a real S3 API
//! server of the test's own, stopped and started), and clients that hold
//! sockets or send nothing.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use newsflow_e2e::s3::OwnS3Server;
use newsflow_e2e::{http_get, metric_value, read_answer, social_comment, wait_for, TestEnv};

/// The seed article of `tests/fixtures/seed-article.ndjson`.
const SEED: &str = "politik.2026-11-01.russland-nordkorea-buendnis";

#[test]
fn a_store_that_stops_gives_stale_answers_then_the_service_catches_up() {
    let s3 = OwnS3Server::start();
    let env = TestEnv::on_s3_at("footer-outage", 1, &s3.endpoint());
    env.replay_seed_article();
    env.consume_until_caught_up();
    let footer = env.spawn_footer(&[("NEWSFLOW__FOOTER__POLL_INTERVAL", "300ms")]);
    let path = format!("/v1/articles/{SEED}/footer");
    let before = footer.get(&path);
    assert_eq!(before.status, 200);
    assert!(before.header("x-newsflow-stale").is_none());

    s3.down();
    wait_for("answers marked stale", Duration::from_secs(60), || {
        footer.get(&path).header("x-newsflow-stale").is_some()
    });
    // Still the footer held, and still ready: a stale footer beats none.
    let stale = footer.get(&path);
    assert_eq!(stale.status, 200);
    assert_eq!(stale.json()["social_comments"], 166);
    assert!(
        footer.ready(),
        "the service stays ready while it serves what it holds"
    );
    std::thread::sleep(Duration::from_secs(2));
    let seconds: u64 = footer
        .get(&path)
        .header("x-newsflow-stale")
        .and_then(|s| s.parse().ok())
        .expect("X-Newsflow-Stale: <seconds>");
    assert!(seconds >= 1, "the stale header counts seconds: {seconds}");
    let metrics = footer.metrics();
    assert!(metric_value(&metrics, "newsflow_footer_stale_seconds").unwrap() > 0.0);
    assert!(metric_value(&metrics, "newsflow_footer_log_read_failures_total").unwrap() > 0.0);

    s3.up();
    env.publish(&social_comment("footer-outage-new", SEED));
    env.consume_until_caught_up();
    wait_for("the service to catch up", Duration::from_secs(90), || {
        let answer = footer.get(&path);
        answer.header("x-newsflow-stale").is_none() && answer.json()["social_comments"] == 167
    });
    let metrics = footer.metrics();
    assert_eq!(
        metric_value(&metrics, "newsflow_footer_stale_seconds"),
        Some(0.0)
    );
}

#[test]
fn a_service_started_before_any_worker_waits_unready_then_loads_the_table() {
    let env = TestEnv::new("footer-early", 1);
    let footer = env.spawn_footer_unready(&[("NEWSFLOW__FOOTER__POLL_INTERVAL", "200ms")]);
    wait_for(
        "/readyz to say why it is not ready",
        Duration::from_secs(30),
        || {
            http_get(footer.metrics_port, "/readyz").is_ok_and(|r| {
                r.starts_with("HTTP/1.1 503") && r.contains("article_totals has no log yet")
            })
        },
    );
    let early = footer.get(&format!("/v1/articles/{SEED}/footer"));
    assert_eq!(early.status, 503);
    assert_eq!(early.json()["error"], "loading");
    assert_eq!(early.header("retry-after"), Some("1"));

    env.replay_seed_article();
    env.consume_until_caught_up();
    wait_for(
        "the service to load the new table",
        Duration::from_secs(60),
        || footer.ready(),
    );
    let answer = footer.get(&format!("/v1/articles/{SEED}/footer"));
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["confirming_sources"], 16);
}

#[test]
fn idle_and_slow_sockets_do_not_keep_pages_from_their_footers() {
    let env = TestEnv::new("footer-hostile", 1);
    env.replay_seed_article();
    env.consume_until_caught_up();
    let footer = env.spawn_footer(&[
        ("NEWSFLOW__FOOTER__MAX_CONNECTIONS", "500"),
        ("NEWSFLOW__FOOTER__HEADER_TIMEOUT", "2s"),
    ]);
    let address = ("127.0.0.1", footer.port as u16);
    let path = format!("/v1/articles/{SEED}/footer");

    // A head that never ends gets a 408 at the header deadline.
    let mut slow = TcpStream::connect(address).unwrap();
    slow.write_all(b"GET /v1/articles/x/footer HTTP/1.1\r\nHost: a\r\n")
        .unwrap();
    let started = Instant::now();
    let answer = read_answer(&mut slow, Duration::from_secs(10)).unwrap_or_default();
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("footer.header_timeout"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(9));

    // 2,000 sockets that connect and send nothing, four times the cap,
    // while a page load after another asks for its footer. On a service
    // whose head deadline is far away, so that only the cap's evictions can
    // make room: at 2 s, a loaded CI machine accepted the crowd slowly
    // enough that the deadline closed them first, and none was evicted.
    drop(footer);
    let footer = env.spawn_footer(&[
        ("NEWSFLOW__FOOTER__MAX_CONNECTIONS", "500"),
        ("NEWSFLOW__FOOTER__HEADER_TIMEOUT", "120s"),
    ]);
    let address = ("127.0.0.1", footer.port as u16);
    let idle: Vec<TcpStream> = (0..2_000)
        .filter_map(|_| TcpStream::connect(address).ok())
        .collect();
    assert!(
        idle.len() > 1_000,
        "the test opened {} idle sockets",
        idle.len()
    );
    for n in 0..50 {
        let answer = footer.get(&path);
        assert_eq!(answer.status, 200, "page load {n} among idle sockets");
        assert_eq!(answer.json()["forum_posts"], 37);
    }
    let metrics = footer.metrics();
    let evicted = metric_value(
        &metrics,
        "newsflow_footer_connections_closed_total{reason=\"evicted\"}",
    )
    .unwrap();
    assert!(
        evicted >= 1.0,
        "idle sockets were let go at the cap: {evicted}"
    );
    drop(idle);
}

#[test]
fn a_data_file_nobody_can_decode_is_counted_and_left_out_and_the_service_goes_on() {
    let env = TestEnv::new("footer-garbage", 1);
    env.replay_seed_article();
    env.consume_until_caught_up();
    let footer = env.spawn_footer(&[("NEWSFLOW__FOOTER__POLL_INTERVAL", "200ms")]);

    // A commit of the table's next version that adds a file of junk, as a
    // foreign writer or a damaged disk might leave.
    let table = env.lake_path().join("article_totals");
    let log = table.join("_delta_log");
    let next = std::fs::read_dir(&log)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.strip_suffix(".json")?.parse::<u64>().ok()
        })
        .max()
        .unwrap()
        + 1;
    std::fs::create_dir_all(table.join("emitted_date=2026-12-03")).unwrap();
    std::fs::write(
        table.join("emitted_date=2026-12-03/part-junk.parquet"),
        b"this is not parquet",
    )
    .unwrap();
    let commit = format!(
        "{}\n{}\n",
        r#"{"commitInfo":{"timestamp":1764720000000,"operation":"WRITE"}}"#,
        r#"{"add":{"path":"emitted_date=2026-12-03/part-junk.parquet","partitionValues":{"emitted_date":"2026-12-03"},"size":19,"modificationTime":1764720000000,"dataChange":true}}"#
    );
    std::fs::write(log.join(format!("{next:020}.json")), commit).unwrap();

    wait_for(
        "the junk file to be counted",
        Duration::from_secs(30),
        || metric_value(&footer.metrics(), "newsflow_footer_files_unreadable_total") == Some(1.0),
    );
    let answer = footer.get(&format!("/v1/articles/{SEED}/footer"));
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json()["table_version"],
        next,
        "the junk commit is behind it"
    );
    assert!(answer.header("x-newsflow-stale").is_none());

    // The commits after it are followed as before.
    env.publish(&social_comment("after-the-junk", SEED));
    env.consume_until_caught_up();
    wait_for(
        "the comment after the junk commit",
        Duration::from_secs(60),
        || {
            footer
                .footer_of(SEED)
                .is_some_and(|f| f.social_comments == 167)
        },
    );
    assert!(footer.ready());
}
