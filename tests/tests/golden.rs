//! The golden test: the seed article's events, replayed through the real
//! broker and a real worker, read back with DuckDB using the contract's
//! queries, give the footer printed under the article: 16 / 166 / 37.

use std::time::Duration;

use newsflow_e2e::{
    assert_output_invariants, current_totals, engagement_sums, footers_by_reader, lake_sql, TestEnv,
};

const ARTICLE: &str = "politik.2026-11-01.russland-nordkorea-buendnis";

#[test]
fn seed_article_footer_is_exact() {
    let env = TestEnv::new("golden", 3);
    env.replay_seed_article();

    env.consume_until_caught_up();

    let totals = current_totals(env.lake_path());
    let footer = &totals[ARTICLE];
    assert_eq!(
        (
            footer.confirming_sources,
            footer.social_comments,
            footer.forum_posts
        ),
        (16, 166, 37),
        "the footer of the seed article"
    );
    assert_eq!(
        footer.title.as_deref(),
        Some("Neue strategische Allianz: Russland und Nordkorea schmieden Bündnis")
    );
    assert_eq!(engagement_sums(env.lake_path())[ARTICLE], (16, 166, 37));

    // The contract's hourly query works and adds up.
    let hourly = lake_sql(
        env.lake_path(),
        &format!(
            "SELECT window_start, sum(social_comments) AS comments, sum(forum_posts) AS posts \
             FROM article_engagement \
             WHERE article_id = '{ARTICLE}' GROUP BY window_start ORDER BY window_start"
        ),
    );
    assert!(
        hourly.len() > 10,
        "comments spread over many hours, got {} windows",
        hourly.len()
    );
    let comments: f64 = hourly.iter().map(|r| r[1].as_f64().unwrap()).sum();
    assert_eq!(comments, 166.0);

    // DuckDB, Polars, pandas, pyarrow and DataFusion read the same.
    let readers = footers_by_reader(env.lake_path(), ARTICLE);
    assert_eq!(readers.len(), 5, "{readers:?}");
    for (reader, footer) in &readers {
        assert_eq!(*footer, (16, 166, 37), "the footer as {reader} reads it");
    }

    // Every one of the 234 records (redeliveries included) is archived once.
    assert_eq!(assert_output_invariants(env.lake_path()), 234);

    // Offsets reached the group, so lag tools see the worker's progress.
    env.wait_until_committed(Duration::from_secs(5));
}

#[test]
fn replay_reports_invalid_lines_by_number_and_sends_the_rest() {
    let env = TestEnv::new("replay-invalid", 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("mixed.ndjson");
    let good = r#"{"schema_version":1,"event_id":"c1","event_type":"social_comment","article_id":"a1","occurred_at":"2026-11-01T10:00:00Z","platform":"x"}"#;
    let bad = r#"{"schema_version":1,"event_id":"c2","event_type":"social_comment","article_id":"a 1","occurred_at":"2026-11-01T10:00:00Z","platform":"x"}"#;
    std::fs::write(
        &file,
        format!("{good}\n\n{bad}\nnot json\n{}\n", good.replace("c1", "c3")),
    )
    .unwrap();
    let output = env.producer(&["replay", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a file with invalid lines must not exit 0"
    );
    assert!(
        stderr.contains("mixed.ndjson:3: not sent: invalid_article_id"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mixed.ndjson:4: not sent: invalid_json"),
        "{stderr}"
    );

    env.consume_until_caught_up();
    let totals = current_totals(env.lake_path());
    assert_eq!(totals.len(), 1);
    assert_eq!(totals["a1"].social_comments, 2);
}
