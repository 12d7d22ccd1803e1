//! The tables' data files: zstd Parquet encoded here (the kernel's own
//! writer takes no writer properties and buffers the whole file anyway),
//! stored create-only, and described to the kernel as add-file metadata
//! with statistics.

use arrow::array::{RecordBatch, StructArray};
use arrow::datatypes::SchemaRef;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::expressions::ColumnName;
use delta_kernel::schema::StructType;
use delta_kernel::transaction::BoundWriteContext;
use delta_kernel::FileMeta;
use delta_kernel_default_engine::build_add_file_metadata;
use delta_kernel_default_engine::parquet::DataFileMetadata;
use delta_kernel_default_engine::stats::FileStatsAccumulator;
use object_store::path::Path as ObjectPath;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::datasets::{Dataset, PartitionKey};
use crate::delta::Table;
use crate::store::Store;
use crate::{BoxError, Error};

/// Columns (of `events/`) whose values are nearly all distinct. Event
/// times too: a file holds one shard's events of one day and type, and
/// even at whole seconds few of them share a time.
const UNIQUE_COLUMNS: &[&str] = &["event_id", "occurred_at", "kafka_offset", "payload"];

/// The name of a data file of `shard` written by flush `seq` (one per
/// partition folder and flush).
fn file_name(shard: i32, seq: u64) -> String {
    format!("part-{shard:05}-{seq:020}.zstd.parquet")
}

/// A data file written: its add-file metadata and its size.
pub(crate) struct DataFile {
    pub add: RecordBatch,
    pub bytes: u64,
}

/// Encodes `batch` (one partition `key` of `table`) as one data file of
/// flush `seq` of `shard`, stores it create-only, and describes it.
pub(crate) fn write_data_file(
    store: &Store,
    table: &Table,
    shard: i32,
    seq: u64,
    key: &PartitionKey,
    batch: &RecordBatch,
) -> Result<DataFile, Error> {
    let context = table.write_context(key)?;
    store_data_file(
        store,
        table.dataset,
        &context,
        &file_name(shard, seq),
        batch,
        Layout::Flush,
    )
}

/// Stores `file` (partition `key` of `table`, encoded as a flush's file)
/// as the data file of flush `seq` of `shard`, and describes it.
pub(crate) fn write_encoded_data_file(
    store: &Store,
    table: &Table,
    shard: i32,
    seq: u64,
    key: &PartitionKey,
    file: EncodedFile,
) -> Result<DataFile, Error> {
    let context = table.write_context(key)?;
    store_encoded_file(store, &context, &file_name(shard, seq), file)
}

/// How a data file's rows are laid out in row groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Layout {
    /// A flush's file: a row group per chunk of rows archived (see
    /// `archive.rs`). They are small, and compaction rewrites them.
    Flush,
    /// A compacted file, sorted by `article_id`: row groups small enough
    /// that their statistics let a reader skip most of a large file when it
    /// looks up one article.
    Compacted,
}

/// Rows per row group of a compacted file.
pub(crate) const COMPACTED_ROW_GROUP_ROWS: usize = 128 * 1024;

/// Encodes `batch` as the data file `name` in the partition folder of
/// `context`, stores it create-only, and describes it.
pub(crate) fn store_data_file(
    store: &Store,
    dataset: Dataset,
    context: &BoundWriteContext,
    name: &str,
    batch: &RecordBatch,
    layout: Layout,
) -> Result<DataFile, Error> {
    store_streamed_data_file(
        store,
        dataset,
        context,
        name,
        batch.schema(),
        std::iter::once(Ok(batch.clone())),
        layout,
    )
}

/// Encodes the `batches` (all of `schema`, produced one at a time so that
/// a large file never sits in memory decoded) as the data file `name` in
/// the partition folder of `context`, stores it create-only, and describes
/// it with statistics gathered batch by batch.
pub(crate) fn store_streamed_data_file(
    store: &Store,
    dataset: Dataset,
    context: &BoundWriteContext,
    name: &str,
    schema: SchemaRef,
    batches: impl Iterator<Item = Result<RecordBatch, Error>>,
    layout: Layout,
) -> Result<DataFile, Error> {
    let mut encoder = FileEncoder::new(
        dataset,
        schema,
        layout,
        context.stats_columns(),
        context.physical_data_schema(),
    )?;
    for batch in batches {
        encoder.write(&batch?)?;
    }
    store_encoded_file(store, context, name, encoder.finish()?)
}

/// A data file being encoded in memory, batch by batch, with the
/// statistics its add action will carry.
pub(crate) struct FileEncoder {
    dataset: Dataset,
    writer: ArrowWriter<Vec<u8>>,
    stats: FileStatsAccumulator,
}

/// A data file encoded and not stored yet (see [`FileEncoder::finish`]).
pub(crate) struct EncodedFile {
    dataset: Dataset,
    bytes: Vec<u8>,
    stats: StructArray,
}

#[cfg(test)]
impl EncodedFile {
    pub(crate) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub(crate) fn stats(&self) -> &StructArray {
        &self.stats
    }
}

impl std::fmt::Debug for FileEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileEncoder")
            .field("dataset", &self.dataset)
            .field("bytes", &self.writer.bytes_written())
            .finish()
    }
}

impl FileEncoder {
    /// An encoder of `schema`'s rows, laid out as `layout`, gathering
    /// statistics of `stats_columns` (the table's, from its write state).
    pub(crate) fn new(
        dataset: Dataset,
        schema: SchemaRef,
        layout: Layout,
        stats_columns: &[ColumnName],
        physical_schema: &StructType,
    ) -> Result<FileEncoder, Error> {
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(writer_properties(layout)))
            .map_err(|e| encode_error(dataset, "file", e.into()))?;
        Ok(FileEncoder {
            dataset,
            writer,
            stats: FileStatsAccumulator::new(stats_columns, physical_schema),
        })
    }

    /// Encodes `batch`'s rows after those written before.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        self.writer
            .write(batch)
            .map_err(|e| encode_error(self.dataset, "file", e.into()))?;
        self.stats
            .merge(batch)
            .map_err(|e| encode_error(self.dataset, "statistics", e.into()))
    }

    /// Ends the row group being written, so that its column writers (each
    /// with its own zstd contexts, about 270 KB) are freed instead of held
    /// until the file ends; only its compressed pages stay.
    pub(crate) fn end_row_group(&mut self) -> Result<(), Error> {
        self.writer
            .flush()
            .map_err(|e| encode_error(self.dataset, "file", e.into()))
    }

    /// Ends the file: its footer written, its statistics reduced to one row.
    pub(crate) fn finish(self) -> Result<EncodedFile, Error> {
        let dataset = self.dataset;
        let bytes = self
            .writer
            .into_inner()
            .map_err(|e| encode_error(dataset, "file", e.into()))?;
        let stats = self
            .stats
            .finish()
            .map_err(|e| encode_error(dataset, "statistics", e.into()))?
            .ok_or_else(|| {
                encode_error(dataset, "statistics", "a data file without rows".into())
            })?;
        Ok(EncodedFile {
            dataset,
            bytes,
            stats,
        })
    }
}

/// Stores `file` create-only as the data file `name` in the partition
/// folder of `context`, and describes it.
pub(crate) fn store_encoded_file(
    store: &Store,
    context: &BoundWriteContext,
    name: &str,
    file: EncodedFile,
) -> Result<DataFile, Error> {
    let EncodedFile {
        dataset,
        bytes,
        stats,
    } = file;
    let url = context
        .write_dir()
        .join(name)
        .map_err(|e| encode_error(dataset, "file name", e.into()))?;
    let size = bytes.len() as u64;
    let path = ObjectPath::from_url_path(url.path())
        .map_err(|e| encode_error(dataset, "file name", e.into()))?;
    store.create_claimed(path, bytes)?;
    let modified = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let meta = DataFileMetadata::new(FileMeta::new(url, modified, size), stats);
    let add = build_add_file_metadata(meta, context)
        .and_then(ArrowEngineData::try_from_engine_data)
        .map_err(|e| encode_error(dataset, "add action", e.into()))?
        .record_batch()
        .clone();
    Ok(DataFile { add, bytes: size })
}

fn encode_error(dataset: Dataset, part: &str, source: BoxError) -> Error {
    Error::Encode {
        what: format!("{} {part}", dataset.name()),
        source,
    }
}

/// zstd Parquet, as every data file of the lake is written.
fn writer_properties(layout: Layout) -> WriterProperties {
    // Level 1: in alternating 2M-event drains it was a little faster than
    // level 3 (14.8 s against 15.6 s), and the events came out no larger.
    let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(
        ZstdLevel::try_new(1).expect("valid zstd level"),
    ));
    // Columns where nearly every value is distinct: a dictionary is built
    // for every page only to be thrown away, or kept and larger than the
    // plain values.
    for column in UNIQUE_COLUMNS {
        props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    match layout {
        // The table log holds the file's minimum and maximum (every reader
        // skips files by those). Parquet's own copy, per row group of a few
        // thousand rows of one shard, computed value by value a second
        // time, would let a reader skip little more in files this small.
        Layout::Flush => props = props.set_statistics_enabled(EnabledStatistics::None),
        Layout::Compacted => {
            props = props
                .set_max_row_group_row_count(Some(COMPACTED_ROW_GROUP_ROWS))
                // Nobody filters on the raw JSON by range.
                .set_column_statistics_enabled(
                    ColumnPath::from("payload"),
                    EnabledStatistics::None,
                );
        }
    }
    props
        .set_created_by(concat!("newsflow ", env!("CARGO_PKG_VERSION")).to_string())
        .build()
}
