//! Vacuum: deletes what no reader within the retention and no shard can
//! need any more. Three kinds of files pile up:
//!
//! - **data files** no longer in the log (replaced by compaction) or never
//!   in it (written by a writer that crashed or was fenced);
//! - **log entries** older than the log retention, once a log checkpoint
//!   after them makes them unnecessary for every version readers may open;
//! - **shard files** (claims and checkpoints) older than the whole
//!   checkpoint a restore of their shard would start from.
//!
//! **Which data files go.** A file goes only if (1) the latest version does
//! not hold it, (2) the version that was latest at the retention cutoff did
//! not hold it either, so no reader that opened the table within the
//! retention can be reading it, (3) it was written before the cutoff, so no
//! writer is still about to commit it, and (4) it is not a worker's file of
//! a flush its shard has yet to commit to this table (a restore rolls such
//! a flush forward from its manifest, so the file must stay however old).
//! A file that was in the table at the cutoff and removed since is in
//! version (2); one written and removed since the cutoff is young (3).
//!
//! **Whatever the retention, no file written within [`FRESH_FILE_GUARD`]
//! is deleted.** Rule (3) alone would let a retention of zero (allowed only
//! with `vacuum.allow_unsafe_retention`) delete a compaction's new file in
//! the moment between its write and its commit, leaving the log pointing
//! at nothing.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use object_store::ObjectMeta;

use super::live_files::{live_files, path_set};
use crate::delta::{Engine, Table};
use crate::shard_files;
use crate::store::Store;
use crate::Error;

/// What vacuum did to one table.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableVacuum {
    /// The table's folder name.
    pub table: &'static str,
    /// Data files deleted, and their bytes.
    pub data_files_deleted: u64,
    /// Bytes of the data files deleted.
    pub bytes_deleted: u64,
    /// Data files outside the log kept, because they are younger than the
    /// retention, were in the table at the cutoff, or wait for their
    /// shard's flush to be committed.
    pub data_files_kept: u64,
    /// Log entries (commits, checkpoints, checksums) deleted.
    pub log_files_deleted: u64,
}

/// What vacuum did to the shards' files.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardFilesVacuum {
    /// Claims and checkpoints deleted.
    pub files_deleted: u64,
}

/// The log version a file of the log belongs to, from its name
/// (`00000000000000000042.json`, `….checkpoint.parquet`, `….crc`).
fn log_version(name: &str) -> Option<(u64, &str)> {
    let (digits, kind) = name.split_at_checked(20)?;
    let version = digits.parse().ok()?;
    Some((version, kind))
}

/// The `(shard, seq)` of a worker's data file (`part-SSSSS-QQQ….zstd.parquet`).
fn worker_file(name: &str) -> Option<(i32, u64)> {
    let rest = name.strip_prefix("part-")?.strip_suffix(".zstd.parquet")?;
    let (shard, seq) = rest.split_once('-')?;
    Some((shard.parse().ok()?, seq.parse().ok()?))
}

fn older_than(meta: &ObjectMeta, cutoff: SystemTime) -> bool {
    SystemTime::from(meta.last_modified) < cutoff
}

/// The object listing of a table's log: version → its files.
pub(crate) type LogListing = BTreeMap<u64, Vec<ObjectMeta>>;

/// Lists the table's log once, for both what vacuum opens and what it
/// expires.
pub(crate) fn log_listing(store: &Store, table: &Table) -> Result<LogListing, Error> {
    let prefix = store.path(&format!("{}/_delta_log/", table.dataset.name()));
    let mut versions: BTreeMap<u64, Vec<ObjectMeta>> = BTreeMap::new();
    for meta in store.list_all(prefix)? {
        if let Some((version, _)) = meta.location.filename().and_then(log_version) {
            versions.entry(version).or_default().push(meta);
        }
    }
    Ok(versions)
}

fn is_commit(meta: &ObjectMeta) -> bool {
    meta.location
        .filename()
        .is_some_and(|n| n.ends_with(".json"))
}

fn is_checkpoint(meta: &ObjectMeta) -> bool {
    meta.location
        .filename()
        .is_some_and(|n| n.contains(".checkpoint."))
}

/// Deletes the log entries before the newest log checkpoint whose commit
/// is older than `cutoff`: every version from that checkpoint on (which
/// includes every version of the retention) can still be opened.
pub(crate) fn expire_log(
    store: &Store,
    listing: &LogListing,
    cutoff: SystemTime,
) -> Result<u64, Error> {
    let Some(keep_from) = listing
        .iter()
        .filter(|(_, files)| {
            files.iter().any(is_checkpoint)
                && files.iter().any(|f| is_commit(f) && older_than(f, cutoff))
        })
        .map(|(version, _)| *version)
        .next_back()
    else {
        return Ok(0);
    };
    let mut deleted = 0;
    for (_, files) in listing.range(..keep_from) {
        for file in files {
            if older_than(file, cutoff) {
                store.delete(file.location.clone())?;
                deleted += 1;
            }
        }
    }
    Ok(deleted)
}

/// The version that was the latest at `cutoff`, if the table had one.
fn version_at(listing: &LogListing, cutoff: SystemTime) -> Option<u64> {
    listing
        .iter()
        .filter(|(_, files)| files.iter().any(|f| is_commit(f) && older_than(f, cutoff)))
        .map(|(version, _)| *version)
        .next_back()
}

/// Deletes the data files of `table` that no reader within the retention
/// and no shard can need (see the module's rules).
pub(crate) fn vacuum_data_files(
    store: &Store,
    engine: &Engine,
    table: &Table,
    listing: &LogListing,
    (cutoff, written_before): (SystemTime, SystemTime),
) -> Result<TableVacuum, Error> {
    let mut report = TableVacuum {
        table: table.dataset.name(),
        ..TableVacuum::default()
    };
    // Listed before the log is read: a file committed after this listing
    // is either not in it or young.
    let folder = format!("{}/", table.dataset.name());
    let objects = data_files_in(store, &folder)?;
    let snapshot = table.refresh(engine)?;
    let live_now = path_set(&live_files(engine, &snapshot)?);
    let live_then = match version_at(listing, cutoff) {
        Some(version) => {
            let then = table.snapshot_at(version)?;
            path_set(&live_files(engine, &then)?)
        }
        None => Default::default(),
    };
    let root_prefix = store.path(&folder).to_string();
    // The last flush each shard committed, read once per shard.
    let mut committed: HashMap<i32, u64> = HashMap::new();
    let committed_of = |shard: i32, known: &mut HashMap<i32, u64>| -> Result<u64, Error> {
        if let Some(seq) = known.get(&shard) {
            return Ok(*seq);
        }
        let seq = table.committed_seq(engine, &snapshot, shard)?;
        known.insert(shard, seq);
        Ok(seq)
    };
    for object in objects {
        let full = object.location.to_string();
        let Some(relative) = full
            .strip_prefix(&root_prefix)
            .map(|r| r.trim_start_matches('/'))
        else {
            continue;
        };
        if live_now.contains(relative) {
            continue;
        }
        let pending = match object.location.filename().and_then(worker_file) {
            Some((shard, seq)) => seq > committed_of(shard, &mut committed)?,
            None => false,
        };
        if live_then.contains(relative) || !older_than(&object, written_before) || pending {
            report.data_files_kept += 1;
            continue;
        }
        store.delete(object.location.clone())?;
        report.data_files_deleted += 1;
        report.bytes_deleted += object.size;
    }
    Ok(report)
}

/// The Parquet files below a table's `folder`, its log aside.
fn data_files_in(store: &Store, folder: &str) -> Result<Vec<ObjectMeta>, Error> {
    Ok(store
        .list_all(store.path(folder))?
        .into_iter()
        .filter(|o| {
            let path = o.location.as_ref();
            !path.contains("/_delta_log/") && path.ends_with(".parquet")
        })
        .collect())
}

/// Deletes the claims and checkpoints of every shard that are older than
/// `cutoff` and older than the whole checkpoint a restore would start
/// from: the one the chain of the flush all tables have committed for the
/// shard starts at (a restore reads that flush's checkpoint, or the one
/// after it, and the checkpoints of changes back to that whole one). Cold
/// segments stay: they hold articles that left memory.
pub(crate) fn vacuum_shard_files(
    store: &Store,
    engine: &Engine,
    tables: &[Table],
    cutoff: SystemTime,
) -> Result<ShardFilesVacuum, Error> {
    let mut report = ShardFilesVacuum::default();
    let objects = store.list_all(store.path("_newsflow/shards/"))?;
    let snapshots = tables
        .iter()
        .map(|t| t.refresh(engine).map(|s| (t, s)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut settled: HashMap<i32, u64> = HashMap::new();
    for object in objects {
        let path = object.location.as_ref();
        let mut parts = path.rsplit('/');
        let (Some(name), Some(shard)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(shard) = shard.parse::<i32>() else {
            continue;
        };
        let seq = name
            .strip_prefix("claim-")
            .or_else(|| name.strip_prefix("checkpoint-"))
            .and_then(|digits| digits.parse::<u64>().ok());
        let Some(seq) = seq else {
            continue;
        };
        let keep_from = match settled.get(&shard) {
            Some(seq) => *seq,
            None => {
                let mut lowest = u64::MAX;
                for (table, snapshot) in &snapshots {
                    lowest = lowest.min(table.committed_seq(engine, snapshot, shard)?);
                }
                let keep_from = match lowest {
                    0 => 0,
                    settled => shard_files::load_checkpoint_head(store, shard, settled)?.base,
                };
                settled.insert(shard, keep_from);
                keep_from
            }
        };
        if seq < keep_from && older_than(&object, cutoff) {
            store.delete(object.location.clone())?;
            report.files_deleted += 1;
        }
    }
    Ok(report)
}

/// How old a data or shard file must be before vacuum may delete it, even
/// with a shorter retention: longer than any compaction's write-to-commit
/// and any flush's, by a wide margin.
pub const FRESH_FILE_GUARD: Duration = Duration::from_secs(3600);

/// `now - retention`, or the epoch for a retention longer than time.
pub(crate) fn cutoff(now: SystemTime, retention: Duration) -> SystemTime {
    now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The time before which a file must have been written to be deleted:
/// the retention's cutoff, or [`FRESH_FILE_GUARD`] ago if that is earlier.
pub(crate) fn written_cutoff(now: SystemTime, retention: Duration) -> SystemTime {
    cutoff(now, retention.max(FRESH_FILE_GUARD))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_names_give_their_version() {
        assert_eq!(
            log_version("00000000000000000042.json"),
            Some((42, ".json"))
        );
        assert_eq!(
            log_version("00000000000000000100.checkpoint.parquet"),
            Some((100, ".checkpoint.parquet"))
        );
        assert_eq!(log_version("_last_checkpoint"), None);
    }

    #[test]
    fn worker_file_names_give_shard_and_flush() {
        assert_eq!(
            worker_file("part-00003-00000000000000000017.zstd.parquet"),
            Some((3, 17))
        );
        assert_eq!(
            worker_file("part-compacted-0b5e3c8e-7a5b-4c1e-9d0e-2f1a3b4c5d6e.zstd.parquet"),
            None
        );
    }
}
