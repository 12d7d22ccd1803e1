//! Arrow schemas of the three datasets and the conversion of rows to record
//! batches. Column names and types are the contract's section 4.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use newsflow_core::{EngagementRow, EventType, Micros, TotalsRow};

use crate::Error;

/// One of the three datasets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dataset {
    /// `article_totals/`
    ArticleTotals,
    /// `article_engagement/`
    ArticleEngagement,
    /// `events/`
    Events,
}

impl Dataset {
    /// Every dataset.
    pub const ALL: [Dataset; 3] = [
        Dataset::ArticleTotals,
        Dataset::ArticleEngagement,
        Dataset::Events,
    ];

    /// The directory name under the output root, also the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::ArticleTotals => "article_totals",
            Dataset::ArticleEngagement => "article_engagement",
            Dataset::Events => "events",
        }
    }
}

/// One accepted Kafka record, as archived in `events/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRow {
    /// The event's id.
    pub event_id: String,
    /// The event's type.
    pub event_type: EventType,
    /// The article it is about.
    pub article_id: String,
    /// Event time.
    pub occurred_at: Micros,
    /// Source topic.
    pub topic: Arc<str>,
    /// Source partition.
    pub partition: i32,
    /// Source offset.
    pub offset: i64,
    /// The original JSON text.
    pub payload: String,
}

/// Everything one flush of one shard writes.
#[derive(Debug, Default)]
pub struct FlushBatch {
    /// Rows for `article_totals/`.
    pub totals: Vec<TotalsRow>,
    /// Rows for `article_engagement/`.
    pub engagement: Vec<EngagementRow>,
    /// Rows for `events/`.
    pub events: Vec<EventRow>,
}

impl FlushBatch {
    /// Whether the batch holds no rows at all.
    pub fn is_empty(&self) -> bool {
        self.totals.is_empty() && self.engagement.is_empty() && self.events.is_empty()
    }
}

/// Files, rows and bytes written for one dataset by one flush.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Files committed.
    pub files: u64,
    /// Rows in them.
    pub rows: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn ts_column(values: Vec<Micros>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

/// Schema of `article_totals/` files.
pub fn totals_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("article_id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, true),
        Field::new("confirming_sources", DataType::Int64, false),
        Field::new("social_comments", DataType::Int64, false),
        Field::new("forum_posts", DataType::Int64, false),
        Field::new("first_event_at", timestamp(), false),
        Field::new("last_event_at", timestamp(), false),
        Field::new("version", DataType::Int64, false),
        Field::new("emitted_at", timestamp(), false),
    ]))
}

/// Schema of `article_engagement/` files.
pub fn engagement_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("article_id", DataType::Utf8, false),
        Field::new("window_start", timestamp(), false),
        Field::new("window_end", timestamp(), false),
        Field::new("confirming_sources", DataType::Int64, false),
        Field::new("social_comments", DataType::Int64, false),
        Field::new("forum_posts", DataType::Int64, false),
        Field::new("emitted_at", timestamp(), false),
    ]))
}

/// Schema of `events/` files.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("event_type", DataType::Utf8, false),
        Field::new("article_id", DataType::Utf8, false),
        Field::new("occurred_at", timestamp(), false),
        Field::new("topic", DataType::Utf8, false),
        Field::new("partition", DataType::Int32, false),
        Field::new("offset", DataType::Int64, false),
        Field::new("payload", DataType::Utf8, false),
    ]))
}

fn batch(
    dataset: Dataset,
    schema: SchemaRef,
    columns: Vec<ArrayRef>,
) -> Result<RecordBatch, Error> {
    RecordBatch::try_new(schema, columns).map_err(|e| Error::Encode {
        dataset: dataset.name(),
        message: e.to_string(),
    })
}

pub(crate) fn totals_batch(rows: &[&TotalsRow]) -> Result<RecordBatch, Error> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.article_id.as_str()),
        )),
        Arc::new(
            rows.iter()
                .map(|r| r.title.as_deref())
                .collect::<StringArray>(),
        ),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.confirming_sources),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.social_comments),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.forum_posts),
        )),
        ts_column(rows.iter().map(|r| r.first_event_at).collect()),
        ts_column(rows.iter().map(|r| r.last_event_at).collect()),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.version))),
        ts_column(rows.iter().map(|r| r.emitted_at).collect()),
    ];
    batch(Dataset::ArticleTotals, totals_schema(), columns)
}

pub(crate) fn engagement_batch(rows: &[&EngagementRow]) -> Result<RecordBatch, Error> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.article_id.as_str()),
        )),
        ts_column(rows.iter().map(|r| r.window_start).collect()),
        ts_column(rows.iter().map(|r| r.window_end).collect()),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.confirming_sources),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.social_comments),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.forum_posts),
        )),
        ts_column(rows.iter().map(|r| r.emitted_at).collect()),
    ];
    batch(Dataset::ArticleEngagement, engagement_schema(), columns)
}

pub(crate) fn events_batch(rows: &[&EventRow]) -> Result<RecordBatch, Error> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.event_id.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.event_type.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.article_id.as_str()),
        )),
        ts_column(rows.iter().map(|r| r.occurred_at).collect()),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &*r.topic),
        )),
        Arc::new(Int32Array::from_iter_values(
            rows.iter().map(|r| r.partition),
        )),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.offset))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| r.payload.as_str()),
        )),
    ];
    batch(Dataset::Events, events_schema(), columns)
}
