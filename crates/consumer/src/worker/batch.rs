//! A polled batch, its shards counted side by side: shards share nothing,
//! so each shard's records are counted on a lane of their own, in their
//! order ([`take`] on the shard's slot alone), and what the worker shares
//! is settled after, on the run loop's thread, a shard at a time.

use std::collections::BTreeMap;
use std::time::Instant;

use newsflow_core::Rejection;
use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Message};

use super::records::{take, Reading, Taken};
use super::{Slot, Tally, Worker};
use crate::topics::EventTopic;

impl Worker {
    /// Handles a polled batch. Shards are independent, so each shard's
    /// records are counted in their order, the shards spread over the
    /// worker's counting lanes (with one, or one shard, on this thread
    /// alone: the same path, no other thread involved); what the worker
    /// shares (tallies, dead letters, a cold article's way back, which waits
    /// for the flush in flight) is settled here after, one shard at a time.
    pub fn handle_batch<C: Consumer<X> + Sync, X: ConsumerContext>(
        &mut self,
        consumer: &C,
        batch: &[BorrowedMessage<'_>],
        received_at: Instant,
    ) {
        let mut by_shard: BTreeMap<i32, Vec<&BorrowedMessage<'_>>> = BTreeMap::new();
        for message in batch {
            by_shard
                .entry(message.partition())
                .or_default()
                .push(message);
        }
        let reading = Reading {
            topics: &self.topics,
            limits: &self.limits,
            consumer,
        };
        // Records of shards not owned (fetched before a revoke) are left
        // out, as `handle` leaves them.
        let work: Vec<_> = self
            .slots
            .iter_mut()
            .filter_map(|(shard, slot)| {
                by_shard
                    .remove(shard)
                    .map(|records| (*shard, slot, records))
            })
            .collect();
        let passes = self.counting.run(
            work,
            |(_, _, records)| records.len(),
            |(shard, slot, records)| {
                let pass = count_shard(&reading, shard, slot, &records, received_at);
                (shard, records, pass)
            },
        );
        for (shard, records, pass) in passes {
            self.settle_pass(consumer, shard, &records, pass, received_at);
        }
    }

    /// Settles what counting one shard's records on a thread left for the
    /// worker: tallies, dead letters, and the records after one whose
    /// article has to come back from a cold segment, handled here.
    fn settle_pass<C: Consumer<X>, X: ConsumerContext>(
        &mut self,
        consumer: &C,
        shard: i32,
        records: &[&BorrowedMessage<'_>],
        pass: ShardPass,
        received_at: Instant,
    ) {
        self.tally.merge(&pass.tally);
        self.buffered += pass.counted;
        self.consumed += pass.counted as u64;
        for (i, topic, rejection) in pass.rejected {
            self.dead_letter(topic, shard, records[i], &rejection);
        }
        if let Some(first) = pass.stopped_at {
            for message in &records[first..] {
                self.handle(consumer, message, received_at);
            }
        }
    }
}

/// What counting one shard's share of a batch on a thread leaves for the
/// worker to settle.
#[derive(Default)]
struct ShardPass {
    tally: Tally,
    counted: usize,
    /// Records to dead-letter: index in the shard's records, topic, reason.
    rejected: Vec<(usize, EventTopic, Rejection)>,
    /// The first record whose article is cold: it and the records after it
    /// are left to [`Worker::handle`].
    stopped_at: Option<usize>,
}

fn count_shard<C: Consumer<X>, X: ConsumerContext>(
    reading: &Reading<'_, C>,
    shard: i32,
    slot: &mut Slot,
    records: &[&BorrowedMessage<'_>],
    received_at: Instant,
) -> ShardPass {
    let mut pass = ShardPass::default();
    for (i, message) in records.iter().enumerate() {
        match take(reading, shard, slot, message, received_at) {
            Taken::Skipped => {}
            Taken::Counted(counted) => {
                pass.tally.add(counted);
                pass.counted += 1;
            }
            Taken::Rejected { topic, rejection } => pass.rejected.push((i, topic, rejection)),
            Taken::Cold { .. } => {
                pass.stopped_at = Some(i);
                break;
            }
        }
    }
    pass
}
