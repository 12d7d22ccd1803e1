//! The broker is stopped and started again while a stream is published and
//! two workers consume it. Producer and workers ride it out; the output is
//! exact. The HTTP ingest endpoint says it cannot deliver while the broker
//! is down (`/readyz` red), and is ready again once it is back.
//!
//! This test restarts the shared local broker, so it lives in its own test
//! binary (cargo runs test binaries one after another).

use std::process::Command;
use std::time::Duration;

use newsflow_e2e::{wait_for, workspace, TestEnv};

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
    let pid_file = workspace().join("var/kafka/kafka.pid");
    assert!(
        pid_file.exists(),
        "this test restarts the broker started by `make kafka-up`; none is managed at {}",
        pid_file.display()
    );
    env.create_topics(3);
    let a = env.spawn_worker();
    let b = env.spawn_worker();
    let mut ingest = env.spawn_ingest(&[("NEWSFLOW__INGEST__ALLOW_UNAUTHENTICATED", "true")]);
    wait_for(
        "the ingest endpoint to be ready",
        Duration::from_secs(30),
        || ingest.ready(),
    );
    let stream = env.stream(3, 40_000, 4_000);

    std::thread::sleep(Duration::from_secs(3));
    kafka("down");
    wait_for(
        "the ingest endpoint to turn not-ready while Kafka is down",
        Duration::from_secs(30),
        || !ingest.ready(),
    );
    kafka("up");
    wait_for(
        "the ingest endpoint to be ready again",
        Duration::from_secs(60),
        || ingest.ready(),
    );
    ingest.sigterm();
    ingest.wait_exit(Duration::from_secs(60));

    let stream = stream.finish();
    env.wait_until_committed(Duration::from_secs(180));
    a.terminate();
    b.terminate();
    env.assert_output_matches(&stream, 1, "a broker restart");
}
