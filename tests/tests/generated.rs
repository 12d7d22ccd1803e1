//! A generated stream through two workers of one group: the output equals
//! the generator's independently computed totals for every article.

use std::time::{Duration, Instant};

use newsflow_e2e::{metric_total, metric_value, TestEnv};

#[test]
fn two_workers_count_a_generated_stream_exactly() {
    let env = TestEnv::new("generated", 6);
    env.create_topics(42);
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

    let stream = env.stream(42, 40_000, 0).finish();
    env.wait_until_committed(Duration::from_secs(120));
    let consumed: f64 = [&a, &b]
        .iter()
        .map(|w| metric_total(&w.metrics(), "newsflow_events_consumed_total", &[]))
        .sum();
    a.terminate();
    b.terminate();

    assert_eq!(
        consumed as u64, 40_001,
        "every record consumed once across the two workers"
    );
    env.assert_output_matches(&stream, 1, "two workers");
}
