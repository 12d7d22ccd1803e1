//! Shard checkpoints: the counting state and the offsets it covers, plus the
//! manifest of the data files its flush added to each table.
//!
//! A checkpoint is written once, create-only, under a name fixed by its
//! shard and flush sequence number (which the writer claimed beforehand, so
//! no two writers ever hold the same name). It is only *believed* once the
//! tables' logs say its sequence number was committed (see `crate::lake`):
//! a checkpoint of a crashed or fenced writer is never loaded.
//!
//! **Whole or changes.** A checkpoint holds either the whole state or only
//! its changes since the checkpoint of the flush before (`prev`), which is
//! committed too. A restore reads back to the last whole one (the chain's
//! `base`) and applies the changes after it in order. A whole checkpoint
//! is written when the changes since the last one would outweigh it, and
//! after at most [`MAX_PATCHES`] checkpoints of changes: so a shard writes
//! about twice what changes instead of its whole state at every flush, and
//! a restore reads at most about twice a whole checkpoint.
//!
//! The manifest is what lets a restore finish a flush that crashed between
//! the commits of two tables: the add actions of every table, kept as Arrow
//! IPC, are committed again to the tables that lack them, without reading or
//! rewriting a data file.
//!
//! Layout: `MAGIC`, the length of the state part (u64, little endian), the
//! state part (postcard of [`Head`]'s fields, the offsets, then the whole
//! state or its changes), then the manifest (postcard of table name →
//! Arrow IPC streams). The state is written as core's own records
//! (`ShardSnapshotRef`, `ShardChanges`), not as the in-memory structs, so a
//! counter or per-article number added later reads older checkpoints as
//! they are. Formats 3 (always whole, no `base`) and 4 (the in-memory
//! structs of their releases) are still read; a newer format is refused,
//! naming both.

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use newsflow_core::{Shard, ShardChanges, ShardSnapshotRef};
use object_store::PutPayload;
use serde::{Deserialize, Serialize};

mod read;

pub(crate) use read::{decode, decode_head, LoadedCheckpoint, Saved, HEAD_BYTES};

use crate::Error;

/// Checkpoints of changes in a row before the next whole one.
pub const MAX_PATCHES: u32 = 30;

/// The durable state of one shard after a flush.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Layout version, so a future change can migrate it.
    pub format: u32,
    /// The shard (partition number) it belongs to.
    pub shard: i32,
    /// The flush sequence number it was written by.
    pub seq: u64,
    /// The sequence number of the flush before it (0 for the first): what
    /// each table's log held for the shard when this flush began.
    pub prev: u64,
    /// Per event topic, the next offset to read: every record below it is
    /// reflected in `state` and in the files of flushes `≤ seq`.
    pub offsets: BTreeMap<String, i64>,
    /// The counting state after those records.
    pub state: Shard,
}

impl Checkpoint {
    /// The current layout version.
    pub const FORMAT: u32 = 5;
    /// The oldest layout version still read.
    pub const OLDEST_FORMAT: u32 = 3;
    /// The first bytes of a checkpoint file before its format number, so
    /// that anything else (a truncated copy, a file from another tool) is
    /// refused by name.
    pub(crate) const MAGIC_PREFIX: &'static [u8] = b"newsflow checkpoint ";
    /// The first bytes of a checkpoint file of the current format.
    pub(crate) const MAGIC: &'static [u8] = b"newsflow checkpoint 5\n";
}

/// Where a shard's checkpoints stand, which decides whether the next one
/// may hold only changes. Kept by the writer beside the shard; a restore
/// gives the one its checkpoints left.
#[derive(Clone, Debug, Default)]
pub struct CheckpointChain {
    /// The last checkpoint (whole or changes), if the shard's state is the
    /// one it restores: only then may changes be written on top of it.
    last: Option<u64>,
    /// The whole checkpoint the chain starts at, and its size.
    base: u64,
    base_bytes: u64,
    /// Checkpoints of changes since the base, and their sizes.
    patches: u32,
    patch_bytes: u64,
}

impl CheckpointChain {
    /// The chain a restore found: the state is that of checkpoint `last`,
    /// whose chain starts at whole checkpoint `base`.
    pub(crate) fn restored(
        last: u64,
        (base, base_bytes): (u64, u64),
        (patches, patch_bytes): (u32, u64),
    ) -> Self {
        CheckpointChain {
            last: Some(last),
            base,
            base_bytes,
            patches,
            patch_bytes,
        }
    }

    /// The sequence number of the whole checkpoint the chain starts at.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Checkpoints of changes since the base.
    pub fn patches(&self) -> u32 {
        self.patches
    }
}

/// The fixed fields at the start of a checkpoint's state part, read alone
/// by vacuum to learn which older checkpoints a restore still needs.
/// (postcard writes a struct's fields one after the other with no framing,
/// so a head nested first in a state part is read as its first bytes.)
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Head {
    pub format: u32,
    pub shard: i32,
    pub seq: u64,
    pub prev: u64,
    /// The whole checkpoint its chain starts at (itself if it is whole).
    pub base: u64,
}

/// The borrowed form of a format-4 state part, so encoding copies nothing.
#[derive(Serialize)]
struct StatePartRef<'a> {
    head: Head,
    offsets: &'a BTreeMap<String, i64>,
    state: SavedRef<'a>,
}

#[derive(Serialize)]
enum SavedRef<'a> {
    Whole(ShardSnapshotRef<'a>),
    Changes(ShardChanges<'a>),
}

/// The state part of a checkpoint, encoded at the moment a flush cuts its
/// shard so that counting can go on while the flush is written.
#[derive(Debug)]
pub struct EncodedCheckpoint {
    pub(crate) shard: i32,
    pub(crate) seq: u64,
    pub(crate) prev: u64,
    /// Shared, so that the file is written from it without a copy.
    pub(crate) state: Bytes,
}

impl EncodedCheckpoint {
    /// Encodes the checkpoint of `shard` for flush `seq`, which follows
    /// flush `prev`: `state` reflects every record below `offsets`. It
    /// holds only the state's changes when `chain` allows, the whole state
    /// otherwise; either way the state's changes start again from here,
    /// and `chain` moves on to it.
    pub fn encode(
        shard: i32,
        seq: u64,
        prev: u64,
        offsets: &BTreeMap<String, i64>,
        state: &mut Shard,
        chain: &mut CheckpointChain,
    ) -> Result<Self, Error> {
        let encode = |base: u64, saved: SavedRef<'_>| {
            let part = StatePartRef {
                head: Head {
                    format: Checkpoint::FORMAT,
                    shard,
                    seq,
                    prev,
                    base,
                },
                offsets,
                state: saved,
            };
            postcard::to_stdvec(&part).map_err(|e| Error::Encode {
                what: "checkpoint".into(),
                source: e.into(),
            })
        };
        let mut patch = None;
        if chain.last == Some(prev) && prev > 0 && chain.patches < MAX_PATCHES {
            if let Some(changes) = state.changes() {
                let bytes = encode(chain.base, SavedRef::Changes(changes))?;
                // Changes that would outweigh the whole state since the
                // base are written as a whole checkpoint instead.
                if chain.patch_bytes + bytes.len() as u64 <= chain.base_bytes {
                    patch = Some(bytes);
                }
            }
        }
        let bytes = match patch {
            Some(bytes) => {
                chain.patches += 1;
                chain.patch_bytes += bytes.len() as u64;
                bytes
            }
            None => {
                let bytes = encode(seq, SavedRef::Whole(state.snapshot()))?;
                (chain.base, chain.base_bytes) = (seq, bytes.len() as u64);
                (chain.patches, chain.patch_bytes) = (0, 0);
                bytes
            }
        };
        chain.last = Some(seq);
        state.mark_saved();
        Ok(EncodedCheckpoint {
            shard,
            seq,
            prev,
            state: Bytes::from(bytes),
        })
    }

    /// The shard it belongs to.
    pub fn shard(&self) -> i32 {
        self.shard
    }

    /// The sequence number of the flush it was cut for.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The whole file: this state part and the manifest of the flush, as
    /// the pieces it is written from. The state part is tens of megabytes
    /// for a million articles and is not copied (a flush used to copy it
    /// into one buffer first, 3.5 % of the worker's CPU).
    pub(crate) fn file_payload(&self, manifest: &Manifest) -> Result<PutPayload, Error> {
        let mut head = Vec::with_capacity(Checkpoint::MAGIC.len() + 8);
        head.extend_from_slice(Checkpoint::MAGIC);
        head.extend_from_slice(&(self.state.len() as u64).to_le_bytes());
        // One IPC stream per file: the statistics' struct differs between
        // files (a column with no value has no min and max).
        let tables: Vec<(String, Vec<Vec<u8>>)> = manifest
            .adds
            .iter()
            .map(|(table, batches)| {
                let streams = batches.iter().map(to_ipc).collect::<Result<_, Error>>()?;
                Ok((table.clone(), streams))
            })
            .collect::<Result<_, Error>>()?;
        let manifest = postcard::to_stdvec(&tables).map_err(|e| Error::Encode {
            what: "checkpoint manifest".into(),
            source: e.into(),
        })?;
        Ok(PutPayload::from_iter([
            Bytes::from(head),
            self.state.clone(),
            Bytes::from(manifest),
        ]))
    }
}

/// The add actions (as the kernel's add-file metadata) one flush of one
/// shard gave each table, by table name.
#[derive(Clone, Debug, Default)]
pub(crate) struct Manifest {
    pub adds: BTreeMap<String, Vec<RecordBatch>>,
}

impl Manifest {
    /// The add-file metadata of `dataset`'s files (none if it got none).
    pub fn adds_of(&self, dataset: crate::Dataset) -> Vec<RecordBatch> {
        self.adds.get(dataset.name()).cloned().unwrap_or_default()
    }
}

fn to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, Error> {
    let encode = |e: arrow::error::ArrowError| Error::Encode {
        what: "checkpoint manifest".into(),
        source: e.into(),
    };
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema()).map_err(encode)?;
    writer.write(batch).map_err(encode)?;
    writer.finish().map_err(encode)?;
    drop(writer);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use newsflow_core::CountingRules;

    use super::*;

    fn shard() -> Shard {
        Shard::new(CountingRules {
            window_size: 3_600_000_000,
            dedup_horizon: 86_400_000_000,
            max_out_of_orderness: 60_000_000,
        })
    }

    fn file(state_part: Vec<u8>) -> Vec<u8> {
        let manifest = postcard::to_stdvec(&Vec::<(String, Vec<Vec<u8>>)>::new()).unwrap();
        [
            Checkpoint::MAGIC,
            &(state_part.len() as u64).to_le_bytes(),
            &state_part,
            &manifest,
        ]
        .concat()
    }

    /// Every checkpoint of the golden lakes, written by the releases of
    /// formats 3 and 4, decodes (the end-to-end test in
    /// `tests/tests/upgrade.rs` goes on counting from them).
    #[test]
    fn checkpoints_written_by_earlier_releases_decode() {
        let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../tests/fixtures/checkpoints");
        for format in [3, 4] {
            let dir = fixtures.join(format!("format-{format}/lake/_newsflow/shards"));
            let mut files = Vec::new();
            let mut stack = vec![dir.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else if entry
                        .file_name()
                        .to_string_lossy()
                        .starts_with("checkpoint-")
                    {
                        files.push(path);
                    }
                }
            }
            assert!(!files.is_empty(), "no checkpoints in {}", dir.display());
            let mut changes = 0;
            for path in files {
                let bytes = std::fs::read(&path).unwrap();
                let what = path.display().to_string();
                let loaded = decode(&bytes, &what).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(loaded.head.format, format, "{what}");
                changes += usize::from(matches!(loaded.saved, Saved::Changes(_)));
            }
            if format == 4 {
                assert!(
                    changes > 0,
                    "the format-4 fixture holds checkpoints of changes"
                );
            }
        }
    }

    /// A checkpoint of a format newer than this release's is refused with
    /// both numbers, not misread as damaged or as an older one.
    #[test]
    fn a_checkpoint_of_a_newer_release_is_refused_naming_both_formats() {
        let mut state = shard();
        let mut chain = CheckpointChain::default();
        let encoded =
            EncodedCheckpoint::encode(0, 1, 0, &BTreeMap::new(), &mut state, &mut chain).unwrap();
        let mut bytes = file(encoded.state.to_vec());
        let newer = format!("newsflow checkpoint {}\n", Checkpoint::FORMAT + 1);
        bytes.splice(..Checkpoint::MAGIC.len(), newer.bytes());
        let error = decode(&bytes, "7/8").unwrap_err().to_string();
        assert!(
            error.contains(&format!("format {}", Checkpoint::FORMAT + 1))
                && error.contains(&format!("formats 3 to {}", Checkpoint::FORMAT)),
            "{error}"
        );
        assert!(decode_head(&bytes, "7/8").is_err());
    }

    /// The writer's choice: whole first, then changes on top of the last
    /// checkpoint while they stay lighter than the whole one, whole again
    /// when the state was not restored from the checkpoint before.
    fn comments(state: &mut Shard, ids: std::ops::Range<u32>) {
        for i in ids {
            state.apply(&newsflow_core::Event {
                event_id: format!("c-{i}").into(),
                article_id: format!("a-{}", i % 7).into(),
                occurred_at: 1_800_000_000_000_000,
                body: newsflow_core::EventBody::SocialComment {
                    platform: "x".into(),
                    author_id: None,
                },
            });
        }
    }

    #[test]
    fn changes_follow_a_whole_checkpoint_of_the_flush_before() {
        let mut state = shard();
        let mut chain = CheckpointChain::default();
        let offsets = BTreeMap::new();
        comments(&mut state, 0..100);
        let first = EncodedCheckpoint::encode(0, 1, 0, &offsets, &mut state, &mut chain).unwrap();
        let head = decode_head(&file(first.state.to_vec()), "1").unwrap();
        assert_eq!((head.seq, head.base), (1, 1), "the first is whole");
        comments(&mut state, 100..105);
        let second = EncodedCheckpoint::encode(0, 2, 1, &offsets, &mut state, &mut chain).unwrap();
        let loaded = decode(&file(second.state.to_vec()), "2").unwrap();
        assert_eq!((loaded.head.seq, loaded.head.base), (2, 1));
        assert!(matches!(loaded.saved, Saved::Changes(_)));
        assert_eq!((chain.base(), chain.patches()), (1, 1));
        // A flush that does not follow the last checkpoint (its flush
        // failed and the shard was restored elsewhere) is whole.
        let third = EncodedCheckpoint::encode(0, 5, 3, &offsets, &mut state, &mut chain).unwrap();
        let head = decode_head(&file(third.state.to_vec()), "5").unwrap();
        assert_eq!((head.seq, head.base), (5, 5));
        assert_eq!((chain.base(), chain.patches()), (5, 0));
    }
}
