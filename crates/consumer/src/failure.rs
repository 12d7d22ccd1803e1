//! Why the worker could not count or write, as one type. Each variant keeps
//! the error that caused it, says which `stage` of
//! `newsflow_flush_failures_total` it is, and whether it is transient: the
//! run loop steers by the variant and that class, never by a string.
//!
//! A transient failure (the store, the network, a race) is retried with a
//! back-off while `/readyz` reports it; a permanent one (a damaged or
//! newer checkpoint, an encoder's refusal) stops the worker with the error
//! and its causes, since retrying it would only hide it.

use newsflow_lake::FlushError;
use newsflow_telemetry::FlushStage;

/// Any error, boxed, as the dead-letter producer reports it.
type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure of the worker's output path.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Kafka did not acknowledge the dead letters; no checkpoint may cover
    /// their records yet, so the flush is postponed.
    #[error("dead letters not acknowledged: {0}")]
    DeadLetters(#[source] BoxError),
    /// A shard's flush could not be written or committed.
    #[error("output not writable: shard {shard}: {source}")]
    Output {
        /// The shard.
        shard: i32,
        /// What the lake said.
        #[source]
        source: FlushError,
    },
    /// A shard could not be restored from the tables' logs.
    #[error("shard {shard} cannot be restored: {source}")]
    Restore {
        /// The shard.
        shard: i32,
        /// What the lake said.
        #[source]
        source: newsflow_lake::Error,
    },
    /// A cold segment could not be read back to bring an article home.
    #[error("shard {shard}: cold segment {segment} cannot be read: {source}")]
    ColdSegment {
        /// The shard.
        shard: i32,
        /// The segment's number.
        segment: u64,
        /// What the lake said.
        #[source]
        source: newsflow_lake::Error,
    },
    /// A shard's checkpoint could not be encoded.
    #[error("shard {shard}: encoding the checkpoint failed: {source}")]
    Checkpoint {
        /// The shard.
        shard: i32,
        /// What the encoder said.
        #[source]
        source: newsflow_lake::Error,
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

    /// Whether the same work can succeed when tried again.
    pub fn is_transient(&self) -> bool {
        match self {
            // Kafka comes back; the producer's own retries have run out.
            Failure::DeadLetters(_) => true,
            Failure::Output { source, .. } => source.is_transient(),
            Failure::Restore { source, .. }
            | Failure::ColdSegment { source, .. }
            | Failure::Checkpoint { source, .. } => source.is_transient(),
        }
    }

    /// What `/readyz` says while it lasts.
    pub fn readiness_reason(&self) -> String {
        self.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_class_and_the_cause_come_from_the_lake_s_error() {
        let newer = newsflow_lake::Error::NewerCheckpoint {
            path: "_newsflow/shards/00003/checkpoint-7".into(),
            found: 6,
            oldest: 3,
            newest: 5,
        };
        let failure = Failure::Restore {
            shard: 3,
            source: newer,
        };
        assert!(!failure.is_transient());
        let cause = std::error::Error::source(&failure).expect("a cause");
        assert!(cause.to_string().contains("format 6"), "{cause}");

        let race = newsflow_lake::Error::LostRaces {
            table: "s3://lake/events/".into(),
            races: 200,
        };
        assert!(Failure::Restore {
            shard: 1,
            source: race
        }
        .is_transient());
    }
}
