//! What the worker does with each record: check its position against the
//! shard's checkpoint, then count it or dead-letter it. And the moves back
//! to a checkpoint after a failure ([`Worker::rewind`]).

use std::time::Instant;

use newsflow_core::{decode_keeping_text, Applied, DecodeLimits, EventType, Rejection};
use newsflow_lake::{EventRow, Lake};
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::Offset;

use super::{Slot, Worker};
use crate::failure::Failure;
use crate::topics::{EventTopic, TopicNames};

/// Where a partition's reading stands relative to its checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Position {
    /// Just assigned: the first record tells whether the group's committed
    /// offset matches the checkpoint.
    Unverified,
    /// We asked the consumer to seek to this offset; records before it are
    /// stale fetches and are dropped.
    Seeking(i64),
    /// Reading in order.
    Streaming,
}

impl Worker {
    /// Handles one record of a batch polled at `received_at`. `consumer`
    /// is used to move a partition back to its checkpoint's offset.
    pub fn handle<C: Consumer<X>, X: ConsumerContext>(
        &mut self,
        consumer: &C,
        message: &BorrowedMessage<'_>,
        received_at: Instant,
    ) {
        let shard = message.partition();
        loop {
            let Some(slot) = self.slots.get_mut(&shard) else {
                // A record fetched before its partition was revoked; the new
                // owner reads it again from the checkpoint.
                return;
            };
            let reading = Reading {
                topics: &self.topics,
                limits: &self.limits,
                consumer,
            };
            match take(&reading, shard, slot, message, received_at) {
                Taken::Skipped => return,
                Taken::Counted(counted) => {
                    self.tally.add(counted);
                    self.buffered += 1;
                    self.consumed += 1;
                    return;
                }
                Taken::Rejected { topic, rejection } => {
                    self.dead_letter(topic, shard, message, &rejection);
                    return;
                }
                Taken::Cold {
                    segment,
                    article_id,
                } => {
                    // Its article is in memory after this (rehydrated, or
                    // forgotten as cold and new), so the record is taken
                    // again and counted.
                    if !self.bring_back(shard, segment, &article_id) {
                        return;
                    }
                }
            }
        }
    }

    /// Brings an article back from cold segment `segment` before its event
    /// is counted. `false` when the record is left to be read again: the
    /// shard was reset or taken away while waiting for the flush in flight,
    /// or the segment could not be read (then the worker stops).
    fn bring_back(&mut self, shard: i32, segment: u64, article_id: &str) -> bool {
        // The segment may still be being written by the flush in flight;
        // if that flush fails, the shard is reset and this record is read
        // again after the rewind.
        if self.in_flight.is_some() {
            self.wait_for_in_flight();
            if self.to_rewind.contains(&shard) || !self.slots.contains_key(&shard) {
                return false;
            }
        }
        let slot = self.slots.get_mut(&shard).expect("checked above");
        if let Err(failure) = rehydrate(&self.lake, shard, slot, segment, article_id) {
            // Transient: the shard starts again from its checkpoint and
            // reads this record again after the back-off.
            if failure.is_transient() {
                self.reset_all([shard]);
            }
            self.fail(failure);
            return false;
        }
        true
    }

    /// Sends a rejected record to the dead-letter topic with its reason;
    /// logged and counted in one call.
    pub(super) fn dead_letter(
        &mut self,
        topic: EventTopic,
        shard: i32,
        message: &BorrowedMessage<'_>,
        rejection: &Rejection,
    ) {
        let name = &self.topics[topic];
        let offset = message.offset();
        self.metrics.dead_lettered(rejection, name, shard, offset);
        self.dead_letters.send(
            message.key(),
            message.payload().unwrap_or_default(),
            rejection,
            name,
            shard,
            offset,
        );
    }

    /// Moves the consumer back to the checkpoint offsets of the shards reset
    /// after a failed flush, so their records are read again even if no new
    /// record arrives to reveal the gap. A seek that fails is left to the
    /// first record's position check.
    pub fn rewind<C: Consumer<X>, X: ConsumerContext>(&mut self, consumer: &C) {
        for shard in std::mem::take(&mut self.to_rewind) {
            let Some(slot) = self.slots.get_mut(&shard) else {
                continue;
            };
            for (t, name) in self.topics.iter() {
                let (low, high) = match consumer.fetch_watermarks(
                    name,
                    shard,
                    newsflow_kafka::REQUEST_TIMEOUT,
                ) {
                    Ok(watermarks) => watermarks,
                    Err(e) => {
                        tracing::warn!(topic = &**name, shard, error = %e, "cannot read watermarks to rewind");
                        continue;
                    }
                };
                let target = slot.next[t].unwrap_or(low);
                if target >= high {
                    // Nothing after the checkpoint to read again.
                    slot.position[t] = Position::Streaming;
                    continue;
                }
                if let Some(position) = seek_back(consumer, name, shard, target) {
                    slot.position[t] = position;
                }
            }
        }
    }

    /// Whether shards reset after a failure have yet to read their records
    /// again; a flush with nothing to write proves nothing until then.
    pub fn recovering(&self) -> bool {
        !self.unrestored.is_empty()
            || !self.to_rewind.is_empty()
            || self.slots.values().any(|s| {
                s.position
                    .values()
                    .any(|p| matches!(p, Position::Seeking(_)))
            })
    }

    /// Whether every owned partition has been read up to its high watermark.
    pub fn caught_up<C: Consumer<X>, X: ConsumerContext>(&self, consumer: &C) -> bool {
        if self.slots.is_empty() || !self.unrestored.is_empty() {
            return false;
        }
        for (shard, slot) in &self.slots {
            for (t, name) in self.topics.iter() {
                let Ok((low, high)) =
                    consumer.fetch_watermarks(name, *shard, newsflow_kafka::REQUEST_TIMEOUT)
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
}

/// Whether a record at `offset` of `topic` is the next one to count for
/// its shard. Records the checkpoint already covers, and stale fetches
/// before a seek's target, are not. The first record after an assignment
/// verifies the group's offset against the checkpoint, and moves the
/// consumer back to the checkpoint when the group's offset is ahead.
fn in_position<C: Consumer<X>, X: ConsumerContext>(
    consumer: &C,
    (name, topic): (&str, EventTopic),
    shard: i32,
    slot: &mut Slot,
    offset: i64,
) -> bool {
    let checkpointed = slot.next[topic];
    if checkpointed.is_some_and(|next| offset < next) {
        return false; // already counted before the checkpoint
    }
    match slot.position[topic] {
        Position::Streaming => true,
        Position::Seeking(target) => {
            if offset != target {
                return false;
            }
            slot.position[topic] = Position::Streaming;
            true
        }
        Position::Unverified => {
            // The group's committed offset can be ahead of our checkpoint
            // only if the output lost its checkpoint (or was wiped); then
            // rebuild from the checkpoint's offset, or from the beginning
            // of retained data.
            let target = match checkpointed {
                Some(next) => next,
                None => {
                    match consumer.fetch_watermarks(name, shard, newsflow_kafka::REQUEST_TIMEOUT) {
                        Ok((low, _)) => low,
                        Err(e) => {
                            tracing::warn!(topic = name, shard, error = %e, "cannot read low watermark; assuming this record is the first");
                            offset
                        }
                    }
                }
            };
            if offset > target {
                tracing::warn!(
                    topic = name,
                    shard,
                    offset,
                    target,
                    "group offset is ahead of the checkpoint; seeking back to it"
                );
                if let Some(position) = seek_back(consumer, name, shard, target) {
                    slot.position[topic] = position;
                }
                return false;
            }
            slot.position[topic] = Position::Streaming;
            true
        }
    }
}

/// Moves the consumer back to `target` on one partition; the position to
/// record, or `None` when the seek failed (logged), in which case the next
/// record's position check tries again.
fn seek_back<C: Consumer<X>, X: ConsumerContext>(
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

/// What counting a record reads besides its shard's slot; shared by the
/// threads that count shards side by side.
pub(super) struct Reading<'w, C> {
    pub(super) topics: &'w TopicNames,
    pub(super) limits: &'w DecodeLimits,
    pub(super) consumer: &'w C,
}

/// What became of one record, decided on its shard's slot alone.
pub(super) enum Taken {
    /// Not to be counted now: an unknown topic, a record the checkpoint
    /// covers, or a stale fetch before a seek's target.
    Skipped,
    /// Counted (or recognised as a duplicate) and archived.
    Counted(Counted),
    /// Invalid: for the dead-letter topic.
    Rejected {
        topic: EventTopic,
        rejection: Rejection,
    },
    /// Its article left memory: bring it back from `segment` and take the
    /// record again. Nothing of the record was applied.
    Cold { segment: u64, article_id: String },
}

/// A record counted: what the tallies need of it.
#[derive(Clone, Copy)]
pub(super) struct Counted {
    pub(super) topic: EventTopic,
    pub(super) event_type: EventType,
    pub(super) duplicate: bool,
}

/// Checks a record's position, decodes it, counts it and archives it, on
/// its shard's slot alone; the slot's offsets move past it unless it has
/// to wait for its article ([`Taken::Cold`]) or is skipped.
pub(super) fn take<C: Consumer<X>, X: ConsumerContext>(
    reading: &Reading<'_, C>,
    shard: i32,
    slot: &mut Slot,
    message: &BorrowedMessage<'_>,
    received_at: Instant,
) -> Taken {
    let name = message.topic();
    let Some(topic) = reading.topics.find(name) else {
        return Taken::Skipped;
    };
    let offset = message.offset();
    if !in_position(reading.consumer, (name, topic), shard, slot, offset) {
        return Taken::Skipped;
    }
    let value = message.payload().unwrap_or_default();
    let taken = match decode_keeping_text(message.key(), value, reading.limits) {
        Ok((event, payload)) => {
            let applied = slot.state.apply(&event);
            if let Applied::Cold { segment } = applied {
                return Taken::Cold {
                    segment,
                    article_id: event.article_id.to_string(),
                };
            }
            let event_type = event.event_type();
            slot.events.push(&EventRow {
                event_id: &event.event_id,
                event_type,
                article_id: &event.article_id,
                occurred_at: event.occurred_at,
                topic: &reading.topics[topic],
                partition: shard,
                offset,
                payload,
            });
            Taken::Counted(Counted {
                topic,
                event_type,
                duplicate: applied == Applied::Duplicate,
            })
        }
        Err(rejection) => Taken::Rejected { topic, rejection },
    };
    slot.next[topic] = Some(offset + 1);
    slot.dirty = true;
    slot.last_record_at = received_at;
    taken
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
) -> Result<(), Failure> {
    if slot
        .cold_cache
        .as_ref()
        .is_none_or(|(seq, _)| *seq != segment)
    {
        let articles =
            lake.load_cold_segment(shard, segment)
                .map_err(|e| Failure::ColdSegment {
                    shard,
                    segment,
                    source: e,
                })?;
        slot.cold_cache = Some((segment, articles));
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
