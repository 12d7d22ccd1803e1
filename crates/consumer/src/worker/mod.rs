//! [`Worker`]: the shards this process owns, and what happens to them when
//! the group moves partitions ([`Worker::assign`], [`Worker::revoke`]),
//! when records arrive (`batch.rs`, `records.rs`), and when it is time to flush
//! (`flush.rs`).
//!
//! **Invariant:** a shard resumes from what the Delta tables' logs say was
//! committed for it (and that flush's checkpoint), never from the group's
//! offsets: files and checkpoint first, then the fenced commits to the
//! three tables, then the group commit, which trails for lag tools only. A
//! crash at any instant, or a pause long enough for the group to hand the
//! shard to another worker, neither loses nor repeats a count.

mod batch;
mod flush;
mod records;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use newsflow_core::{ColdArticle, DecodeLimits, EventType, Micros, Shard, EVENT_TYPE_COUNT};
use newsflow_lake::{CheckpointChain, EventArchive, Lake};
use newsflow_lanes::Lanes;
use newsflow_settings::Settings;
use newsflow_telemetry::Metrics;
use rdkafka::{Offset, TopicPartitionList};

pub use self::flush::{Commit, Flushed};
use self::flush::{FlushThread, InFlight, Settled};
use self::records::Position;
use crate::dead_letters::DeadLetters;
use crate::failure::Failure;
use crate::topics::{EventTopic, PerTopic, TopicNames};

/// One owned shard: counting state plus what the last checkpoint covers.
struct Slot {
    state: Shard,
    /// Where the shard's checkpoints stand: whether the next may hold only
    /// the state's changes.
    chain: CheckpointChain,
    /// Sequence number of the shard's last flush committed to the tables.
    committed: u64,
    /// Sequence number claimed for its next flush.
    next_seq: u64,
    /// Per event topic, the next offset to count; `None` when no checkpoint
    /// has seen the topic, meaning "from the beginning".
    next: PerTopic<Option<i64>>,
    position: PerTopic<Position>,
    /// Accepted records waiting for the next flush, as `events/` columns.
    events: EventArchive,
    /// Whether offsets moved since the last flush.
    dirty: bool,
    /// When the shard last received a record (processing time), to tell an
    /// idle shard from one whose watermark is merely behind.
    last_record_at: Instant,
    /// The cold segment read last, by number.
    cold_cache: Option<(u64, HashMap<String, ColdArticle>)>,
}

impl Slot {
    fn is_idle(&self, idle_timeout: std::time::Duration) -> bool {
        self.last_record_at.elapsed() >= idle_timeout
    }
}

/// The state of everything this worker owns. Owned by the run loop's
/// thread; the rebalance callbacks reach it through the same mutex.
pub struct Worker {
    topics: TopicNames,
    limits: DecodeLimits,
    settings: Arc<Settings>,
    lake: Lake,
    metrics: Arc<Metrics>,
    dead_letters: DeadLetters,
    slots: BTreeMap<i32, Slot>,
    /// Owned shards whose restore failed after an output failure (the
    /// files could not be cleaned up, say); retried before each flush.
    /// Their records are skipped meanwhile, and read again once restored.
    unrestored: BTreeSet<i32>,
    /// Shards reset to their checkpoints whose partitions the consumer must
    /// be moved back on; see [`Worker::rewind`].
    to_rewind: BTreeSet<i32>,
    buffered: usize,
    /// The lanes a batch's shards are counted on: one per core this process
    /// may use, see [`Worker::handle_batch`].
    counting: Lanes,
    /// Events read and duplicates seen since the last
    /// [`Worker::publish_tally`]: label lookups per batch, not per record.
    tally: Tally,
    /// The flush being written in the background, if any: at most one, so
    /// a shard's files and checkpoints are written in sequence order.
    in_flight: Option<InFlight>,
    /// Where background flushes are written.
    flush_thread: FlushThread,
    /// Flushes settled outside [`Worker::poll_flushed`] (waited for before
    /// reading a cold segment, or before a rebalance), still to be
    /// committed by the run loop.
    settled: Settled,
    /// Set when a shard cannot be restored or read; the run loop stops on it.
    pub fatal: Option<Failure>,
    /// Counters for progress reports.
    pub consumed: u64,
}

impl Worker {
    /// A worker that owns nothing yet.
    pub fn new(
        settings: Arc<Settings>,
        lake: Lake,
        metrics: Arc<Metrics>,
        dead_letters: DeadLetters,
    ) -> Self {
        Worker {
            topics: TopicNames::from_settings(&settings),
            limits: settings.decode_limits(),
            settings,
            lake,
            metrics,
            dead_letters,
            slots: BTreeMap::new(),
            unrestored: BTreeSet::new(),
            to_rewind: BTreeSet::new(),
            buffered: 0,
            counting: Lanes::new("count", newsflow_lanes::available_cores()),
            tally: Tally::default(),
            in_flight: None,
            flush_thread: FlushThread::default(),
            settled: Settled::default(),
            fatal: None,
            consumed: 0,
        }
    }

    /// Shards owned now.
    pub fn shards(&self) -> Vec<i32> {
        self.slots.keys().copied().collect()
    }

    /// Records accepted since the last flush.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Takes ownership of the shards in `assignment`: restores each from
    /// the tables' logs and its checkpoint. Returns where the checkpoints
    /// of the shards restored now resume, per topic that has one, for the
    /// group's offsets (see [`Worker::resume_offsets`]).
    pub fn assign(&mut self, assignment: &TopicPartitionList) -> TopicPartitionList {
        let mut restored = BTreeSet::new();
        for shard in shards_of(assignment) {
            if self.slots.contains_key(&shard) {
                continue;
            }
            self.unrestored.remove(&shard);
            match self.restore(shard) {
                Ok(slot) => {
                    self.slots.insert(shard, slot);
                    restored.insert(shard);
                }
                Err(failure) => {
                    if let Some(failure) = self.restore_failed(shard, failure) {
                        self.fail(failure);
                    }
                }
            }
        }
        self.metrics.partitions_assigned(self.slots.len());
        self.resume_offsets(&restored)
    }

    /// The offsets the checkpoints of `shards` resume from. The group's
    /// committed offset trails a checkpoint when a worker died between its
    /// tables' commit and the offset commit; until new records came, no
    /// flush would commit again, and a worker on a quiet partition showed
    /// that lag for good, and the watchdog called it stalled. Committing
    /// these at assignment also starts the fetch where counting resumes.
    fn resume_offsets(&self, shards: &BTreeSet<i32>) -> TopicPartitionList {
        self.group_offsets(shards.iter().flat_map(|&shard| {
            self.slots[&shard]
                .next
                .known()
                .map(move |(topic, next)| (topic, shard, next))
        }))
    }

    /// The group's offsets for (topic, shard, next offset) triples, as
    /// [`crate::context::commit_offsets`] takes them.
    fn group_offsets(
        &self,
        offsets: impl IntoIterator<Item = (EventTopic, i32, i64)>,
    ) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (topic, shard, next) in offsets {
            list.add_partition_offset(&self.topics[topic], shard, Offset::Offset(next))
                .expect("an offset is always a valid position");
        }
        list
    }

    /// Steers by the class of a failure: a permanent one stops the worker
    /// (the run loop exits with it and its causes: retrying would only
    /// hide it); a transient one is reported at the next settle (`/readyz`
    /// red, partitions paused for a back-off) and the work retried.
    fn fail(&mut self, failure: Failure) {
        if failure.is_transient() {
            self.settled.failure.get_or_insert(failure);
        } else {
            tracing::error!(error = %failure, "permanent failure; stopping the worker");
            self.fatal.get_or_insert(failure);
        }
    }

    fn restore(&self, shard: i32) -> Result<Slot, Failure> {
        let rules = self.settings.counting_rules();
        let restored = self
            .lake
            .restore(shard)
            .map_err(|e| Failure::Restore { shard, source: e })?;
        let (state, next) = match restored.checkpoint {
            Some(cp) => {
                let mut state = cp.state;
                state.set_rules(rules);
                let next = PerTopic::from_fn(|t| cp.offsets.get(&*self.topics[t]).copied());
                (state, next)
            }
            None => (Shard::new(rules), PerTopic::default()),
        };
        tracing::info!(
            shard,
            committed = restored.committed,
            next_seq = restored.next_seq,
            ?next,
            finished_half_committed_tables = restored.rolled_forward,
            "restored shard from the tables' logs"
        );
        Ok(Slot {
            state,
            chain: restored.chain,
            committed: restored.committed,
            next_seq: restored.next_seq,
            next,
            position: PerTopic::from_fn(|_| Position::Unverified),
            events: self.lake.event_archive(),
            dirty: false,
            last_record_at: Instant::now(),
            cold_cache: None,
        })
    }

    /// Releases shards: flushes and checkpoints them first, so the next
    /// owner starts where this one stopped. Returns the offsets to commit.
    /// The commit includes what earlier background flushes settled, for
    /// the shards kept as well.
    pub fn revoke(&mut self, revoked: &TopicPartitionList, now: Micros) -> Option<Commit> {
        let shards = shards_of(revoked);
        let flushed = self.flush(now, false, Some(&shards));
        self.drop_shards(revoked);
        flushed.commit
    }

    /// Forgets shards without writing anything more: for partitions the
    /// group has already given to another worker. A background flush is
    /// told to skip what it has not yet written of these shards (no
    /// checkpoint of ours may land after the new owner restored) and waited
    /// for, so nothing of ours is written after this returns.
    pub fn drop_shards(&mut self, revoked: &TopicPartitionList) {
        let shards = shards_of(revoked);
        if let Some(in_flight) = &self.in_flight {
            in_flight.abandon(&shards);
        }
        for shard in &shards {
            self.slots.remove(shard);
            self.unrestored.remove(shard);
            self.to_rewind.remove(shard);
            for topic in self.topics.values() {
                self.metrics.forget_lag(topic, *shard);
            }
        }
        // Settling skips shards no longer owned: no commit, no reset.
        self.wait_for_in_flight();
        self.settled
            .offsets
            .retain(|(_, shard), _| !shards.contains(shard));
        self.metrics.partitions_assigned(self.slots.len());
    }

    /// Adds the events counted since the last call to the metrics.
    pub fn publish_tally(&mut self) {
        let tally = std::mem::take(&mut self.tally);
        for (t, consumed) in tally.consumed.iter() {
            for (event_type, n) in EventType::ALL.iter().zip(consumed) {
                if *n > 0 {
                    self.metrics.consumed(&self.topics[t], *event_type, *n);
                }
            }
        }
        for (event_type, n) in EventType::ALL.iter().zip(tally.duplicate) {
            if n > 0 {
                self.metrics.duplicate(*event_type, n);
            }
        }
    }

    /// Tries again to restore the shards whose restore failed; the first
    /// failure that remains, if any.
    fn retry_restores(&mut self) -> Option<Failure> {
        let mut remaining = None;
        if !self.unrestored.is_empty() {
            // The restore before failed; if the tables' cached snapshots
            // are what is stale (the lake was wiped or replaced), reading
            // them afresh is what lets this one succeed.
            if let Err(e) = self.lake.reload_tables() {
                tracing::warn!(error = %e, "cannot read the tables afresh yet; will retry");
            }
        }
        for shard in std::mem::take(&mut self.unrestored) {
            if let Some(failure) = self.reset(shard) {
                remaining.get_or_insert(failure);
            }
        }
        remaining
    }

    /// Forgets a shard's in-memory progress after a failure and restores it
    /// from its checkpoint; the consumer is moved back to the checkpoint's
    /// offsets by [`Worker::rewind`]. A restore that fails too (the output is
    /// still broken) leaves the shard in `unrestored`, retried before the
    /// next flush; the failure is logged here and returned. One that
    /// cannot succeed (permanent) stops the worker instead.
    fn reset(&mut self, shard: i32) -> Option<Failure> {
        match self.restore(shard) {
            Ok(slot) => {
                // Committed with the next flush's offsets, or alone if there
                // are none: as at assignment, the group's offsets may trail
                // the checkpoint, and only a flush would carry them forward.
                self.settled.cover(shard, &slot.next);
                self.slots.insert(shard, slot);
                self.to_rewind.insert(shard);
                tracing::info!(shard, "shard restored from its checkpoint");
                None
            }
            Err(failure) => self.restore_failed(shard, failure),
        }
    }

    /// A shard's restore failed. A transient failure leaves the shard in
    /// `unrestored`, retried before each flush, and is returned for the
    /// caller to report; a permanent one stops the worker.
    fn restore_failed(&mut self, shard: i32, failure: Failure) -> Option<Failure> {
        self.slots.remove(&shard);
        if !failure.is_transient() {
            self.fail(failure);
            return None;
        }
        tracing::error!(shard, error = %failure, "cannot restore shard yet; will retry");
        self.unrestored.insert(shard);
        Some(failure)
    }

    /// Resets shards after a failure that concerns them all. A restore that
    /// fails is already logged and retried before the next flush, and the
    /// failure that caused the reset is what gets reported.
    fn reset_all(&mut self, shards: impl IntoIterator<Item = i32>) {
        for shard in shards {
            if let Some(failure) = self.reset(shard) {
                tracing::debug!(shard, error = %failure, "reset deferred to the next flush");
            }
        }
    }
}

/// The partition numbers (shards) of a partition list.
fn shards_of(list: &TopicPartitionList) -> BTreeSet<i32> {
    list.elements().iter().map(|e| e.partition()).collect()
}

/// Per-batch counts of events read and duplicates, published together.
#[derive(Default)]
struct Tally {
    /// By topic, then by [`EventType::index`].
    consumed: PerTopic<[u64; EVENT_TYPE_COUNT]>,
    /// By [`EventType::index`].
    duplicate: [u64; EVENT_TYPE_COUNT],
}

impl Tally {
    fn add(&mut self, counted: records::Counted) {
        let kind = counted.event_type.index();
        self.consumed[counted.topic][kind] += 1;
        if counted.duplicate {
            self.duplicate[kind] += 1;
        }
    }

    fn merge(&mut self, other: &Tally) {
        for (t, consumed) in other.consumed.iter() {
            for (mine, theirs) in self.consumed[t].iter_mut().zip(consumed) {
                *mine += theirs;
            }
        }
        for (mine, theirs) in self.duplicate.iter_mut().zip(other.duplicate) {
            *mine += theirs;
        }
    }
}
