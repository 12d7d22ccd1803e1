//! Reading a checkpoint file back, whichever format this release reads:
//! the magic and format number first (a newer format is refused naming
//! both), then the state part (format 5's records, or format 3's and 4's
//! frozen layouts turned into them), then the manifest.

use std::collections::BTreeMap;

use arrow::ipc::reader::StreamReader;
use newsflow_core::{
    Shard, ShardPatch, ShardPatchV4, ShardSnapshot, ShardSnapshotV4, SnapshotError,
};
use serde::Deserialize;

use super::{Checkpoint, Head, Manifest};
use crate::{BoxError, Error};

/// A format-5 state part as read.
#[derive(Deserialize)]
struct StatePart {
    head: Head,
    offsets: BTreeMap<String, i64>,
    state: SavedRecord,
}

#[derive(Deserialize)]
enum SavedRecord {
    Whole(ShardSnapshot),
    Changes(ShardPatch),
}

/// What a checkpoint holds of the state.
#[derive(Debug)]
pub(crate) enum Saved {
    Whole(Shard),
    /// The changes since the checkpoint of `prev`.
    Changes(ShardPatch),
}

/// A format-4 state part: the in-memory structs of its release.
#[derive(Deserialize)]
struct StatePartV4 {
    head: Head,
    offsets: BTreeMap<String, i64>,
    state: SavedV4,
}

#[derive(Deserialize)]
enum SavedV4 {
    Whole(ShardSnapshotV4),
    Changes(ShardPatchV4),
}

/// A format-3 state part: always the whole state.
#[derive(Deserialize)]
struct StatePartV3 {
    head: HeadV3,
    offsets: BTreeMap<String, i64>,
    state: ShardSnapshotV4,
}

impl SavedRecord {
    fn into_saved(self) -> Result<Saved, SnapshotError> {
        Ok(match self {
            SavedRecord::Whole(snapshot) => Saved::Whole(Shard::try_from(snapshot)?),
            SavedRecord::Changes(patch) => Saved::Changes(patch),
        })
    }
}

impl TryFrom<SavedV4> for SavedRecord {
    type Error = SnapshotError;

    fn try_from(v4: SavedV4) -> Result<Self, SnapshotError> {
        Ok(match v4 {
            SavedV4::Whole(snapshot) => SavedRecord::Whole(snapshot.try_into()?),
            SavedV4::Changes(patch) => SavedRecord::Changes(patch.try_into()?),
        })
    }
}

/// The head of format 3, which had no `base`: every checkpoint was whole.
#[derive(Deserialize)]
struct HeadV3 {
    format: u32,
    shard: i32,
    seq: u64,
    prev: u64,
}

impl From<HeadV3> for Head {
    fn from(v3: HeadV3) -> Self {
        Head {
            format: v3.format,
            shard: v3.shard,
            seq: v3.seq,
            prev: v3.prev,
            base: v3.seq,
        }
    }
}

/// A checkpoint file read back: its head, offsets, what it holds of the
/// state, and the manifest of its flush.
#[derive(Debug)]
pub(crate) struct LoadedCheckpoint {
    pub head: Head,
    pub offsets: BTreeMap<String, i64>,
    pub saved: Saved,
    /// Bytes of the state part.
    pub state_bytes: u64,
    pub manifest: Manifest,
}

/// Bytes at the start of a checkpoint file that hold its [`Head`]: the
/// magic, the length and five numbers of at most 10 bytes each.
pub(crate) const HEAD_BYTES: usize = 128;

/// Splits off a checkpoint file's magic: its format and the rest. A
/// format this release does not read is refused, naming both.
fn format_of<'a>(bytes: &'a [u8], what: &str) -> Result<(u32, &'a [u8]), Error> {
    let not_ours = || Error::CorruptCheckpoint {
        path: what.to_string(),
        source: None,
        message: format!(
            "it does not start like a newsflow checkpoint (formats {} to {})",
            Checkpoint::OLDEST_FORMAT,
            Checkpoint::FORMAT
        ),
    };
    let rest = bytes
        .strip_prefix(Checkpoint::MAGIC_PREFIX)
        .ok_or_else(not_ours)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    let format: u32 = std::str::from_utf8(&rest[..digits])
        .ok()
        .and_then(|n| n.parse().ok())
        .ok_or_else(not_ours)?;
    let body = rest[digits..].strip_prefix(b"\n").ok_or_else(not_ours)?;
    if format > Checkpoint::FORMAT {
        return Err(Error::NewerCheckpoint {
            path: what.to_string(),
            found: format,
            oldest: Checkpoint::OLDEST_FORMAT,
            newest: Checkpoint::FORMAT,
        });
    }
    if format < Checkpoint::OLDEST_FORMAT {
        return Err(not_ours());
    }
    Ok((format, body))
}

/// Reads the head of a checkpoint from its first [`HEAD_BYTES`] (or all
/// of it, if shorter).
pub(crate) fn decode_head(bytes: &[u8], what: &str) -> Result<Head, Error> {
    let (format, body) = format_of(bytes, what)?;
    let part = body
        .get(8..)
        .ok_or_else(|| corrupt(what, "it is truncated".into()))?;
    let head = if format == 3 {
        postcard::take_from_bytes::<HeadV3>(part).map(|(head, _)| head.into())
    } else {
        postcard::take_from_bytes::<Head>(part).map(|(head, _)| head)
    };
    head.map_err(|e| broken(what, "head", e))
}

/// A checkpoint whose content is wrong, named by `what`.
fn corrupt(what: &str, message: String) -> Error {
    Error::CorruptCheckpoint {
        path: what.to_string(),
        message,
        source: None,
    }
}

/// A part of a checkpoint the decoder refused, with its error as the cause.
fn broken(what: &str, part: &str, e: impl Into<BoxError>) -> Error {
    Error::CorruptCheckpoint {
        path: what.to_string(),
        message: format!("its {part} cannot be decoded"),
        source: Some(e.into()),
    }
}

/// Decodes a checkpoint file; `what` names it in errors.
pub(crate) fn decode(bytes: &[u8], what: &str) -> Result<LoadedCheckpoint, Error> {
    let (format, body) = format_of(bytes, what)?;
    let truncated = || corrupt(what, "it is truncated".into());
    if body.len() < 8 {
        return Err(truncated());
    }
    let (len, body) = body.split_at(8);
    let len = u64::from_le_bytes(len.try_into().expect("eight bytes"));
    if (body.len() as u64) < len {
        return Err(truncated());
    }
    let (state_part, manifest) = body.split_at(len as usize);
    let (head, offsets, saved) = decode_state_part(format, state_part, what)?;
    if head.format != format {
        let message = format!("format {} where {format} was expected", head.format);
        return Err(corrupt(what, message));
    }
    let whole = matches!(saved, Saved::Whole(_));
    if whole != (head.base == head.seq) {
        return Err(corrupt(
            what,
            format!(
                "flush {} names whole checkpoint {} but holds {}",
                head.seq,
                head.base,
                if whole { "the whole state" } else { "changes" }
            ),
        ));
    }
    Ok(LoadedCheckpoint {
        head,
        offsets,
        saved,
        state_bytes: len,
        manifest: decode_manifest(manifest, what)?,
    })
}

/// The head, offsets and state of a state part of `format`.
fn decode_state_part(
    format: u32,
    state_part: &[u8],
    what: &str,
) -> Result<(Head, BTreeMap<String, i64>, Saved), Error> {
    let state = |e: postcard::Error| broken(what, "state", e);
    let record = |e: SnapshotError| broken(what, "state", e);
    let (head, offsets, saved) = match format {
        3 => {
            let part: StatePartV3 = postcard::from_bytes(state_part).map_err(state)?;
            let whole = SavedRecord::Whole(part.state.try_into().map_err(record)?);
            (part.head.into(), part.offsets, whole)
        }
        4 => {
            let part: StatePartV4 = postcard::from_bytes(state_part).map_err(state)?;
            let saved = part.state.try_into().map_err(record)?;
            (part.head, part.offsets, saved)
        }
        _ => {
            let part: StatePart = postcard::from_bytes(state_part).map_err(state)?;
            (part.head, part.offsets, part.state)
        }
    };
    Ok((head, offsets, saved.into_saved().map_err(record)?))
}

/// The manifest: each table's add actions, one IPC stream per file.
fn decode_manifest(manifest: &[u8], what: &str) -> Result<Manifest, Error> {
    let tables: Vec<(String, Vec<Vec<u8>>)> =
        postcard::from_bytes(manifest).map_err(|e| broken(what, "manifest", e))?;
    let mut adds = BTreeMap::new();
    for (table, streams) in tables {
        let part = format!("manifest of {table}");
        let mut batches = Vec::with_capacity(streams.len());
        for ipc in streams {
            let reader =
                StreamReader::try_new(ipc.as_slice(), None).map_err(|e| broken(what, &part, e))?;
            for batch in reader {
                batches.push(batch.map_err(|e| broken(what, &part, e))?);
            }
        }
        adds.insert(table, batches);
    }
    Ok(Manifest { adds })
}
