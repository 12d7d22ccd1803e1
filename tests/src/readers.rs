//! The lake as analysts read it: every common reader's footers, Spark
//! included, and the maintenance command (`newsflow-lake`) run as a job.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use crate::queries::{python, stdout_of};
use crate::{s3, workspace, LakeRef, TestEnv};

/// Footers per article: (sources, comments, posts).
pub type Footers = BTreeMap<String, (i64, i64, i64)>;

fn parse(stdout: &[u8], what: &str) -> BTreeMap<String, Footers> {
    let parsed: BTreeMap<String, BTreeMap<String, [i64; 3]>> =
        serde_json::from_slice(stdout).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
    parsed
        .into_iter()
        .map(|(key, footers)| {
            let footers = footers
                .into_iter()
                .map(|(article, [a, b, c])| (article, (a, b, c)))
                .collect();
            (key, footers)
        })
        .collect()
}

/// The current footer of every article as each Python reader reads it
/// the way docs/querying.md shows (tests/python/readers.py): DuckDB,
/// Polars, pandas, pyarrow and DataFusion. Reader name → footers.
pub fn footers_by_every_reader(lake: impl Into<LakeRef>) -> BTreeMap<String, Footers> {
    let lake = lake.into();
    let script = workspace().join("tests/python/readers.py");
    let stdout = stdout_of(
        Command::new(python())
            .args([script.as_os_str(), OsStr::new(&lake.uri)])
            .envs(s3::vars(&lake.s3_endpoint)),
        &format!("the readers on {}", lake.uri),
    );
    parse(&stdout, "the readers' footers")
}

fn spark_python() -> PathBuf {
    let python = std::env::var_os("NEWSFLOW_SPARK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv-spark/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: create Spark's environment with `make venv-spark`",
        python.display()
    );
    python
}

/// The current footer of every article as Spark reads it (pyspark with
/// Delta Lake, deploy/sql/article_footer.sql), for each of `reads`: a lake
/// and optionally the `article_totals` version to travel back to. One
/// Spark session serves them all. Returns them in the order asked.
pub fn spark_footers(reads: &[(LakeRef, Option<u64>)]) -> Vec<Footers> {
    let jars = stdout_of(
        Command::new("bash")
            .arg(workspace().join("deploy/local/spark.sh"))
            .arg("jars"),
        "fetching Spark's jars",
    );
    let jars = String::from_utf8(jars).expect("jar paths");
    let specs: Vec<String> = reads
        .iter()
        .map(|(lake, version)| match version {
            Some(v) => format!("{}@{v}", lake.uri),
            None => lake.uri.clone(),
        })
        .collect();
    let endpoint = reads
        .iter()
        .map(|(lake, _)| lake.s3_endpoint.clone())
        .next()
        .unwrap_or_else(s3::endpoint);
    let stdout = stdout_of(
        Command::new(spark_python())
            .arg(workspace().join("tests/python/spark_readers.py"))
            .arg(jars.trim())
            .args(&specs)
            .envs(s3::vars(&endpoint)),
        &format!("Spark on {specs:?}"),
    );
    let mut by_spec = parse(&stdout, "Spark's footers");
    specs
        .iter()
        .map(|spec| by_spec.remove(spec).unwrap_or_default())
        .collect()
}

/// Evaluates `expression` (over `table`, a `deltalake.DeltaTable`) with
/// the `deltalake` package and returns what it prints as JSON.
fn delta_table_json(lake: LakeRef, name: &str, expression: &str) -> serde_json::Value {
    let script = format!(
        "import json, sys\nfrom deltalake import DeltaTable\ntable = DeltaTable(sys.argv[1])\nprint(json.dumps({expression}))"
    );
    let uri = format!("{}/{name}", lake.uri.trim_end_matches('/'));
    let stdout = stdout_of(
        Command::new(python())
            .args([OsStr::new("-c"), OsStr::new(&script), OsStr::new(&uri)])
            .envs(s3::vars(&lake.s3_endpoint)),
        &format!("deltalake's {expression} on {uri}"),
    );
    serde_json::from_slice(&stdout).expect("deltalake's answer as JSON")
}

/// The latest version of a table's log.
pub fn table_version(lake: impl Into<LakeRef>, table: &str) -> u64 {
    delta_table_json(lake.into(), table, "table.version()")
        .as_u64()
        .expect("a version number")
}

/// The data files a table's log holds now, as URIs.
pub fn live_files(lake: impl Into<LakeRef>, table: &str) -> Vec<String> {
    serde_json::from_value(delta_table_json(lake.into(), table, "table.file_uris()"))
        .expect("a list of file URIs")
}

impl TestEnv {
    /// Runs `newsflow-lake COMMAND` against this test's lake with extra
    /// settings, asserts it succeeds, and returns its JSON report.
    pub fn lake_job(&self, command: &str, extra_env: &[(&str, &str)]) -> serde_json::Value {
        let stdout = stdout_of(
            self.command("newsflow-lake")
                .arg(command)
                .envs(extra_env.iter().copied()),
            &format!("newsflow-lake {command}"),
        );
        serde_json::from_slice(&stdout).unwrap_or_else(|e| {
            panic!(
                "newsflow-lake {command} printed no JSON report ({e}): {}",
                String::from_utf8_lossy(&stdout)
            )
        })
    }
}
