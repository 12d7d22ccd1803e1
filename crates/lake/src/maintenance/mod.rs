//! Upkeep of the lake beside the workers, for `newsflow-lake`: compaction
//! of small files, log checkpoints, and vacuum of files, log entries and
//! shard files nobody can need any more. Each is safe while workers write;
//! the rules are in the submodules.

mod compaction;
mod live_files;
mod vacuum;

use std::time::{Duration, SystemTime};

pub use compaction::{CompactionLimits, TableCompaction};
pub use vacuum::{ShardFilesVacuum, TableVacuum};

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
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Vacuum {
    /// Per table.
    pub tables: Vec<TableVacuum>,
    /// The shards' own files.
    pub shard_files: ShardFilesVacuum,
}

impl Lake {
    /// Compacts every table: small files bin-packed into files of about
    /// the target size, ordered by `article_id`.
    pub fn compact(&self, limits: CompactionLimits) -> Result<Vec<TableCompaction>, Error> {
        let (store, engine, tables) = self.parts();
        tables
            .iter()
            .map(|table| compaction::compact_table(store, engine, table, limits))
            .collect()
    }

    /// Writes a log checkpoint of every table's latest version, so that
    /// opening a table reads one Parquet file instead of its whole log.
    pub fn checkpoint_logs(&self) -> Result<Vec<LogCheckpoint>, Error> {
        let (_, engine, tables) = self.parts();
        tables
            .iter()
            .map(|table| {
                let snapshot = table.refresh(engine)?;
                let (result, _) = snapshot
                    .checkpoint(engine, None)
                    .map_err(|e| Error::Delta {
                        context: "writing a log checkpoint",
                        message: e.to_string(),
                    })?;
                Ok(LogCheckpoint {
                    table: table.dataset.name(),
                    version: snapshot.version(),
                    written: matches!(
                        result,
                        delta_kernel::snapshot::CheckpointWriteResult::Written
                    ),
                })
            })
            .collect()
    }

    /// Deletes data files no reader within `retention` and no shard can
    /// need, log entries older than `log_retention` that a log checkpoint
    /// has made unnecessary, and shard claims and checkpoints older than
    /// the whole checkpoint a restore of their shard would start from. `log_retention` must not be shorter
    /// than `retention`: vacuum opens the version that was latest at the
    /// retention's cutoff.
    pub fn vacuum(&self, retention: Duration, log_retention: Duration) -> Result<Vacuum, Error> {
        if log_retention < retention {
            return Err(Error::Config {
                key: "vacuum.log_retention".into(),
                message: "must not be shorter than vacuum.retention".into(),
            });
        }
        let (store, engine, tables) = self.parts();
        let now = SystemTime::now();
        let files_cutoff = vacuum::cutoff(now, retention);
        let log_cutoff = vacuum::cutoff(now, log_retention);
        let mut report = Vacuum::default();
        for table in tables {
            let listing = vacuum::log_listing(store, table)?;
            let mut table_report =
                vacuum::vacuum_data_files(store, engine, table, &listing, files_cutoff)?;
            table_report.log_files_deleted = vacuum::expire_log(store, &listing, log_cutoff)?;
            report.tables.push(table_report);
        }
        report.shard_files = vacuum::vacuum_shard_files(store, engine, tables, files_cutoff)?;
        Ok(report)
    }
}
