//! The `events/` rows of a shard between two flushes, encoded as Parquet
//! from the moment a record is accepted.
//!
//! A record's text goes straight from the Kafka message into a small chunk
//! of Arrow columns of its table partition (event type, then the day of its
//! event time); every [`CHUNK_ROWS`] rows the chunk is encoded, as a row
//! group of its own, into that partition's data file, held in memory,
//! compressed, until the flush stores it. The flush encodes only the last
//! chunks.
//!
//! The archive used to keep a whole flush's rows as columns and encode them
//! on the flush thread: a draining worker held two flushes of raw rows, the
//! one filling and the one being written. Its peak fell by about 120 MB
//! when rows were encoded as they came (docs/benchmarks.md, issue 24).
//! A row group per chunk matters as much: a file's column writers, each
//! with zstd contexts, would otherwise live as long as its file, and a
//! worker has a file open per table partition of each shard.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringBuilder, TimestampMicrosecondArray,
};
use delta_kernel::expressions::ColumnName;
use delta_kernel::schema::SchemaRef as KernelSchemaRef;
use newsflow_core::{EventType, Micros};

use crate::data_files::{EncodedFile, FileEncoder, Layout};
use crate::datasets::{day_number, events_schema, Dataset, PartitionKey, PartitionValue};
use crate::delta::Table;
use crate::Error;

/// Rows gathered as columns before they are encoded into their file, as
/// one row group. A worker holds a chunk per table partition of each
/// shard, so this sets most of what the archive holds unencoded. In 5M-event
/// drains, 1,024 peaked at 427 MB, 2,048 at 460 and 4,096 at 466-491, and
/// 512 at 409 for 0.2 CPU-seconds per million events more.
pub const CHUNK_ROWS: usize = 1024;

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

/// What every file of the `events/` table is encoded with: the statistics
/// its add actions carry, as the table's write state asks for them (fixed
/// for a lake's life, see `Table::open`).
#[derive(Debug)]
pub(crate) struct EventsEncoding {
    pub stats_columns: Vec<ColumnName>,
    pub physical_schema: KernelSchemaRef,
}

impl EventsEncoding {
    /// The encoding of `table`'s files (the `events/` table). The columns
    /// and schema are the same for every partition; any one tells them.
    pub(crate) fn of(table: &Table) -> Result<EventsEncoding, Error> {
        let context = table.write_context(&partition_key(EventType::ArticlePublished, 0))?;
        Ok(EventsEncoding {
            stats_columns: context.stats_columns().to_vec(),
            physical_schema: context.physical_data_schema().clone(),
        })
    }

    fn encoder(&self) -> Result<FileEncoder, Error> {
        FileEncoder::new(
            Dataset::Events,
            events_schema(),
            Layout::Flush,
            &self.stats_columns,
            &self.physical_schema,
        )
    }
}

/// The `events/` table's partition of `event_type`'s rows on `day` (days
/// since 1970-01-01).
fn partition_key(event_type: EventType, day: i32) -> PartitionKey {
    vec![
        PartitionValue::Name(event_type.as_str()),
        PartitionValue::Date(day),
    ]
}

/// Rows accepted since the last flush, encoded per table partition. Built
/// on the run loop's counting lanes (see `Lake::event_archive`);
/// [`EventArchive::finish`] hands them to a flush.
pub struct EventArchive {
    encoding: Arc<EventsEncoding>,
    partitions: BTreeMap<(EventType, i32), OpenFile>,
    rows: usize,
}

impl std::fmt::Debug for EventArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventArchive")
            .field("partitions", &self.partitions.len())
            .field("rows", &self.rows)
            .finish()
    }
}

/// One table partition's data file of the next flush, being written.
struct OpenFile {
    /// The rows not encoded yet.
    chunk: Columns,
    /// The rows encoded so far, or why encoding failed (the flush then
    /// fails with it, and the shard starts over from its checkpoint).
    encoder: Result<FileEncoder, Error>,
    /// Every row's event time, for the end-to-end latency once the rows
    /// are durable.
    times: Vec<Micros>,
    rows: usize,
}

/// Room for a chunk's rows, in rows and in bytes per text column.
#[derive(Clone, Copy, Debug, Default)]
struct Capacity {
    rows: usize,
    event_id: usize,
    article_id: usize,
    topic: usize,
    payload: usize,
}

impl Capacity {
    /// Room for a chunk like this one, plus an eighth for the next one to
    /// grow: text columns grown by doubling copy each byte about twice
    /// more and fault the copies in.
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

/// A chunk of one table partition's rows, in the order of `events_schema`.
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
    pub(crate) fn new(encoding: Arc<EventsEncoding>) -> EventArchive {
        EventArchive {
            encoding,
            partitions: BTreeMap::new(),
            rows: 0,
        }
    }

    /// Appends one row, copying its text into its partition's chunk, and
    /// encodes the chunk when it is full.
    pub fn push(&mut self, row: &EventRow<'_>) {
        let key = (row.event_type, day_number(row.occurred_at));
        let encoding = &self.encoding;
        let file = self.partitions.entry(key).or_insert_with(|| OpenFile {
            chunk: Columns::with_capacity(Capacity::default()),
            encoder: encoding.encoder(),
            times: Vec::new(),
            rows: 0,
        });
        file.chunk.push(row);
        file.times.push(row.occurred_at);
        file.rows += 1;
        if file.chunk.rows() == CHUNK_ROWS {
            file.encode_chunk();
        }
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

    /// Takes every row, as one file per table partition, and starts empty
    /// again. The files' last chunks are encoded by the flush.
    pub fn finish(&mut self) -> ArchivedEvents {
        let rows = std::mem::take(&mut self.rows);
        let files = std::mem::take(&mut self.partitions)
            .into_iter()
            .map(|((event_type, day), file)| (partition_key(event_type, day), file))
            .collect();
        ArchivedEvents { files, rows }
    }
}

impl<'a> Extend<EventRow<'a>> for EventArchive {
    fn extend<I: IntoIterator<Item = EventRow<'a>>>(&mut self, rows: I) {
        for row in rows {
            self.push(&row);
        }
    }
}

impl OpenFile {
    /// Encodes the chunk's rows into the file and starts a chunk of the
    /// same size.
    fn encode_chunk(&mut self) {
        let room = self.chunk.size().with_headroom();
        let chunk = std::mem::replace(&mut self.chunk, Columns::with_capacity(room));
        if let Ok(encoder) = &mut self.encoder {
            let written = encoder
                .write(&chunk.finish())
                .and_then(|()| encoder.end_row_group());
            if let Err(e) = written {
                self.encoder = Err(e);
            }
        }
    }

    /// The file with every row encoded.
    fn encode(mut self) -> Result<EncodedFile, Error> {
        if self.chunk.rows() > 0 {
            self.encode_chunk();
        }
        self.encoder?.finish()
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

    fn push(&mut self, row: &EventRow<'_>) {
        self.event_id.append_value(row.event_id);
        self.article_id.append_value(row.article_id);
        self.occurred_at.push(row.occurred_at);
        self.topic.append_value(row.topic);
        self.partition.push(row.partition);
        self.offset.push(row.offset);
        self.payload.append_value(row.payload);
    }

    fn rows(&self) -> usize {
        self.partition.len()
    }

    /// The rows and text bytes held.
    fn size(&self) -> Capacity {
        Capacity {
            rows: self.rows(),
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

/// The `events/` rows of one flush of one shard: a file per table
/// partition, in partition order, all but its last chunk encoded.
#[derive(Default)]
pub struct ArchivedEvents {
    files: Vec<(PartitionKey, OpenFile)>,
    rows: usize,
}

impl std::fmt::Debug for ArchivedEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ArchivedEvents")
            .field("files", &self.files.len())
            .field("rows", &self.rows)
            .finish()
    }
}

impl ArchivedEvents {
    /// Rows in all partitions.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether there is no row (a partition gets a file only for rows).
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Takes the event time of every row, for the end-to-end latency once
    /// they are durable; the flush needs them no more.
    pub fn take_event_times(&mut self) -> EventTimes {
        EventTimes(
            self.files
                .iter_mut()
                .map(|(_, file)| std::mem::take(&mut file.times))
                .collect(),
        )
    }

    /// Encodes each file's last chunk and ends the file, partition by
    /// partition.
    pub(crate) fn encode(
        self,
    ) -> impl Iterator<Item = (PartitionKey, usize, Result<EncodedFile, Error>)> {
        self.files
            .into_iter()
            .map(|(key, file)| (key, file.rows, file.encode()))
    }
}

/// The event times of an archive's rows (see [`ArchivedEvents::take_event_times`]).
#[derive(Clone, Debug, Default)]
pub struct EventTimes(Vec<Vec<Micros>>);

impl EventTimes {
    /// Every row's event time.
    pub fn iter(&self) -> impl Iterator<Item = Micros> + '_ {
        self.0.iter().flatten().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray, StringArray};
    use arrow::datatypes::Int64Type;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

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

    fn archive() -> (tempfile::TempDir, EventArchive) {
        let dir = tempfile::tempdir().unwrap();
        let lake =
            crate::Lake::open(&dir.path().display().to_string(), &Default::default()).unwrap();
        let archive = lake.event_archive();
        (dir, archive)
    }

    /// A file's rows, read back with the parquet crate's reader.
    fn read(file: &EncodedFile) -> RecordBatch {
        let bytes = bytes::Bytes::from(file.bytes().to_vec());
        let batches: Vec<RecordBatch> = ParquetRecordBatchReaderBuilder::try_new(bytes)
            .unwrap()
            .build()
            .unwrap()
            .map(Result::unwrap)
            .collect();
        arrow::compute::concat_batches(&events_schema(), &batches).unwrap()
    }

    #[test]
    fn rows_land_in_their_partitions_file_in_arrival_order_across_chunks() {
        let day = newsflow_core::time::DAY;
        let (_dir, mut archive) = archive();
        let comments = 2 * CHUNK_ROWS as i64 + 5;
        for offset in 0..comments {
            archive.push(&row(EventType::SocialComment, day + 5, offset));
            if offset % 1000 == 0 {
                archive.push(&row(EventType::ForumPost, day + 6, -offset));
            }
        }
        archive.push(&row(EventType::SocialComment, 2 * day + 1, comments));
        let posts: Vec<i64> = (0..comments)
            .filter(|o| o % 1000 == 0)
            .map(|o| -o)
            .collect();
        let pushed = comments as usize + posts.len() + 1;
        assert_eq!(archive.len(), pushed);

        let mut archived = archive.finish();
        assert!(archive.is_empty());
        assert_eq!(archived.len(), pushed);
        let mut times: Vec<_> = archived.take_event_times().iter().collect();
        assert_eq!(times.len(), pushed);
        times.dedup();
        assert_eq!(times, vec![day + 5, 2 * day + 1, day + 6]);

        let files: Vec<_> = archived.encode().collect();
        let keys: Vec<_> = files.iter().map(|(key, _, _)| key.clone()).collect();
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
        let rows: Vec<_> = files.iter().map(|(_, rows, _)| *rows).collect();
        assert_eq!(rows, vec![comments as usize, 1, posts.len()]);

        let first = read(files[0].2.as_ref().unwrap());
        let offsets = first.column(5).as_primitive::<Int64Type>();
        assert_eq!(offsets.values().to_vec(), (0..comments).collect::<Vec<_>>());
        let payloads = first
            .column(6)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap();
        assert_eq!(payloads.len(), comments as usize);
        assert_eq!(payloads.value(CHUNK_ROWS), r#"{"x":1}"#);
        let forum = read(files[2].2.as_ref().unwrap());
        assert_eq!(
            forum
                .column(5)
                .as_primitive::<Int64Type>()
                .values()
                .to_vec(),
            posts
        );
    }

    #[test]
    fn each_chunk_is_a_row_group_of_its_own() {
        let (_dir, mut archive) = archive();
        let rows = 2 * CHUNK_ROWS as i64 + 1;
        archive.extend((0..rows).map(|offset| row(EventType::ForumPost, 0, offset)));
        let (_, _, file) = archive.finish().encode().next().unwrap();
        let bytes = bytes::Bytes::from(file.unwrap().bytes().to_vec());
        let reader = ParquetRecordBatchReaderBuilder::try_new(bytes).unwrap();
        let groups: Vec<i64> = reader
            .metadata()
            .row_groups()
            .iter()
            .map(|group| group.num_rows())
            .collect();
        assert_eq!(groups, vec![CHUNK_ROWS as i64, CHUNK_ROWS as i64, 1]);
    }

    #[test]
    fn a_files_statistics_cover_every_chunk() {
        let day = newsflow_core::time::DAY;
        let (_dir, mut archive) = archive();
        let rows = CHUNK_ROWS as i64 + 7;
        archive.extend((0..rows).map(|offset| row(EventType::SocialComment, day + offset, offset)));
        let (_, _, file) = archive.finish().encode().next().unwrap();
        let stats = file.unwrap().stats().clone();
        let records = stats.column_by_name("numRecords").unwrap();
        assert_eq!(records.as_primitive::<Int64Type>().value(0), rows);
        let bound = |section: &str| {
            stats
                .column_by_name(section)
                .unwrap()
                .as_struct()
                .column_by_name("kafka_offset")
                .unwrap()
                .as_primitive::<Int64Type>()
                .value(0)
        };
        assert_eq!((bound("minValues"), bound("maxValues")), (0, rows - 1));
    }
}
