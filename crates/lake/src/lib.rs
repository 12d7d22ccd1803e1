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
mod flush;
mod footers;
mod lake;
mod location;
mod log_fallback;
mod maintenance;
mod observed;
mod retry;
mod shard_files;
mod store;

pub use archive::{ArchivedEvents, EventArchive, EventRow, EventTimes};
pub use checkpoint::{Checkpoint, CheckpointChain, EncodedCheckpoint, MAX_PATCHES};
pub use datasets::{Dataset, FlushBatch, WriteStats};
pub use flush::{FlushError, FlushObserver, Restored, ShardFlush, ShardOutcome};
pub use footers::{Commit, FileRead, FooterRow, FooterSource, LogTail, MalformedRow, TableState};
pub use lake::Lake;
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
    #[error("lake: {op} {path}: {source}")]
    Store {
        /// What we tried.
        op: &'static str,
        /// The object it was about.
        path: String,
        /// What the store said.
        #[source]
        source: object_store::Error,
    },
    /// The Delta kernel refused or failed.
    #[error("lake: {context}: {source}")]
    Delta {
        /// What we were doing (and on which table).
        context: String,
        /// What the kernel said (a `delta_kernel::Error`, or what we found
        /// wrong in its answer).
        #[source]
        source: BoxError,
    },
    /// Other writers won the race for a table's next version this many
    /// times in a row.
    #[error("lake: {table}: lost {races} commit races in a row")]
    LostRaces {
        /// The table.
        table: String,
        /// Races lost.
        races: u32,
    },
    /// A setting is unusable; `key` names it.
    #[error("{key}: {message}")]
    Config {
        /// The configuration key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A setting was refused by the library it configures; `key` names it.
    #[error("{key}: {source}")]
    Setting {
        /// The configuration key.
        key: String,
        /// The library's error.
        #[source]
        source: BoxError,
    },
    /// Arrow, Parquet or postcard encoding failed.
    #[error("lake: encoding {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: String,
        /// The encoder's error.
        #[source]
        source: BoxError,
    },
    /// A data file of the lake cannot be read back.
    #[error("lake: {path} cannot be read: {source}")]
    Decode {
        /// The file, below its table.
        path: String,
        /// The decoder's error.
        #[source]
        source: BoxError,
    },
    /// A checkpoint exists but cannot be read back.
    #[error("lake: checkpoint {path} is unreadable: {message}{}", caused(.source))]
    CorruptCheckpoint {
        /// The checkpoint's path below the root.
        path: String,
        /// What is wrong with it.
        message: String,
        /// The decoder's error, if one said so.
        #[source]
        source: Option<BoxError>,
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
    #[error("lake: cold segment {path} is unreadable: {source}")]
    CorruptColdSegment {
        /// The segment's path below the root.
        path: String,
        /// What the decoder said.
        #[source]
        source: serde_json::Error,
    },
    /// The tables and the shard files disagree in a way the protocol rules
    /// out (another writer is active, or files were edited by hand).
    #[error("lake: {0}")]
    Inconsistent(String),
}

/// Any error, boxed: the source of an error whose cause may be of several
/// types (Arrow, Parquet, postcard).
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `": <cause>"`, or nothing: an optional cause in a message.
fn caused(source: &Option<BoxError>) -> String {
    source
        .as_ref()
        .map(|e| format!(": {e}"))
        .unwrap_or_default()
}

impl Error {
    /// Whether the object asked for is not in the store.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }
        )
    }

    /// Whether the same work can succeed when tried again: the store, the
    /// network or the file system failed, or other writers won a race.
    /// The rest is permanent until someone acts: a damaged or newer
    /// checkpoint or segment, a bad setting, an encoder's refusal, logs
    /// that contradict the shard files. The worker retries transient
    /// failures with a back-off (not ready meanwhile) and stops on
    /// permanent ones, naming them, instead of retrying them forever.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Io { .. } | Error::Store { .. } | Error::LostRaces { .. } => true,
            // The kernel reads and writes through the store; what it
            // refuses on its own (a protocol it does not support) shows at
            // start-up, not in the middle of a run.
            Error::Delta { .. } => true,
            // Another worker active on the same shard: the group settles
            // it, and the restore after that finds a consistent lake.
            Error::Inconsistent(_) => true,
            Error::Config { .. }
            | Error::Setting { .. }
            | Error::Encode { .. }
            | Error::Decode { .. }
            | Error::CorruptCheckpoint { .. }
            | Error::NewerCheckpoint { .. }
            | Error::CorruptColdSegment { .. } => false,
        }
    }
}
