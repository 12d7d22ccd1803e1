//! The three Delta tables: their Arrow schemas, their partition columns,
//! and the conversion of rows to record batches. Column names and types are
//! the contract's section 4 (v2).
//!
//! A table's schema is its data columns followed by its partition columns.
//! Data files hold only the data columns: Delta keeps partition values in
//! the log (`add.partitionValues`), so no column is stored twice.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use newsflow_core::time::DAY;
use newsflow_core::{EngagementRow, Micros, TotalsRow};

use crate::archive::ArchivedEvents;
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

    /// The table's folder under the output root, also the metric label.
    pub fn name(self) -> &'static str {
        match self {
            Dataset::ArticleTotals => "article_totals",
            Dataset::ArticleEngagement => "article_engagement",
            Dataset::Events => "events",
        }
    }

    /// The table's partition columns, in order.
    pub fn partition_columns(self) -> &'static [&'static str] {
        match self {
            Dataset::ArticleTotals => &["emitted_date"],
            Dataset::ArticleEngagement => &["window_date"],
            Dataset::Events => &["event_type", "occurred_date"],
        }
    }

    /// The Arrow schema of the table's data files (no partition columns).
    pub fn file_schema(self) -> SchemaRef {
        match self {
            Dataset::ArticleTotals => totals_schema(),
            Dataset::ArticleEngagement => engagement_schema(),
            Dataset::Events => events_schema(),
        }
    }

    /// The whole table schema: the file columns, then the partition columns.
    pub fn table_schema(self) -> SchemaRef {
        let mut fields: Vec<Field> = self
            .file_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        for column in self.partition_columns() {
            let data_type = if column.ends_with("_date") {
                DataType::Date32
            } else {
                DataType::Utf8
            };
            fields.push(Field::new(*column, data_type, true));
        }
        Arc::new(Schema::new(fields))
    }
}

/// Everything one flush of one shard writes.
#[derive(Debug, Default)]
pub struct FlushBatch {
    /// Rows for `article_totals/`.
    pub totals: Vec<TotalsRow>,
    /// Rows for `article_engagement/`.
    pub engagement: Vec<EngagementRow>,
    /// Rows for `events/`, already in columns.
    pub events: ArchivedEvents,
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
    /// Files written.
    pub files: u64,
    /// Rows in them.
    pub rows: u64,
    /// Bytes stored.
    pub bytes: u64,
}

/// The value of one partition column of one file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PartitionValue {
    /// A UTC date, as days since 1970-01-01.
    Date(i32),
    /// One of our own fixed names (an event type).
    Name(&'static str),
}

/// The partition values of one file, in the order of
/// [`Dataset::partition_columns`].
pub(crate) type PartitionKey = Vec<PartitionValue>;

fn day_of(t: Micros) -> PartitionValue {
    PartitionValue::Date(day_number(t))
}

/// The UTC day of `t`, as days since 1970-01-01: a date partition's value.
pub(crate) fn day_number(t: Micros) -> i32 {
    t.div_euclid(DAY) as i32
}

/// One file's worth of rows: its partition values and its record batch.
#[derive(Clone, Debug)]
pub(crate) struct PartitionBatch {
    pub key: PartitionKey,
    pub batch: RecordBatch,
}

/// Splits one table's rows of `batch` by partition and encodes each group.
/// The key is cheap to compute per row; a group's batch is built once.
pub(crate) fn partition_batches(
    dataset: Dataset,
    batch: &FlushBatch,
) -> Result<Vec<PartitionBatch>, Error> {
    match dataset {
        Dataset::ArticleTotals => {
            group(&batch.totals, |r| vec![day_of(r.emitted_at)], totals_batch)
        }
        Dataset::ArticleEngagement => group(
            &batch.engagement,
            |r| vec![day_of(r.window_start)],
            engagement_batch,
        ),
        // Built as columns per partition while records arrived (see
        // `archive.rs`); the batches share their buffers.
        Dataset::Events => Ok(batch.events.batches.clone()),
    }
}

fn group<R>(
    rows: &[R],
    key_of: impl Fn(&R) -> PartitionKey,
    encode: impl Fn(&[&R]) -> Result<RecordBatch, Error>,
) -> Result<Vec<PartitionBatch>, Error> {
    let mut groups: BTreeMap<PartitionKey, Vec<&R>> = BTreeMap::new();
    for row in rows {
        groups.entry(key_of(row)).or_default().push(row);
    }
    groups
        .into_iter()
        .map(|(key, rows)| {
            Ok(PartitionBatch {
                key,
                batch: encode(&rows)?,
            })
        })
        .collect()
}

fn timestamp() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn ts_column(values: Vec<Micros>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from(values).with_timezone("UTC"))
}

// Every column is declared nullable in the table schema, although only
// `title` ever holds a null: a non-nullable column makes the kernel enable
// the `invariants` writer feature, and the protocol stays minimal so that
// every mainstream reader opens the tables.

/// Schema of `article_totals/` files.
pub fn totals_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("article_id", DataType::Utf8, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("confirming_sources", DataType::Int64, true),
        Field::new("social_comments", DataType::Int64, true),
        Field::new("forum_posts", DataType::Int64, true),
        Field::new("first_event_at", timestamp(), true),
        Field::new("last_event_at", timestamp(), true),
        Field::new("version", DataType::Int64, true),
        Field::new("emitted_at", timestamp(), true),
    ]))
}

/// Schema of `article_engagement/` files.
pub fn engagement_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("article_id", DataType::Utf8, true),
        Field::new("window_start", timestamp(), true),
        Field::new("window_end", timestamp(), true),
        Field::new("confirming_sources", DataType::Int64, true),
        Field::new("social_comments", DataType::Int64, true),
        Field::new("forum_posts", DataType::Int64, true),
        Field::new("emitted_at", timestamp(), true),
    ]))
}

/// Schema of `events/` files.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, true),
        Field::new("article_id", DataType::Utf8, true),
        Field::new("occurred_at", timestamp(), true),
        Field::new("kafka_topic", DataType::Utf8, true),
        Field::new("kafka_partition", DataType::Int32, true),
        Field::new("kafka_offset", DataType::Int64, true),
        Field::new("payload", DataType::Utf8, true),
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
