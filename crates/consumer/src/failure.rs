//! Why the worker could not count or write, as one type. Each variant says
//! which `stage` of `newsflow_flush_failures_total` it is, and its text is
//! what `/readyz` reports, so the run loop steers by the variant instead of
//! by a string.

use newsflow_telemetry::FlushStage;

/// A failure of the worker's output path.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Kafka did not acknowledge the dead letters; no checkpoint may cover
    /// their records yet, so the flush is postponed.
    #[error("dead letters not acknowledged: {0}")]
    DeadLetters(String),
    /// The lake could not be written or committed.
    #[error("output not writable: {0}")]
    Output(String),
    /// A shard could not be restored from the tables' logs.
    #[error("shard {shard} cannot be restored: {reason}")]
    Restore {
        /// The shard.
        shard: i32,
        /// What the lake said.
        reason: String,
    },
    /// A cold segment could not be read back to bring an article home.
    #[error("shard {shard}: cold segment {segment} cannot be read: {reason}")]
    ColdSegment {
        /// The shard.
        shard: i32,
        /// The segment's number.
        segment: u64,
        /// What the lake said.
        reason: String,
    },
    /// A shard's checkpoint could not be encoded.
    #[error("shard {shard}: encoding the checkpoint failed: {reason}")]
    Checkpoint {
        /// The shard.
        shard: i32,
        /// What the encoder said.
        reason: String,
    },
}

impl Failure {
    /// The `stage` label it counts under.
    pub fn stage(&self) -> FlushStage {
        match self {
            Failure::DeadLetters(_) => FlushStage::DeadLetters,
            _ => FlushStage::Output,
        }
    }

    /// What `/readyz` says while it lasts.
    pub fn readiness_reason(&self) -> String {
        self.to_string()
    }
}
