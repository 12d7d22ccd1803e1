//! The lake: three Delta Lake tables of zstd Parquet under one output root
//! (a local path or object storage), written exactly once per shard and
//! fenced against writers that lost their shard.
//!
//! ```text
//! article_totals/      _delta_log/ + emitted_date=YYYY-MM-DD/part-….parquet
//! article_engagement/  _delta_log/ + window_date=YYYY-MM-DD/part-….parquet
//! events/              _delta_log/ + event_type=T/occurred_date=YYYY-MM-DD/part-….parquet
//! _newsflow/shards/SSSSS/  claims, checkpoints and cold segments of each shard
//! ```
//!
//! A table's content is what its transaction log says; the folders can hold
//! files of crashed or fenced writers that no log entry names. How a flush
//! becomes part of the three logs, and how a shard resumes from them, is in
//! [`Lake`]'s module (`lake.rs`); fencing in `delta.rs`.
//!
//! **Architecture invariant:** nothing in the lake is ever overwritten: every
//! file is created once, under a name no other writer can hold (its sequence
//! number was claimed first). This crate knows nothing about Kafka clients;
//! offsets are plain numbers.

mod archive;
mod checkpoint;
mod data_files;
mod datasets;
mod delta;
mod failpoint;
mod lake;
mod location;
mod log_fallback;
mod maintenance;
mod observed;
mod shard_files;
mod store;

pub use archive::{ArchivedEvents, EventArchive, EventRow};
pub use checkpoint::{Checkpoint, CheckpointChain, EncodedCheckpoint, MAX_PATCHES};
pub use datasets::{Dataset, FlushBatch, WriteStats};
pub use lake::{FlushError, FlushObserver, Lake, Restored, ShardFlush, ShardOutcome};
pub use maintenance::{
    CompactionLimits, LogCheckpoint, ShardFilesVacuum, TableCompaction, TableFailure, TableVacuum,
    Upkeep, Vacuum, FRESH_FILE_GUARD,
};

/// What can go wrong writing or reading the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A local file system operation failed (creating the output root).
    #[error("lake: {op} {path}: {source}")]
    Io {
        /// What we tried.
        op: &'static str,
        /// The path it was about.
        path: std::path::PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The object store failed.
    #[error("lake: {op} {path}: {message}")]
    Store {
        /// What we tried.
        op: &'static str,
        /// The object it was about.
        path: String,
        /// What the store said.
        message: String,
    },
    /// The Delta kernel refused or failed.
    #[error("lake: {context}: {message}")]
    Delta {
        /// What we were doing.
        context: &'static str,
        /// What the kernel said.
        message: String,
    },
    /// A setting is unusable; `key` names it.
    #[error("{key}: {message}")]
    Config {
        /// The configuration key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// Arrow or Parquet encoding failed.
    #[error("lake: encoding {dataset}: {message}")]
    Encode {
        /// What was being encoded.
        dataset: &'static str,
        /// The encoder's message.
        message: String,
    },
    /// A checkpoint exists but cannot be read back.
    #[error("lake: checkpoint {path} is unreadable: {message}")]
    CorruptCheckpoint {
        /// The checkpoint's path below the root.
        path: String,
        /// What the decoder said.
        message: String,
    },
    /// A checkpoint was written by a newer release, in a format this one
    /// does not read: the shard waits for a worker of that release (a
    /// rollback past a format change is not supported).
    #[error(
        "lake: checkpoint {path} is of format {found}, written by a newer release; \
         this release reads formats {oldest} to {newest}"
    )]
    NewerCheckpoint {
        /// The checkpoint's path below the root.
        path: String,
        /// Its format.
        found: u32,
        /// The oldest format this release reads.
        oldest: u32,
        /// The format this release writes.
        newest: u32,
    },
    /// A cold segment (articles that left memory) exists but cannot be
    /// read back.
    #[error("lake: cold segment {path} is unreadable: {message}")]
    CorruptColdSegment {
        /// The segment's path below the root.
        path: String,
        /// What the decoder said.
        message: String,
    },
    /// The tables and the shard files disagree in a way the protocol rules
    /// out (another writer is active, or files were edited by hand).
    #[error("lake: {0}")]
    Inconsistent(String),
}
