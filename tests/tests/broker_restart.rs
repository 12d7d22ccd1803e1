//! The broker is stopped and started again while a stream is published and
//! two workers consume it. Producer and workers ride it out; the output is
//! exact.
//!
//! This test restarts the shared local broker, so it lives in its own test
//! binary (cargo runs test binaries one after another).

use std::process::Command;
use std::time::Duration;

use newsflow_e2e::{
    assert_output_invariants, binary, current_totals, read_expected, workspace, TestEnv,
};

fn kafka(verb: &str) {
    let status = Command::new("bash")
        .arg(workspace().join("deploy/local/kafka.sh"))
        .arg(verb)
        .status()
        .expect("running deploy/local/kafka.sh");
    assert!(status.success(), "kafka.sh {verb} failed");
}

#[test]
fn workers_ride_out_a_broker_restart() {
    let env = TestEnv::new("broker-restart", 4);
    let expected_path = env.lake_path().with_extension("expected.json");
    assert!(env
        .producer(&[
            "generate",
            "--seed",
            "3",
            "--count",
            "1",
            "--expected",
            "/dev/null"
        ])
        .status
        .success());
    let pid_file = workspace().join("var/kafka/kafka.pid");
    assert!(
        pid_file.exists(),
        "this test restarts the broker started by `make kafka-up`; none is managed at {}",
        pid_file.display()
    );

    let a = env.spawn_worker();
    let b = env.spawn_worker();
    let mut producer = Command::new(binary("newsflow-producer"))
        .envs(env.vars())
        .env("RUST_LOG", "warn")
        .args([
            "generate",
            "--seed",
            "3",
            "--count",
            "40000",
            "--rate",
            "4000",
            "--expected",
        ])
        .arg(&expected_path)
        .spawn()
        .unwrap();

    std::thread::sleep(Duration::from_secs(3));
    kafka("down");
    std::thread::sleep(Duration::from_secs(4));
    kafka("up");

    assert!(
        producer.wait().unwrap().success(),
        "the producer did not ride out the restart"
    );
    env.wait_until_committed(Duration::from_secs(180));
    a.terminate();
    b.terminate();

    let (messages, expected) = read_expected(&expected_path);
    let got = current_totals(env.lake_path());
    let wrong: Vec<_> = expected
        .iter()
        .filter(|(id, footer)| got.get(*id) != Some(footer))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "articles whose totals differ (first 5): {wrong:?}"
    );
    assert_eq!(got.len(), expected.len());
    assert_eq!(
        assert_output_invariants(env.lake_path()) as u64,
        messages + 1
    );
}
