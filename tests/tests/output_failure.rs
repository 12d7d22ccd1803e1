//! An output store that stops accepting writes mid-stream (here: the lake
//! made immutable with `chattr +i`, which holds even for root): the worker
//! stops committing, reports not-ready, retries with back-off, and once the
//! store recovers, the totals are exact and every record is archived once.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use newsflow_e2e::{has_files, metric_value, wait_for, TestEnv};

/// Makes a directory tree immutable while alive.
struct Immutable(PathBuf);

fn chattr(flag: &str, path: &Path) {
    let status = Command::new("chattr")
        .args(["-R", flag])
        .arg(path)
        .status()
        .expect("running chattr (install e2fsprogs with `make deps`)");
    assert!(status.success(), "chattr -R {flag} {}", path.display());
}

impl Immutable {
    fn new(path: &Path) -> Self {
        chattr("+i", path);
        // Prove the fault is real before relying on it.
        assert!(
            std::fs::write(path.join("probe"), b"x").is_err(),
            "chattr +i did not make {} unwritable",
            path.display()
        );
        Immutable(path.to_path_buf())
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

#[test]
fn an_unwritable_output_holds_commits_back_and_loses_nothing_once_it_recovers() {
    let env = TestEnv::new("output-failure", 3);
    env.create_topics(23);
    let stream = env.stream(23, 30_000, 5_000);
    let worker = env.spawn_worker();
    wait_for("the first files", Duration::from_secs(60), || {
        has_files(env.lake_path(), "events")
    });

    let frozen = Immutable::new(env.lake_path());
    worker.wait_until_not_ready(&["output"], Duration::from_secs(30));
    let failures = metric_value(
        &worker.metrics(),
        "newsflow_flush_failures_total{stage=\"output\"}",
    );
    assert!(
        failures.unwrap_or(0.0) >= 1.0,
        "flush failures counted: {failures:?}"
    );
    let committed = env.committed_total();
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        env.committed_total(),
        committed,
        "nothing is committed while the output cannot be written"
    );
    assert!(
        !worker.readiness().0,
        "still not ready while the output fails"
    );
    drop(frozen);

    let stream = stream.finish();
    env.wait_until_committed(Duration::from_secs(180));
    wait_for("readiness to return", Duration::from_secs(60), || {
        worker.readiness().0
    });
    worker.terminate();
    env.assert_output_matches(&stream, 1, "the output recovered");
}

/// The lake is wiped under a running worker (between flushes, deleted and
/// left to be created again, as an operator starting over would): the
/// worker's cached view of the tables names log files that are gone. It
/// must not stay red forever: it reads the tables afresh, rebuilds the
/// lake from the topics, and is ready again, without a restart.
#[test]
fn a_lake_wiped_under_a_running_worker_is_rebuilt_without_a_restart() {
    let env = TestEnv::new("lake-wiped", 2);
    env.create_topics(52);
    let worker = env.spawn_worker();
    let first = env.stream(52, 3_000, 3_000).finish();
    env.wait_until_committed(Duration::from_secs(60));
    for entry in std::fs::read_dir(env.lake_path()).unwrap().flatten() {
        std::fs::remove_dir_all(entry.path()).unwrap();
    }
    // The same stream once more: all redeliveries, counted once, and
    // something for the worker to flush into the new lake.
    let again = env.stream(52, 3_000, 3_000).finish();
    let archived = || {
        newsflow_e2e::lake_sql(&env, "SELECT count(*) FROM events")[0][0]
            .as_i64()
            .unwrap_or(0)
    };
    wait_for(
        "the rebuilt lake to archive every record of the topics",
        Duration::from_secs(120),
        || has_files(env.lake_path(), "events") && archived() == env.events_in_topics(),
    );
    wait_for("readiness after the wipe", Duration::from_secs(60), || {
        worker.readiness().0
    });
    worker.terminate();
    let (messages, _) = newsflow_e2e::read_expected(&first.expected);
    env.assert_output_matches(&again, messages + 1, "a lake wiped under the worker");
}

/// A worker that cannot restore its shards when it takes them (the lake
/// refuses writes, and a restore claims the next flush's number) restores
/// them once the lake recovers. If the group's offsets trail the
/// checkpoints meanwhile (a worker died between its tables' commit and its
/// offset commit), it must commit where the checkpoints resume even though
/// no new record comes to flush: otherwise the lag shows for good and the
/// watchdog calls the worker stalled.
#[test]
fn shards_restored_late_commit_where_their_checkpoints_resume() {
    let env = TestEnv::new("late-restore", 2);
    let stream = env.counted_with_group_offsets_rewound(29, 3_000);
    let frozen = Immutable::new(env.lake_path());
    let worker = env.spawn_worker();
    worker.wait_until_not_ready(&["cannot be restored"], Duration::from_secs(60));
    drop(frozen);
    env.wait_until_committed(Duration::from_secs(60));
    wait_for("readiness to return", Duration::from_secs(60), || {
        worker.readiness().0
    });
    worker.terminate();
    env.assert_output_matches(&stream, 1, "shards restored late");
}
