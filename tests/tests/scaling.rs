//! Workers join and leave one group while a stream is published: scale up
//! from one to three, down by SIGTERM, up again. The output equals the
//! generator's totals for every article.

use std::time::Duration;

use newsflow_e2e::TestEnv;

#[test]
fn workers_added_and_removed_mid_stream_keep_the_output_exact() {
    let env = TestEnv::new("scaling", 6);
    env.create_topics(5);
    let stream = env.stream(5, 50_000, 4_000);

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
    let stream = stream.finish();

    env.wait_until_committed(Duration::from_secs(120));
    third.terminate();
    fourth.terminate();
    env.assert_output_matches(&stream, 1, "scaling 1 → 3 → 2 → 3 → 2");
}
