//! The `events/` rows of a shard between two flushes, kept as Arrow columns
//! from the moment a record is accepted.
//!
//! The worker used to keep one `String` per payload (and per id) until the
//! flush copied them all into Arrow arrays: two allocations, two copies and
//! a cross-thread free per record. Here a record's text goes straight from
//! the Kafka message into the column of its table partition, and a flush
//! only wraps the buffers (see `docs/benchmarks.md`).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringBuilder, TimestampMicrosecondArray,
};
use newsflow_core::{EventType, Micros};

use crate::datasets::{day_number, events_schema, PartitionBatch, PartitionValue};

/// One accepted Kafka record, as archived in `events/`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventRow<'a> {
    /// The event's id.
    pub event_id: &'a str,
    /// The event's type.
    pub event_type: EventType,
    /// The article it is about.
    pub article_id: &'a str,
    /// Event time.
    pub occurred_at: Micros,
    /// Source topic.
    pub topic: &'a str,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// The original JSON text.
    pub payload: &'a str,
}

/// Rows accepted since the last flush, as columns per table partition
/// (event type, then the day of the event time). Built on the run loop;
/// [`EventArchive::finish`] hands them to a flush as record batches.
#[derive(Default)]
pub struct EventArchive {
    partitions: BTreeMap<(EventType, i32), Columns>,
    rows: usize,
    /// Per table partition, its size at the last [`EventArchive::finish`]:
    /// what its columns reserve in the next flush (an event-time day spans
    /// many flushes). Grown by doubling instead, the columns copied each
    /// payload byte about twice more and faulted the copies in: 2 % of a
    /// draining worker's CPU (docs/benchmarks.md, issue 24).
    reserve: BTreeMap<(EventType, i32), Capacity>,
}

/// Room for a partition's rows, in rows and in bytes per text column.
#[derive(Clone, Copy, Debug, Default)]
struct Capacity {
    rows: usize,
    event_id: usize,
    article_id: usize,
    topic: usize,
    payload: usize,
}

impl Capacity {
    /// A partition of this size, plus an eighth for the next one to grow.
    fn with_headroom(self) -> Capacity {
        let more = |n: usize| n + n / 8;
        Capacity {
            rows: more(self.rows),
            event_id: more(self.event_id),
            article_id: more(self.article_id),
            topic: more(self.topic),
            payload: more(self.payload),
        }
    }
}

impl std::fmt::Debug for EventArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventArchive")
            .field("partitions", &self.partitions.len())
            .field("rows", &self.rows)
            .finish()
    }
}

/// The columns of one table partition's rows, in the order of
/// `events_schema`.
struct Columns {
    event_id: StringBuilder,
    article_id: StringBuilder,
    occurred_at: Vec<Micros>,
    topic: StringBuilder,
    partition: Vec<i32>,
    offset: Vec<i64>,
    payload: StringBuilder,
}

impl EventArchive {
    /// Appends one row, copying its text into the columns.
    pub fn push(&mut self, row: &EventRow<'_>) {
        let day = day_number(row.occurred_at);
        let key = (row.event_type, day);
        let reserve = &self.reserve;
        let columns = self.partitions.entry(key).or_insert_with(|| {
            Columns::with_capacity(
                reserve
                    .get(&key)
                    .copied()
                    .unwrap_or_default()
                    .with_headroom(),
            )
        });
        columns.event_id.append_value(row.event_id);
        columns.article_id.append_value(row.article_id);
        columns.occurred_at.push(row.occurred_at);
        columns.topic.append_value(row.topic);
        columns.partition.push(row.partition);
        columns.offset.push(row.offset);
        columns.payload.append_value(row.payload);
        self.rows += 1;
    }

    /// Rows appended since the last [`EventArchive::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was appended since the last [`EventArchive::finish`].
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Takes every row as one record batch per table partition, and starts
    /// empty again.
    pub fn finish(&mut self) -> ArchivedEvents {
        let partitions = std::mem::take(&mut self.partitions);
        self.rows = 0;
        self.reserve = partitions
            .iter()
            .map(|(key, columns)| (*key, columns.size()))
            .collect();
        let batches = partitions
            .into_iter()
            .map(|((event_type, day), columns)| PartitionBatch {
                key: vec![
                    PartitionValue::Name(event_type.as_str()),
                    PartitionValue::Date(day),
                ],
                batch: columns.finish(),
            })
            .collect();
        ArchivedEvents { batches }
    }
}

impl<'a> FromIterator<EventRow<'a>> for EventArchive {
    fn from_iter<I: IntoIterator<Item = EventRow<'a>>>(rows: I) -> Self {
        let mut archive = EventArchive::default();
        for row in rows {
            archive.push(&row);
        }
        archive
    }
}

impl Columns {
    fn with_capacity(room: Capacity) -> Columns {
        Columns {
            event_id: StringBuilder::with_capacity(room.rows, room.event_id),
            article_id: StringBuilder::with_capacity(room.rows, room.article_id),
            occurred_at: Vec::with_capacity(room.rows),
            topic: StringBuilder::with_capacity(room.rows, room.topic),
            partition: Vec::with_capacity(room.rows),
            offset: Vec::with_capacity(room.rows),
            payload: StringBuilder::with_capacity(room.rows, room.payload),
        }
    }

    /// The rows and text bytes held.
    fn size(&self) -> Capacity {
        Capacity {
            rows: self.partition.len(),
            event_id: self.event_id.values_slice().len(),
            article_id: self.article_id.values_slice().len(),
            topic: self.topic.values_slice().len(),
            payload: self.payload.values_slice().len(),
        }
    }

    fn finish(mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_id.finish()),
            Arc::new(self.article_id.finish()),
            Arc::new(TimestampMicrosecondArray::from(self.occurred_at).with_timezone("UTC")),
            Arc::new(self.topic.finish()),
            Arc::new(Int32Array::from(self.partition)),
            Arc::new(Int64Array::from(self.offset)),
            Arc::new(self.payload.finish()),
        ];
        // Every column is built above in the schema's order and type, with
        // one value per row, so the batch is valid by construction.
        RecordBatch::try_new(events_schema(), columns).expect("columns match the events schema")
    }
}

/// The `events/` rows of one flush of one shard: a record batch per table
/// partition, in partition order. Cloning shares the buffers.
#[derive(Clone, Debug, Default)]
pub struct ArchivedEvents {
    pub(crate) batches: Vec<PartitionBatch>,
}

impl ArchivedEvents {
    /// Rows in all partitions.
    pub fn len(&self) -> usize {
        self.batches.iter().map(|b| b.batch.num_rows()).sum()
    }

    /// Whether there is no row (a partition gets a batch only for rows).
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty()
    }

    /// The event time of every row, for the end-to-end latency once they
    /// are durable. Shares the time column's buffers and nothing else, so
    /// the payloads can be freed as soon as their files are written.
    pub fn event_times(&self) -> EventTimes {
        EventTimes(
            self.batches
                .iter()
                .map(|b| {
                    b.batch
                        .column(2)
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .expect("occurred_at is the third column")
                        .clone()
                })
                .collect(),
        )
    }
}

/// The event times of an archive's rows (see [`ArchivedEvents::event_times`]).
#[derive(Clone, Debug, Default)]
pub struct EventTimes(Vec<TimestampMicrosecondArray>);

impl EventTimes {
    /// Every row's event time.
    pub fn iter(&self) -> impl Iterator<Item = Micros> + '_ {
        self.0
            .iter()
            .flat_map(|column| column.values().iter().copied())
    }
}

impl<'a> FromIterator<EventRow<'a>> for ArchivedEvents {
    fn from_iter<I: IntoIterator<Item = EventRow<'a>>>(rows: I) -> Self {
        rows.into_iter().collect::<EventArchive>().finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::StringArray;

    fn row(event_type: EventType, occurred_at: Micros, offset: i64) -> EventRow<'static> {
        EventRow {
            event_id: "e",
            event_type,
            article_id: "a-1",
            occurred_at,
            topic: "news.comments",
            partition: 3,
            offset,
            payload: r#"{"x":1}"#,
        }
    }

    #[test]
    fn rows_land_in_their_partition_in_arrival_order() {
        let day = newsflow_core::time::DAY;
        let mut archive = EventArchive::default();
        archive.push(&row(EventType::SocialComment, day + 5, 1));
        archive.push(&row(EventType::ForumPost, day + 6, 2));
        archive.push(&row(EventType::SocialComment, 2 * day + 1, 3));
        archive.push(&row(EventType::SocialComment, day + 7, 4));
        assert_eq!(archive.len(), 4);

        let archived = archive.finish();
        assert!(archive.is_empty());
        assert_eq!(archived.len(), 4);
        let keys: Vec<_> = archived.batches.iter().map(|b| b.key.clone()).collect();
        assert_eq!(
            keys,
            vec![
                vec![
                    PartitionValue::Name("social_comment"),
                    PartitionValue::Date(1)
                ],
                vec![
                    PartitionValue::Name("social_comment"),
                    PartitionValue::Date(2)
                ],
                vec![PartitionValue::Name("forum_post"), PartitionValue::Date(1)],
            ]
        );
        let first = &archived.batches[0].batch;
        let offsets = first
            .column(5)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(offsets.values().to_vec(), vec![1, 4]);
        let payloads = first
            .column(6)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(payloads.value(1), r#"{"x":1}"#);
        let mut times: Vec<_> = archived.event_times().iter().collect();
        times.sort_unstable();
        assert_eq!(times, vec![day + 5, day + 6, day + 7, 2 * day + 1]);
    }

    #[test]
    fn a_flush_reserves_the_room_the_last_one_used() {
        let day = newsflow_core::time::DAY;
        let mut archive = EventArchive::default();
        for offset in 0..100 {
            archive.push(&row(EventType::SocialComment, day + 5, offset));
        }
        archive.finish();
        archive.push(&row(EventType::SocialComment, day + 6, 100));
        archive.push(&row(EventType::SocialComment, 2 * day + 6, 101));
        archive.push(&row(EventType::ForumPost, day + 6, 102));
        let comments = &archive.partitions[&(EventType::SocialComment, 1)];
        assert!(comments.offset.capacity() >= 100 + 100 / 8);
        assert!(comments.occurred_at.capacity() >= 100 + 100 / 8);
        // Partitions absent from the last flush start small.
        for key in [(EventType::SocialComment, 2), (EventType::ForumPost, 1)] {
            assert!(archive.partitions[&key].offset.capacity() < 100);
        }
        assert_eq!(archive.finish().len(), 3);
    }
}
