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
use newsflow_core::{Counter, Counts, EngagementRow, Micros, TotalsRow};

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

/// Splits the rows of one of the counts' tables in `batch` by partition
/// and encodes each group. The key is cheap to compute per row; a group's
/// batch is built once. (The `events/` rows come encoded per partition
/// already, see `archive.rs`.)
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
        Dataset::Events => Err(Error::Encode {
            what: "events".to_string(),
            source: "events rows are encoded by their archive".into(),
        }),
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

/// Schema of `article_totals/` files: the columns of no rows.
pub fn totals_schema() -> SchemaRef {
    schema_of(&totals_columns(&[]))
}

/// Schema of `article_engagement/` files: the columns of no rows.
pub fn engagement_schema() -> SchemaRef {
    schema_of(&engagement_columns(&[]))
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
        what: dataset.name().into(),
        source: e.into(),
    })
}

/// A column of a file: its field and its values, built together so that
/// a schema and its columns cannot disagree.
type Column = (Field, ArrayRef);

fn schema_of(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|(field, _)| field.clone())
            .collect::<Vec<_>>(),
    ))
}

fn utf8<'a>(name: &str, values: impl Iterator<Item = Option<&'a str>>) -> Column {
    let array: StringArray = values.collect();
    (Field::new(name, DataType::Utf8, true), Arc::new(array))
}

fn int64(name: &str, values: impl Iterator<Item = i64>) -> Column {
    let array = Int64Array::from_iter_values(values);
    (Field::new(name, DataType::Int64, true), Arc::new(array))
}

fn ts(name: &str, values: impl Iterator<Item = Micros>) -> Column {
    (
        Field::new(name, timestamp(), true),
        ts_column(values.collect()),
    )
}

/// One column per counter of [`newsflow_core::COUNTERS`], in its order.
fn count_columns<R>(rows: &[&R], counts: impl Fn(&R) -> &Counts) -> Vec<Column> {
    Counter::ALL
        .into_iter()
        .map(|counter| int64(counter.column(), rows.iter().map(|r| counts(r)[counter])))
        .collect()
}

fn totals_columns(rows: &[&TotalsRow]) -> Vec<Column> {
    let mut columns = vec![
        utf8(
            "article_id",
            rows.iter().map(|r| Some(r.article_id.as_str())),
        ),
        utf8("title", rows.iter().map(|r| r.title.as_deref())),
    ];
    columns.extend(count_columns(rows, |r| &r.counts));
    columns.extend([
        ts("first_event_at", rows.iter().map(|r| r.first_event_at)),
        ts("last_event_at", rows.iter().map(|r| r.last_event_at)),
        int64("version", rows.iter().map(|r| r.version)),
        ts("emitted_at", rows.iter().map(|r| r.emitted_at)),
    ]);
    columns
}

fn engagement_columns(rows: &[&EngagementRow]) -> Vec<Column> {
    let mut columns = vec![
        utf8(
            "article_id",
            rows.iter().map(|r| Some(r.article_id.as_str())),
        ),
        ts("window_start", rows.iter().map(|r| r.window_start)),
        ts("window_end", rows.iter().map(|r| r.window_end)),
    ];
    columns.extend(count_columns(rows, |r| &r.counts));
    columns.push(ts("emitted_at", rows.iter().map(|r| r.emitted_at)));
    columns
}

fn batch_of(dataset: Dataset, columns: Vec<Column>) -> Result<RecordBatch, Error> {
    let schema = schema_of(&columns);
    let arrays = columns.into_iter().map(|(_, array)| array).collect();
    batch(dataset, schema, arrays)
}

pub(crate) fn totals_batch(rows: &[&TotalsRow]) -> Result<RecordBatch, Error> {
    batch_of(Dataset::ArticleTotals, totals_columns(rows))
}

pub(crate) fn engagement_batch(rows: &[&EngagementRow]) -> Result<RecordBatch, Error> {
    batch_of(Dataset::ArticleEngagement, engagement_columns(rows))
}
