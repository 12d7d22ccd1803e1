//! What the lake keeps per shard beside the tables, under
//! `_newsflow/shards/SSSSS/` (never overwritten, never read unless the
//! tables' logs point at it):
//!
//! ```text
//! claim-QQQQQQQQQQQQQQQQQQQQ       a sequence number, taken
//! checkpoint-QQQQQQQQQQQQQQQQQQQQ  state (whole or changes), offsets, manifest
//! cold-QQQQQQQQQQQQQQQQQQQQ.json   articles that left memory in the flush
//! ```

use std::collections::{BTreeMap, HashMap};

use newsflow_core::{ColdArticle, Shard};
use object_store::PutPayload;

use crate::checkpoint::{self, CheckpointChain, Head, LoadedCheckpoint, Saved};
use crate::store::{CreateError, Store};
use crate::Error;

fn shard_dir(shard: i32) -> String {
    format!("_newsflow/shards/{shard:05}")
}

fn claim_path(shard: i32, seq: u64) -> String {
    format!("{}/claim-{seq:020}", shard_dir(shard))
}

fn checkpoint_path(shard: i32, seq: u64) -> String {
    format!("{}/checkpoint-{seq:020}", shard_dir(shard))
}

fn cold_path(shard: i32, seq: u64) -> String {
    format!("{}/cold-{seq:020}.json", shard_dir(shard))
}

/// How many taken numbers a claim steps over before it gives up: a guard
/// against a runaway loop, far above what crashes and races leave.
const MAX_CLAIM_STEPS: u64 = 10_000;

/// Claims the first free sequence number of `shard` from `from` on.
/// Numbers are skipped when another writer (or a crashed run of ours)
/// claimed them, and when a checkpoint of that number exists without its
/// claim: a flush that failed at its commit leaves its checkpoint behind,
/// and if the lake was wiped under it, the claim that guarded the number
/// went with the wipe while the checkpoint was written after it.
pub(crate) fn claim(store: &Store, shard: i32, from: u64) -> Result<u64, Error> {
    for seq in from..from + MAX_CLAIM_STEPS {
        match store.create(store.path(&claim_path(shard, seq)), Vec::new()) {
            Ok(()) if store.exists(store.path(&checkpoint_path(shard, seq)))? => {
                tracing::warn!(
                    shard,
                    seq,
                    "a checkpoint of this number exists without its claim (a flush that failed \
                     while the lake was replaced); taking the next number"
                );
                continue;
            }
            Ok(()) => return Ok(seq),
            Err(CreateError::Exists) => continue,
            Err(CreateError::Store(e)) => return Err(e),
        }
    }
    Err(Error::Inconsistent(format!(
        "shard {shard}: {MAX_CLAIM_STEPS} sequence numbers from {from} on are claimed already"
    )))
}

/// Stores the checkpoint of flush `seq` of `shard` (whole file bytes).
pub(crate) fn write_checkpoint(
    store: &Store,
    shard: i32,
    seq: u64,
    payload: PutPayload,
) -> Result<(), Error> {
    store.create_claimed(store.path(&checkpoint_path(shard, seq)), payload)
}

/// Reads the checkpoint of flush `seq` of `shard`, checking it is that one.
pub(crate) fn load_checkpoint(
    store: &Store,
    shard: i32,
    seq: u64,
) -> Result<LoadedCheckpoint, Error> {
    let relative = checkpoint_path(shard, seq);
    let bytes = store.get(store.path(&relative))?;
    let loaded = checkpoint::decode(&bytes, &relative)?;
    is_the_one(&loaded.head, shard, seq, &relative)?;
    Ok(loaded)
}

/// Reads only the head of the checkpoint of flush `seq` of `shard`.
pub(crate) fn load_checkpoint_head(store: &Store, shard: i32, seq: u64) -> Result<Head, Error> {
    let relative = checkpoint_path(shard, seq);
    let bytes = store.get_prefix(store.path(&relative), checkpoint::HEAD_BYTES as u64)?;
    let head = checkpoint::decode_head(&bytes, &relative)?;
    is_the_one(&head, shard, seq, &relative)?;
    Ok(head)
}

fn is_the_one(head: &Head, shard: i32, seq: u64, relative: &str) -> Result<(), Error> {
    if head.shard != shard || head.seq != seq {
        return Err(Error::CorruptCheckpoint {
            path: relative.to_string(),
            source: None,
            message: format!(
                "it holds shard {} flush {} where shard {shard} flush {seq} was expected",
                head.shard, head.seq
            ),
        });
    }
    Ok(())
}

/// Checkpoints of changes a restore follows back at most before it calls
/// the chain broken: far above what writers leave (`MAX_PATCHES`).
const MAX_CHAIN: usize = 10_000;

/// The state checkpoint `latest` restores, and the chain it stands in:
/// its own state if it is whole; otherwise the whole checkpoint its chain
/// starts at (read here), with the changes of every checkpoint after it
/// applied in order. Each of those was committed (a checkpoint of changes follows the
/// checkpoint of its `prev`, the flush committed before it).
pub(crate) fn load_state(
    store: &Store,
    shard: i32,
    latest: LoadedCheckpoint,
) -> Result<(Shard, CheckpointChain), Error> {
    let (last, base) = (latest.head.seq, latest.head.base);
    let mut patches = Vec::new();
    let mut patch_bytes = 0;
    let mut loaded = latest;
    let (mut state, base_bytes) = loop {
        match loaded.saved {
            Saved::Whole(state) => break (state, loaded.state_bytes),
            Saved::Changes(patch) => {
                if patches.len() == MAX_CHAIN || loaded.head.prev < base {
                    return Err(Error::Inconsistent(format!(
                        "shard {shard}: the checkpoints from flush {last} back do not reach their whole checkpoint {base}"
                    )));
                }
                patches.push((loaded.head.seq, patch));
                patch_bytes += loaded.state_bytes;
                let prev = loaded.head.prev;
                loaded = load_checkpoint(store, shard, prev)?;
                if loaded.head.base != base {
                    return Err(Error::Inconsistent(format!(
                        "shard {shard}: checkpoint {prev} starts at whole checkpoint {}, the ones after it at {base}",
                        loaded.head.base
                    )));
                }
            }
        }
    };
    let chain = CheckpointChain::restored(
        last,
        (base, base_bytes),
        (patches.len() as u32, patch_bytes),
    );
    for (seq, patch) in patches.into_iter().rev() {
        state
            .apply_patch(patch)
            .map_err(|e| Error::CorruptCheckpoint {
                path: checkpoint_path(shard, seq),
                message: "its changes do not fit the state before them".into(),
                source: Some(e.into()),
            })?;
    }
    state.mark_saved();
    Ok((state, chain))
}

/// Stores the articles that left memory in flush `seq` of `shard`. It is
/// written before the checkpoint, whose state no longer holds them.
pub(crate) fn write_cold_segment(
    store: &Store,
    shard: i32,
    seq: u64,
    articles: &[(String, ColdArticle)],
) -> Result<(), Error> {
    let map: BTreeMap<&str, &ColdArticle> =
        articles.iter().map(|(id, a)| (id.as_str(), a)).collect();
    let bytes = serde_json::to_vec(&map).map_err(|e| Error::Encode {
        what: "cold segment".into(),
        source: e.into(),
    })?;
    store.create_claimed(store.path(&cold_path(shard, seq)), bytes)
}

/// Reads a cold segment back: article id → what remained of it.
pub(crate) fn load_cold_segment(
    store: &Store,
    shard: i32,
    seq: u64,
) -> Result<HashMap<String, ColdArticle>, Error> {
    let relative = cold_path(shard, seq);
    let bytes = store.get(store.path(&relative))?;
    serde_json::from_slice(&bytes).map_err(|e| Error::CorruptColdSegment {
        path: relative,
        source: e,
    })
}
