//! The background flush: the run loop cuts what each shard has to write
//! ([`Worker::start_flush`]), a flush thread writes and commits it while
//! counting goes on, and the run loop settles the outcome
//! ([`Worker::poll_flushed`]) and commits the group's offsets for what the
//! tables now hold. At most one flush is in flight, so a shard's files and
//! checkpoints appear in sequence order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{mpsc, Arc, Mutex, PoisonError};

use newsflow_core::Micros;
use newsflow_lake::{
    Dataset, EncodedCheckpoint, EventTimes, FlushBatch, FlushError, FlushObserver, Lake,
    ShardFlush, WriteStats,
};
use newsflow_telemetry::{Metrics, Table};
use rdkafka::TopicPartitionList;

use super::{Slot, Worker};
use crate::failure::Failure;
use crate::topics::{EventTopic, PerTopic, TopicNames};

/// What a flush produced for the group: the offsets to commit.
pub type Commit = TopicPartitionList;

/// The outcome of one or more finished flushes.
#[derive(Default)]
pub struct Flushed {
    /// Offsets covered by the checkpoints just written, to commit.
    pub commit: Option<Commit>,
    /// Why some output could not be made durable; the shards concerned
    /// were reset to their checkpoints and will read their records again.
    pub failure: Option<Failure>,
    /// Whether a flush finished (one that wrote nothing included); false
    /// when a flush was only started.
    pub completed: bool,
}

/// What finished flushes settled, before it is handed to the run loop:
/// next offsets by (topic, shard), the first failure, whether a flush
/// finished.
#[derive(Default)]
pub(super) struct Settled {
    pub(super) offsets: BTreeMap<(EventTopic, i32), i64>,
    pub(super) failure: Option<Failure>,
    completed: bool,
}

impl Settled {
    /// Records that the tables hold `shard`'s records up to `next` (per
    /// topic, where it has one): the group may commit there. A later call
    /// supersedes an earlier one.
    pub(super) fn cover(&mut self, shard: i32, next: &PerTopic<Option<i64>>) {
        for (topic, next) in next.known() {
            self.offsets.insert((topic, shard), next);
        }
    }
}

/// One shard's part of a flush: everything cut from the shard on the run
/// loop, to be written on a flush thread while counting goes on.
struct ShardJob {
    flush: ShardFlush,
    /// Next offset per topic at the cut: what the checkpoint covers and
    /// what is committed to the group once the tables hold it.
    offsets: PerTopic<Option<i64>>,
}

/// A flush being written on the flush thread.
pub(super) struct InFlight {
    /// Where the flush thread hands over the outcome.
    outcome: mpsc::Receiver<Vec<JobOutcome>>,
    /// When it started, for the watchdog's overdue check.
    started: std::time::Instant,
    /// Shards the group took away meanwhile: their remaining writes are
    /// skipped, the checkpoint above all (see [`Worker::drop_shards`]).
    abandoned: Abandoned,
}

impl InFlight {
    /// The flush's outcome if it is done, without waiting.
    fn outcome_if_done(&self) -> Option<Vec<JobOutcome>> {
        match self.outcome.try_recv() {
            Ok(outcomes) => Some(outcomes),
            Err(mpsc::TryRecvError::Empty) => None,
            Err(mpsc::TryRecvError::Disconnected) => panic!("the flush thread panicked"),
        }
    }

    /// Tells the flush to write nothing more for `shards`.
    pub(super) fn abandon(&self, shards: &BTreeSet<i32>) {
        self.abandoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(shards.iter().copied());
    }
}

/// Shards whose writes a flush must skip from now on.
type Abandoned = Arc<Mutex<BTreeSet<i32>>>;

/// The thread background flushes are written on, one at a time: started
/// with the first and kept until the worker goes. A thread per flush cost
/// a stack and an allocator heap each time, whose pages were faulted in
/// again by the next (docs/benchmarks.md, issue 24).
#[derive(Default)]
pub(super) struct FlushThread {
    requests: Option<mpsc::Sender<FlushRequest>>,
}

/// One flush's writes, and the channel for its outcome.
type FlushRequest = Box<dyn FnOnce() + Send>;

impl FlushThread {
    /// Hands `write` to the flush thread; its outcome arrives on the
    /// returned channel, which closes without one if `write` panicked.
    fn start(
        &mut self,
        write: impl FnOnce() -> Vec<JobOutcome> + Send + 'static,
    ) -> mpsc::Receiver<Vec<JobOutcome>> {
        let (done, outcome) = mpsc::sync_channel(1);
        let request: FlushRequest = Box::new(move || {
            // The run loop may have stopped waiting for it; nothing to do then.
            let _ = done.send(write());
        });
        self.requests
            .get_or_insert_with(spawn_flush_thread)
            .send(request)
            .expect("the flush thread panicked");
        outcome
    }
}

fn spawn_flush_thread() -> mpsc::Sender<FlushRequest> {
    let (requests, incoming) = mpsc::channel::<FlushRequest>();
    std::thread::Builder::new()
        .name("newsflow-flush".into())
        // Ends when the worker, which holds the sender, is dropped.
        .spawn(move || incoming.into_iter().for_each(|write| write()))
        .expect("spawning the flush thread");
    requests
}

/// A shard's job, done: its cut offsets and whether the tables hold it
/// (then the sequence number claimed for its next flush).
struct JobOutcome {
    shard: i32,
    seq: u64,
    offsets: PerTopic<Option<i64>>,
    result: Result<u64, FlushError>,
}

impl Worker {
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
        self.settle(outcomes);
        self.take_settled()
    }

    /// Starts a flush of every owned shard on a background thread and
    /// returns at once; counting goes on meanwhile. The flush before it is
    /// waited for first, and what it settled is returned for the run loop
    /// to commit. [`Worker::poll_flushed`] hands over this one's outcome
    /// once it is done.
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
            let outcome = self
                .flush_thread
                .start(move || write_jobs(&lake, &metrics, jobs, &skip));
            self.in_flight = Some(InFlight {
                outcome,
                started: std::time::Instant::now(),
                abandoned,
            });
        }
        self.take_settled()
    }

    /// When the background flush in flight started, if one is.
    pub fn flush_started(&self) -> Option<std::time::Instant> {
        self.in_flight.as_ref().map(|f| f.started)
    }

    /// What finished flushes settled since the last call, if anything:
    /// without blocking, for the run loop to commit.
    pub fn poll_flushed(&mut self) -> Option<Flushed> {
        if let Some(outcomes) = self.in_flight.as_ref().and_then(InFlight::outcome_if_done) {
            self.in_flight = None;
            self.settle(outcomes);
        }
        let pending = !self.settled.offsets.is_empty()
            || self.settled.failure.is_some()
            || self.settled.completed;
        pending.then(|| self.take_settled())
    }

    /// Waits for the background flush, if any, and settles it.
    pub(super) fn wait_for_in_flight(&mut self) {
        if let Some(in_flight) = self.in_flight.take() {
            let outcomes = in_flight.outcome.recv().expect("the flush thread panicked");
            self.settle(outcomes);
        }
    }

    fn take_settled(&mut self) -> Flushed {
        let settled = std::mem::take(&mut self.settled);
        let commit = self.group_offsets(
            settled
                .offsets
                .iter()
                .map(|((topic, shard), next)| (*topic, *shard, *next)),
        );
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
    /// Failures are recorded in `self.settled`.
    fn cut(&mut self, now: Micros, close_all: bool, only: Option<&BTreeSet<i32>>) -> Vec<ShardJob> {
        let restore_failure = self.retry_restores();
        if let Err(e) = self.dead_letters.make_durable() {
            let failure = Failure::DeadLetters(e.into());
            self.metrics.flush_failed(failure.stage(), &failure);
            let concerned: Vec<i32> = self
                .shards()
                .into_iter()
                .filter(|shard| only.is_none_or(|o| o.contains(shard)))
                .collect();
            self.reset_all(concerned);
            self.settled.failure.get_or_insert(failure);
            return Vec::new();
        }
        if let Some(failure) = restore_failure {
            self.settled.failure.get_or_insert(failure);
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
                Err(failure) => {
                    // Encoding a checkpoint in memory does not fail; if it
                    // ever did, the shard starts over from its checkpoint.
                    self.settled.failure.get_or_insert(failure);
                }
            }
        }
        self.buffered = self.slots.values().map(|s| s.events.len()).sum();
        self.publish_state_size(now);
        jobs
    }

    /// Settles finished jobs into `self.settled`: offsets to commit for the
    /// shards made durable; the others are reset to their checkpoints.
    fn settle(&mut self, outcomes: Vec<JobOutcome>) {
        self.settled.completed = true;
        for outcome in outcomes {
            let shard = outcome.shard;
            let Some(slot) = self.slots.get_mut(&shard) else {
                continue; // revoked meanwhile; the new owner takes it from here
            };
            match outcome.result {
                Ok(next_seq) => {
                    slot.committed = outcome.seq;
                    slot.next_seq = next_seq;
                    self.settled.cover(shard, &outcome.offsets);
                }
                Err(FlushError::Abandoned) => {}
                Err(FlushError::Fenced { table, found }) => {
                    // Another owner committed for this shard: ours is
                    // stale. Drop it without writing more; if the group
                    // still gives it to us, it is restored from the logs
                    // before the next flush (and the consumer rewound).
                    self.metrics
                        .shard_fenced(shard, table_label(table), found, outcome.seq);
                    self.slots.remove(&shard);
                    self.unrestored.insert(shard);
                }
                Err(e) => {
                    let failure = Failure::Output { shard, source: e };
                    self.metrics.flush_failed(failure.stage(), &failure);
                    if failure.is_transient() {
                        self.settled.failure.get_or_insert(failure);
                        self.reset_all([shard]);
                    } else {
                        self.fail(failure);
                    }
                }
            }
        }
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
}

/// Cuts one shard for a flush (see [`Worker::cut`]); `None` when it has
/// nothing to write. The flush takes the sequence number claimed for it;
/// the next is claimed once this one is committed, and a cut waits for
/// that (at most one flush is in flight).
fn cut_slot(
    topics: &TopicNames,
    shard: i32,
    slot: &mut Slot,
    now: Micros,
    close_all: bool,
    idle_timeout: std::time::Duration,
) -> Result<Option<ShardJob>, Failure> {
    let idle = slot.is_idle(idle_timeout);
    if !slot.dirty && !slot.state.has_pending() {
        return Ok(None);
    }
    let seq = slot.next_seq;
    let drained = slot.state.drain(now, close_all || idle, seq);
    let batch = FlushBatch {
        totals: drained.totals,
        engagement: drained.engagement,
        events: slot.events.finish(),
    };
    if batch.is_empty() && !slot.dirty && drained.evicted.is_empty() {
        return Ok(None);
    }
    let offsets: BTreeMap<String, i64> = topics
        .iter()
        .filter_map(|(topic, name)| slot.next[topic].map(|n| (name.to_string(), n)))
        .collect();
    let checkpoint = EncodedCheckpoint::encode(
        shard,
        seq,
        slot.committed,
        &offsets,
        &mut slot.state,
        &mut slot.chain,
    )
    .map_err(|e| Failure::Checkpoint { shard, source: e })?;
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
    /// What the run loop needs of a job once the lake has taken it: the
    /// cut offsets, and the rows' event times.
    struct Cut {
        offsets: PerTopic<Option<i64>>,
        times: EventTimes,
    }
    let mut cut: BTreeMap<i32, Cut> = BTreeMap::new();
    let mut flushes = Vec::with_capacity(jobs.len());
    for mut job in jobs {
        cut.insert(
            job.flush.shard(),
            Cut {
                offsets: job.offsets,
                times: job.flush.batch.events.take_event_times(),
            },
        );
        flushes.push(job.flush);
    }
    let is_abandoned = |shard: i32| {
        abandoned
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(&shard)
    };
    let outcomes = lake.flush(flushes, &is_abandoned, &MetricsObserver(metrics));
    let now_seconds = crate::now_micros() as f64 / 1e6;
    outcomes
        .into_iter()
        .map(|outcome| {
            let Cut { offsets, times } = cut.remove(&outcome.shard).expect("one outcome per job");
            if outcome.result.is_ok() {
                // The batch's events are durable now: how long after they happened.
                metrics.durable(times.iter().map(|t| now_seconds - t as f64 / 1e6));
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
            table_label(dataset),
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
            .lake_committed(table_label(dataset), committed, conflicts, fenced, seconds);
    }
}

/// The metric label of a table.
fn table_label(dataset: Dataset) -> Table {
    match dataset {
        Dataset::ArticleTotals => Table::ArticleTotals,
        Dataset::ArticleEngagement => Table::ArticleEngagement,
        Dataset::Events => Table::Events,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_table_is_labelled_by_its_name() {
        for dataset in Dataset::ALL {
            assert_eq!(table_label(dataset).as_str(), dataset.name());
        }
        assert_eq!(Table::ALL.len(), Dataset::ALL.len());
    }
}
