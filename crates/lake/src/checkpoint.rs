//! Shard checkpoints: the counting state and the offsets it covers, plus the
//! manifest of the data files its flush added to each table.
//!
//! A checkpoint is written once, create-only, under a name fixed by its
//! shard and flush sequence number (which the writer claimed beforehand, so
//! no two writers ever hold the same name). It is only *believed* once the
//! tables' logs say its sequence number was committed (see `crate::lake`):
//! a checkpoint of a crashed or fenced writer is never loaded.
//!
//! The manifest is what lets a restore finish a flush that crashed between
//! the commits of two tables: the add actions of every table, kept as Arrow
//! IPC, are committed again to the tables that lack them, without reading or
//! rewriting a data file.
//!
//! Layout: `MAGIC`, the length of the state part (u64, little endian), the
//! state part (postcard of [`Checkpoint`]'s fields), then the manifest
//! (postcard of table name → Arrow IPC stream).

use std::collections::BTreeMap;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use bytes::Bytes;
use newsflow_core::Shard;
use object_store::PutPayload;
use serde::{Deserialize, Serialize};

use crate::Error;

/// The durable state of one shard after a flush.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    pub const FORMAT: u32 = 3;
    /// The first bytes of a checkpoint file, so that anything else (a
    /// truncated copy, a file from another tool) is refused by name.
    pub(crate) const MAGIC: &'static [u8] = b"newsflow checkpoint 3\n";
}

/// The borrowed form of [`Checkpoint`], so encoding does not clone the state.
#[derive(Serialize)]
struct CheckpointRef<'a> {
    format: u32,
    shard: i32,
    seq: u64,
    prev: u64,
    offsets: &'a BTreeMap<String, i64>,
    state: &'a Shard,
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
    /// flush `prev`: `state` reflects every record below `offsets`.
    pub fn encode(
        shard: i32,
        seq: u64,
        prev: u64,
        offsets: &BTreeMap<String, i64>,
        state: &Shard,
    ) -> Result<Self, Error> {
        let checkpoint = CheckpointRef {
            format: Checkpoint::FORMAT,
            shard,
            seq,
            prev,
            offsets,
            state,
        };
        let state = postcard::to_stdvec(&checkpoint).map_err(|e| Error::Encode {
            dataset: "checkpoint",
            message: e.to_string(),
        })?;
        Ok(EncodedCheckpoint {
            shard,
            seq,
            prev,
            state: Bytes::from(state),
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
            dataset: "checkpoint",
            message: e.to_string(),
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

/// A checkpoint read back, with the manifest of its flush.
#[derive(Debug)]
pub(crate) struct LoadedCheckpoint {
    pub checkpoint: Checkpoint,
    pub manifest: Manifest,
}

/// Decodes a checkpoint file; `what` names it in errors.
pub(crate) fn decode(bytes: &[u8], what: &str) -> Result<LoadedCheckpoint, Error> {
    let corrupt = |message: String| Error::CorruptCheckpoint {
        path: what.to_string(),
        message,
    };
    let body = bytes
        .strip_prefix(Checkpoint::MAGIC)
        .ok_or_else(|| corrupt("it does not start like a newsflow checkpoint (format 3)".into()))?;
    if body.len() < 8 {
        return Err(corrupt("it is truncated".into()));
    }
    let (len, body) = body.split_at(8);
    let len = u64::from_le_bytes(len.try_into().expect("eight bytes")) as usize;
    if body.len() < len {
        return Err(corrupt("it is truncated".into()));
    }
    let (state, manifest) = body.split_at(len);
    let checkpoint: Checkpoint =
        postcard::from_bytes(state).map_err(|e| corrupt(format!("state: {e}")))?;
    if checkpoint.format != Checkpoint::FORMAT {
        return Err(corrupt(format!(
            "format {} where {} was expected",
            checkpoint.format,
            Checkpoint::FORMAT
        )));
    }
    let tables: Vec<(String, Vec<Vec<u8>>)> =
        postcard::from_bytes(manifest).map_err(|e| corrupt(format!("manifest: {e}")))?;
    let mut adds = BTreeMap::new();
    for (table, streams) in tables {
        let mut batches = Vec::with_capacity(streams.len());
        for ipc in streams {
            let reader = StreamReader::try_new(ipc.as_slice(), None)
                .map_err(|e| corrupt(format!("manifest of {table}: {e}")))?;
            for batch in reader {
                batches.push(batch.map_err(|e| corrupt(format!("manifest of {table}: {e}")))?);
            }
        }
        adds.insert(table, batches);
    }
    Ok(LoadedCheckpoint {
        checkpoint,
        manifest: Manifest { adds },
    })
}

fn to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, Error> {
    let encode = |e: arrow::error::ArrowError| Error::Encode {
        dataset: "checkpoint manifest",
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    let mut writer = StreamWriter::try_new(&mut bytes, &batch.schema()).map_err(encode)?;
    writer.write(batch).map_err(encode)?;
    writer.finish().map_err(encode)?;
    drop(writer);
    Ok(bytes)
}
