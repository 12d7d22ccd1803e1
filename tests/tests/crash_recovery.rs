//! kill -9 a worker at seeded random moments while it consumes a stream
//! that is still being published; restart it each time. Once it has caught
//! up, the output is exactly the generator's expected totals, no
//! (article_id, version) pair appears twice, and every Kafka record is
//! archived exactly once.

use std::time::{Duration, Instant};

use newsflow_e2e::{
    has_commits, metric_total, metric_value, try_lake_sql, wait_for, TestEnv, Worker,
};

/// The worker's settings for this test: a short session timeout and, as a
/// StatefulSet pod has, the same static identity on every restart, so the
/// restarted worker takes its partitions back at once.
const WORKER: &[(&str, &str)] = &[
    ("NEWSFLOW__KAFKA__SESSION_TIMEOUT", "6s"),
    ("NEWSFLOW__KAFKA__INSTANCE_ID", "crash-worker-0"),
    ("NEWSFLOW__OUTPUT__FLUSH_INTERVAL", "300ms"),
    ("RUST_LOG", "error"),
];

/// A number from the environment (`make chaos` raises them), or `default`.
fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[test]
fn kill_9_at_random_moments_loses_and_repeats_nothing() {
    let events = number("NEWSFLOW_CHAOS_EVENTS", 60_000);
    let kills = number("NEWSFLOW_CHAOS_KILLS", 5);
    kill_9_rounds(&TestEnv::new("crash", 4), 9, events, kills);
}

/// The same on `s3://`: the lake on the local S3 server, fewer rounds
/// unless `make chaos` asks for more.
#[test]
fn kill_9_on_s3_loses_and_repeats_nothing() {
    let events = number("NEWSFLOW_CHAOS_EVENTS", 20_000);
    let kills = number("NEWSFLOW_CHAOS_KILLS", 5);
    kill_9_rounds(&TestEnv::on_s3("crash-s3", 4), 19, events, kills);
}

/// A worker that dies after its tables' commit and before its offset
/// commit leaves the group's offsets behind its checkpoints. The next owner
/// commits where its checkpoints resume when it takes the shards, so the
/// group shows no lag that is not there, even where no new record comes to
/// be flushed (the watchdog called such a worker stalled, for good), and
/// nothing is counted twice.
#[test]
fn group_offsets_behind_the_checkpoints_catch_up_without_new_records() {
    let env = TestEnv::new("offsets-behind", 2);
    let stream = env.counted_with_group_offsets_rewound(23, 3_000);
    let worker = env.spawn_worker();
    env.wait_until_committed(Duration::from_secs(60));
    worker.terminate();
    env.assert_output_matches(&stream, 1, "offsets behind the checkpoints");
}

/// Publishes `events` generated from `seed` while a worker is killed
/// `kills` times and restarted, then checks the output against the oracle.
fn kill_9_rounds(env: &TestEnv, seed: u64, events: u64, kills: u64) {
    // Spread the stream over the workers' lives (four seconds on average).
    let rate = (events * 1000 / (kills * 4000)).max(1000);
    env.create_topics(seed);
    let stream = env.stream(seed, events, rate);

    let mut kill_moments = newsflow_core::SplitMix64::new(0x5EED);
    let mut progress = Vec::new();
    for round in 1..=kills {
        let worker = env.spawn_worker_with(WORKER);
        let started = Instant::now();
        // A life is killed at a random moment once it has committed, mid-stream
        // and often mid-flush (one every 300 ms). A fixed life from the spawn
        // was not enough: on a loaded machine two lives in a row were killed
        // before they had joined the group, and the third drained the whole
        // stream; killed soon after it began counting, a life on s3:// often
        // had not finished its first commit.
        let committing = wait_until_committing(&worker, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(300 + kill_moments.below(3000)));
        let life = started.elapsed();
        worker.kill_9();
        let committed = committed_records(env);
        eprintln!(
            "kill {round}/{kills} after {life:?} (committing: {committing}): \
             {committed} records committed so far"
        );
        progress.push(committed);
    }
    let stream = stream.finish();
    // The kills must land while work is being done, not only during joins.
    let advancing = progress.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(
        advancing >= 2,
        "too few lives made progress before their kill: {progress:?}"
    );

    // A last worker finishes the job.
    let last = env.spawn_worker_with(WORKER);
    let started = Instant::now();
    // The killed lives may have committed every record already, so the
    // group is caught up at once; but the windows they left open are only
    // emitted by a worker that owns the shards when it shuts down.
    wait_for(
        "the last worker to own every shard",
        Duration::from_secs(120),
        || {
            metric_value(&last.metrics(), "newsflow_partitions_assigned")
                == Some(f64::from(env.partitions))
        },
    );
    env.wait_until_committed(Duration::from_secs(600));
    last.terminate();
    eprintln!("caught up {:?} after the last restart", started.elapsed());
    env.assert_output_matches(&stream, 1, &format!("{kills} kills"));
}

/// Waits until `worker` has made a Delta commit of its own, or `limit` (a
/// life may find nothing left to do once the stream is over and
/// committed); whether it committed.
fn wait_until_committing(worker: &Worker, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let commits = metric_total(
            &worker.metrics(),
            "newsflow_lake_commits_total",
            &[("outcome", "committed")],
        );
        if commits > 0.0 {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// How many records the `events` table's log holds: how far the output
/// durably got, read as an analyst would.
/// None before the first worker's life created the table (a slow start on
/// a loaded machine can take a whole life): none committed yet.
fn committed_records(env: &TestEnv) -> i64 {
    if !has_commits(&env.lake_files_dir(), "events") {
        return 0;
    }
    match try_lake_sql(env, "SELECT count(*) FROM events") {
        Ok(rows) => rows[0][0].as_i64().unwrap_or(0),
        // The log's first commit seen on disk before the S3 API lists it:
        // no commit a reader can see yet, so none committed.
        Err(e) if e.contains("No files in log segment") => 0,
        Err(e) => panic!("{e}"),
    }
}
