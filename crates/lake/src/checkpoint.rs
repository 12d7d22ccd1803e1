//! Per-shard checkpoints: the counting state and the offsets it covers,
//! stored beside the data so that whichever worker owns a shard next (on
//! this pod or another) resumes exactly where the files end.

use std::collections::BTreeMap;

use newsflow_core::Shard;
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
    pub const FORMAT: u32 = 1;
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
