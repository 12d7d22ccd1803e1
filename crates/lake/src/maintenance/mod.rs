//! Upkeep of the lake beside the workers, for `newsflow-lake`: compaction
//! of small files, log checkpoints, and vacuum of files, log entries and
//! shard files nobody can need any more. Each is safe while workers write;
//! the rules are in the submodules.

mod compaction;
pub(crate) mod live_files;
mod vacuum;

use std::time::{Duration, SystemTime};

pub use compaction::{CompactionLimits, TableCompaction};
pub use vacuum::{ShardFilesVacuum, TableVacuum, FRESH_FILE_GUARD};

use crate::delta::Table;
use crate::{Error, Lake};

/// A log checkpoint written (or found) for one table.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LogCheckpoint {
    /// The table's folder name.
    pub table: &'static str,
    /// The version it covers.
    pub version: u64,
    /// False if the latest version had one already.
    pub written: bool,
}

/// What one vacuum did.
#[derive(Debug, Default)]
pub struct Vacuum {
    /// Per table that was vacuumed.
    pub tables: Vec<TableVacuum>,
    /// The shards' own files (none deleted when any table failed: which
    /// of them a restore needs is read from every table's log).
    pub shard_files: ShardFilesVacuum,
    /// Tables that could not be vacuumed, with why.
    pub failed: Vec<TableFailure>,
}

/// Upkeep of one table that failed. The other tables' upkeep goes on: one
/// damaged log or missing data file must not stop checkpoints and vacuum
/// everywhere.
#[derive(Debug)]
pub struct TableFailure {
    /// The table's folder name (or `_newsflow/shards` for the shards'
    /// files).
    pub table: &'static str,
    /// Why, naming the file where there is one.
    pub error: Error,
}

/// What one upkeep step did per table: the tables done, and those that
/// failed.
#[derive(Debug)]
pub struct Upkeep<T> {
    /// One report per table done.
    pub done: Vec<T>,
    /// Tables that failed, with why.
    pub failed: Vec<TableFailure>,
}

impl<T> Upkeep<T> {
    /// Runs `step` on every table, keeping each table's outcome apart.
    fn each(tables: &[Table], step: impl Fn(&Table) -> Result<T, Error>) -> Self {
        let mut upkeep = Upkeep {
            done: Vec::new(),
            failed: Vec::new(),
        };
        for table in tables {
            match step(table) {
                Ok(report) => upkeep.done.push(report),
                Err(error) => upkeep.failed.push(TableFailure {
                    table: table.dataset.name(),
                    error,
                }),
            }
        }
        upkeep
    }
}

impl Lake {
    /// Compacts every table: small files bin-packed into files of about
    /// the target size, ordered by `article_id`.
    pub fn compact(&self, limits: CompactionLimits) -> Upkeep<TableCompaction> {
        let (store, engine, tables) = self.parts();
        Upkeep::each(tables, |table| {
            compaction::compact_table(store, engine, table, limits)
        })
    }

    /// Writes a log checkpoint of every table's latest version, so that
    /// opening a table reads one Parquet file instead of its whole log.
    pub fn checkpoint_logs(&self) -> Upkeep<LogCheckpoint> {
        let (_, engine, tables) = self.parts();
        Upkeep::each(tables, |table| {
            let snapshot = table.refresh(engine)?;
            Ok(LogCheckpoint {
                table: table.dataset.name(),
                version: snapshot.version(),
                written: table.checkpoint(&snapshot)?,
            })
        })
    }

    /// Deletes data files no reader within `retention` and no shard can
    /// need, log entries older than `log_retention` that a log checkpoint
    /// has made unnecessary, and shard claims and checkpoints older than
    /// the whole checkpoint a restore of their shard would start from. `log_retention` must not be shorter
    /// than `retention`: vacuum opens the version that was latest at the
    /// retention's cutoff. Whatever the retention, no data or shard file
    /// written within [`vacuum::FRESH_FILE_GUARD`] is deleted.
    pub fn vacuum(&self, retention: Duration, log_retention: Duration) -> Result<Vacuum, Error> {
        if log_retention < retention {
            return Err(Error::Config {
                key: "vacuum.log_retention".into(),
                message: "must not be shorter than vacuum.retention".into(),
            });
        }
        let (store, engine, tables) = self.parts();
        let now = SystemTime::now();
        let cutoffs = (
            vacuum::cutoff(now, retention),
            vacuum::written_cutoff(now, retention),
        );
        let log_cutoff = vacuum::cutoff(now, log_retention);
        let Upkeep { done, failed } = Upkeep::each(tables, |table| {
            let listing = vacuum::log_listing(store, table)?;
            let mut report = vacuum::vacuum_data_files(store, engine, table, &listing, cutoffs)?;
            report.log_files_deleted = vacuum::expire_log(store, &listing, log_cutoff)?;
            Ok(report)
        });
        let mut report = Vacuum {
            tables: done,
            failed,
            ..Vacuum::default()
        };
        if report.failed.is_empty() {
            match vacuum::vacuum_shard_files(store, engine, tables, cutoffs.1) {
                Ok(shard_files) => report.shard_files = shard_files,
                Err(error) => report.failed.push(TableFailure {
                    table: "_newsflow/shards",
                    error,
                }),
            }
        }
        Ok(report)
    }
}
