//! The Parquet lake: where counts and raw events become files analysts can
//! query, and where the worker keeps the checkpoints that make the output
//! exactly-once.
//!
//! Layout under the output root (Hive-style directories):
//!
//! ```text
//! article_totals/date=YYYY-MM-DD/part-SSSSS-NNNNNNNNNN.parquet
//! article_engagement/date=YYYY-MM-DD/part-SSSSS-NNNNNNNNNN.parquet
//! events/event_type=T/date=YYYY-MM-DD/part-SSSSS-NNNNNNNNNN.parquet
//! _checkpoints/shard-SSSSS.ckpt
//! _checkpoints/cold/shard-SSSSS/segment-NNNNNNNNNN.json
//! ```
//!
//! `SSSSS` is the shard (the partition number shared by the co-partitioned
//! event topics) and `NNNNNNNNNN` the shard's flush sequence number. A file's
//! name is therefore decided by what it holds, not by who wrote it or when,
//! which is what lets a restarted worker find and remove the files a crashed
//! run wrote past its last checkpoint.
//!
//! **Architecture invariant:** a file is visible under its final name only
//! once it is complete and synced (write to a hidden temporary name, fsync,
//! rename, fsync the directory), and a checkpoint with sequence `n` is
//! written only after every file with sequence `≤ n` of its shard is.
//!
//! This crate knows nothing about Kafka clients; offsets are plain numbers.

mod checkpoint;
mod datasets;
mod files;

pub use checkpoint::{Checkpoint, EncodedCheckpoint};
pub use datasets::{Dataset, EventRow, FlushBatch, WriteStats};
pub use files::Lake;

/// What can go wrong writing or reading the lake.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file system operation failed.
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
    /// Arrow or Parquet encoding failed.
    #[error("lake: encoding {dataset}: {message}")]
    Encode {
        /// The dataset being written.
        dataset: &'static str,
        /// The encoder's message.
        message: String,
    },
    /// A checkpoint exists but cannot be read back.
    #[error("lake: checkpoint {path} is unreadable: {message}")]
    CorruptCheckpoint {
        /// The checkpoint file.
        path: std::path::PathBuf,
        /// What the decoder said.
        message: String,
    },
}
