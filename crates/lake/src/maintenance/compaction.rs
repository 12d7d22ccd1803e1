//! Compaction: the small files of each table partition bin-packed into
//! files of about the target size, rows ordered by `article_id`, swapped
//! into the log in one `dataChange = false` commit per partition.
//!
//! **Safe beside the workers.** Workers only ever add files, and a swap
//! removes exactly the files it read. A commit that loses a race is
//! rebuilt on a fresh snapshot, where every file it removes is looked up
//! again: a bin whose files another compactor removed in between is
//! dropped (its new file is deleted, it was never committed), so no row is
//! ever doubled or lost for a reader of the log. A worker that loses a race
//! to a swap retries as it does against any commit.

use std::collections::HashSet;
use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::compute::{concat, interleave_record_batch, lexsort_to_indices, SortColumn};
use bytes::Bytes;
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::transaction::{BoundWriteContext, CommitResult, UpdateTableOperation};
use delta_kernel::SnapshotRef;
use object_store::path::Path as ObjectPath;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::live_files::{by_partition, file_rows, live_files, typed_partition, FileRows, LiveFile};
use crate::data_files::{store_streamed_data_file, Layout, COMPACTED_ROW_GROUP_ROWS};
use crate::datasets::Dataset;
use crate::delta::{Engine, Table, ENGINE_INFO};
use crate::failpoint::Failpoint;
use crate::retry::CommitRetries;
use crate::store::Store;
use crate::{BoxError, Error};

/// What compaction did to one table.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct TableCompaction {
    /// The table's folder name.
    pub table: &'static str,
    /// Data files in the log before, and their bytes.
    pub files_before: u64,
    /// Bytes of those files.
    pub bytes_before: u64,
    /// Data files in the log after this run's swaps (workers' new files
    /// not counted).
    pub files_after: u64,
    /// Bytes of those files.
    pub bytes_after: u64,
    /// Files read and removed from the log.
    pub files_removed: u64,
    /// Bytes of the files read.
    pub bytes_read: u64,
    /// Files written and added to the log.
    pub files_written: u64,
    /// Bytes of the files written.
    pub bytes_written: u64,
    /// Swaps committed (one per partition).
    pub commits: u64,
    /// Races lost to other commits, rebuilt and tried again.
    pub conflicts: u64,
    /// Bins dropped because another compactor removed their files first.
    pub bins_abandoned: u64,
    /// Time taken, reading, writing and committing.
    pub seconds: f64,
}

/// One bin rewritten: the files it replaces and the file replacing them.
struct Rewrite {
    removed: Vec<LiveFile>,
    /// The new file's path relative to the table folder.
    path: String,
    add: RecordBatch,
    bytes: u64,
}

/// How large compaction's files get, and how much it holds at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompactionLimits {
    /// Bytes (compressed, as stored) a compacted file aims at; smaller
    /// files are packed together (`compaction.target_file_size`).
    pub target_file_size: u64,
    /// Decoded bytes one rewrite holds in memory at most: a bin is cut
    /// into several files when its rows decode to more
    /// (`compaction.max_bin_memory`). The raw archive's JSON decodes to
    /// about twelve times its zstd size.
    pub max_bin_memory: u64,
}

/// Compacts every partition of `table`.
pub(crate) fn compact_table(
    store: &Store,
    engine: &Engine,
    table: &Table,
    limits: CompactionLimits,
) -> Result<TableCompaction, Error> {
    let started = Instant::now();
    let snapshot = table.refresh(engine)?;
    let files = live_files(engine, &snapshot)?;
    let mut report = TableCompaction {
        table: table.dataset.name(),
        files_before: files.len() as u64,
        bytes_before: files.iter().map(|f| f.size).sum(),
        ..TableCompaction::default()
    };
    for (partition, files) in by_partition(files) {
        let bins = plan_bins(files, limits.target_file_size);
        if bins.is_empty() {
            continue;
        }
        let context = table.write_context_of(typed_partition(&partition)?)?;
        let mut rewrites = Vec::with_capacity(bins.len());
        for bin in bins {
            rewrite_bin(store, table, &context, bin, limits, &mut rewrites)?;
        }
        let swapped = swap(store, engine, table, rewrites, &mut report)?;
        for rewrite in swapped {
            report.files_removed += rewrite.removed.len() as u64;
            report.bytes_read += rewrite.removed.iter().map(|f| f.size).sum::<u64>();
            report.files_written += 1;
            report.bytes_written += rewrite.bytes;
        }
    }
    report.files_after = report.files_before - report.files_removed + report.files_written;
    report.bytes_after = report.bytes_before - report.bytes_read + report.bytes_written;
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Rewrites the files of one bin, sorted, as few files as the memory
/// budget allows, each added to `rewrites` (not yet in the log).
fn rewrite_bin(
    store: &Store,
    table: &Table,
    context: &BoundWriteContext,
    bin: Vec<LiveFile>,
    limits: CompactionLimits,
    rewrites: &mut Vec<Rewrite>,
) -> Result<(), Error> {
    let folder = context.write_dir();
    let mut files = bin.into_iter().peekable();
    while files.peek().is_some() {
        let (group, inputs) = read_group(store, table, &mut files, limits.max_bin_memory)?;
        if group.len() < 2 {
            // One file alone (past the memory budget by itself): rewriting
            // it gains nothing.
            continue;
        }
        tracing::debug!(
            table = table.dataset.name(),
            files = group.len(),
            compressed = group.iter().map(|f| f.size).sum::<u64>(),
            decoded = decoded_bytes(&inputs),
            "compacting a bin"
        );
        let order = article_order(table.dataset, &inputs)?;
        let name = format!("part-compacted-{}.zstd.parquet", uuid::Uuid::new_v4());
        let written = store_streamed_data_file(
            store,
            table.dataset,
            context,
            &name,
            table.dataset.file_schema(),
            sorted_slices(table.dataset, &inputs, &order),
            Layout::Compacted,
        )?;
        drop(inputs);
        rewrites.push(Rewrite {
            removed: group,
            path: relative_path(table, &folder, &name)?,
            add: written.add,
            bytes: written.bytes,
        });
    }
    Ok(())
}

/// Splits a partition's files into bins worth rewriting: files under the
/// target size, packed in path order (a shard's flushes stay together)
/// while a bin stays under the target. A bin of one file is left alone:
/// rewriting it gains nothing.
pub(crate) fn plan_bins(files: Vec<LiveFile>, target_file_size: u64) -> Vec<Vec<LiveFile>> {
    let mut small: Vec<LiveFile> = files
        .into_iter()
        .filter(|f| f.size < target_file_size)
        .collect();
    small.sort_by(|a, b| a.path.cmp(&b.path));
    let mut bins = Vec::new();
    let mut bin: Vec<LiveFile> = Vec::new();
    let mut bytes = 0;
    for file in small {
        if !bin.is_empty() && bytes + file.size > target_file_size {
            bins.push(std::mem::take(&mut bin));
            bytes = 0;
        }
        bytes += file.size;
        bin.push(file);
    }
    bins.push(bin);
    bins.retain(|bin| bin.len() > 1);
    bins
}

/// Reads files from `files` until their rows decode to `budget` bytes or
/// more (at least one file): the files read and their rows.
fn read_group(
    store: &Store,
    table: &Table,
    files: &mut std::iter::Peekable<std::vec::IntoIter<LiveFile>>,
    budget: u64,
) -> Result<(Vec<LiveFile>, Vec<RecordBatch>), Error> {
    let mut group = Vec::new();
    let mut inputs = Vec::new();
    let mut decoded = 0;
    while let Some(file) = files.next() {
        let batches = read_file(store, table, &file)?;
        decoded += decoded_bytes(&batches);
        inputs.extend(batches);
        group.push(file);
        if decoded >= budget || files.peek().is_none() {
            break;
        }
    }
    Ok((group, inputs))
}

fn decoded_bytes(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .map(|b| b.get_array_memory_size() as u64)
        .sum()
}

/// Reads one data file of `table`, decoded.
fn read_file(store: &Store, table: &Table, file: &LiveFile) -> Result<Vec<RecordBatch>, Error> {
    let dataset = table.dataset;
    let decode_error = |e: BoxError| Error::Decode {
        path: format!("{}/{}", dataset.name(), file.path),
        source: e,
    };
    let schema = dataset.file_schema();
    let url = table
        .url
        .join(&file.path)
        .map_err(|e| decode_error(e.into()))?;
    let object = ObjectPath::from_url_path(url.path()).map_err(|e| decode_error(e.into()))?;
    let bytes = Bytes::from(store.get(object)?);
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|builder| builder.with_batch_size(64 * 1024).build())
        .map_err(|e| decode_error(e.into()))?;
    let mut batches = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| decode_error(e.into()))?;
        if batch.schema().fields() != schema.fields() {
            let found = format!("its columns are not the table's: {:?}", batch.schema());
            return Err(decode_error(found.into()));
        }
        // The table's own schema (the file's may differ in metadata only).
        batches.push(
            RecordBatch::try_new(schema.clone(), batch.columns().to_vec())
                .map_err(|e| decode_error(e.into()))?,
        );
    }
    Ok(batches)
}

/// The order of the rows of `inputs` by `article_id`, then by the column
/// that orders one article's rows, as (batch, row) pairs. Only the two key
/// columns are copied to sort; the rows themselves move once, slice by
/// slice, when they are written.
fn article_order(dataset: Dataset, inputs: &[RecordBatch]) -> Result<Vec<(usize, usize)>, Error> {
    let sort_error = |e: arrow::error::ArrowError| Error::Encode {
        what: format!("{} rows sorted to compact them", dataset.name()),
        source: e.into(),
    };
    let key = |name: &str| -> Result<arrow::array::ArrayRef, Error> {
        let columns: Vec<&dyn arrow::array::Array> = inputs
            .iter()
            .map(|b| {
                b.column_by_name(name)
                    .expect("the dataset's own column")
                    .as_ref()
            })
            .collect();
        concat(&columns).map_err(sort_error)
    };
    let sort_columns = [
        SortColumn {
            values: key("article_id")?,
            options: None,
        },
        SortColumn {
            values: key(order_within_article(dataset))?,
            options: None,
        },
    ];
    let sorted = lexsort_to_indices(&sort_columns, None).map_err(sort_error)?;
    // Global row number → (batch, row within it).
    let mut starts = Vec::with_capacity(inputs.len());
    let mut total = 0;
    for batch in inputs {
        starts.push(total);
        total += batch.num_rows();
    }
    Ok(sorted
        .values()
        .iter()
        .map(|global| {
            let global = *global as usize;
            let batch = starts.partition_point(|start| *start <= global) - 1;
            (batch, global - starts[batch])
        })
        .collect())
}

/// The rows of `inputs` in `order`, as record batches of one row group
/// each.
fn sorted_slices<'a>(
    dataset: Dataset,
    inputs: &'a [RecordBatch],
    order: &'a [(usize, usize)],
) -> impl Iterator<Item = Result<RecordBatch, Error>> + 'a {
    let refs: Vec<&RecordBatch> = inputs.iter().collect();
    order.chunks(COMPACTED_ROW_GROUP_ROWS).map(move |chunk| {
        interleave_record_batch(&refs, chunk).map_err(|e| Error::Encode {
            what: format!("{} sorted rows gathered", dataset.name()),
            source: e.into(),
        })
    })
}

/// The column that orders one article's rows in `dataset`.
fn order_within_article(dataset: Dataset) -> &'static str {
    match dataset {
        Dataset::ArticleTotals => "version",
        Dataset::ArticleEngagement => "window_start",
        Dataset::Events => "occurred_at",
    }
}

/// The path of a new file relative to the table folder, as the log
/// writes it.
fn relative_path(table: &Table, folder: &url::Url, name: &str) -> Result<String, Error> {
    let full = folder.join(name).map_err(|e| Error::Encode {
        what: format!("the name of a compacted {} file", table.dataset.name()),
        source: e.into(),
    })?;
    full.as_str()
        .strip_prefix(table.url.as_str())
        .map(str::to_string)
        .ok_or_else(|| Error::Inconsistent(format!("{full} is not below the table {}", table.url)))
}

/// Commits the swap of `rewrites` as one table version, rebuilding it on
/// a fresh snapshot after a lost race. Returns the rewrites that are in
/// the log; the new files of the others are deleted.
fn swap(
    store: &Store,
    engine: &Engine,
    table: &Table,
    mut rewrites: Vec<Rewrite>,
    report: &mut TableCompaction,
) -> Result<Vec<Rewrite>, Error> {
    let mut retries = CommitRetries::new(&table.url);
    // After an attempt whose outcome is unknown (a store error), a new
    // file found in the log means that attempt landed.
    let mut landed = Vec::new();
    if let Some(Failpoint::StallBeforeSwap(pause)) = Failpoint::from_env() {
        tracing::warn!(?pause, "a test fault is injected: stalling before the swap");
        std::thread::sleep(pause);
    }
    loop {
        let snapshot = table.refresh(engine)?;
        let rows = file_rows(engine, &snapshot)?;
        rewrites = still_to_swap(store, table, rewrites, &rows.paths(), &mut landed, report);
        if rewrites.is_empty() {
            return Ok(landed);
        }
        let result = swap_commit(engine, table, &snapshot, rows, &rewrites)?;
        match result {
            CommitResult::Committed(_) => {
                report.commits += 1;
                landed.extend(rewrites);
                return Ok(landed);
            }
            CommitResult::Conflicted(_) => {
                report.conflicts += 1;
                if let Err(gave_up) = retries.lost_race() {
                    for rewrite in &rewrites {
                        delete_new_file(store, table, &rewrite.path);
                    }
                    return Err(gave_up);
                }
            }
            // Once the attempts are spent the commit may still have
            // landed: the new files stay for vacuum to judge.
            CommitResult::Retryable(retry) => {
                retries.unconfirmed("committing a compaction of", retry.error)?
            }
        }
    }
}

/// Sorts out `rewrites` against the files `live` in the log: those whose
/// new file is there landed (an attempt whose outcome was unknown); those
/// whose old files another writer removed are dropped with their new
/// file; the rest are returned, still to swap.
fn still_to_swap(
    store: &Store,
    table: &Table,
    rewrites: Vec<Rewrite>,
    live: &HashSet<String>,
    landed: &mut Vec<Rewrite>,
    report: &mut TableCompaction,
) -> Vec<Rewrite> {
    let (done, pending): (Vec<Rewrite>, Vec<Rewrite>) =
        rewrites.into_iter().partition(|r| live.contains(&r.path));
    if !done.is_empty() {
        report.commits += 1;
        landed.extend(done);
    }
    let (whole, broken): (Vec<Rewrite>, Vec<Rewrite>) = pending
        .into_iter()
        .partition(|r| r.removed.iter().all(|f| live.contains(&f.path)));
    for rewrite in broken {
        report.bins_abandoned += 1;
        tracing::info!(
            table = table.dataset.name(),
            file = rewrite.path,
            "another writer removed files of this bin first; dropping its rewrite"
        );
        delete_new_file(store, table, &rewrite.path);
    }
    whole
}

/// One attempt at the swap on `snapshot` (whose files are `rows`): the
/// old files removed and the new ones added, with `dataChange = false`.
fn swap_commit(
    engine: &Engine,
    table: &Table,
    snapshot: &SnapshotRef,
    rows: FileRows,
    rewrites: &[Rewrite],
) -> Result<CommitResult, Error> {
    let paths: HashSet<&str> = rewrites
        .iter()
        .flat_map(|r| r.removed.iter().map(|f| f.path.as_str()))
        .collect();
    let (removes, found) = rows.removals(&paths)?;
    if found != paths.len() {
        return Err(Error::Inconsistent(format!(
            "{}: {found} of {} files to remove are in the snapshot they were just found in",
            table.url,
            paths.len()
        )));
    }
    let mut txn = snapshot
        .clone()
        .update_table(UpdateTableOperation::Optimize, ENGINE_INFO, false)
        .build(engine, Box::new(FileSystemCommitter::new()))
        .map_err(|e| Error::Delta {
            context: "starting a compaction commit".into(),
            source: e.into(),
        })?;
    for remove in removes {
        txn.remove_files(remove);
    }
    for rewrite in rewrites {
        txn.add_files(Box::new(ArrowEngineData::new(rewrite.add.clone())));
    }
    txn.commit(engine).map_err(|e| Error::Delta {
        context: "committing a compaction".into(),
        source: e.into(),
    })
}

/// Deletes a compacted file that never became part of the log. A failure
/// only leaves an orphan, which vacuum removes later.
fn delete_new_file(store: &Store, table: &Table, path: &str) {
    let Ok(url) = table.url.join(path) else {
        return;
    };
    let Ok(object) = ObjectPath::from_url_path(url.path()) else {
        return;
    };
    if let Err(e) = store.delete(object) {
        tracing::warn!(table = table.dataset.name(), file = path, error = %e, "could not delete an uncommitted compacted file; vacuum will");
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn file(path: &str, size: u64) -> LiveFile {
        LiveFile {
            path: path.into(),
            size,
            partition: BTreeMap::new(),
        }
    }

    fn paths(bins: &[Vec<LiveFile>]) -> Vec<Vec<&str>> {
        bins.iter()
            .map(|b| b.iter().map(|f| f.path.as_str()).collect())
            .collect()
    }

    #[test]
    fn small_files_are_packed_up_to_the_target() {
        let files = vec![
            file("d", 40),
            file("a", 40),
            file("b", 40),
            file("big", 100),
            file("c", 40),
            file("e", 10),
        ];
        let bins = plan_bins(files, 100);
        assert_eq!(paths(&bins), vec![vec!["a", "b"], vec!["c", "d", "e"]]);
    }

    #[test]
    fn a_lone_small_file_is_left_alone() {
        assert!(plan_bins(vec![file("a", 10), file("b", 200)], 100).is_empty());
        assert!(plan_bins(vec![], 100).is_empty());
    }
}
