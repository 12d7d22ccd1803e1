//! The data files a table version is made of, as its log says, and the
//! kernel's form of "remove exactly these files" (the kernel has no
//! remove-by-path call: removes are the scan's own file rows, selected).

use std::collections::{BTreeMap, HashMap, HashSet};

use arrow::array::{Array, StringArray};
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::scan::state::ScanFile;
use delta_kernel::{FilteredEngineData, SnapshotRef};

use crate::delta::Engine;
use crate::Error;

/// One data file of a table version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LiveFile {
    /// Relative to the table's folder, as the log writes it.
    pub path: String,
    /// Bytes.
    pub size: u64,
    /// Partition column → value, as the log writes it.
    pub partition: BTreeMap<String, String>,
}

fn kernel(context: &'static str) -> impl Fn(delta_kernel::KernelError) -> Error {
    move |e| Error::Delta {
        context: context.into(),
        source: e.into(),
    }
}

/// Every data file of the table at `snapshot`.
pub(crate) fn live_files(engine: &Engine, snapshot: &SnapshotRef) -> Result<Vec<LiveFile>, Error> {
    let scan = snapshot
        .clone()
        .scan_builder()
        .build()
        .map_err(kernel("planning a scan"))?;
    let mut files = Vec::new();
    for metadata in scan
        .scan_metadata(engine)
        .map_err(kernel("reading the file list"))?
    {
        let metadata = metadata.map_err(kernel("reading the file list"))?;
        files = metadata
            .visit_scan_files(files, |files: &mut Vec<LiveFile>, file: ScanFile| {
                files.push(LiveFile {
                    path: file.path,
                    size: file.size.max(0) as u64,
                    partition: file.partition_values.into_iter().collect(),
                })
            })
            .map_err(kernel("reading the file list"))?;
    }
    Ok(files)
}

/// The file rows of one scan of a table version, kept to turn some of them
/// into remove actions: one read of the log answers both "which files are
/// live" and "remove these".
pub(crate) struct FileRows {
    parts: Vec<FileRowsPart>,
}

struct FileRowsPart {
    data: Box<dyn delta_kernel::EngineData>,
    /// Per row: its path if the scan selected it.
    paths: Vec<Option<String>>,
}

/// The file rows of the table at `snapshot`.
pub(crate) fn file_rows(engine: &Engine, snapshot: &SnapshotRef) -> Result<FileRows, Error> {
    let scan = snapshot
        .clone()
        .scan_builder()
        .build()
        .map_err(kernel("planning a scan"))?;
    let mut parts = Vec::new();
    for metadata in scan
        .scan_metadata(engine)
        .map_err(kernel("reading the file list"))?
    {
        let metadata = metadata.map_err(kernel("reading the file list"))?;
        let (data, selection) = metadata.scan_files.into_parts();
        let batch = data
            .any_ref()
            .downcast_ref::<ArrowEngineData>()
            .ok_or_else(|| Error::Delta {
                context: "reading the file list".into(),
                source: "the engine returned scan files that are not Arrow data".into(),
            })?
            .record_batch();
        let path_column = batch
            .column_by_name("path")
            .and_then(|c| c.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::Delta {
                context: "reading the file list".into(),
                source: "scan files without a string `path` column".into(),
            })?;
        // A selection vector shorter than the data selects the rest.
        let paths = (0..batch.num_rows())
            .map(|row| {
                (selection.get(row).copied().unwrap_or(true) && path_column.is_valid(row))
                    .then(|| path_column.value(row).to_string())
            })
            .collect();
        parts.push(FileRowsPart { data, paths });
    }
    Ok(FileRows { parts })
}

impl FileRows {
    /// The paths of the version's files.
    pub fn paths(&self) -> HashSet<String> {
        self.parts
            .iter()
            .flat_map(|part| part.paths.iter().flatten().cloned())
            .collect()
    }

    /// The remove actions for `paths`, and how many of them the version
    /// holds.
    pub fn removals(
        self,
        paths: &HashSet<&str>,
    ) -> Result<(Vec<FilteredEngineData>, usize), Error> {
        let mut selected = Vec::new();
        let mut found = 0;
        for part in self.parts {
            let keep: Vec<bool> = part
                .paths
                .iter()
                .map(|path| path.as_deref().is_some_and(|p| paths.contains(p)))
                .collect();
            let count = keep.iter().filter(|k| **k).count();
            if count > 0 {
                found += count;
                selected.push(
                    FilteredEngineData::try_new(part.data, keep)
                        .map_err(kernel("selecting files to remove"))?,
                );
            }
        }
        Ok((selected, found))
    }
}

/// Groups `files` by their partition values.
pub(crate) fn by_partition(
    files: Vec<LiveFile>,
) -> BTreeMap<BTreeMap<String, String>, Vec<LiveFile>> {
    let mut groups: BTreeMap<BTreeMap<String, String>, Vec<LiveFile>> = BTreeMap::new();
    for file in files {
        groups.entry(file.partition.clone()).or_default().push(file);
    }
    groups
}

/// The set of paths, for membership tests.
pub(crate) fn path_set(files: &[LiveFile]) -> HashSet<String> {
    files.iter().map(|f| f.path.clone()).collect()
}

/// Partition values typed for a write context: dates as dates, the rest
/// as strings.
pub(crate) fn typed_partition(
    partition: &BTreeMap<String, String>,
) -> Result<HashMap<String, delta_kernel::expressions::Scalar>, Error> {
    use delta_kernel::expressions::Scalar;
    partition
        .iter()
        .map(|(column, value)| {
            let scalar = if column.ends_with("_date") {
                let days = newsflow_core::time::days_of_date(value).ok_or_else(|| {
                    Error::Inconsistent(format!(
                        "partition value {column}={value} is not a date like 2026-11-30"
                    ))
                })?;
                Scalar::Date(days)
            } else {
                Scalar::String(value.clone())
            };
            Ok((column.clone(), scalar))
        })
        .collect()
}
