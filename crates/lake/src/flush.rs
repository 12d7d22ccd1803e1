//! What a flush and a restore hand across the lake's boundary: a shard's
//! part of a flush, its outcome and why it failed, where a restore
//! resumes, and the observer a flush reports to.

use std::sync::Arc;

use newsflow_core::ColdArticle;

use crate::checkpoint::{Checkpoint, CheckpointChain, EncodedCheckpoint};
use crate::datasets::{Dataset, FlushBatch, WriteStats};
use crate::Error;

/// Where a shard resumes, as the tables' logs say.
#[derive(Debug)]
pub struct Restored {
    /// The checkpoint of the shard's last committed flush, if it has one,
    /// with the whole state (rebuilt from the checkpoints before it if it
    /// holds only changes), taken as saved (see `Shard::mark_saved`).
    pub checkpoint: Option<Checkpoint>,
    /// Where the shard's checkpoints stand, for the next one.
    pub chain: CheckpointChain,
    /// That flush's sequence number (0 for none).
    pub committed: u64,
    /// The sequence number claimed for the shard's next flush.
    pub next_seq: u64,
    /// Tables a restore had to finish the last flush in (a crash between
    /// two commits), for the log.
    pub rolled_forward: usize,
}

/// One shard's part of a flush, cut on the run loop.
#[derive(Debug)]
pub struct ShardFlush {
    /// The state part of the checkpoint; it also names the shard, the
    /// claimed sequence number and the flush before it.
    pub checkpoint: EncodedCheckpoint,
    /// The rows to write.
    pub batch: FlushBatch,
    /// Articles that left memory in this flush.
    pub evicted: Vec<(String, ColdArticle)>,
}

impl ShardFlush {
    /// The shard.
    pub fn shard(&self) -> i32 {
        self.checkpoint.shard
    }
}

/// Why a shard's flush did not become part of the tables.
#[derive(Debug, thiserror::Error)]
pub enum FlushError {
    /// Another owner committed for the shard: this writer lost it and must
    /// not write to it again before restoring it from the log.
    #[error("fenced: {} holds flush {found} of another owner for this shard", table.name())]
    Fenced {
        /// The table that said so.
        table: Dataset,
        /// The sequence number the table holds for the shard.
        found: u64,
    },
    /// The shard was taken away (revoked or lost) during the flush; nothing
    /// more was written for it.
    #[error("the shard was taken away during its flush")]
    Abandoned,
    /// A step failed; the shard restarts from its last commit. One commit
    /// serves many shards, so its error is shared.
    #[error("{step}: {source}")]
    Failed {
        /// What the flush was doing.
        step: String,
        /// Why it failed.
        #[source]
        source: Arc<Error>,
    },
}

impl FlushError {
    pub(crate) fn failed(step: impl Into<String>, source: Error) -> Self {
        FlushError::Failed {
            step: step.into(),
            source: Arc::new(source),
        }
    }

    /// Whether flushing the shard again can succeed (see
    /// [`Error::is_transient`]); a fenced or abandoned shard is restored
    /// and goes on.
    pub fn is_transient(&self) -> bool {
        match self {
            FlushError::Failed { source, .. } => source.is_transient(),
            FlushError::Fenced { .. } | FlushError::Abandoned => true,
        }
    }
}

/// A shard's flush, done: the sequence number claimed for its next flush,
/// or why it did not land.
#[derive(Debug)]
pub struct ShardOutcome {
    /// The shard.
    pub shard: i32,
    /// The flush's sequence number.
    pub seq: u64,
    /// Its next sequence number, or the failure.
    pub result: Result<u64, FlushError>,
}

/// What a flush reports as it goes, for metrics.
pub trait FlushObserver: Sync {
    /// Files of `dataset` written (not yet committed).
    fn written(&self, dataset: Dataset, stats: WriteStats, seconds: f64);
    /// A checkpoint written.
    fn checkpointed(&self, seconds: f64);
    /// One commit attempt series on `dataset`: commits made, races lost
    /// and retried, shards fenced, and the time it took.
    fn committed(
        &self,
        dataset: Dataset,
        committed: u64,
        conflicts: u64,
        fenced: u64,
        seconds: f64,
    );
}
