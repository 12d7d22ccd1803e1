//! The broker is stopped and started again while a stream is published and
//! two workers consume it. Producer and workers ride it out; the output is
//! exact.
//!
//! This test restarts the shared local broker, so it lives in its own test
//! binary (cargo runs test binaries one after another).

use std::process::Command;
use std::time::Duration;

use newsflow_e2e::{workspace, TestEnv};

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
    let stream = env.stream(3, 40_000, 4_000);

    std::thread::sleep(Duration::from_secs(3));
    kafka("down");
    std::thread::sleep(Duration::from_secs(4));
    kafka("up");

    let stream = stream.finish();
    env.wait_until_committed(Duration::from_secs(180));
    a.terminate();
    b.terminate();
    env.assert_output_matches(&stream, 1, "a broker restart");
}
