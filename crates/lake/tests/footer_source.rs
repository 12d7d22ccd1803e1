//! How `FooterSource` reads a log's tail, on logs written by hand: the
//! commits after a version, a gap left by log cleanup, a log that was
//! replaced under the reader, and an idle table whose old commits were
//! cleaned up but whose checkpoint stays.

use std::path::Path;

use newsflow_lake::{FooterSource, LogTail};

fn commit(log: &Path, version: u64, data_files: &[&str]) {
    let mut lines = vec![format!(
        r#"{{"commitInfo":{{"timestamp":{},"operation":"WRITE"}}}}"#,
        1_764_720_000_000 + version
    )];
    for file in data_files {
        lines.push(format!(
            r#"{{"add":{{"path":"{file}","partitionValues":{{}},"size":1,"modificationTime":1,"dataChange":true}}}}"#
        ));
    }
    std::fs::write(log.join(format!("{version:020}.json")), lines.join("\n")).unwrap();
}

fn log_of(root: &Path) -> std::path::PathBuf {
    let log = root.join("article_totals/_delta_log");
    std::fs::create_dir_all(&log).unwrap();
    log
}

fn versions(tail: LogTail) -> Option<Vec<(u64, Vec<String>)>> {
    match tail {
        LogTail::Commits(commits) => Some(
            commits
                .into_iter()
                .map(|c| (c.version, c.data_files))
                .collect(),
        ),
        LogTail::Gap => None,
    }
}

#[test]
fn the_tail_is_the_commits_after_the_version_held_in_order() {
    let root = tempfile::tempdir().unwrap();
    let log = log_of(root.path());
    for v in 0..=4 {
        commit(&log, v, &[&format!("part-{v}.parquet")]);
    }
    let source = FooterSource::open(root.path().to_str().unwrap(), &Default::default()).unwrap();
    let tail = versions(source.commits_after(2).unwrap()).expect("no gap");
    assert_eq!(
        tail,
        [
            (3, vec!["part-3.parquet".to_string()]),
            (4, vec!["part-4.parquet".to_string()])
        ]
    );
    assert_eq!(versions(source.commits_after(4).unwrap()), Some(vec![]));
    assert_eq!(versions(source.commits_after(0).unwrap()).unwrap().len(), 4);
}

#[test]
fn a_cleaned_up_or_replaced_log_asks_for_a_reload_and_an_idle_one_does_not() {
    let root = tempfile::tempdir().unwrap();
    let log = log_of(root.path());
    let source = FooterSource::open(root.path().to_str().unwrap(), &Default::default()).unwrap();

    // Cleanup removed the commits after the one held: a gap.
    for v in [5, 9, 10] {
        commit(&log, v, &[]);
    }
    assert!(
        versions(source.commits_after(5).unwrap()).is_none(),
        "5 → 9 is a gap"
    );

    // Idle: the commit held is gone, its checkpoint is there.
    std::fs::remove_file(log.join(format!("{:020}.json", 9))).unwrap();
    std::fs::write(log.join(format!("{:020}.checkpoint.parquet", 9)), b"").unwrap();
    assert_eq!(versions(source.commits_after(9).unwrap()).unwrap().len(), 1);

    // Replaced: a new log that has not reached the version held.
    for entry in std::fs::read_dir(&log).unwrap() {
        std::fs::remove_file(entry.unwrap().path()).unwrap();
    }
    for v in 0..3 {
        commit(&log, v, &[]);
    }
    assert!(
        versions(source.commits_after(10).unwrap()).is_none(),
        "a log behind the version held was replaced"
    );
}
