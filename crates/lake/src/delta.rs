//! One Delta table through `delta_kernel`: created if missing, a snapshot
//! kept fresh incrementally, and commits that carry several shards' flushes
//! at once, each fenced by its shard's transaction id.
//!
//! **Fencing.** Every shard has an application id in every table
//! (`newsflow-shard-SSSSS`) whose version is the sequence number of the
//! shard's last flush committed there. A commit for flush `seq` of a shard
//! is made only while the table's version of the shard's id is still `prev`,
//! the flush it follows: the check runs on a snapshot, and the commit is
//! made at exactly that snapshot's version plus one, so any commit in
//! between makes it conflict (the kernel does not rebase), and the check is
//! made again on a fresh snapshot. A shard whose id moved on to anything
//! else was taken over: it is *fenced*, and its files are never committed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arrow::array::RecordBatch;
use delta_kernel::committer::FileSystemCommitter;
use delta_kernel::engine::arrow_conversion::TryFromArrow;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::expressions::Scalar;
use delta_kernel::schema::StructType;
use delta_kernel::transaction::create_table::create_table;
use delta_kernel::transaction::data_layout::DataLayout;
use delta_kernel::transaction::{
    BoundWriteContext, CommitResult, Transaction, UpdateTableOperation, WriteState,
};
use delta_kernel::{Snapshot, SnapshotRef};
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use delta_kernel_default_engine::DefaultEngine;
use url::Url;

use crate::datasets::{Dataset, PartitionKey, PartitionValue};
use crate::retry::CommitRetries;
use crate::store::Store;
use crate::Error;

/// The kernel engine the lake uses: the default engine on the lake's own
/// multi-threaded runtime (the background executor deadlocks in log
/// checkpoints).
pub(crate) type Engine = DefaultEngine<TokioMultiThreadExecutor>;

/// Written into every commit's `commitInfo.engineInfo`.
pub(crate) const ENGINE_INFO: &str = concat!("newsflow/", env!("CARGO_PKG_VERSION"));

/// The application id of `shard` in the tables' transaction ids.
pub(crate) fn app_id(shard: i32) -> String {
    format!("newsflow-shard-{shard:05}")
}

/// The latest snapshot of the table of `dataset` at `url`, read from
/// scratch; the table is created first (empty, partitioned, with the
/// minimal protocol) if it has no log yet.
fn latest(
    engines: &Engines,
    store: &Store,
    dataset: Dataset,
    url: &Url,
) -> Result<(SnapshotRef, bool), Error> {
    let engine = &engines.engine;
    if let Ok(path) = url.to_file_path() {
        // The kernel wants a local table's folder to exist.
        std::fs::create_dir_all(&path).map_err(|source| Error::Io {
            op: "creating table folder",
            path,
            source,
        })?;
    }
    // Asked first, so that opening a new lake logs no kernel error.
    let (log_files, _) = store.list(store.path(&format!("{}/_delta_log/", dataset.name())))?;
    if !log_files.iter().any(|name| name.ends_with(".json")) {
        // Several workers may race to create it; the log lets one win.
        if let Err(e) = create(engine, dataset, url) {
            tracing::debug!(table = dataset.name(), error = %e, "did not create the table; another worker may have");
        }
    }
    snapshot_at(engines, dataset, url, None)
}

/// The kernel engine, and one that reads the same store without the log's
/// checkpoints (`crate::log_fallback`), for a table whose checkpoint is
/// damaged.
pub(crate) struct Engines {
    pub engine: Engine,
    pub without_checkpoints: Engine,
}

impl Engines {
    /// Both engines over `store`, on the lake's runtime `handle`.
    pub fn new(
        store: &Arc<object_store::DynObjectStore>,
        handle: &tokio::runtime::Handle,
    ) -> Engines {
        let executor = Arc::new(TokioMultiThreadExecutor::new(handle.clone()));
        let over = |store| {
            delta_kernel_default_engine::DefaultEngineBuilder::new(store)
                .with_task_executor(executor.clone())
                .build()
        };
        Engines {
            engine: over(store.clone()),
            without_checkpoints: over(Arc::new(crate::log_fallback::WithoutLogCheckpoints::new(
                store.clone(),
            ))),
        }
    }
}

/// The snapshot of the table at `url` as of `version` (the latest if
/// `None`), read from scratch. If that fails (a damaged log checkpoint),
/// the log is read again without its checkpoints, from the JSON commits,
/// and the damage is logged; the error, if that fails too, names the table.
/// `true` with the snapshot when it was read without the checkpoints.
pub(crate) fn snapshot_at(
    engines: &Engines,
    dataset: Dataset,
    url: &Url,
    version: Option<u64>,
) -> Result<(SnapshotRef, bool), Error> {
    let build = |engine: &Engine| {
        let builder = Snapshot::builder_for(url.as_str());
        match version {
            Some(v) => builder.at_version(v).build(engine),
            None => builder.build(engine),
        }
    };
    let error = match build(&engines.engine) {
        Ok(snapshot) => return Ok((snapshot, false)),
        Err(error) => error,
    };
    match build(&engines.without_checkpoints) {
        Ok(snapshot) => {
            tracing::warn!(
                table = dataset.name(),
                %error,
                "the table's log checkpoint cannot be read; read it from the JSON commits instead \
                 (newsflow-lake checkpoint writes a new one at the next version)"
            );
            Ok((snapshot, true))
        }
        Err(_) => Err(Error::Delta {
            context: format!("reading the log of {url}"),
            source: error.into(),
        }),
    }
}

fn kernel(context: &'static str) -> impl Fn(delta_kernel::KernelError) -> Error {
    move |e| Error::Delta {
        context: context.into(),
        source: e.into(),
    }
}

/// A handle on one table.
pub(crate) struct Table {
    pub dataset: Dataset,
    pub url: Url,
    snapshot: Mutex<SnapshotRef>,
    write_state: Arc<WriteState>,
    /// For reading the log afresh, with or without its checkpoints.
    engines: Arc<Engines>,
    /// A log checkpoint of this table could not be read: its log is read
    /// without checkpoints from then on (an incremental read would pick
    /// the damaged one up again).
    damaged: AtomicBool,
}

/// What one shard wants to commit to a table, and what became of it.
pub(crate) struct CommitEntry {
    pub shard: i32,
    /// The flush sequence number the table must hold for the shard now.
    pub prev: u64,
    /// The flush being committed.
    pub seq: u64,
    /// The add-file metadata of its files in this table.
    pub adds: Vec<RecordBatch>,
    pub status: EntryStatus,
}

/// Where a [`CommitEntry`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EntryStatus {
    /// Not committed yet.
    Pending,
    /// Committed by this call.
    Committed,
    /// The table already held `seq` for the shard: someone finished this
    /// very flush (a restore rolling it forward).
    AlreadyThere,
    /// The table holds another sequence number for the shard: another
    /// owner committed; this flush must never be.
    Fenced { found: u64 },
}

/// How one [`Table::commit`] went, for metrics.
#[derive(Debug, Default)]
pub(crate) struct CommitReport {
    /// Commits made (0 or 1).
    pub committed: u64,
    /// Races lost to other commits, retried.
    pub conflicts: u64,
    /// Time spent, retries included.
    pub seconds: f64,
}

impl Table {
    /// Opens the table of `dataset` below the store's root, creating it
    /// (empty, partitioned, with the minimal protocol) if there is none yet.
    pub fn open(engines: &Arc<Engines>, store: &Store, dataset: Dataset) -> Result<Table, Error> {
        let url = store.location.folder(dataset.name());
        let (snapshot, damaged) = latest(engines, store, dataset, &url)?;
        let engine = &engines.engine;
        let write_state = snapshot
            .clone()
            .update_table(UpdateTableOperation::StreamingUpdate, ENGINE_INFO, true)
            .build(engine, Box::new(FileSystemCommitter::new()))
            .and_then(|txn| txn.write_state())
            .map_err(kernel("preparing writes"))?;
        Ok(Table {
            dataset,
            url,
            snapshot: Mutex::new(snapshot),
            write_state,
            engines: engines.clone(),
            damaged: AtomicBool::new(damaged),
        })
    }

    /// Reads the table's latest snapshot from scratch, creating the table
    /// if its log is gone, instead of incrementally from the cached one:
    /// after a failure, the cached snapshot may name log files that no
    /// longer exist (the lake was wiped or replaced under the worker).
    pub fn reload(&self, store: &Store) -> Result<(), Error> {
        let (fresh, damaged) = latest(&self.engines, store, self.dataset, &self.url)?;
        self.damaged.fetch_or(damaged, Ordering::Relaxed);
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    /// A snapshot at the table's latest version, read incrementally from
    /// the last one.
    pub fn refresh(&self, engine: &Engine) -> Result<SnapshotRef, Error> {
        let old = self.cached();
        let engine = if self.damaged.load(Ordering::Relaxed) {
            &self.engines.without_checkpoints
        } else {
            engine
        };
        let fresh = match Snapshot::builder_from(old).build(engine) {
            Ok(fresh) => fresh,
            // The log changed in a way an incremental read cannot follow
            // (a damaged checkpoint): read it whole.
            Err(_) => self.read_whole(None)?,
        };
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        Ok(fresh)
    }

    /// The table as of `version`, read from scratch (see [`snapshot_at`]).
    pub fn snapshot_at(&self, version: u64) -> Result<SnapshotRef, Error> {
        self.read_whole(Some(version))
    }

    /// [`snapshot_at`], remembering a damaged checkpoint.
    fn read_whole(&self, version: Option<u64>) -> Result<SnapshotRef, Error> {
        let (snapshot, damaged) = snapshot_at(&self.engines, self.dataset, &self.url, version)?;
        self.damaged.fetch_or(damaged, Ordering::Relaxed);
        Ok(snapshot)
    }

    fn cached(&self) -> SnapshotRef {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The last flush of `shard` committed to this table (0 for none), as
    /// of `snapshot`.
    pub fn committed_seq(
        &self,
        engine: &Engine,
        snapshot: &SnapshotRef,
        shard: i32,
    ) -> Result<u64, Error> {
        let version = match snapshot.get_app_id_version(&app_id(shard), engine) {
            Ok(version) => version,
            // A snapshot read incrementally can name a damaged checkpoint:
            // read the same version whole (and the log without checkpoints
            // from now on, see `refresh`).
            Err(error) => self
                .read_whole(Some(snapshot.version()))?
                .get_app_id_version(&app_id(shard), engine)
                .map_err(|_| Error::Delta {
                    context: format!("reading transaction ids of {}", self.url),
                    source: error.into(),
                })?,
        };
        Ok(version.map_or(0, |v| v.max(0) as u64))
    }

    /// The write context of the partition `key`: where its files go and
    /// how their add actions are described.
    pub fn write_context(&self, key: &PartitionKey) -> Result<BoundWriteContext, Error> {
        let values = self
            .dataset
            .partition_columns()
            .iter()
            .zip(key)
            .map(|(column, value)| {
                let scalar = match value {
                    PartitionValue::Date(days) => Scalar::Date(*days),
                    PartitionValue::Name(name) => Scalar::String((*name).to_string()),
                };
                ((*column).to_string(), scalar)
            })
            .collect();
        self.write_context_of(values)
    }

    /// The write context of the partition whose column values are `values`.
    pub fn write_context_of(
        &self,
        values: HashMap<String, Scalar>,
    ) -> Result<BoundWriteContext, Error> {
        self.write_state
            .write_context_builder()
            .with_partition_values(values)
            .build()
            .map_err(kernel("binding partition values"))
    }

    /// Commits the pending entries together, each with its shard's
    /// transaction id, as one table version. Entries whose shard was
    /// taken over are left out (`Fenced`), and so are those already there;
    /// the rest end `Committed`. Losing a race to another commit is
    /// retried on a fresh snapshot, where the fencing check runs again.
    /// A log checkpoint follows a commit that makes `checkpoint_interval`
    /// commits since the last one.
    pub fn commit(
        &self,
        engine: &Engine,
        entries: &mut [CommitEntry],
        checkpoint_interval: u64,
    ) -> Result<CommitReport, Error> {
        let started = Instant::now();
        let mut report = CommitReport::default();
        let mut retries = CommitRetries::new(&self.url);
        loop {
            let snapshot = self.refresh(engine)?;
            let pending = self.fence(engine, &snapshot, entries)?;
            if pending.is_empty() {
                report.seconds = started.elapsed().as_secs_f64();
                return Ok(report);
            }
            let txn = self.transaction(engine, &snapshot, entries, &pending)?;
            match txn.commit(engine).map_err(kernel("committing"))? {
                CommitResult::Committed(committed) => {
                    for i in &pending {
                        entries[*i].status = EntryStatus::Committed;
                    }
                    report.committed = 1;
                    report.seconds = started.elapsed().as_secs_f64();
                    if let Some(snapshot) = committed.post_commit_snapshot() {
                        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snapshot.clone();
                        if committed.post_commit_stats().commits_since_checkpoint
                            >= checkpoint_interval
                        {
                            self.write_log_checkpoint(snapshot);
                        }
                    }
                    return Ok(report);
                }
                CommitResult::Conflicted(conflict) => {
                    report.conflicts += 1;
                    tracing::debug!(
                        table = self.dataset.name(),
                        version = conflict.conflict_version(),
                        "lost a commit race; trying again on a fresh snapshot"
                    );
                    retries.lost_race()?;
                }
                CommitResult::Retryable(retry) => {
                    retries.unconfirmed("committing to", retry.error)?
                }
            }
        }
    }

    /// Checks each pending entry against `snapshot`: one whose flush the
    /// table already holds is there already, one whose shard moved past
    /// its `prev` is fenced. Returns the positions of those still pending.
    fn fence(
        &self,
        engine: &Engine,
        snapshot: &SnapshotRef,
        entries: &mut [CommitEntry],
    ) -> Result<Vec<usize>, Error> {
        for entry in entries.iter_mut() {
            if entry.status != EntryStatus::Pending {
                continue;
            }
            let found = self.committed_seq(engine, snapshot, entry.shard)?;
            if found == entry.seq {
                entry.status = EntryStatus::AlreadyThere;
            } else if found != entry.prev {
                entry.status = EntryStatus::Fenced { found };
            }
        }
        Ok((0..entries.len())
            .filter(|i| entries[*i].status == EntryStatus::Pending)
            .collect())
    }

    /// The commit of the `pending` entries on `snapshot`: each shard's
    /// transaction id moved to its flush, and its files added.
    fn transaction(
        &self,
        engine: &Engine,
        snapshot: &SnapshotRef,
        entries: &[CommitEntry],
        pending: &[usize],
    ) -> Result<Transaction, Error> {
        let mut builder =
            snapshot
                .clone()
                .update_table(UpdateTableOperation::StreamingUpdate, ENGINE_INFO, true);
        for i in pending {
            builder =
                builder.with_transaction_id(app_id(entries[*i].shard), entries[*i].seq as i64);
        }
        let mut txn = builder
            .build(engine, Box::new(FileSystemCommitter::new()))
            .map_err(kernel("starting a commit"))?;
        for i in pending {
            for adds in &entries[*i].adds {
                txn.add_files(Box::new(ArrowEngineData::new(adds.clone())));
            }
        }
        Ok(txn)
    }

    /// Writes a log checkpoint at `snapshot` (if it has none); `true` if
    /// one was written. A damaged checkpoint before it is read around, as
    /// [`snapshot_at`] does, so that a new one replaces it for readers.
    pub fn checkpoint(&self, snapshot: &SnapshotRef) -> Result<bool, Error> {
        let write = |engine: &Engine, snapshot: &SnapshotRef| {
            snapshot
                .clone()
                .checkpoint(engine, None)
                .map(|(result, _)| {
                    matches!(
                        result,
                        delta_kernel::snapshot::CheckpointWriteResult::Written
                    )
                })
        };
        let error = match write(&self.engines.engine, snapshot) {
            Ok(written) => return Ok(written),
            Err(error) => error,
        };
        // The same version read from its JSON commits alone, and written
        // from those.
        let without = &self.engines.without_checkpoints;
        Snapshot::builder_for(self.url.as_str())
            .at_version(snapshot.version())
            .build(without)
            .and_then(|clean| write(without, &clean))
            .map_err(|_| Error::Delta {
                context: format!("writing a log checkpoint of {}", self.url),
                source: error.into(),
            })
    }

    /// Writes a log checkpoint at `snapshot`, so that opening the table
    /// stays fast after many flushes. A failure is only logged: the table
    /// is complete without it.
    fn write_log_checkpoint(&self, snapshot: &SnapshotRef) {
        match self.checkpoint(snapshot) {
            Ok(_) => tracing::debug!(
                table = self.dataset.name(),
                version = snapshot.version(),
                "wrote a log checkpoint"
            ),
            Err(e) => tracing::warn!(
                table = self.dataset.name(),
                error = %e,
                "could not write a log checkpoint; the log is whole without it"
            ),
        }
    }
}

/// Creates the empty table: its schema, its partition columns, nothing else.
fn create(engine: &Engine, dataset: Dataset, url: &Url) -> Result<(), Error> {
    let schema =
        StructType::try_from_arrow(dataset.table_schema().as_ref()).map_err(|e| Error::Delta {
            context: "creating table".into(),
            source: e.into(),
        })?;
    let txn = create_table(url.as_str(), Arc::new(schema), ENGINE_INFO, true)
        .with_data_layout(DataLayout::partitioned(
            dataset.partition_columns().iter().copied(),
        ))
        .build(engine, Box::new(FileSystemCommitter::new()))
        .map_err(kernel("creating table"))?;
    match txn.commit(engine).map_err(kernel("creating table"))? {
        // Another worker created it first: fine, it is the same table.
        CommitResult::Committed(_) | CommitResult::Conflicted(_) => Ok(()),
        CommitResult::Retryable(retry) => Err(kernel("creating table")(retry.error)),
    }
}
