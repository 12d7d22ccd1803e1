//! Reading the lake as analysts do, through the project's Python
//! environment: DuckDB queries, the footers and the output invariants.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;

use crate::{footers_by_every_reader, s3, workspace, Footer, LakeRef};

/// The Python of the Makefile's venv (`NEWSFLOW_PYTHON`).
pub(crate) fn python() -> PathBuf {
    let python = std::env::var_os("NEWSFLOW_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: create the Python environment with `make venv`",
        python.display()
    );
    python
}

/// Runs a DuckDB query through the project's Python environment and returns
/// its rows as JSON arrays.
pub fn duckdb(sql: &str) -> Vec<Vec<serde_json::Value>> {
    let script = "import duckdb, json, sys\nrows = duckdb.sql(sys.argv[1]).fetchall()\nprint(json.dumps(rows, default=str))";
    run_python(
        &[OsStr::new("-c"), OsStr::new(script), OsStr::new(sql)],
        sql,
        &[],
    )
}

/// Runs a DuckDB query over the Delta tables of `lake`, read through their
/// logs (tests/python/lake_query.py): the SQL names the tables
/// `article_totals`, `article_engagement` and `events`.
pub fn lake_sql(lake: impl Into<LakeRef>, sql: &str) -> Vec<Vec<serde_json::Value>> {
    try_lake_sql(lake, sql).unwrap_or_else(|e| panic!("{e}"))
}

/// [`lake_sql`], with its failure (what the reader printed) as an error.
pub fn try_lake_sql(
    lake: impl Into<LakeRef>,
    sql: &str,
) -> Result<Vec<Vec<serde_json::Value>>, String> {
    let lake = lake.into();
    let script = workspace().join("tests/python/lake_query.py");
    let output = Command::new(python())
        .args([script.as_os_str(), OsStr::new(&lake.uri), OsStr::new(sql)])
        .envs(s3::vars(&lake.s3_endpoint))
        .output()
        .map_err(|e| format!("DuckDB on {sql}: cannot run: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "DuckDB on {sql} (on {}) failed ({}): {}",
            lake.uri,
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(serde_json::from_slice(&output.stdout).expect("DuckDB rows as JSON"))
}

/// One article's current footer as every Python reader reads it (see
/// [`footers_by_every_reader`]): reader name → (sources, comments, posts).
pub fn footers_by_reader(
    lake: impl Into<LakeRef>,
    article: &str,
) -> BTreeMap<String, (i64, i64, i64)> {
    footers_by_every_reader(lake)
        .into_iter()
        .map(|(reader, footers)| {
            let footer = footers
                .get(article)
                .copied()
                .unwrap_or_else(|| panic!("{reader} finds no footer of {article}"));
            (reader, footer)
        })
        .collect()
}

fn run_python(
    args: &[&OsStr],
    what: &str,
    vars: &[(String, String)],
) -> Vec<Vec<serde_json::Value>> {
    let stdout = stdout_of(
        Command::new(python()).args(args).envs(vars.iter().cloned()),
        &format!("DuckDB on {what}"),
    );
    serde_json::from_slice(&stdout).expect("DuckDB rows as JSON")
}

/// Runs `command` to completion, fails the test naming `what` (with the
/// command's stderr) unless it succeeds, and returns its stdout.
pub(crate) fn stdout_of(command: &mut Command, what: &str) -> Vec<u8> {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Whether a table's log under `files` (a local lake, or the local
/// s3proxy's files of one: `TestEnv::lake_files_dir`) holds a commit yet:
/// a worker killed early may not have created the table, and readers fail
/// on a log without commits.
pub fn has_commits(files: &Path, dataset: &str) -> bool {
    let log = files.join(dataset).join("_delta_log");
    // Not empty: the S3 server's backend shows a commit being written as
    // an empty file before its bytes arrive.
    std::fs::read_dir(log).is_ok_and(|entries| {
        entries.flatten().any(|e| {
            e.file_name().to_string_lossy().ends_with(".json")
                && e.metadata().is_ok_and(|m| m.len() > 0)
        })
    })
}

/// Whether a local table has any committed data file yet.
pub fn has_files(lake: &Path, dataset: &str) -> bool {
    has_commits(lake, dataset)
        && lake_sql(lake, &format!("SELECT count(*) FROM {dataset}"))[0][0]
            .as_i64()
            .unwrap_or(0)
            > 0
}

/// The current footer of every article, with the contract's own query.
pub fn current_totals(lake: impl Into<LakeRef>) -> BTreeMap<String, Footer> {
    let sql = "SELECT article_id, title, confirming_sources, social_comments, forum_posts \
         FROM article_totals \
         QUALIFY row_number() OVER (PARTITION BY article_id ORDER BY version DESC) = 1";
    lake_sql(lake, sql)
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                Footer {
                    title: r[1].as_str().map(String::from),
                    confirming_sources: r[2].as_i64().unwrap(),
                    social_comments: r[3].as_i64().unwrap(),
                    forum_posts: r[4].as_i64().unwrap(),
                },
            )
        })
        .collect()
}

/// The SUM over `article_engagement/` of each count, per article.
pub fn engagement_sums(lake: impl Into<LakeRef>) -> BTreeMap<String, (i64, i64, i64)> {
    let sql = "SELECT article_id, sum(confirming_sources)::BIGINT, sum(social_comments)::BIGINT, sum(forum_posts)::BIGINT \
         FROM article_engagement GROUP BY article_id";
    lake_sql(lake, sql)
        .into_iter()
        .map(|r| {
            (
                r[0].as_str().unwrap().to_string(),
                (
                    r[1].as_i64().unwrap(),
                    r[2].as_i64().unwrap(),
                    r[3].as_i64().unwrap(),
                ),
            )
        })
        .collect()
}

/// Checks the invariants every output must keep, whatever happened:
/// no (article_id, version) twice, each (topic, partition, offset) once in
/// `events/`, and engagement sums equal to the totals. Returns the number
/// of archived events.
pub fn assert_output_invariants(lake: impl Into<LakeRef>) -> i64 {
    let lake = lake.into();
    let dup_versions = lake_sql(
        lake.clone(),
        "SELECT count(*) - count(DISTINCT (article_id, version)) FROM article_totals",
    );
    assert_eq!(
        dup_versions[0][0].as_i64(),
        Some(0),
        "an (article_id, version) pair appears twice"
    );
    let events = lake_sql(
        lake.clone(),
        "SELECT count(*), count(DISTINCT (kafka_topic, kafka_partition, kafka_offset)) FROM events",
    );
    assert_eq!(
        events[0][0], events[0][1],
        "a Kafka record is archived more than once"
    );
    let totals = current_totals(lake.clone());
    let sums = engagement_sums(lake.clone());
    for (article, footer) in &totals {
        let sum = sums.get(article).copied().unwrap_or_default();
        assert_eq!(
            sum,
            (
                footer.confirming_sources,
                footer.social_comments,
                footer.forum_posts
            ),
            "engagement sums of {article} differ from its totals"
        );
    }
    events[0][0].as_i64().unwrap()
}

/// Parses the generator's expected-totals file.
pub fn read_expected(path: &Path) -> (u64, BTreeMap<String, Footer>) {
    #[derive(Deserialize)]
    struct Expected {
        messages: u64,
        articles: BTreeMap<String, Footer>,
    }
    let text = std::fs::read_to_string(path).expect("expected totals file");
    let expected: Expected = serde_json::from_str(&text).expect("expected totals JSON");
    (expected.messages, expected.articles)
}
