//! A generated stream through two workers of one group: the output equals
//! the generator's independently computed totals for every article.

use std::time::{Duration, Instant};

use newsflow_e2e::{
    assert_output_invariants, current_totals, metric_value, read_expected, TestEnv,
};

#[test]
fn two_workers_count_a_generated_stream_exactly() {
    let env = TestEnv::new("generated", 6);
    let expected_path = env.lake_path().with_extension("expected.json");

    // Topics must exist before the workers subscribe: publish a first part.
    let first = env.producer(&[
        "generate",
        "--seed",
        "42",
        "--count",
        "1",
        "--expected",
        "/dev/null",
    ]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );

    let a = env.spawn_worker();
    let b = env.spawn_worker();

    // Both workers own shards before the stream starts (range assignor: 3 each).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let owned = [&a, &b]
            .map(|w| metric_value(&w.metrics(), "newsflow_partitions_assigned").unwrap_or(0.0));
        if owned == [3.0, 3.0] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "workers did not split the 6 shards: {owned:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // The same seed regenerates the same first event, which is a redelivery.
    let output = env.producer(&[
        "generate",
        "--seed",
        "42",
        "--count",
        "40000",
        "--expected",
        expected_path.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    env.wait_until_committed(Duration::from_secs(120));
    let consumed: f64 = [&a, &b]
        .iter()
        .map(|w| {
            w.metrics()
                .lines()
                .filter(|l| l.starts_with("newsflow_events_consumed_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum();
    a.terminate();
    b.terminate();

    let (messages, expected) = read_expected(&expected_path);
    assert_eq!(
        consumed as u64,
        messages + 1,
        "every record consumed once across the two workers"
    );
    let got = current_totals(env.lake_path());
    assert_eq!(got.len(), expected.len(), "articles");
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(id, footer)| got.get(*id) != Some(footer))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "articles whose totals differ (first 5): {wrong:?}"
    );
    assert_eq!(
        assert_output_invariants(env.lake_path()) as u64,
        messages + 1
    );
}
