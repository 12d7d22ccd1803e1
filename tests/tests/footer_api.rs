//! The footer API end to end: a real broker, real workers writing the
//! lake, `newsflow-footer serve` following it, and DuckDB as the judge of
//! what each footer must be.

use std::collections::BTreeMap;
use std::time::Duration;

use newsflow_e2e::{
    current_totals, metric_value, read_expected, social_comment, wait_for, Footer, ServerProcess,
    TestEnv,
};

/// The seed article of `tests/fixtures/seed-article.ndjson`.
const SEED: &str = "politik.2026-11-01.russland-nordkorea-buendnis";

const SEED_LINES: [&str; 3] = [
    "Analysierte Quellen, die diese Meldung bestätigen: 16",
    "Analysierte Kommentare in sozialen Medien: 166",
    "Analysierte Forenbeiträge: 37",
];

#[test]
fn the_api_answers_exactly_what_the_lake_says_as_json_lists_and_html() {
    let env = TestEnv::new("footer-api", 3);
    env.replay_seed_article();
    let stream = env.stream(61, 20_000, 0).finish();
    env.consume_until_caught_up();
    let footer = env.spawn_footer(&[("NEWSFLOW__FOOTER__CORS_ORIGINS", "https://news.example")]);

    // Every article, asked 100 at a time, against DuckDB over the tables
    // and against the generator's own totals.
    let lake = current_totals(&env);
    let served = footer.footers_of(lake.keys(), 100);
    assert_eq!(served.len(), lake.len(), "articles served");
    let wrong: Vec<_> = lake
        .iter()
        .filter(|(id, f)| served.get(*id) != Some(f))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "footers that differ from DuckDB's (first 5): {wrong:?}"
    );
    let (_, expected) = read_expected(&stream.expected);
    for (id, totals) in &expected {
        assert_eq!(served.get(id), Some(totals), "{id} against the generator");
    }

    // One article, as JSON.
    let answer = footer.get(&format!("/v1/articles/{SEED}/footer"));
    assert_eq!(answer.status, 200, "{}", answer.body);
    let json = answer.json();
    assert_eq!(json["article_id"], SEED);
    assert_eq!(
        [
            &json["confirming_sources"],
            &json["social_comments"],
            &json["forum_posts"]
        ],
        [16, 166, 37]
    );
    assert!(json["title"]
        .as_str()
        .is_some_and(|t| t.contains("Nordkorea")));
    assert!(json["table_version"].as_u64().is_some_and(|v| v >= 1));
    assert!(json["table_committed_at"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(answer.header("content-type"), Some("application/json"));
    assert_eq!(answer.header("cache-control"), Some("public, max-age=1"));
    assert!(answer.header("x-newsflow-stale").is_none());
    let etag = answer.header("etag").expect("an ETag").to_string();
    assert_eq!(etag, format!("W/\"{}\"", json["version"]));

    // Revalidation.
    let again = footer.get_with(
        &format!("/v1/articles/{SEED}/footer"),
        &[("If-None-Match", &etag)],
    );
    assert_eq!(again.status, 304);
    assert_eq!(again.body, "");
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    let other = footer.get_with(
        &format!("/v1/articles/{SEED}/footer"),
        &[("If-None-Match", "W/\"0\"")],
    );
    assert_eq!(other.status, 200);

    // The HTML lines, worded as under the story.
    let html = footer.get(&format!("/v1/articles/{SEED}/footer.html"));
    assert_eq!(html.status, 200);
    assert_eq!(
        html.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    for line in SEED_LINES {
        assert!(
            html.body.contains(&format!("<p>{line}</p>")),
            "{}",
            html.body
        );
    }

    // Unknown and invalid.
    let unknown = footer.get("/v1/articles/no-such-article/footer");
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"], "unknown_article");
    let invalid = footer.get("/v1/articles/bad!id/footer");
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.json()["error"], "invalid_article_id");
    assert!(invalid.json()["detail"]
        .as_str()
        .unwrap()
        .contains("allowed are"));

    // CORS: the configured origin, and no other.
    let path = format!("/v1/articles/{SEED}/footer");
    let allowed = footer.get_with(&path, &[("Origin", "https://news.example")]);
    assert_eq!(
        allowed.header("access-control-allow-origin"),
        Some("https://news.example")
    );
    let stranger = footer.get_with(&path, &[("Origin", "https://elsewhere.example")]);
    assert_eq!(stranger.status, 200);
    assert!(stranger.header("access-control-allow-origin").is_none());

    // The metrics say what is held.
    let metrics = footer.metrics();
    let held = metric_value(&metrics, "newsflow_footer_articles").unwrap();
    assert_eq!(held as usize, lake.len());
    assert!(metrics.contains("newsflow_footer_requests_total{code=\"304\",route=\"footer\"} 1"));

    // New events move the numbers, with nothing restarted.
    let worker = env.spawn_worker();
    env.publish(&social_comment("footer-api-new-comment", SEED));
    wait_for(
        "the new comment in the API",
        Duration::from_secs(90),
        || {
            footer
                .footer_of(SEED)
                .is_some_and(|f| f.social_comments == 167)
        },
    );
    worker.terminate();
}

#[test]
fn bounds_and_hostile_ids_get_json_400s_never_a_footer_or_a_file() {
    let env = TestEnv::new("footer-bounds", 1);
    env.replay_seed_article();
    env.consume_until_caught_up();
    let footer = env.spawn_footer(&[("NEWSFLOW__FOOTER__MAX_IDS", "5")]);

    let list = |n: usize| {
        (0..n)
            .map(|i| format!("a{i}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(
        footer.get(&format!("/v1/footers?ids={}", list(5))).status,
        200
    );
    let too_many = footer.get(&format!("/v1/footers?ids={}", list(6)));
    assert_eq!(too_many.status, 400);
    assert_eq!(too_many.json()["error"], "too_many_ids");
    let ten_thousand = footer.get(&format!("/v1/footers?ids={}", list(10_000)));
    assert_eq!(ten_thousand.status, 400, "{}", ten_thousand.body);
    assert_eq!(footer.get("/v1/footers").json()["error"], "no_ids");

    // A list keeps the order asked and leaves unknown ids out.
    let answer = footer.get(&format!("/v1/footers?ids=nope,{SEED}"));
    let items = answer.json();
    let ids: Vec<&str> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["article_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [SEED]);

    for (path, error) in [
        ("/v1/articles/%zz/footer", "malformed_percent_encoding"),
        ("/v1/articles/abc%2/footer", "malformed_percent_encoding"),
        ("/v1/articles/%ff%fe/footer", "malformed_percent_encoding"),
        ("/v1/articles/../footer", "invalid_article_id"),
        ("/v1/articles/%2e%2e/footer", "invalid_article_id"),
        (
            "/v1/articles/..%2F..%2Fetc%2Fpasswd/footer",
            "invalid_article_id",
        ),
        ("/v1/articles/a/../../b/footer", "invalid_article_id"),
        ("/v1/articles/%00/footer.html", "invalid_article_id"),
        ("/v1/footers?ids=ok,..%2Fx", "invalid_article_id"),
    ] {
        let answer = footer.get(path);
        assert_eq!(answer.status, 400, "{path}: {}", answer.body);
        assert_eq!(answer.json()["error"], error, "{path}");
    }
    for path in [
        "/",
        "/v1/articles/",
        "/v1/articles/x",
        "/etc/passwd",
        "/v1/articles/x/footer.json",
    ] {
        let answer = footer.get(path);
        assert_eq!(answer.status, 404, "{path}: {}", answer.body);
        assert_eq!(answer.json()["error"], "no_such_route", "{path}");
    }
    let metrics = footer.metrics();
    assert!(metrics.contains("newsflow_footer_requests_total{code=\"400\",route=\"footer\"}"));
}

/// The footers the API answers for `ids`, asked one by one.
fn footers_one_by_one(footer: &ServerProcess, ids: &[String]) -> BTreeMap<String, Option<Footer>> {
    ids.iter()
        .map(|id| (id.clone(), footer.footer_of(id)))
        .collect()
}

#[test]
fn compaction_and_vacuum_beside_the_service_never_change_an_answer() {
    let env = TestEnv::new("footer-upkeep", 2);
    env.create_topics(67);
    let worker = env.spawn_worker_with(&[("NEWSFLOW__OUTPUT__FLUSH_INTERVAL", "500ms")]);
    let stream = env.stream(67, 6_000, 3_000).finish();
    env.wait_until_committed(Duration::from_secs(120));
    worker.terminate();
    let (_, expected) = read_expected(&stream.expected);
    let sample: Vec<String> = expected.keys().step_by(7).cloned().collect();
    let want: BTreeMap<_, _> = sample
        .iter()
        .map(|id| (id.clone(), expected.get(id).cloned()))
        .collect();

    let footer = env.spawn_footer(&[("NEWSFLOW__FOOTER__POLL_INTERVAL", "200ms")]);
    assert_eq!(footers_one_by_one(&footer, &sample), want, "before upkeep");
    let unsafe_vacuum = [
        ("NEWSFLOW__VACUUM__RETENTION", "0s"),
        ("NEWSFLOW__VACUUM__LOG_RETENTION", "0s"),
        ("NEWSFLOW__VACUUM__ALLOW_UNSAFE_RETENTION", "true"),
        ("NEWSFLOW__COMPACTION__TARGET_FILE_SIZE", "1048576"),
    ];
    // Compaction and vacuum run while the answers are checked.
    let upkeep = {
        std::thread::scope(|scope| {
            let job = scope.spawn(|| {
                let compacted = env.lake_job("compact", &unsafe_vacuum);
                env.age_lake_files(Duration::from_secs(7200));
                let vacuumed = env.lake_job("vacuum", &unsafe_vacuum);
                (compacted, vacuumed)
            });
            let mut checks = 0;
            while !job.is_finished() {
                assert_eq!(footers_one_by_one(&footer, &sample), want, "during upkeep");
                checks += 1;
            }
            (job.join().expect("the upkeep job"), checks)
        })
    };
    let ((compacted, vacuumed), checks) = upkeep;
    assert!(checks > 0, "the answers were checked while upkeep ran");
    assert!(
        compacted.to_string().contains("article_totals"),
        "compaction ran: {compacted}"
    );
    // Let the service read the swap and the vacuum's log cleanup.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(footers_one_by_one(&footer, &sample), want, "after upkeep");
    let metrics = footer.metrics();
    let reloads = |reason: &str| {
        metric_value(
            &metrics,
            &format!("newsflow_footer_reloads_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(
        reloads("start"),
        Some(1.0),
        "compaction's swaps cost no reload: {vacuumed}"
    );

    // A service started afresh reads the compacted table: the same.
    let fresh = env.spawn_footer(&[]);
    let all = fresh.footers_of(expected.keys(), 100);
    assert_eq!(
        all, expected,
        "a fresh load of the compacted, vacuumed table"
    );

    // A service that sleeps through a commit, the compaction that replaces
    // its file and the vacuum that deletes it finds the file gone (or the
    // commit itself) and loads the latest snapshot: late, never wrong.
    let pid = footer.child.id().to_string();
    let signal = |name: &str| {
        let status = std::process::Command::new("kill")
            .args([name, &pid])
            .status()
            .expect("kill");
        assert!(status.success());
    };
    signal("-STOP");
    let more: String = sample
        .iter()
        .take(20)
        .map(|id| social_comment(&format!("upkeep-more-{id}"), id) + "\n")
        .collect();
    env.publish(&more);
    env.consume_until_caught_up();
    env.lake_job("compact", &unsafe_vacuum);
    env.age_lake_files(Duration::from_secs(7200));
    env.lake_job("vacuum", &unsafe_vacuum);
    signal("-CONT");
    let lake = current_totals(&env);
    let want: BTreeMap<_, _> = sample
        .iter()
        .map(|id| (id.clone(), lake.get(id).cloned()))
        .collect();
    wait_for(
        "the woken service to catch up",
        Duration::from_secs(60),
        || footers_one_by_one(&footer, &sample) == want,
    );
    let metrics = footer.metrics();
    let reloaded: f64 = ["file_gone", "log_gap"]
        .iter()
        .filter_map(|r| {
            metric_value(
                &metrics,
                &format!("newsflow_footer_reloads_total{{reason=\"{r}\"}}"),
            )
        })
        .sum();
    assert!(reloaded >= 1.0, "the woken service reloaded: {metrics}");
}
