//! The lake's upkeep (`newsflow-lake`) beside real workers: compaction,
//! log checkpoints and vacuum lose and double nothing for any reader, on a
//! local lake and on s3://, and every common reader (DuckDB, Polars,
//! pandas, pyarrow, DataFusion, Spark) reads the same exact footers before
//! and after.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use newsflow_e2e::{
    assert_output_invariants, footers_by_every_reader, lake_sql, live_files, read_expected,
    spark_footers, table_version, wait_for, Footers, LakeRef, TestEnv,
};
use serde_json::Value;

const SEED_ARTICLE: &str = "politik.2026-11-01.russland-nordkorea-buendnis";
const TABLES: [&str; 3] = ["events", "article_engagement", "article_totals"];
/// Small enough that the test's files are packed several to a bin.
const SMALL_TARGET: (&str, &str) = ("NEWSFLOW__COMPACTION__TARGET_FILE_SIZE", "1048576");
/// Vacuum everything outside the log at once (nothing reads an old version
/// in these tests), which needs the override; files younger than an hour
/// are spared even then, so the tests age them first (`age_lake_files`).
const NO_RETENTION: [(&str, &str); 3] = [
    ("NEWSFLOW__VACUUM__RETENTION", "0s"),
    ("NEWSFLOW__VACUUM__LOG_RETENTION", "0s"),
    ("NEWSFLOW__VACUUM__ALLOW_UNSAFE_RETENTION", "true"),
];
/// Older than vacuum's guard of fresh files.
const AN_HOUR_AND_MORE: Duration = Duration::from_secs(7200);

fn table_report<'a>(report: &'a Value, section: &str, table: &str) -> &'a Value {
    report[section]["tables"]
        .as_array()
        .unwrap_or_else(|| panic!("no {section} tables in {report}"))
        .iter()
        .find(|t| t["table"] == table)
        .unwrap_or_else(|| panic!("no {table} in {report}"))
}

fn number(value: &Value) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{value} is no count"))
}

/// The oracle: the generator's expected totals plus the seed article.
fn oracle(expected: &std::path::Path) -> Footers {
    let (_, articles) = read_expected(expected);
    let mut footers: Footers = articles
        .into_iter()
        .map(|(id, f)| (id, (f.confirming_sources, f.social_comments, f.forum_posts)))
        .collect();
    footers.insert(SEED_ARTICLE.into(), (16, 166, 37));
    footers
}

fn assert_footers(reader: &str, got: &Footers, want: &Footers) {
    let wrong: Vec<_> = want
        .iter()
        .filter(|(id, footer)| got.get(*id) != Some(footer))
        .take(5)
        .map(|(id, footer)| (id, footer, got.get(id)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{reader}: footers that differ from the oracle (article, want, got; first 5): {wrong:?}"
    );
    assert_eq!(got.len(), want.len(), "{reader}: articles read");
}

/// The per-table invariants, which hold at any instant: no article version
/// twice, no Kafka record twice.
fn assert_nothing_doubled(lake: impl Into<LakeRef>, when: &str) {
    let lake = lake.into();
    let doubled = lake_sql(
        lake.clone(),
        "SELECT (SELECT count(*) - count(DISTINCT (article_id, version)) FROM article_totals), \
                (SELECT count(*) - count(DISTINCT (kafka_topic, kafka_partition, kafka_offset)) FROM events)",
    );
    assert_eq!(
        (doubled[0][0].as_i64(), doubled[0][1].as_i64()),
        (Some(0), Some(0)),
        "{when}: rows doubled (article versions, Kafka records)"
    );
}

/// A worker commits a stream while `newsflow-lake compact` swaps its small
/// files; then every reader reads the oracle's footers, Spark also as of
/// the version before the last compaction; then vacuum deletes the
/// replaced files and the old log, and the worker goes on committing.
fn upkeep_beside_a_worker(env: TestEnv, seed: u64) {
    env.create_topics(seed);
    env.replay_seed_article();
    let worker = env.spawn_worker();
    // About 8 s of events: the two rounds below run while it lasts, and
    // it leaves new small files behind them for the last compaction.
    let stream = env.stream(seed, 24_000, 3_000);

    // While the worker commits (a flush a second), compact twice and read.
    let mut packed: BTreeMap<&str, u64> = BTreeMap::new();
    for round in 0..2 {
        std::thread::sleep(Duration::from_secs(2));
        let report = env.lake_job("compact", &[SMALL_TARGET]);
        for table in TABLES {
            *packed.entry(table).or_default() +=
                number(&table_report(&report, "compaction", table)["files_removed"]);
        }
        assert_nothing_doubled(&env, &format!("compaction round {round} beside the worker"));
        let readers = footers_by_every_reader(&env);
        assert_eq!(readers.len(), 5, "every reader read: {readers:?}");
    }

    let stream = stream.finish();
    env.wait_until_committed(Duration::from_secs(120));
    let want = oracle(&stream.expected);

    let before = table_version(&env, "article_totals");
    let report = env.lake_job("compact", &[SMALL_TARGET]);
    for table in TABLES {
        let t = table_report(&report, "compaction", table);
        *packed.entry(table).or_default() += number(&t["files_removed"]);
        // Every file here is far below the target: one file per partition
        // is all that may be left.
        let files = live_files(&env, table);
        let partitions: std::collections::BTreeSet<&str> = files
            .iter()
            .map(|f| f.rsplit_once('/').map_or("", |(dir, _)| dir))
            .collect();
        assert_eq!(
            files.len(),
            partitions.len(),
            "{table}: more than one file in a partition after compaction: {t}"
        );
        assert_eq!(
            number(&t["files_after"]) as usize,
            files.len(),
            "{table}: the report counts the log's files"
        );
    }
    for (table, packed) in &packed {
        assert!(*packed > 0, "{table}: compaction never packed a file");
    }
    assert!(
        report["log_checkpoints"]
            .as_array()
            .is_some_and(|c| c.len() == 3),
        "a log checkpoint per table: {report}"
    );
    assert_nothing_doubled(&env, "the last compaction");
    for (reader, footers) in footers_by_every_reader(&env) {
        assert_footers(&reader, &footers, &want);
    }
    let spark = spark_footers(&[
        (LakeRef::from(&env), Some(before)),
        (LakeRef::from(&env), None),
    ]);
    assert_footers("spark, before the last compaction", &spark[0], &want);
    assert_footers("spark, after it", &spark[1], &want);

    // Vacuum with no retention: the files compaction replaced, and every
    // log entry before the checkpoint, go.
    env.age_lake_files(AN_HOUR_AND_MORE);
    let vacuum = env.lake_job("vacuum", &NO_RETENTION);
    for table in TABLES {
        let t = table_report(&vacuum, "vacuum", table);
        assert!(
            number(&t["data_files_deleted"]) > 0 && number(&t["log_files_deleted"]) > 0,
            "{table}: vacuum deleted nothing: {t}"
        );
    }
    if !LakeRef::from(&env).uri.starts_with("s3://") {
        // The worker is idle (everything is committed): what is left on
        // disk is exactly what the log holds.
        for table in TABLES {
            let on_disk = parquet_files_below(&env.lake_path().join(table));
            let live = live_files(&env, table).len();
            assert_eq!(on_disk, live, "{table}: data files on disk and in the log");
        }
    }
    for (reader, footers) in footers_by_every_reader(&env) {
        assert_footers(&format!("{reader} after vacuum"), &footers, &want);
    }

    // The worker commits on top of the checkpoint-only log: the seed
    // article again is all redelivery, archived but counted once.
    env.replay_seed_article();
    env.wait_until_committed(Duration::from_secs(60));
    worker.terminate();
    let (messages, _) = read_expected(&stream.expected);
    assert_eq!(
        assert_output_invariants(&env) as u64,
        messages + 1 + 2 * 234,
        "every record archived exactly once, after compaction and vacuum"
    );
    for (reader, footers) in footers_by_every_reader(&env) {
        assert_footers(&format!("{reader} at the end"), &footers, &want);
    }
}

fn parquet_files_below(folder: &std::path::Path) -> usize {
    let mut count = 0;
    let mut stack = vec![folder.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.ends_with("_delta_log") {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                count += 1;
            }
        }
    }
    count
}

#[test]
fn upkeep_beside_a_worker_keeps_every_reader_exact() {
    upkeep_beside_a_worker(TestEnv::new("upkeep", 3), 61);
}

#[test]
fn upkeep_beside_a_worker_keeps_every_reader_exact_on_s3() {
    upkeep_beside_a_worker(TestEnv::on_s3("upkeep-s3", 3), 62);
}

/// A worker killed between its commits to two tables leaves files that the
/// tables behind have yet to take: vacuum must spare them, however old,
/// because the next owner rolls that flush forward from them. A worker
/// killed before its first commit of a flush leaves files no flush will
/// ever take: vacuum deletes them once the table has committed a later
/// flush of their shard (until then they look like a pending flush).
#[test]
fn vacuum_spares_a_shard_s_pending_flush_and_deletes_orphans() {
    let env = TestEnv::new("vacuum-pending", 2);
    env.create_topics(63);
    let stream = env.stream(63, 3_000, 20_000).finish();

    // Orphans: a flush stalled before its first commit, killed there.
    let stalled = env
        .command("newsflow-consumer")
        .args(["run"])
        .env("NEWSFLOW_FAILPOINT", "stall_before_commit:60000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the worker");
    let mut stalled = KillOnDrop(stalled);
    wait_for(
        "the stalled worker to write a flush's files",
        Duration::from_secs(60),
        || parquet_files_below(&env.lake_path().join("events")) > 0,
    );
    stalled.0.kill().expect("kill -9");
    stalled.0.wait().expect("reaping the worker");
    let orphans = parquet_files_below(&env.lake_path().join("events"));

    // Pending files: crash right after the events commit.
    let crashed = env
        .command("newsflow-consumer")
        .args(["run", "--exit-when-caught-up"])
        .env("NEWSFLOW_FAILPOINT", "crash_after_commit:events")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("running the worker");
    assert!(!crashed.success(), "the worker should have crashed");
    let pending_totals = parquet_files_below(&env.lake_path().join("article_totals"));
    assert!(pending_totals > 0, "the crashed flush wrote its totals");
    assert!(live_files(&env, "article_totals").is_empty());

    env.age_lake_files(AN_HOUR_AND_MORE);
    let report = env.lake_job(
        "maintain",
        &[
            NO_RETENTION[0],
            NO_RETENTION[1],
            NO_RETENTION[2],
            SMALL_TARGET,
        ],
    );
    for table in ["article_totals", "article_engagement"] {
        let t = table_report(&report, "vacuum", table);
        assert_eq!(number(&t["data_files_deleted"]), 0, "{table}: {t}");
        assert!(number(&t["data_files_kept"]) > 0, "{table}: {t}");
    }
    assert_eq!(
        parquet_files_below(&env.lake_path().join("article_totals")),
        pending_totals,
        "the pending totals files are still there"
    );

    // The next worker finishes the crashed flush from those files.
    env.consume_until_caught_up();
    env.assert_output_matches(&stream, 1, "vacuum between a crash and its recovery");

    // Every table has now committed past the killed flush: its orphans go,
    // and what is left on disk is exactly what the logs hold.
    env.age_lake_files(AN_HOUR_AND_MORE);
    env.lake_job("vacuum", &NO_RETENTION);
    for table in TABLES {
        assert_eq!(
            parquet_files_below(&env.lake_path().join(table)),
            live_files(&env, table).len(),
            "{table}: files on disk after vacuum, against the log's ({orphans} orphaned events files once)"
        );
    }
    env.assert_output_matches(&stream, 1, "vacuum after the recovery");
}

struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Workers write a log checkpoint every `output.log_checkpoint_interval`
/// commits, so a table opens from it after any number of flushes; vacuum's
/// log retention then drops the commits before it, and the output still
/// reads exactly.
#[test]
fn workers_checkpoint_the_log_every_n_commits() {
    let env = TestEnv::new("log-checkpoints", 2);
    env.create_topics(64);
    let worker = env.spawn_worker_with(&[("NEWSFLOW__OUTPUT__LOG_CHECKPOINT_INTERVAL", "3")]);
    let stream = env.stream(64, 8_000, 1_000).finish();
    env.wait_until_committed(Duration::from_secs(60));
    worker.terminate();

    let log = env.lake_path().join("events/_delta_log");
    let names = || -> Vec<String> {
        std::fs::read_dir(&log)
            .expect("the events log")
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    };
    let commits = names().iter().filter(|n| n.ends_with(".json")).count();
    let checkpoints = names()
        .iter()
        .filter(|n| n.ends_with(".checkpoint.parquet"))
        .count();
    assert!(
        commits >= 7 && checkpoints >= (commits - 1) / 3,
        "{checkpoints} log checkpoints for {commits} commits at one every 3: {:?}",
        names()
    );
    assert!(names().contains(&"_last_checkpoint".to_string()));

    env.age_lake_files(AN_HOUR_AND_MORE);
    let vacuum = env.lake_job("vacuum", &NO_RETENTION);
    let expired = number(&table_report(&vacuum, "vacuum", "events")["log_files_deleted"]);
    assert!(
        expired > 0,
        "the commits before the last checkpoint expire: {vacuum}"
    );
    assert!(names().iter().filter(|n| n.ends_with(".json")).count() < commits);
    env.assert_output_matches(&stream, 1, "log checkpoints and log expiry");
}

/// Two compactions at once (a CronJob run overlapping a manual one) swap
/// the same small files: the log lets one swap each bin, the other finds
/// its files gone and drops its rewrite. Nothing is doubled or lost.
#[test]
fn two_compactions_at_once_double_nothing() {
    let env = TestEnv::new("compaction-race", 3);
    env.create_topics(65);
    let worker = env.spawn_worker();
    let stream = env.stream(65, 9_000, 3_000).finish();
    env.wait_until_committed(Duration::from_secs(60));
    worker.terminate();
    let before: usize = TABLES.iter().map(|t| live_files(&env, t).len()).sum();

    let racers: Vec<_> = (0..2)
        .map(|_| {
            env.command("newsflow-lake")
                .arg("compact")
                .env(SMALL_TARGET.0, SMALL_TARGET.1)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("starting newsflow-lake")
        })
        .collect();
    let mut removed = 0;
    for racer in racers {
        let output = racer.wait_with_output().expect("newsflow-lake");
        assert!(
            output.status.success(),
            "a racing compaction failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let report: Value = serde_json::from_slice(&output.stdout).expect("a JSON report");
        removed += TABLES
            .iter()
            .map(|t| number(&table_report(&report, "compaction", t)["files_removed"]))
            .sum::<u64>();
    }
    let after: usize = TABLES.iter().map(|t| live_files(&env, t).len()).sum();
    assert!(after < before, "{before} files before, {after} after");
    assert!(removed > 0);
    assert_nothing_doubled(&env, "two racing compactions");
    env.assert_output_matches(&stream, 1, "two racing compactions");
}
