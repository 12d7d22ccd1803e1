//! `article_totals` read for serving: its latest snapshot through the
//! Delta kernel (log checkpoints included), then the commits that follow
//! it one by one, so that a reader that keeps the current footer of every
//! article in memory re-reads only the files new commits add.
//!
//! The tail is read from the log's JSON commits themselves (the Delta
//! protocol's `NNNNNNNNNNNNNNNNNNNN.json` files, one action per line):
//! the kernel answers "what is the table at version v", not "what did
//! commit v add", and rebuilding the file list on every poll would read
//! the whole log (a log checkpoint on object storage) once a second.
//!
//! Nothing here writes: the table is never created or changed, so the
//! serving side can run with read-only credentials.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use bytes::Bytes;
use newsflow_core::counted::{COUNTERS, COUNTER_COUNT};
use object_store::path::Path as ObjectPath;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ProjectionMask;
use serde::Deserialize;
use url::Url;

use crate::datasets::Dataset;
use crate::delta::{snapshot_at, Engines};
use crate::location::Location;
use crate::maintenance::live_files::live_files;
use crate::store::Store;
use crate::{BoxError, Error};

/// The table followed.
const TABLE: Dataset = Dataset::ArticleTotals;

/// A read-only handle on the `article_totals` table of an output root.
pub struct FooterSource {
    store: Store,
    engines: Engines,
    url: Url,
    /// Runs the store's calls and the kernel's I/O; shut down without
    /// blocking when the source is dropped.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for FooterSource {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// The table as of one version: what a full load reads.
#[derive(Debug)]
pub struct TableState {
    /// The version.
    pub version: u64,
    /// When that version was committed (milliseconds since the epoch), if
    /// its commit says so.
    pub committed_at_ms: Option<i64>,
    /// Its data files, relative to the table's folder.
    pub files: Vec<String>,
}

/// What the log holds after a version.
#[derive(Debug)]
pub enum LogTail {
    /// The commits after it, in order (none if it is the latest).
    Commits(Vec<Commit>),
    /// The commit right after it is gone (the log was cleaned up past it):
    /// the reader must load the latest snapshot afresh.
    Gap,
}

/// One commit of the log, as far as footers are concerned.
#[derive(Debug)]
pub struct Commit {
    /// Its version.
    pub version: u64,
    /// Its `commitInfo.timestamp`, if it has one.
    pub committed_at_ms: Option<i64>,
    /// Files it adds with new rows (`dataChange = true`), relative to the
    /// table's folder. Compaction's rewrites (`dataChange = false`) add no
    /// row that was not there, and are left out.
    pub data_files: Vec<String>,
    /// It removes rows or changes the table's schema or protocol: what is
    /// held cannot be patched, the reader must load the table afresh.
    /// newsflow's own writers never do this.
    pub rewrites_table: bool,
}

/// One row of `article_totals`, borrowed from the file being read.
#[derive(Clone, Copy, Debug)]
pub struct FooterRow<'a> {
    /// The article.
    pub article_id: &'a str,
    /// Its title, once its `article_published` event was counted.
    pub title: Option<&'a str>,
    /// Its counts, in the order of [`COUNTERS`].
    pub counts: [i64; COUNTER_COUNT],
    /// The row's version: the highest of an article's rows is current.
    pub version: i64,
}

/// Why a row could not be read as a footer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedRow {
    /// `article_id` is null.
    NullId,
    /// A count or the version is null.
    NullNumber,
}

/// What reading one data file came to.
#[derive(Debug, Default, Clone, Copy)]
pub struct FileRead {
    /// Rows handed over.
    pub rows: u64,
    /// Rows that were not footers (see [`MalformedRow`]).
    pub malformed: u64,
}

impl FooterSource {
    /// Opens the `article_totals` table below the output root `uri` (a
    /// local path, `file://`, `s3://`, `gs://`, `az://`), with `storage`
    /// options on top of the environment's. Nothing is read yet.
    pub fn open(uri: &str, storage: &BTreeMap<String, String>) -> Result<FooterSource, Error> {
        let location = Location::parse(uri, storage)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .thread_name("newsflow-footers")
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                op: "starting the reader's runtime",
                path: uri.into(),
                source,
            })?;
        let engines = Engines::new(&location.store, runtime.handle());
        let url = location.folder(TABLE.name());
        let store = Store::new(location, runtime.handle().clone());
        Ok(FooterSource {
            store,
            engines,
            url,
            runtime: Some(runtime),
        })
    }

    /// The output root, for logs (no credentials in it).
    pub fn root(&self) -> String {
        self.store.location.display()
    }

    /// The table's latest version and its files, through the kernel;
    /// `None` while the table has no log yet (no worker has opened it).
    pub fn latest(&self) -> Result<Option<TableState>, Error> {
        let (log, _) = self.store.list(self.log_path(""))?;
        if !log.iter().any(|name| name.ends_with(".json")) {
            return Ok(None);
        }
        let (snapshot, _) = snapshot_at(&self.engines, TABLE, &self.url, None)?;
        let files = live_files(&self.engines.engine, &snapshot)?
            .into_iter()
            .map(|file| file.path)
            .collect();
        let version = snapshot.version();
        // The version's own commit may be gone (only a log checkpoint
        // left); its time is then unknown until the next commit.
        let committed_at_ms = match self.commit(version) {
            Ok(Some(commit)) => commit.committed_at_ms,
            Ok(None) => None,
            Err(e) => return Err(e),
        };
        Ok(Some(TableState {
            version,
            committed_at_ms,
            files,
        }))
    }

    /// The commits after `version`, read from the log's JSON commits.
    pub fn commits_after(&self, version: u64) -> Result<LogTail, Error> {
        // From `version` itself on: its own commit or checkpoint must still
        // be there, or the log was replaced (a lake wiped and rebuilt,
        // whose new log has not reached `version` yet).
        let offset = match version {
            0 => self.log_path(""),
            v => self.log_path(&commit_file_name(v - 1)),
        };
        let listed = self.store.list_after(self.log_path(""), offset)?;
        if !listed
            .iter()
            .filter_map(|name| log_file_version(name))
            .any(|v| v >= version)
        {
            return Ok(LogTail::Gap);
        }
        let mut versions: Vec<u64> = listed
            .iter()
            .filter_map(|name| commit_version(name))
            .filter(|v| *v > version)
            .collect();
        versions.sort_unstable();
        if versions.first().is_some_and(|first| *first != version + 1) {
            return Ok(LogTail::Gap);
        }
        let mut commits = Vec::with_capacity(versions.len());
        for (expected, v) in (version + 1..).zip(versions) {
            if v != expected {
                break; // a commit being written (listings are not atomic)
            }
            match self.commit(v)? {
                Some(commit) => commits.push(commit),
                None if commits.is_empty() => return Ok(LogTail::Gap),
                None => break,
            }
        }
        Ok(LogTail::Commits(commits))
    }

    /// Commit `version` of the log, `None` if its file is gone.
    fn commit(&self, version: u64) -> Result<Option<Commit>, Error> {
        let path = self.log_path(&commit_file_name(version));
        let bytes = match self.store.get(path) {
            Ok(bytes) => bytes,
            Err(e) if e.is_not_found() => return Ok(None),
            Err(e) => return Err(e),
        };
        parse_commit(version, &bytes)
            .map(Some)
            .map_err(|source| Error::Decode {
                path: format!("{}/_delta_log/{}", TABLE.name(), commit_file_name(version)),
                source,
            })
    }

    /// Reads the data file `path` (relative to the table's folder, as the
    /// log names it) and hands each of its rows to `each`, or why it is
    /// not a footer. A file the store no longer has is an
    /// [`Error::is_not_found`] error: vacuum deleted it after a later
    /// commit replaced it, and the reader must load the table afresh.
    pub fn read_footers(
        &self,
        path: &str,
        mut each: impl FnMut(Result<FooterRow<'_>, MalformedRow>),
    ) -> Result<FileRead, Error> {
        let decode_error = |e: BoxError| Error::Decode {
            path: format!("{}/{path}", TABLE.name()),
            source: e,
        };
        let url = self.url.join(path).map_err(|e| decode_error(e.into()))?;
        let object = ObjectPath::from_url_path(url.path()).map_err(|e| decode_error(e.into()))?;
        let bytes = Bytes::from(self.store.get(object)?);
        let builder =
            ParquetRecordBatchReaderBuilder::try_new(bytes).map_err(|e| decode_error(e.into()))?;
        let mut wanted = vec!["article_id", "title", "version"];
        wanted.extend(COUNTERS.iter().map(|c| c.column));
        let mask = ProjectionMask::columns(builder.parquet_schema(), wanted);
        let reader = builder
            .with_projection(mask)
            .with_batch_size(16 * 1024)
            .build()
            .map_err(|e| decode_error(e.into()))?;
        let mut read = FileRead::default();
        for batch in reader {
            let batch = batch.map_err(|e| decode_error(e.into()))?;
            visit_rows(&batch, &mut read, &mut each).map_err(|e| decode_error(e.into()))?;
        }
        Ok(read)
    }

    fn log_path(&self, name: &str) -> ObjectPath {
        self.store
            .path(&format!("{}/_delta_log/{name}", TABLE.name()))
    }
}

/// Hands each row of `batch` to `each`; an error if a column is missing
/// or of another type than the table's.
fn visit_rows(
    batch: &RecordBatch,
    read: &mut FileRead,
    each: &mut impl FnMut(Result<FooterRow<'_>, MalformedRow>),
) -> Result<(), String> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .ok_or_else(|| format!("it has no `{name}` column"))
    };
    let strings = |name: &str| {
        column(name)?
            .as_string_opt::<i32>()
            .ok_or_else(|| format!("its `{name}` column is not a string"))
    };
    let numbers = |name: &str| {
        column(name)?
            .as_primitive_opt::<Int64Type>()
            .ok_or_else(|| format!("its `{name}` column is not int64"))
    };
    let ids = strings("article_id")?;
    let titles = strings("title")?;
    let versions = numbers("version")?;
    let counts = COUNTERS
        .iter()
        .map(|c| numbers(c.column))
        .collect::<Result<Vec<_>, _>>()?;
    for row in 0..batch.num_rows() {
        let numbers_null = versions.is_null(row) || counts.iter().any(|column| column.is_null(row));
        let footer = if ids.is_null(row) {
            Err(MalformedRow::NullId)
        } else if numbers_null {
            Err(MalformedRow::NullNumber)
        } else {
            Ok(FooterRow {
                article_id: ids.value(row),
                title: titles.is_valid(row).then(|| titles.value(row)),
                counts: std::array::from_fn(|i| counts[i].value(row)),
                version: versions.value(row),
            })
        };
        match footer {
            Ok(_) => read.rows += 1,
            Err(_) => read.malformed += 1,
        }
        each(footer);
    }
    Ok(())
}

/// The name of commit `version`'s file in the log.
fn commit_file_name(version: u64) -> String {
    format!("{version:020}.json")
}

/// The version of a commit file's name, `None` for other log files
/// (checkpoints, `_last_checkpoint`, temporary files).
fn commit_version(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The version of any file of the log named for one (a commit, a
/// checkpoint or a part of one), `None` for the rest.
fn log_file_version(name: &str) -> Option<u64> {
    let (digits, rest) = name.split_at_checked(20)?;
    (digits.bytes().all(|b| b.is_ascii_digit()) && rest.starts_with('.'))
        .then(|| digits.parse().ok())
        .flatten()
}

/// One line of a commit: one action (the rest are not needed here).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Action {
    add: Option<AddAction>,
    remove: Option<RemoveAction>,
    commit_info: Option<CommitInfo>,
    meta_data: Option<serde::de::IgnoredAny>,
    protocol: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AddAction {
    path: String,
    data_change: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoveAction {
    data_change: bool,
}

#[derive(Deserialize)]
struct CommitInfo {
    timestamp: Option<i64>,
}

/// Reads commit `version` from its file's bytes.
fn parse_commit(version: u64, bytes: &[u8]) -> Result<Commit, BoxError> {
    let mut commit = Commit {
        version,
        committed_at_ms: None,
        data_files: Vec::new(),
        rewrites_table: false,
    };
    for line in bytes.split(|b| *b == b'\n') {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let action: Action = serde_json::from_slice(line)?;
        if let Some(add) = action.add {
            if add.data_change {
                commit.data_files.push(add.path);
            }
        }
        if action.remove.is_some_and(|remove| remove.data_change) {
            commit.rewrites_table = true;
        }
        // The table's first commit sets both; a later one changes them.
        if version > 0 && (action.meta_data.is_some() || action.protocol.is_some()) {
            commit.rewrites_table = true;
        }
        if let Some(info) = action.commit_info {
            commit.committed_at_ms = info.timestamp;
        }
    }
    Ok(commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_files_are_told_from_other_log_files() {
        assert_eq!(commit_version("00000000000000000012.json"), Some(12));
        assert_eq!(
            commit_version("00000000000000000010.checkpoint.parquet"),
            None
        );
        assert_eq!(commit_version("_last_checkpoint"), None);
        assert_eq!(commit_version("12.json"), None);
        assert_eq!(commit_version(".00000000000000000012.json.tmp"), None);
    }

    #[test]
    fn checkpoints_and_commits_are_named_for_their_version() {
        assert_eq!(log_file_version("00000000000000000012.json"), Some(12));
        assert_eq!(
            log_file_version("00000000000000000010.checkpoint.parquet"),
            Some(10)
        );
        assert_eq!(
            log_file_version("00000000000000000010.checkpoint.0000000001.0000000002.parquet"),
            Some(10)
        );
        assert_eq!(log_file_version("_last_checkpoint"), None);
        assert_eq!(log_file_version("00000000000000000012.crc"), Some(12));
    }

    #[test]
    fn a_commit_names_its_new_rows_and_leaves_rewrites_out() {
        let commit = br#"{"commitInfo":{"timestamp":1764700000123,"operation":"STREAMING UPDATE"}}
{"txn":{"appId":"newsflow-shard-00001","version":7}}
{"add":{"path":"emitted_date=2026-12-01/part-a.parquet","partitionValues":{},"size":10,"modificationTime":1,"dataChange":true}}
{"add":{"path":"emitted_date=2026-12-01/part-b.parquet","partitionValues":{},"size":10,"modificationTime":1,"dataChange":false}}
{"remove":{"path":"emitted_date=2026-12-01/part-c.parquet","dataChange":false}}
"#;
        let parsed = parse_commit(3, commit).unwrap();
        assert_eq!(parsed.committed_at_ms, Some(1764700000123));
        assert_eq!(
            parsed.data_files,
            ["emitted_date=2026-12-01/part-a.parquet"]
        );
        assert!(!parsed.rewrites_table);
    }

    #[test]
    fn a_commit_that_deletes_rows_or_changes_the_schema_asks_for_a_reload() {
        let delete = br#"{"remove":{"path":"p.parquet","dataChange":true}}"#;
        assert!(parse_commit(4, delete).unwrap().rewrites_table);
        let schema = br#"{"metaData":{"id":"x","format":{"provider":"parquet"},"schemaString":"{}","partitionColumns":[]}}"#;
        assert!(parse_commit(5, schema).unwrap().rewrites_table);
        assert!(!parse_commit(0, schema).unwrap().rewrites_table);
    }

    #[test]
    fn a_line_that_is_not_json_is_an_error() {
        assert!(parse_commit(1, b"{\"add\":").is_err());
    }
}
