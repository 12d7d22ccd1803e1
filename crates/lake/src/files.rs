//! File system side of the lake: atomic commits, names, checkpoints and the
//! removal of files a crashed run left past its checkpoint.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use newsflow_core::time::{date_of, DAY};
use newsflow_core::ColdArticle;
use newsflow_core::Micros;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::checkpoint::{Checkpoint, CheckpointV1, EncodedCheckpoint};
use crate::datasets::{
    engagement_batch, events_batch, totals_batch, Dataset, FlushBatch, WriteStats,
};
use crate::Error;

const CHECKPOINT_DIR: &str = "_checkpoints";

/// Columns (of `events/`) whose values are nearly all distinct.
const UNIQUE_COLUMNS: &[&str] = &["event_id", "offset", "payload"];

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A handle on the output root.
#[derive(Clone, Debug)]
pub struct Lake {
    root: PathBuf,
}

/// The final name of a data file of `shard` written by flush `seq`.
pub fn file_name(shard: i32, seq: u64) -> String {
    format!("part-{shard:05}-{seq:010}.parquet")
}

/// The shard and sequence number of a data file name, if it is one of ours.
pub fn parse_file_name(name: &str) -> Option<(i32, u64)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".parquet")?;
    let (shard, seq) = rest.split_once('-')?;
    Some((shard.parse().ok()?, seq.parse().ok()?))
}

impl Lake {
    /// Opens (creating if needed) the output root.
    pub fn open(root: impl Into<PathBuf>) -> Result<Lake, Error> {
        let root = root.into();
        fs::create_dir_all(&root).map_err(io("creating output root", &root))?;
        Ok(Lake { root })
    }

    /// The output root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes every row of `batch` as files named for `shard` and `seq`, one
    /// file per dataset and Hive partition. Returns what was written per
    /// dataset. Files appear atomically; writing the same `(shard, seq)`
    /// again replaces them, so a retried flush cannot duplicate rows.
    pub fn write(
        &self,
        shard: i32,
        seq: u64,
        batch: &FlushBatch,
    ) -> Result<Vec<(Dataset, WriteStats)>, Error> {
        let name = file_name(shard, seq);
        let day = |t: Micros| t.div_euclid(DAY);
        let date_dir = |day: i64| format!("date={}", date_of(day * DAY));
        let totals = self.commit_partitioned(
            Dataset::ArticleTotals,
            &name,
            &batch.totals,
            |row| day(row.emitted_at),
            |d| PathBuf::from(date_dir(*d)),
            totals_batch,
        )?;
        let engagement = self.commit_partitioned(
            Dataset::ArticleEngagement,
            &name,
            &batch.engagement,
            |row| day(row.window_start),
            |d| PathBuf::from(date_dir(*d)),
            engagement_batch,
        )?;
        // Both directory values of an event come from validated data: the
        // event type is one of four fixed names and the date is formatted
        // by us, so nothing a sender wrote reaches the path.
        let events = self.commit_partitioned(
            Dataset::Events,
            &name,
            &batch.events,
            |row| (row.event_type.as_str(), day(row.occurred_at)),
            |(event_type, d)| Path::new(&format!("event_type={event_type}")).join(date_dir(*d)),
            events_batch,
        )?;
        Ok(vec![
            (Dataset::ArticleTotals, totals),
            (Dataset::ArticleEngagement, engagement),
            (Dataset::Events, events),
        ])
    }

    /// Commits `rows` of `dataset` as one file per Hive partition. Rows are
    /// grouped by a cheap key (`partition_of`); the directory is formatted
    /// once per group (`directory_of`), not once per row.
    fn commit_partitioned<R, K: Ord>(
        &self,
        dataset: Dataset,
        name: &str,
        rows: &[R],
        partition_of: impl Fn(&R) -> K,
        directory_of: impl Fn(&K) -> PathBuf,
        encode: impl Fn(&[&R]) -> Result<RecordBatch, Error>,
    ) -> Result<WriteStats, Error> {
        let mut groups: BTreeMap<K, Vec<&R>> = BTreeMap::new();
        for row in rows {
            groups.entry(partition_of(row)).or_default().push(row);
        }
        let mut stats = WriteStats::default();
        for (key, rows) in groups {
            let dir = self.root.join(dataset.name()).join(directory_of(&key));
            stats.bytes += self.commit_file(&dir, name, &encode(&rows)?, dataset)?;
            stats.files += 1;
            stats.rows += rows.len() as u64;
        }
        Ok(stats)
    }

    /// Encodes `batch` as zstd Parquet under a hidden temporary name, syncs
    /// it, renames it into place and syncs the directory. Returns its size.
    fn commit_file(
        &self,
        dir: &Path,
        name: &str,
        batch: &RecordBatch,
        dataset: Dataset,
    ) -> Result<u64, Error> {
        fs::create_dir_all(dir).map_err(io("creating directory", dir))?;
        let tmp = dir.join(format!(".{name}.tmp"));
        let final_path = dir.join(name);
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        // Level 1: in alternating 2M-event drains it was a little faster
        // than level 3 (14.8 s against 15.6 s), and the events came out no
        // larger (99.9 MB against 101.1).
        let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(
            ZstdLevel::try_new(1).expect("valid zstd level"),
        ));
        // Columns where nearly every value is distinct: a dictionary is
        // built for every page only to be thrown away (in alternating
        // 2M-event drains the worker used 14.4 CPU-seconds without it,
        // 15.9 with it).
        for column in UNIQUE_COLUMNS {
            props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
        }
        // Nobody filters on the raw JSON by range: min/max statistics of
        // it would only cost comparisons of every payload.
        props = props
            .set_column_statistics_enabled(ColumnPath::from("payload"), EnabledStatistics::None);
        let props = props
            .set_created_by(concat!("newsflow ", env!("CARGO_PKG_VERSION")).to_string())
            .build();
        let encode_error = |e: parquet::errors::ParquetError| Error::Encode {
            dataset: dataset.name(),
            message: e.to_string(),
        };
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), Some(props)).map_err(encode_error)?;
        writer.write(batch).map_err(encode_error)?;
        let file = writer.into_inner().map_err(encode_error)?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        let bytes = file.metadata().map_err(io("reading size of", &tmp))?.len();
        drop(file);
        fs::rename(&tmp, &final_path).map_err(io("renaming into place", &final_path))?;
        sync_dir(dir)?;
        Ok(bytes)
    }

    fn checkpoint_path(&self, shard: i32) -> PathBuf {
        self.root
            .join(CHECKPOINT_DIR)
            .join(format!("shard-{shard:05}.ckpt"))
    }

    /// Where format 1 kept the checkpoint of `shard`.
    fn legacy_checkpoint_path(&self, shard: i32) -> PathBuf {
        self.root
            .join(CHECKPOINT_DIR)
            .join(format!("shard-{shard:05}.json"))
    }

    /// Reads the checkpoint of `shard`, if one was ever written (in the
    /// current format, or else in format 1).
    pub fn load_checkpoint(&self, shard: i32) -> Result<Option<Checkpoint>, Error> {
        let path = self.checkpoint_path(shard);
        let corrupt = |message: String| Error::CorruptCheckpoint {
            path: path.clone(),
            message,
        };
        let checkpoint: Checkpoint = match fs::read(&path) {
            Ok(bytes) => {
                let body = bytes.strip_prefix(Checkpoint::MAGIC).ok_or_else(|| {
                    corrupt("it does not start like a newsflow checkpoint".into())
                })?;
                postcard::from_bytes(body).map_err(|e| corrupt(e.to_string()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return self.load_legacy_checkpoint(shard);
            }
            Err(e) => return Err(io("reading checkpoint", &path)(e)),
        };
        if checkpoint.format != Checkpoint::FORMAT || checkpoint.shard != shard {
            return Err(corrupt(format!(
                "format {} shard {} where format {} shard {shard} was expected",
                checkpoint.format,
                checkpoint.shard,
                Checkpoint::FORMAT
            )));
        }
        Ok(Some(checkpoint))
    }

    /// Reads a format-1 (JSON) checkpoint of `shard`, if there is one, in
    /// the current form.
    fn load_legacy_checkpoint(&self, shard: i32) -> Result<Option<Checkpoint>, Error> {
        let path = self.legacy_checkpoint_path(shard);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("reading checkpoint", &path)(e)),
        };
        let corrupt = |message: String| Error::CorruptCheckpoint {
            path: path.clone(),
            message,
        };
        let v1: CheckpointV1 =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if v1.format != 1 || v1.shard != shard {
            return Err(corrupt(format!(
                "format {} shard {} where format 1 shard {shard} was expected",
                v1.format, v1.shard
            )));
        }
        Ok(Some(v1.into()))
    }

    /// Replaces the checkpoint of `shard` atomically and durably: after
    /// flush `seq`, `state` reflects every record below `offsets`.
    pub fn save_checkpoint(
        &self,
        shard: i32,
        seq: u64,
        offsets: &BTreeMap<String, i64>,
        state: &newsflow_core::Shard,
    ) -> Result<(), Error> {
        self.write_checkpoint(&EncodedCheckpoint::encode(shard, seq, offsets, state)?)
    }

    /// Writes a checkpoint encoded earlier, atomically and durably, and
    /// removes a format-1 checkpoint it supersedes.
    pub fn write_checkpoint(&self, checkpoint: &EncodedCheckpoint) -> Result<(), Error> {
        let shard = checkpoint.shard;
        write_atomically(&self.checkpoint_path(shard), &checkpoint.bytes)?;
        // The format-1 file must not be read if this one is ever removed.
        let legacy = self.legacy_checkpoint_path(shard);
        match fs::remove_file(&legacy) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io("removing superseded checkpoint", &legacy)(e))
            }
            _ => Ok(()),
        }
    }

    fn cold_dir(&self, shard: i32) -> PathBuf {
        self.root
            .join(CHECKPOINT_DIR)
            .join("cold")
            .join(format!("shard-{shard:05}"))
    }

    /// Stores the articles that left memory in flush `seq` of `shard`, as
    /// an immutable segment, atomically and durably. It must be written
    /// before the checkpoint of `seq`, which refers to it.
    pub fn write_cold_segment(
        &self,
        shard: i32,
        seq: u64,
        articles: &[(String, ColdArticle)],
    ) -> Result<(), Error> {
        let path = self.cold_dir(shard).join(format!("segment-{seq:010}.json"));
        let map: BTreeMap<&str, &ColdArticle> =
            articles.iter().map(|(id, a)| (id.as_str(), a)).collect();
        write_json_atomically(&path, &map, "cold segment")
    }

    /// Reads a cold segment of `shard` back: article id → what remained of it.
    pub fn load_cold_segment(
        &self,
        shard: i32,
        seq: u64,
    ) -> Result<HashMap<String, ColdArticle>, Error> {
        let path = self.cold_dir(shard).join(format!("segment-{seq:010}.json"));
        let bytes = fs::read(&path).map_err(io("reading cold segment", &path))?;
        serde_json::from_slice(&bytes).map_err(|e| Error::CorruptCheckpoint {
            path,
            message: e.to_string(),
        })
    }

    /// Deletes the data files of `shard` with a sequence number above
    /// `checkpointed_seq` (written by a run that crashed before its
    /// checkpoint), and any temporary files of the shard. Returns how many
    /// files were removed. The records they held will be read and written
    /// again from the checkpoint's offsets.
    pub fn remove_uncheckpointed(&self, shard: i32, checkpointed_seq: u64) -> Result<usize, Error> {
        let mut removed = 0;
        for dataset in Dataset::ALL {
            let dir = self.root.join(dataset.name());
            removed += remove_matching(&dir, &|name: &str| {
                // A temporary file is never part of the output, whatever its
                // sequence number; a final file is, up to the checkpoint.
                if let Some(tmp_of) = name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) {
                    return matches!(parse_file_name(tmp_of), Some((s, _)) if s == shard);
                }
                matches!(parse_file_name(name), Some((s, seq)) if s == shard && seq > checkpointed_seq)
            })?;
        }
        // Cold segments past the checkpoint belong to the same crashed run.
        removed += remove_matching(&self.cold_dir(shard), &|name: &str| {
            let name = name
                .strip_prefix('.')
                .and_then(|n| n.strip_suffix(".tmp"))
                .map_or(name, |n| n);
            name.strip_prefix("segment-")
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|seq| seq > checkpointed_seq)
        })?;
        Ok(removed)
    }
}

fn remove_matching(dir: &Path, doomed: &dyn Fn(&str) -> bool) -> Result<usize, Error> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("listing", dir)(e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.map_err(io("listing", dir))?;
        let path = entry.path();
        let file_type = entry.file_type().map_err(io("inspecting", &path))?;
        if file_type.is_dir() {
            removed += remove_matching(&path, doomed)?;
        } else if doomed(&entry.file_name().to_string_lossy()) {
            fs::remove_file(&path).map_err(io("removing", &path))?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Writes `value` as JSON to `path` atomically; see [`write_atomically`].
fn write_json_atomically<T: serde::Serialize>(
    path: &Path,
    value: &T,
    what: &'static str,
) -> Result<(), Error> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Encode {
        dataset: what,
        message: e.to_string(),
    })?;
    write_atomically(path, &bytes)
}

/// Writes `bytes` to `path` so that readers see the old file or the whole
/// new one, never a part: a hidden temporary file in the same directory,
/// synced, renamed into place, and the directory synced.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    let dir = path.parent().expect("a file path has a parent");
    fs::create_dir_all(dir).map_err(io("creating directory", dir))?;
    let name = path
        .file_name()
        .expect("a file path has a name")
        .to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = File::create(&tmp).map_err(io("creating", &tmp))?;
    file.write_all(bytes).map_err(io("writing", &tmp))?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(io("renaming into place", path))?;
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}
