//! Per-shard checkpoints: the counting state and the offsets it covers,
//! stored beside the data so that whichever worker owns a shard next (on
//! this pod or another) resumes exactly where the files end.
//!
//! A checkpoint is written at every flush and holds the whole state of its
//! shard, so its encoding is compact binary ([postcard], varints). It is
//! encoded when the flush cuts the shard (a buffer about the size of the
//! file) and written by the flush's thread while counting goes on. Format 1
//! was JSON with a different state layout; it is still read (and replaced
//! at the next flush), so an upgrade resumes where the old version stopped.

use std::collections::BTreeMap;

use newsflow_core::{Shard, ShardV1};
use serde::{Deserialize, Serialize};

/// The durable state of one shard after a flush.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    /// Layout version of this file, so a future change can migrate it.
    pub format: u32,
    /// The shard (partition number) it belongs to.
    pub shard: i32,
    /// The flush sequence number of the last files it covers.
    pub seq: u64,
    /// Per event topic, the next offset to read: every record below it is
    /// reflected in `state` and in files with sequence `≤ seq`.
    pub offsets: BTreeMap<String, i64>,
    /// The counting state after those records.
    pub state: Shard,
}

impl Checkpoint {
    /// The current layout version.
    pub const FORMAT: u32 = 2;
    /// The first bytes of a checkpoint file, so that anything else (a
    /// truncated copy, a file from another tool) is refused by name.
    pub(crate) const MAGIC: &'static [u8] = b"newsflow checkpoint\n";
}

/// The borrowed form written to disk: the same fields as [`Checkpoint`],
/// so saving does not clone the counting state.
#[derive(Serialize)]
pub(crate) struct CheckpointRef<'a> {
    pub format: u32,
    pub shard: i32,
    pub seq: u64,
    pub offsets: &'a BTreeMap<String, i64>,
    pub state: &'a Shard,
}

/// A checkpoint encoded at the moment a flush cuts its shard, so that the
/// state can go on changing while the files and the checkpoint are written
/// (see [`crate::Lake::write_checkpoint`]).
#[derive(Debug)]
pub struct EncodedCheckpoint {
    pub(crate) shard: i32,
    pub(crate) bytes: Vec<u8>,
}

impl EncodedCheckpoint {
    /// Encodes the checkpoint of `shard` after flush `seq`: `state`
    /// reflects every record below `offsets`.
    pub fn encode(
        shard: i32,
        seq: u64,
        offsets: &BTreeMap<String, i64>,
        state: &Shard,
    ) -> Result<Self, crate::Error> {
        let checkpoint = CheckpointRef {
            format: Checkpoint::FORMAT,
            shard,
            seq,
            offsets,
            state,
        };
        let bytes = postcard::to_extend(&checkpoint, Checkpoint::MAGIC.to_vec()).map_err(|e| {
            crate::Error::Encode {
                dataset: "checkpoint",
                message: e.to_string(),
            }
        })?;
        Ok(EncodedCheckpoint { shard, bytes })
    }
}

/// A checkpoint of format 1, as JSON.
#[derive(Deserialize)]
pub(crate) struct CheckpointV1 {
    pub format: u32,
    pub shard: i32,
    pub seq: u64,
    pub offsets: BTreeMap<String, i64>,
    pub state: ShardV1,
}

impl From<CheckpointV1> for Checkpoint {
    fn from(v1: CheckpointV1) -> Self {
        Checkpoint {
            format: Checkpoint::FORMAT,
            shard: v1.shard,
            seq: v1.seq,
            offsets: v1.offsets,
            state: v1.state.into(),
        }
    }
}
