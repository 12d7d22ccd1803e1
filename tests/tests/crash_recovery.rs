//! kill -9 a worker at seeded random moments while it consumes a stream
//! that is still being published; restart it each time. Once it has caught
//! up, the output is exactly the generator's expected totals, no
//! (article_id, version) pair appears twice, and every Kafka record is
//! archived exactly once.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use newsflow_e2e::{assert_output_invariants, binary, current_totals, read_expected, TestEnv};

/// A few bits of SplitMix64, so the kill moments are fixed by the seed.
fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn kill_9_at_random_moments_loses_and_repeats_nothing() {
    // `make chaos` raises these; the suite keeps them small.
    let events: u64 = std::env::var("NEWSFLOW_CHAOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    let kills: u64 = std::env::var("NEWSFLOW_CHAOS_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let rate = (events * 1000 / (kills * 4000)).max(1000); // spread the stream over the kills
    let env = TestEnv::new("crash", 4);
    let expected_path = env.lake_path().with_extension("expected.json");
    // A short session timeout, so the group notices a killed worker quickly.
    let vars = |cmd: &mut Command| {
        cmd.envs(env.vars())
            .env("NEWSFLOW__KAFKA__SESSION_TIMEOUT", "6s")
            // The same static identity each restart, as a StatefulSet pod
            // has: the restarted worker takes its partitions back at once.
            .env("NEWSFLOW__KAFKA__INSTANCE_ID", "crash-worker-0")
            .env("NEWSFLOW__OUTPUT__FLUSH_INTERVAL", "300ms")
            .env("RUST_LOG", "warn");
    };
    // Topics first, then the stream is published while the worker crashes.
    assert!(env
        .producer(&[
            "generate",
            "--seed",
            "9",
            "--count",
            "1",
            "--expected",
            "/dev/null"
        ])
        .status
        .success());
    let mut producer = Command::new(binary("newsflow-producer"));
    vars(&mut producer);
    let mut producer = producer
        .args([
            "generate",
            "--seed",
            "9",
            "--count",
            &events.to_string(),
            "--rate",
            &rate.to_string(),
            "--expected",
        ])
        .arg(&expected_path)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();

    let mut seed = 0x5EED_u64;
    let mut progress = Vec::new();
    for round in 0..kills {
        let mut worker = Command::new(binary("newsflow-consumer"));
        vars(&mut worker);
        let mut worker = worker
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Between 2.5 and 5.5 s: after the group join, mid-stream, often mid-flush.
        let life = Duration::from_millis(2500 + next(&mut seed) % 3000);
        std::thread::sleep(life);
        worker.kill().unwrap(); // SIGKILL
        worker.wait().unwrap();
        let checkpointed = checkpointed_offsets(env.lake_path());
        eprintln!(
            "kill {}/{kills} after {life:?}: {checkpointed} records checkpointed so far",
            round + 1
        );
        progress.push(checkpointed);
    }
    assert!(producer.wait().unwrap().success(), "producer failed");
    // The kills must land while work is being done, not only during joins.
    let advancing = progress.windows(2).filter(|w| w[1] > w[0]).count();
    assert!(
        advancing >= 2,
        "too few lives made progress before their kill: {progress:?}"
    );

    // A last worker finishes the job.
    let mut last = Command::new(binary("newsflow-consumer"));
    vars(&mut last);
    let mut last = last
        .arg("run")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let started = Instant::now();
    env.wait_until_committed(Duration::from_secs(120));
    Command::new("kill")
        .args(["-TERM", &last.id().to_string()])
        .status()
        .unwrap();
    assert!(
        last.wait().unwrap().success(),
        "the last worker did not exit cleanly"
    );
    eprintln!("caught up {:?} after the last restart", started.elapsed());

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
        "articles whose totals differ after {kills} kills (first 5): {wrong:?}"
    );
    assert_eq!(
        assert_output_invariants(env.lake_path()) as u64,
        messages + 1,
        "each record archived once"
    );
}

/// Sum of the next offsets in every checkpoint: how many records the
/// output durably covers.
fn checkpointed_offsets(lake: &std::path::Path) -> i64 {
    let Ok(entries) = std::fs::read_dir(lake.join("_checkpoints")) else {
        return 0;
    };
    entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            if path.extension()? != "json" {
                return None;
            }
            let doc: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
            Some(
                doc["offsets"]
                    .as_object()?
                    .values()
                    .filter_map(|v| v.as_i64())
                    .sum::<i64>(),
            )
        })
        .sum()
}
