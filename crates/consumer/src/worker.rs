//! [`Worker`]: the shards this process owns, and what happens to them when
//! records arrive, when it is time to flush, and when the group moves
//! partitions.
//!
//! **Invariant:** a shard resumes from what the Delta tables' logs say was
//! committed for it (and that flush's checkpoint), never from the group's
//! offsets: files and checkpoint first, then the fenced commits to the
//! three tables, then the group commit, which trails for lag tools only. A
//! crash at any instant, or a pause long enough for the group to hand the
//! shard to another worker, neither loses nor repeats a count.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context as _;
use newsflow_core::{decode, Applied, ColdArticle, DecodeLimits, EventType, Micros, Shard};
use newsflow_lake::{
    Dataset, EncodedCheckpoint, EventRow, FlushBatch, FlushError, FlushObserver, Lake, ShardFlush,
    WriteStats,
};
use newsflow_settings::Settings;
use newsflow_telemetry::Metrics;
use rdkafka::consumer::Consumer;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::dead_letters::DeadLetters;

/// Where a partition's reading stands relative to its checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Position {
    /// Just assigned: the first record tells whether the group's committed
    /// offset matches the checkpoint.
    Unverified,
    /// We asked the consumer to seek to this offset; records before it are
    /// stale fetches and are dropped.
    Seeking(i64),
    /// Reading in order.
    Streaming,
}

/// One owned shard: counting state plus what the last checkpoint covers.
struct Slot {
    state: Shard,
    /// Sequence number of the shard's last flush committed to the tables.
    committed: u64,
    /// Sequence number claimed for its next flush.
    next_seq: u64,
    /// Per event topic (by index), the next offset to count; `None` when no
    /// checkpoint has seen the topic, meaning "from the beginning".
    next: [Option<i64>; 3],
    position: [Position; 3],
    /// Accepted records waiting for the next flush.
    events: Vec<EventRow>,
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
    topics: [Arc<str>; 3],
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
    /// Events read and duplicates seen since the last [`Worker::publish_tally`],
    /// by topic index and event type index: label lookups per batch, not
    /// per record.
    tally: Tally,
    /// The flush being written in the background, if any: at most one, so
    /// a shard's files and checkpoints are written in sequence order.
    in_flight: Option<InFlight>,
    /// Flushes settled outside [`Worker::poll_flushed`] (waited for before
    /// reading a cold segment, or before a rebalance), still to be
    /// committed by the run loop.
    settled: Settled,
    /// Set when a shard cannot be restored; the run loop stops on it.
    pub fatal: Option<String>,
    /// Counters for progress reports.
    pub consumed: u64,
}

/// What a flush produced for the group: the offsets to commit.
pub type Commit = TopicPartitionList;

/// The outcome of one or more finished flushes.
#[derive(Default)]
pub struct Flushed {
    /// Offsets covered by the checkpoints just written, to commit.
    pub commit: Option<Commit>,
    /// Why some output could not be made durable; the shards concerned
    /// were reset to their checkpoints and will read their records again.
    pub failure: Option<String>,
    /// Whether a flush finished (one that wrote nothing included); false
    /// when a flush was only started.
    pub completed: bool,
}

/// What finished flushes settled, before it is handed to the run loop:
/// next offsets by (topic index, shard), the first failure, whether a
/// flush finished.
#[derive(Default)]
struct Settled {
    offsets: BTreeMap<(usize, i32), i64>,
    failure: Option<String>,
    completed: bool,
}

impl Settled {
    /// Adds a later outcome: its offsets supersede earlier ones.
    fn merge(&mut self, later: Settled) {
        self.offsets.extend(later.offsets);
        if self.failure.is_none() {
            self.failure = later.failure;
        }
        self.completed |= later.completed;
    }
}

/// One shard's part of a flush: everything cut from the shard on the run
/// loop, to be written on a flush thread while counting goes on.
struct ShardJob {
    flush: ShardFlush,
    /// Next offset per topic index at the cut: what the checkpoint covers
    /// and what is committed to the group once the tables hold it.
    offsets: [Option<i64>; 3],
}

/// A flush being written on its own thread.
struct InFlight {
    handle: std::thread::JoinHandle<Vec<JobOutcome>>,
    /// Shards the group took away meanwhile: their remaining writes are
    /// skipped, the checkpoint above all (see [`Worker::drop_shards`]).
    abandoned: Abandoned,
}

/// Shards whose writes a flush must skip from now on.
type Abandoned = Arc<Mutex<BTreeSet<i32>>>;

/// A shard's job, done: its cut offsets and whether the tables hold it
/// (then the sequence number claimed for its next flush).
struct JobOutcome {
    shard: i32,
    seq: u64,
    offsets: [Option<i64>; 3],
    result: Result<u64, FlushError>,
}

impl Worker {
    /// A worker that owns nothing yet.
    pub fn new(
        settings: Arc<Settings>,
        lake: Lake,
        metrics: Arc<Metrics>,
        dead_letters: DeadLetters,
    ) -> Self {
        let [a, c, f] = settings.topics.event_topics();
        Worker {
            topics: [a.into(), c.into(), f.into()],
            limits: settings.decode_limits(),
            settings,
            lake,
            metrics,
            dead_letters,
            slots: BTreeMap::new(),
            unrestored: BTreeSet::new(),
            to_rewind: BTreeSet::new(),
            buffered: 0,
            tally: Tally::default(),
            in_flight: None,
            settled: Settled::default(),
            fatal: None,
            consumed: 0,
        }
    }

    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.iter().position(|t| &**t == topic)
    }

    /// Shards owned now.
    pub fn shards(&self) -> Vec<i32> {
        self.slots.keys().copied().collect()
    }

    /// Records accepted since the last flush.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Takes ownership of the shards in `assignment`: restores each from its
    /// checkpoint and removes files a crashed owner wrote past it.
    pub fn assign(&mut self, assignment: &TopicPartitionList) {
        let shards: BTreeSet<i32> = assignment
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        for shard in shards {
            if self.slots.contains_key(&shard) {
                continue;
            }
            self.unrestored.remove(&shard);
            match self.restore(shard) {
                Ok(slot) => {
                    self.slots.insert(shard, slot);
                }
                Err(e) => {
                    let message = format!("shard {shard} cannot be restored: {e:#}");
                    tracing::error!(shard, error = %format!("{e:#}"), "cannot restore shard; stopping");
                    self.fatal = Some(message);
                }
            }
        }
        self.metrics.partitions_assigned(self.slots.len());
    }

    fn restore(&self, shard: i32) -> anyhow::Result<Slot> {
        let rules = self.settings.counting_rules();
        let restored = self.lake.restore(shard)?;
        let (state, next) = match restored.checkpoint {
            Some(cp) => {
                let mut state = cp.state;
                state.set_rules(rules);
                let next = self.topics.clone().map(|t| cp.offsets.get(&*t).copied());
                (state, next)
            }
            None => (Shard::new(rules), [None; 3]),
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
            committed: restored.committed,
            next_seq: restored.next_seq,
            next,
            position: [Position::Unverified; 3],
            events: Vec::new(),
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
        let shards: BTreeSet<i32> = revoked.elements().iter().map(|e| e.partition()).collect();
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
        let shards: BTreeSet<i32> = revoked.elements().iter().map(|e| e.partition()).collect();
        if let Some(in_flight) = &self.in_flight {
            in_flight
                .abandoned
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(shards.iter().copied());
        }
        for shard in &shards {
            self.slots.remove(shard);
            self.unrestored.remove(shard);
            self.to_rewind.remove(shard);
            for topic in &self.topics {
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

    /// Handles one record of a batch polled at `received_at`. `consumer`
    /// is used to move a partition back to its checkpoint's offset.
    pub fn handle<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
        &mut self,
        consumer: &C,
        message: &BorrowedMessage<'_>,
        received_at: Instant,
    ) {
        let Some(t) = self.topic_index(message.topic()) else {
            return;
        };
        let shard = message.partition();
        let offset = message.offset();
        let Some(slot) = self.slots.get_mut(&shard) else {
            // A record fetched before its partition was revoked; the new
            // owner reads it again from the checkpoint.
            return;
        };
        if let Some(next) = slot.next[t] {
            if offset < next {
                return; // already counted before the checkpoint
            }
        }
        match slot.position[t] {
            Position::Streaming => {}
            Position::Seeking(target) => {
                if offset != target {
                    return;
                }
                slot.position[t] = Position::Streaming;
            }
            Position::Unverified => {
                // The group's committed offset can be ahead of our
                // checkpoint only if the output lost its checkpoint (or was
                // wiped); then rebuild from the checkpoint's offset, or from
                // the beginning of retained data.
                let target = match slot.next[t] {
                    Some(next) => next,
                    None => match consumer.fetch_watermarks(
                        message.topic(),
                        shard,
                        newsflow_kafka::REQUEST_TIMEOUT,
                    ) {
                        Ok((low, _)) => low,
                        Err(e) => {
                            tracing::warn!(topic = message.topic(), shard, error = %e, "cannot read low watermark; assuming this record is the first");
                            offset
                        }
                    },
                };
                if offset > target {
                    tracing::warn!(
                        topic = message.topic(),
                        shard,
                        offset,
                        target,
                        "group offset is ahead of the checkpoint; seeking back to it"
                    );
                    if let Some(position) = seek_back(consumer, message.topic(), shard, target) {
                        slot.position[t] = position;
                    }
                    return;
                }
                slot.position[t] = Position::Streaming;
            }
        }

        let topic = self.topics[t].clone();
        let key = message.key();
        let value = message.payload().unwrap_or_default();
        match decode(key, value, &self.limits) {
            Ok(event) => {
                let event_type = event.event_type();
                let type_index = event_type_index(event_type);
                self.tally.consumed[t][type_index] += 1;
                let mut applied = slot.state.apply(&event);
                if let Applied::Cold { segment } = applied {
                    // The article left memory after a horizon of silence and
                    // is back: restore it from its cold segment first. The
                    // segment may still be being written by the flush in
                    // flight; if that flush fails, the shard is reset and
                    // this record is read again after the rewind.
                    if self.in_flight.is_some() {
                        self.wait_for_in_flight();
                        if self.to_rewind.contains(&shard) || !self.slots.contains_key(&shard) {
                            return;
                        }
                    }
                    let slot = self.slots.get_mut(&shard).expect("checked above");
                    if let Err(e) = rehydrate(&self.lake, shard, slot, segment, &event.article_id) {
                        self.fatal = Some(format!(
                            "shard {shard}: cold segment {segment} cannot be read: {e:#}"
                        ));
                        return;
                    }
                    applied = slot.state.apply(&event);
                }
                if applied == Applied::Duplicate {
                    self.tally.duplicate[type_index] += 1;
                }
                // The payload passed validation as UTF-8 text, so the
                // strict check succeeds (and is much cheaper than the lossy
                // conversion, which walks the text in chunks).
                let payload = match std::str::from_utf8(value) {
                    Ok(text) => text.to_owned(),
                    Err(_) => String::from_utf8_lossy(value).into_owned(),
                };
                let slot = self.slots.get_mut(&shard).expect("owned");
                slot.events.push(EventRow {
                    event_id: event.event_id,
                    event_type,
                    article_id: event.article_id,
                    occurred_at: event.occurred_at,
                    topic,
                    partition: shard,
                    offset,
                    payload,
                });
                self.buffered += 1;
                self.consumed += 1;
            }
            Err(rejection) => {
                self.metrics.dead_lettered(rejection.reason.code());
                tracing::warn!(topic = &*topic, partition = shard, offset, reason = rejection.reason.code(), detail = %rejection.detail, "dead-lettered a message");
                self.dead_letters
                    .send(key, value, &rejection, &topic, shard, offset);
            }
        }
        let slot = self.slots.get_mut(&shard).expect("owned");
        slot.next[t] = Some(offset + 1);
        slot.dirty = true;
        slot.last_record_at = received_at;
    }

    /// Moves the consumer back to the checkpoint offsets of the shards reset
    /// after a failed flush, so their records are read again even if no new
    /// record arrives to reveal the gap. A seek that fails is left to the
    /// first record's position check.
    pub fn rewind<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(&mut self, consumer: &C) {
        for shard in std::mem::take(&mut self.to_rewind) {
            let Some(slot) = self.slots.get_mut(&shard) else {
                continue;
            };
            for (t, topic) in self.topics.iter().enumerate() {
                let (low, high) = match consumer.fetch_watermarks(
                    topic,
                    shard,
                    newsflow_kafka::REQUEST_TIMEOUT,
                ) {
                    Ok(watermarks) => watermarks,
                    Err(e) => {
                        tracing::warn!(topic = &**topic, shard, error = %e, "cannot read watermarks to rewind");
                        continue;
                    }
                };
                let target = slot.next[t].unwrap_or(low);
                if target >= high {
                    // Nothing after the checkpoint to read again.
                    slot.position[t] = Position::Streaming;
                    continue;
                }
                if let Some(position) = seek_back(consumer, topic, shard, target) {
                    slot.position[t] = position;
                }
            }
        }
    }

    /// Adds the events counted since the last call to the metrics.
    pub fn publish_tally(&mut self) {
        let tally = std::mem::take(&mut self.tally);
        for (t, topic) in self.topics.iter().enumerate() {
            for (i, event_type) in EventType::ALL.iter().enumerate() {
                if tally.consumed[t][i] > 0 {
                    self.metrics
                        .consumed(topic, event_type.as_str(), tally.consumed[t][i]);
                }
            }
        }
        for (i, event_type) in EventType::ALL.iter().enumerate() {
            if tally.duplicate[i] > 0 {
                self.metrics
                    .duplicate(event_type.as_str(), tally.duplicate[i]);
            }
        }
    }

    /// Whether shards reset after a failure have yet to read their records
    /// again; a flush with nothing to write proves nothing until then.
    pub fn recovering(&self) -> bool {
        !self.unrestored.is_empty()
            || !self.to_rewind.is_empty()
            || self
                .slots
                .values()
                .any(|s| s.position.iter().any(|p| matches!(p, Position::Seeking(_))))
    }

    /// Whether every owned partition has been read up to its high watermark.
    pub fn caught_up<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
        &self,
        consumer: &C,
    ) -> bool {
        if self.slots.is_empty() || !self.unrestored.is_empty() {
            return false;
        }
        for (shard, slot) in &self.slots {
            for (t, topic) in self.topics.iter().enumerate() {
                let Ok((low, high)) =
                    consumer.fetch_watermarks(topic, *shard, newsflow_kafka::REQUEST_TIMEOUT)
                else {
                    return false;
                };
                if high > low && slot.next[t].unwrap_or(low) < high {
                    return false;
                }
            }
        }
        true
    }

    /// Flushes every owned shard (or only `only`) that has something to
    /// write, and waits until it is durable: files, cold segment, then
    /// checkpoint. Returns the offsets to commit, those of a background
    /// flush that finished first included. `close_all` emits every open
    /// window; otherwise a shard's windows close when the watermark passes
    /// them, or once the shard has received no record for
    /// `window.idle_timeout` (it is idle, and analysts should see its sums
    /// match its totals). For rebalances and shutdown.
    pub fn flush(&mut self, now: Micros, close_all: bool, only: Option<&BTreeSet<i32>>) -> Flushed {
        self.wait_for_in_flight();
        let jobs = self.cut(now, close_all, only);
        let outcomes = write_jobs(&self.lake, &self.metrics, jobs, &Abandoned::default());
        let settled = self.settle(outcomes);
        self.settled.merge(settled);
        self.take_settled()
    }

    /// Starts a flush of every owned shard on a background thread and
    /// returns at once; counting goes on meanwhile. The flush before it is
    /// waited for first (at most one is in flight, so a shard's files and
    /// checkpoints appear in sequence order), and what it settled is
    /// returned for the run loop to commit. [`Worker::poll_flushed`] hands
    /// over this one's outcome once it is done.
    pub fn start_flush(&mut self, now: Micros) -> Flushed {
        self.wait_for_in_flight();
        let jobs = self.cut(now, false, None);
        if jobs.is_empty() {
            // Nothing to write: done already.
            self.settled.completed = true;
        } else {
            let (lake, metrics) = (self.lake.clone(), self.metrics.clone());
            let abandoned = Abandoned::default();
            let skip = abandoned.clone();
            let handle = std::thread::Builder::new()
                .name("newsflow-flush".into())
                .spawn(move || write_jobs(&lake, &metrics, jobs, &skip))
                .expect("spawning the flush thread");
            self.in_flight = Some(InFlight { handle, abandoned });
        }
        self.take_settled()
    }

    /// What finished flushes settled since the last call, if anything:
    /// without blocking, for the run loop to commit.
    pub fn poll_flushed(&mut self) -> Option<Flushed> {
        if self
            .in_flight
            .as_ref()
            .is_some_and(|f| f.handle.is_finished())
        {
            self.wait_for_in_flight();
        }
        let pending = !self.settled.offsets.is_empty()
            || self.settled.failure.is_some()
            || self.settled.completed;
        pending.then(|| self.take_settled())
    }

    /// Waits for the background flush, if any, and settles it.
    fn wait_for_in_flight(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            let outcomes = in_flight.handle.join().expect("the flush thread panicked");
            let settled = self.settle(outcomes);
            self.settled.merge(settled);
        }
    }

    fn take_settled(&mut self) -> Flushed {
        let settled = std::mem::take(&mut self.settled);
        let mut commit = TopicPartitionList::new();
        for ((t, shard), next) in &settled.offsets {
            let _ = commit.add_partition_offset(&self.topics[*t], *shard, Offset::Offset(*next));
        }
        Flushed {
            commit: (commit.count() > 0).then_some(commit),
            failure: settled.failure,
            completed: settled.completed,
        }
    }

    /// Cuts the shards to flush on this thread: drains their rows, takes
    /// their buffered events, and encodes their checkpoints, so that what
    /// is written describes exactly the records handled so far. Dead
    /// letters are made durable first: a checkpoint must never cover a
    /// rejected record that is not safely in the dead-letter topic.
    /// Problems are recorded in `self.settled`.
    fn cut(&mut self, now: Micros, close_all: bool, only: Option<&BTreeSet<i32>>) -> Vec<ShardJob> {
        let restore_problem = self.retry_restores();
        if let Err(e) = self.dead_letters.make_durable() {
            let problem = format!("dead letters not acknowledged: {e:#}");
            tracing::error!(error = %problem, "flush postponed; the shards restart from their checkpoints");
            self.metrics.flush_failed("dead_letters");
            for shard in self.shards() {
                if only.is_none_or(|o| o.contains(&shard)) {
                    // A failed restore is logged and retried before the next flush.
                    let _ = self.reset(shard);
                }
            }
            self.settled.failure.get_or_insert(problem);
            return Vec::new();
        }
        if let Some(problem) = restore_problem {
            self.settled.failure.get_or_insert(problem);
        }
        let idle_timeout = self.settings.window.idle_timeout;
        let mut jobs = Vec::new();
        for (shard, slot) in self.slots.iter_mut() {
            if only.is_some_and(|o| !o.contains(shard)) {
                continue;
            }
            match cut_slot(&self.topics, *shard, slot, now, close_all, idle_timeout) {
                Ok(Some(job)) => jobs.push(job),
                Ok(None) => {}
                Err(e) => {
                    // Encoding a checkpoint in memory does not fail; if it
                    // ever did, the shard starts over from its checkpoint.
                    self.settled.failure.get_or_insert(format!("{e:#}"));
                }
            }
        }
        self.buffered = self.slots.values().map(|s| s.events.len()).sum();
        self.publish_state_size(now);
        jobs
    }

    /// Settles finished jobs: offsets to commit for the shards made
    /// durable; the others are reset to their checkpoints.
    fn settle(&mut self, outcomes: Vec<JobOutcome>) -> Settled {
        let mut settled = Settled {
            completed: true,
            ..Settled::default()
        };
        for outcome in outcomes {
            if !self.slots.contains_key(&outcome.shard) {
                continue; // revoked meanwhile; the new owner takes it from here
            }
            match outcome.result {
                Ok(next_seq) => {
                    let slot = self.slots.get_mut(&outcome.shard).expect("checked above");
                    slot.committed = outcome.seq;
                    slot.next_seq = next_seq;
                    for (t, next) in outcome.offsets.iter().enumerate() {
                        if let Some(next) = next {
                            settled.offsets.insert((t, outcome.shard), *next);
                        }
                    }
                }
                Err(FlushError::Abandoned) => {}
                Err(FlushError::Fenced { table, found }) => {
                    // Another owner committed for this shard: ours is
                    // stale. Drop it without writing more; if the group
                    // still gives it to us, it is restored from the logs
                    // before the next flush (and the consumer rewound).
                    tracing::warn!(
                        shard = outcome.shard,
                        table,
                        found,
                        ours = outcome.seq,
                        "fenced: another owner committed for this shard; dropping it"
                    );
                    self.metrics.shard_fenced();
                    self.slots.remove(&outcome.shard);
                    self.unrestored.insert(outcome.shard);
                }
                Err(e) => {
                    let problem = format!("output not writable: {e:#}");
                    tracing::error!(shard = outcome.shard, error = %problem, "flush failed; the shard restarts from its last commit");
                    self.metrics.flush_failed("output");
                    settled.failure.get_or_insert(problem);
                    // A failed restore is logged and retried before the next flush.
                    let _ = self.reset(outcome.shard);
                }
            }
        }
        settled
    }

    fn publish_state_size(&self, now: Micros) {
        let (articles, cold, dedup, dedup_bytes) =
            self.slots.values().fold((0, 0, 0, 0), |(a, c, d, b), s| {
                (
                    a + s.state.article_count(),
                    c + s.state.cold_article_count(),
                    d + s.state.dedup_entries(),
                    b + s.state.dedup_bytes(),
                )
            });
        self.metrics.state_size(articles, cold, dedup, dedup_bytes);
        if let Some(lowest) = self
            .slots
            .values()
            .filter_map(|s| s.state.watermark())
            .min()
        {
            self.metrics.watermark_lag((now - lowest) as f64 / 1e6);
        }
    }

    /// Tries again to restore the shards whose restore failed; the first
    /// problem that remains, if any.
    fn retry_restores(&mut self) -> Option<String> {
        let mut problem = None;
        for shard in std::mem::take(&mut self.unrestored) {
            match self.reset(shard) {
                Ok(()) => tracing::info!(shard, "shard restored after an output failure"),
                Err(e) => {
                    problem.get_or_insert(format!("shard {shard} cannot be restored: {e:#}"));
                }
            }
        }
        problem
    }

    /// Forgets a shard's in-memory progress after a failure and restores it
    /// from its checkpoint; the consumer is moved back to the checkpoint's
    /// offsets by [`Worker::rewind`]. A restore that fails too (the output is
    /// still broken) leaves the shard in `unrestored`, retried before the
    /// next flush.
    fn reset(&mut self, shard: i32) -> anyhow::Result<()> {
        match self.restore(shard) {
            Ok(slot) => {
                self.slots.insert(shard, slot);
                self.to_rewind.insert(shard);
                Ok(())
            }
            Err(e) => {
                tracing::error!(shard, error = %format!("{e:#}"), "cannot restore shard yet; will retry");
                self.slots.remove(&shard);
                self.unrestored.insert(shard);
                Err(e)
            }
        }
    }
}

/// Brings an evicted article back from cold segment `segment`. Segments are
/// read whole, so the last one read is kept: articles evicted together
/// tend to return together.
fn rehydrate(
    lake: &Lake,
    shard: i32,
    slot: &mut Slot,
    segment: u64,
    article_id: &str,
) -> anyhow::Result<()> {
    if slot
        .cold_cache
        .as_ref()
        .is_none_or(|(seq, _)| *seq != segment)
    {
        slot.cold_cache = Some((segment, lake.load_cold_segment(shard, segment)?));
    }
    let (_, articles) = slot.cold_cache.as_mut().expect("just filled");
    match articles.remove(article_id) {
        Some(cold) => slot.state.rehydrate(article_id.to_string(), cold),
        // Only a 64-bit fingerprint collision between two evicted articles
        // leads here: the article is new after all.
        None => slot.state.forget_cold(article_id),
    }
    Ok(())
}

/// Cuts one shard for a flush (see [`Worker::cut`]); `None` when it has
/// nothing to write. The flush takes the sequence number claimed for it;
/// the next is claimed once this one is committed, and a cut waits for
/// that (at most one flush is in flight).
fn cut_slot(
    topics: &[Arc<str>; 3],
    shard: i32,
    slot: &mut Slot,
    now: Micros,
    close_all: bool,
    idle_timeout: std::time::Duration,
) -> anyhow::Result<Option<ShardJob>> {
    let idle = slot.is_idle(idle_timeout);
    if !slot.dirty && !slot.state.has_pending() {
        return Ok(None);
    }
    let seq = slot.next_seq;
    let drained = slot.state.drain(now, close_all || idle, seq);
    let batch = FlushBatch {
        totals: drained.totals,
        engagement: drained.engagement,
        events: std::mem::take(&mut slot.events),
    };
    if batch.is_empty() && !slot.dirty && drained.evicted.is_empty() {
        return Ok(None);
    }
    let offsets: BTreeMap<String, i64> = topics
        .iter()
        .zip(slot.next)
        .filter_map(|(topic, next)| next.map(|n| (topic.to_string(), n)))
        .collect();
    let checkpoint = EncodedCheckpoint::encode(shard, seq, slot.committed, &offsets, &slot.state)
        .context("encoding checkpoint")?;
    slot.dirty = false;
    Ok(Some(ShardJob {
        flush: ShardFlush {
            checkpoint,
            batch,
            evicted: drained.evicted,
        },
        offsets: slot.next,
    }))
}

/// Writes and commits the jobs of one flush (see [`Lake::flush`]: shards'
/// files in parallel, then one fenced commit per table for all of them).
/// The caller commits to the group only what the tables now hold.
fn write_jobs(
    lake: &Lake,
    metrics: &Metrics,
    jobs: Vec<ShardJob>,
    abandoned: &Abandoned,
) -> Vec<JobOutcome> {
    /// What the run loop needs of a job once its rows are gone.
    struct Cut {
        offsets: [Option<i64>; 3],
        occurred: Vec<Micros>,
    }
    let mut cut: BTreeMap<i32, Cut> = BTreeMap::new();
    let mut flushes = Vec::with_capacity(jobs.len());
    for job in jobs {
        let occurred = job
            .flush
            .batch
            .events
            .iter()
            .map(|e| e.occurred_at)
            .collect();
        cut.insert(
            job.flush.shard(),
            Cut {
                offsets: job.offsets,
                occurred,
            },
        );
        flushes.push(job.flush);
    }
    let is_abandoned = |shard: i32| {
        abandoned
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(&shard)
    };
    let outcomes = lake.flush(flushes, &is_abandoned, &MetricsObserver(metrics));
    let now_seconds = crate::now_micros() as f64 / 1e6;
    outcomes
        .into_iter()
        .map(|outcome| {
            let Cut { offsets, occurred } =
                cut.remove(&outcome.shard).expect("one outcome per job");
            if outcome.result.is_ok() {
                // The batch's events are durable now: how long after they happened.
                metrics.durable(occurred.iter().map(|t| now_seconds - *t as f64 / 1e6));
            }
            JobOutcome {
                shard: outcome.shard,
                seq: outcome.seq,
                offsets,
                result: outcome.result,
            }
        })
        .collect()
}

/// Hands what a flush reports to the metrics.
struct MetricsObserver<'a>(&'a Metrics);

impl FlushObserver for MetricsObserver<'_> {
    fn written(&self, dataset: Dataset, stats: WriteStats, seconds: f64) {
        self.0.written(
            dataset.name(),
            stats.files,
            stats.rows,
            stats.bytes,
            seconds,
        );
    }

    fn checkpointed(&self, seconds: f64) {
        self.0.checkpointed(seconds);
    }

    fn committed(
        &self,
        dataset: Dataset,
        committed: u64,
        conflicts: u64,
        fenced: u64,
        seconds: f64,
    ) {
        self.0
            .lake_committed(dataset.name(), committed, conflicts, fenced, seconds);
    }
}

/// Per-batch counts of events read and duplicates, published together.
#[derive(Default)]
struct Tally {
    consumed: [[u64; 4]; 3],
    duplicate: [u64; 4],
}

/// The position of `event_type` in [`EventType::ALL`].
fn event_type_index(event_type: EventType) -> usize {
    EventType::ALL
        .iter()
        .position(|t| *t == event_type)
        .expect("every event type is in ALL")
}

/// Moves the consumer back to `target` on one partition; the position to
/// record, or `None` when the seek failed (logged), in which case the next
/// record's position check tries again.
fn seek_back<C: Consumer<X>, X: rdkafka::consumer::ConsumerContext>(
    consumer: &C,
    topic: &str,
    shard: i32,
    target: i64,
) -> Option<Position> {
    match consumer.seek(
        topic,
        shard,
        Offset::Offset(target),
        newsflow_kafka::REQUEST_TIMEOUT,
    ) {
        Ok(()) => Some(Position::Seeking(target)),
        Err(e) => {
            tracing::warn!(topic, shard, target, error = %e, "seek failed; the next record retries it");
            None
        }
    }
}
