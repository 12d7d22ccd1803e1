//! Workers join and leave one group while a stream is published: scale up
//! from one to three, then down by SIGTERM. The output equals the
//! generator's totals for every article.

use std::time::Duration;

use newsflow_e2e::{assert_output_invariants, binary, current_totals, read_expected, TestEnv};

#[test]
fn workers_added_and_removed_mid_stream_keep_the_output_exact() {
    let env = TestEnv::new("scaling", 6);
    let expected_path = env.lake_path().with_extension("expected.json");
    assert!(env
        .producer(&[
            "generate",
            "--seed",
            "5",
            "--count",
            "1",
            "--expected",
            "/dev/null"
        ])
        .status
        .success());

    let mut producer = std::process::Command::new(binary("newsflow-producer"))
        .envs(env.vars())
        .env("RUST_LOG", "warn")
        .args([
            "generate",
            "--seed",
            "5",
            "--count",
            "50000",
            "--rate",
            "4000",
            "--expected",
        ])
        .arg(&expected_path)
        .spawn()
        .unwrap();

    let pause = || std::thread::sleep(Duration::from_millis(2500));
    let first = env.spawn_worker();
    pause();
    let second = env.spawn_worker();
    pause();
    let third = env.spawn_worker();
    pause();
    first.terminate(); // scale down: its shards move to the others
    pause();
    let fourth = env.spawn_worker(); // and up again
    pause();
    second.terminate();
    assert!(producer.wait().unwrap().success());

    env.wait_until_committed(Duration::from_secs(120));
    third.terminate();
    fourth.terminate();

    let (messages, expected) = read_expected(&expected_path);
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
