//! The lake's upkeep cannot be set up to damage a table: a vacuum
//! retention under the safe floor is refused at start, even the override
//! spares a compaction's files written moments before (on s3://, against
//! the real S3 API server), and one damaged table does not stop the upkeep
//! of the others.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use newsflow_e2e::{live_files, wait_for, TestEnv};
use serde_json::Value;

const TABLES: [&str; 3] = ["events", "article_engagement", "article_totals"];
/// Small enough that the test's files are packed several to a bin.
const SMALL_TARGET: (&str, &str) = ("NEWSFLOW__COMPACTION__TARGET_FILE_SIZE", "1048576");

/// A lake of many small files: a stream of 6,000 events over three
/// seconds, flushed every second.
fn lake_of_small_files(env: &TestEnv, seed: u64) -> newsflow_e2e::Stream {
    env.create_topics(seed);
    let worker = env.spawn_worker();
    let stream = env.stream(seed, 6_000, 2_000).finish();
    env.wait_until_committed(Duration::from_secs(120));
    worker.terminate();
    stream
}

/// Every file below `dir` whose name starts with `prefix`.
fn files_named(dir: &Path, prefix: &str) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if entry.file_name().to_string_lossy().starts_with(prefix) {
                found.push(path);
            }
        }
    }
    found
}

fn report_of(stdout: &[u8]) -> Value {
    serde_json::from_slice(stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", String::from_utf8_lossy(stdout)))
}

#[test]
fn vacuum_refuses_an_unsafe_retention_and_spares_a_compaction_s_new_files_on_s3() {
    let env = TestEnv::on_s3("vacuum-floor", 2);
    let stream = lake_of_small_files(&env, 71);

    // Under the floor without the override: refused at start, by key.
    let refused = env
        .command("newsflow-lake")
        .arg("vacuum")
        .env("NEWSFLOW__VACUUM__RETENTION", "0s")
        .env("NEWSFLOW__VACUUM__LOG_RETENTION", "0s")
        .output()
        .expect("running newsflow-lake");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a 0s retention was accepted");
    assert!(
        stderr.contains("vacuum.retention") && stderr.contains("vacuum.allow_unsafe_retention"),
        "the error names the key and the override: {stderr}"
    );

    // A compaction stalled between writing its new files and committing
    // them, and a vacuum with no retention at all in that moment.
    let compaction = env
        .command("newsflow-lake")
        .arg("compact")
        .env(SMALL_TARGET.0, SMALL_TARGET.1)
        .env("NEWSFLOW_FAILPOINT", "stall_before_swap:8000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting newsflow-lake compact");
    let files = env.lake_files_dir();
    wait_for(
        "the compaction to write its first new file",
        Duration::from_secs(60),
        || !files_named(&files, "part-compacted-").is_empty(),
    );
    let fresh = files_named(&files, "part-compacted-");
    // Two seconds old by the time vacuum lists it: older than a retention
    // of zero by any clock's rounding, younger than the guard.
    std::thread::sleep(Duration::from_secs(2));
    let vacuum = env.lake_job(
        "vacuum",
        &[
            ("NEWSFLOW__VACUUM__RETENTION", "0s"),
            ("NEWSFLOW__VACUUM__LOG_RETENTION", "0s"),
            ("NEWSFLOW__VACUUM__ALLOW_UNSAFE_RETENTION", "true"),
        ],
    );
    for file in &fresh {
        assert!(
            file.exists(),
            "vacuum deleted {} before its compaction committed it: {vacuum}",
            file.display()
        );
    }
    let output = compaction
        .wait_with_output()
        .expect("newsflow-lake compact");
    assert!(
        output.status.success(),
        "the compaction failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report = report_of(&output.stdout);
    let removed: u64 = report["compaction"]["tables"]
        .as_array()
        .expect("compaction tables")
        .iter()
        .map(|t| t["files_removed"].as_u64().unwrap_or(0))
        .sum();
    assert!(removed > 0, "the compaction swapped files: {report}");

    // Every file the logs name is there, and the footers are exact.
    for table in TABLES {
        for uri in live_files(&env, table) {
            let name = uri.rsplit('/').next().expect("a file name");
            assert!(
                !files_named(&files.join(table), name).is_empty(),
                "{table}: the log names {uri}, which is gone"
            );
        }
    }
    env.assert_output_matches(&stream, 1, "a vacuum beside a stalled compaction");
}

#[test]
fn one_damaged_table_does_not_stop_the_upkeep_of_the_others() {
    let env = TestEnv::new("upkeep-isolated", 2);
    lake_of_small_files(&env, 72);

    // A data file of the engagement table's log disappears (a bad manual
    // clean-up): compaction of that partition cannot read it.
    let live = live_files(&env, "article_engagement");
    let mut by_partition: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for uri in &live {
        let (dir, _) = uri.rsplit_once('/').expect("a partition folder");
        by_partition.entry(dir).or_default().push(uri);
    }
    let (_, bin) = by_partition
        .iter()
        .find(|(_, files)| files.len() >= 2)
        .expect("a partition of several small files");
    let gone_uri = bin[0];
    let gone_name = gone_uri.rsplit('/').next().unwrap().to_string();
    let gone = gone_uri.strip_prefix("file://").unwrap_or(gone_uri);
    std::fs::remove_file(gone).unwrap_or_else(|e| panic!("removing {gone}: {e}"));

    let output = env
        .command("newsflow-lake")
        .arg("maintain")
        .env(SMALL_TARGET.0, SMALL_TARGET.1)
        .output()
        .expect("running newsflow-lake");
    assert!(
        !output.status.success(),
        "a failed table makes the job fail"
    );
    let report = report_of(&output.stdout);
    let errors = report["errors"].as_array().expect("errors in the report");
    assert!(
        errors.iter().any(|e| e["table"] == "article_engagement"
            && e["step"] == "compaction"
            && e["error"].as_str().is_some_and(|t| t.contains(&gone_name))),
        "the error names the table and the missing file: {report}"
    );
    assert!(
        errors.iter().all(|e| e["table"] == "article_engagement"),
        "only the damaged table failed: {report}"
    );
    for table in ["events", "article_totals"] {
        let compacted = report["compaction"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == table);
        let checkpointed = report["log_checkpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == table);
        let vacuumed = report["vacuum"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"] == table);
        assert!(
            compacted && checkpointed && vacuumed,
            "{table} was compacted, checkpointed and vacuumed: {report}"
        );
    }
}

/// A log checkpoint damaged after it was written (cut in half here): the
/// workers and the upkeep read the table from its JSON commits instead,
/// count on exactly, and the checkpoints written after it let every
/// reader in again.
#[test]
fn a_damaged_log_checkpoint_is_read_around_from_the_json_commits() {
    let env = TestEnv::new("damaged-checkpoint", 2);
    env.create_topics(73);
    let every_two = [("NEWSFLOW__OUTPUT__LOG_CHECKPOINT_INTERVAL", "2")];
    let worker = env.spawn_worker_with(&every_two);
    let first = env.stream(73, 4_000, 2_000).finish();
    env.wait_until_committed(Duration::from_secs(60));
    worker.terminate();

    let log = env.lake_path().join("article_totals/_delta_log");
    let newest = std::fs::read_dir(&log)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".checkpoint.parquet"))
        .max()
        .expect("a log checkpoint of the totals table");
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();

    // The same stream once more: all redeliveries, counted once, and new
    // commits (with new log checkpoints) on top of the damaged one.
    let worker = env.spawn_worker_with(&every_two);
    let again = env.stream(73, 4_000, 4_000).finish();
    env.wait_until_committed(Duration::from_secs(120));
    worker.terminate();
    let report = env.lake_job("maintain", &[SMALL_TARGET]);
    assert_eq!(report["errors"], serde_json::json!([]), "{report}");
    let (messages, _) = newsflow_e2e::read_expected(&first.expected);
    env.assert_output_matches(&again, messages + 1, "a damaged log checkpoint");
}
