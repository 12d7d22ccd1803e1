//! [`Lake`]: the output root, its three Delta tables, and the flush and
//! restore protocol that makes the output exactly-once per shard.
//!
//! Per shard, below the root, newsflow keeps (never overwritten, never
//! read unless the tables' logs point at it):
//!
//! ```text
//! _newsflow/shards/SSSSS/claim-QQQQQQQQQQQQQQQQQQQQ       a sequence number, taken
//! _newsflow/shards/SSSSS/checkpoint-QQQQQQQQQQQQQQQQQQQQ  state, offsets, manifest
//! _newsflow/shards/SSSSS/cold-QQQQQQQQQQQQQQQQQQQQ.json   articles that left memory
//! ```
//!
//! **A flush** `seq` of a shard (whose last committed flush is `prev`):
//! 1. `seq` was *claimed* before the flush began: its claim file was
//!    created, create-only, so no other writer (a paused old owner, a
//!    crashed earlier run of ours) ever writes a file named for it;
//! 2. write the cold segment, the data files of the three tables, then the
//!    checkpoint (with the manifest of those files), all create-only;
//! 3. commit to `events`, then `article_engagement`, then `article_totals`,
//!    each with the shard's transaction id moving from `prev` to `seq`
//!    (fenced, see `crate::delta`);
//! 4. claim `seq + 1` for the next flush.
//!
//! **Invariant:** for every shard, the three tables' transaction ids are
//! each either the latest committed flush `L` or the one before it, and the
//! checkpoint of `L` exists. A crash between two tables' commits leaves
//! exactly that; a restore finishes the flush from `L`'s manifest (the
//! files already exist), so every table ends at `L`, and the shard resumes
//! from `L`'s checkpoint. Nothing else decides where a shard resumes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::RecordBatch;
use delta_kernel::engine::arrow_data::ArrowEngineData;
use delta_kernel::FileMeta;
use delta_kernel_default_engine::executor::tokio::TokioMultiThreadExecutor;
use delta_kernel_default_engine::parquet::DataFileMetadata;
use delta_kernel_default_engine::stats::collect_stats;
use delta_kernel_default_engine::{build_add_file_metadata, DefaultEngineBuilder};
use newsflow_core::ColdArticle;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStoreExt, PutMode, PutOptions, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::checkpoint::{self, Checkpoint, EncodedCheckpoint, Manifest};
use crate::datasets::{partition_batches, Dataset, FlushBatch, WriteStats};
use crate::delta::{CommitEntry, Engine, EntryStatus, Table};
use crate::location::Location;
use crate::Error;

/// Columns (of `events/`) whose values are nearly all distinct.
const UNIQUE_COLUMNS: &[&str] = &["event_id", "kafka_offset", "payload"];

/// The order in which a flush commits to the tables. `events` goes first:
/// of two writers racing for a shard, the one that wins there is the one
/// whose flush every table ends up with.
const COMMIT_ORDER: [Dataset; 3] = [
    Dataset::Events,
    Dataset::ArticleEngagement,
    Dataset::ArticleTotals,
];

/// A handle on the output root. Cheap to clone; usable from any thread
/// that is not itself running async code.
#[derive(Clone)]
pub struct Lake {
    inner: Arc<Inner>,
}

struct Inner {
    location: Location,
    /// Runs object-store calls and the kernel's I/O. Held in an `Option` so
    /// that dropping the lake can shut it down without blocking, whatever
    /// thread it happens on.
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
    engine: Engine,
    /// In [`COMMIT_ORDER`].
    tables: Vec<Table>,
    /// A fault injected for the tests of the protocol
    /// (`NEWSFLOW_FAILPOINT`); never set in production.
    failpoint: Option<Failpoint>,
}

/// Faults the end-to-end tests inject through `NEWSFLOW_FAILPOINT`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Failpoint {
    /// `crash_after_commit:<table>`: abort the process right after the
    /// first commit to that table, leaving the tables after it in
    /// [`COMMIT_ORDER`] without that flush.
    CrashAfterCommit(Dataset),
    /// `stall_before_commit:<ms>`: wait before every flush's first commit,
    /// so that a freeze of the process catches a flush in flight.
    StallBeforeCommit(std::time::Duration),
}

impl Failpoint {
    fn from_env() -> Option<Failpoint> {
        let value = std::env::var("NEWSFLOW_FAILPOINT").ok()?;
        let (name, argument) = value.split_once(':')?;
        match name {
            "crash_after_commit" => Dataset::ALL
                .into_iter()
                .find(|d| d.name() == argument)
                .map(Failpoint::CrashAfterCommit),
            "stall_before_commit" => argument
                .parse()
                .ok()
                .map(|ms| Failpoint::StallBeforeCommit(std::time::Duration::from_millis(ms))),
            _ => None,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Lake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lake")
            .field("root", &self.inner.location.display())
            .finish()
    }
}

/// Where a shard resumes, as the tables' logs say.
#[derive(Debug)]
pub struct Restored {
    /// The checkpoint of the shard's last committed flush, if it has one.
    pub checkpoint: Option<Checkpoint>,
    /// That flush's sequence number (0 for none).
    pub committed: u64,
    /// The sequence number claimed for the shard's next flush.
    pub next_seq: u64,
    /// Tables a restore had to finish the last flush in (a crash between
    /// two commits), for the log.
    pub rolled_forward: usize,
}

/// One shard's part of a flush, cut on the run loop.
#[derive(Debug)]
pub struct ShardFlush {
    /// The state part of the checkpoint; it also names the shard, the
    /// claimed sequence number and the flush before it.
    pub checkpoint: EncodedCheckpoint,
    /// The rows to write.
    pub batch: FlushBatch,
    /// Articles that left memory in this flush.
    pub evicted: Vec<(String, ColdArticle)>,
}

impl ShardFlush {
    /// The shard.
    pub fn shard(&self) -> i32 {
        self.checkpoint.shard
    }
}

/// Why a shard's flush did not become part of the tables.
#[derive(Debug)]
pub enum FlushError {
    /// Another owner committed for the shard: this writer lost it and must
    /// not write to it again before restoring it from the log.
    Fenced {
        /// The table that said so.
        table: &'static str,
        /// The sequence number the table holds for the shard.
        found: u64,
    },
    /// The shard was taken away (revoked or lost) during the flush; nothing
    /// more was written for it.
    Abandoned,
    /// The store failed; the shard restarts from its last commit.
    Failed(String),
}

impl std::fmt::Display for FlushError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FlushError::Fenced { table, found } => write!(
                f,
                "fenced: {table} holds flush {found} of another owner for this shard"
            ),
            FlushError::Abandoned => write!(f, "the shard was taken away during its flush"),
            FlushError::Failed(message) => write!(f, "{message}"),
        }
    }
}

/// A shard's flush, done: the sequence number claimed for its next flush,
/// or why it did not land.
#[derive(Debug)]
pub struct ShardOutcome {
    /// The shard.
    pub shard: i32,
    /// Its next sequence number, or the failure.
    pub result: Result<u64, FlushError>,
}

/// What a flush reports as it goes, for metrics.
pub trait FlushObserver: Sync {
    /// Files of `dataset` written (not yet committed).
    fn written(&self, dataset: Dataset, stats: WriteStats, seconds: f64);
    /// A checkpoint written.
    fn checkpointed(&self, seconds: f64);
    /// One commit attempt series on `dataset`: commits made, races lost
    /// and retried, shards fenced, and the time it took.
    fn committed(
        &self,
        dataset: Dataset,
        committed: u64,
        conflicts: u64,
        fenced: u64,
        seconds: f64,
    );
}

impl Lake {
    /// Opens the output root named by `uri` (see [`crate::Location`] for
    /// the forms it takes), with `storage` options on top of the
    /// environment's, and creates the three tables if they are missing.
    pub fn open(uri: &str, storage: &BTreeMap<String, String>) -> Result<Lake, Error> {
        let location = Location::parse(uri, storage)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("newsflow-lake")
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                op: "starting the lake's runtime",
                path: uri.into(),
                source,
            })?;
        let handle = runtime.handle().clone();
        let executor = Arc::new(TokioMultiThreadExecutor::new(handle.clone()));
        let engine = DefaultEngineBuilder::new(location.store.clone())
            .with_task_executor(executor)
            .build();
        let failpoint = Failpoint::from_env();
        if let Some(failpoint) = failpoint {
            tracing::warn!(?failpoint, "a test fault is injected (NEWSFLOW_FAILPOINT)");
        }
        let mut inner = Inner {
            location,
            runtime: Some(runtime),
            handle,
            engine,
            tables: Vec::new(),
            failpoint,
        };
        inner.refuse_v1_lake()?;
        for dataset in COMMIT_ORDER {
            let url = inner.location.folder(dataset.name());
            if let Ok(path) = url.to_file_path() {
                // The kernel wants a local table's folder to exist.
                std::fs::create_dir_all(&path).map_err(|source| Error::Io {
                    op: "creating table folder",
                    path,
                    source,
                })?;
            }
            inner.tables.push(Table::open(
                &inner.engine,
                inner.location.store.as_ref(),
                &inner.handle,
                dataset,
                url,
            )?);
        }
        Ok(Lake {
            inner: Arc::new(inner),
        })
    }

    /// The output root, for logs (no credentials in it).
    pub fn root(&self) -> String {
        self.inner.location.display()
    }

    /// Finds where `shard` resumes: the last flush every table committed
    /// for it (finishing one a crash left half-committed), that flush's
    /// checkpoint, and a fresh sequence number claimed for the next flush.
    pub fn restore(&self, shard: i32) -> Result<Restored, Error> {
        let inner = &self.inner;
        let mut seqs = Vec::with_capacity(inner.tables.len());
        for table in &inner.tables {
            let snapshot = table.refresh(&inner.engine)?;
            seqs.push(table.committed_seq(&inner.engine, &snapshot, shard)?);
        }
        let latest = seqs.iter().copied().max().unwrap_or(0);
        if latest == 0 {
            return Ok(Restored {
                checkpoint: None,
                committed: 0,
                next_seq: inner.claim(shard, 1)?,
                rolled_forward: 0,
            });
        }
        let loaded = inner.load_checkpoint(shard, latest)?;
        let mut rolled_forward = 0;
        for (table, seq) in inner.tables.iter().zip(seqs) {
            if seq == latest {
                continue;
            }
            if seq != loaded.checkpoint.prev {
                return Err(Error::Inconsistent(format!(
                    "shard {shard}: {} holds flush {seq}, but the latest flush {latest} follows {}",
                    table.dataset.name(),
                    loaded.checkpoint.prev
                )));
            }
            let mut entries = [CommitEntry {
                shard,
                prev: seq,
                seq: latest,
                adds: loaded
                    .manifest
                    .adds
                    .get(table.dataset.name())
                    .cloned()
                    .unwrap_or_default(),
                status: EntryStatus::Pending,
            }];
            table.commit(&inner.engine, &mut entries)?;
            if let EntryStatus::Fenced { found } = entries[0].status {
                return Err(Error::Inconsistent(format!(
                    "shard {shard}: {} moved to flush {found} while flush {latest} was being finished; another worker owns the shard",
                    table.dataset.name()
                )));
            }
            rolled_forward += 1;
        }
        Ok(Restored {
            checkpoint: Some(loaded.checkpoint),
            committed: latest,
            next_seq: inner.claim(shard, latest + 1)?,
            rolled_forward,
        })
    }

    /// Writes and commits the flushes of several shards: each shard's files
    /// and checkpoint (shards in parallel, one thread per core), then one
    /// commit per table for all of them. Shards for which `abandoned`
    /// answers true are skipped from then on. Returns one outcome per job.
    pub fn flush(
        &self,
        jobs: Vec<ShardFlush>,
        abandoned: &(dyn Fn(i32) -> bool + Sync),
        observer: &dyn FlushObserver,
    ) -> Vec<ShardOutcome> {
        let inner = &self.inner;
        let written = for_each_parallel(jobs, |job| {
            let shard = job.shard();
            if abandoned(shard) {
                return (job, Err(FlushError::Abandoned));
            }
            let result = inner
                .write_shard(&job, observer)
                .map_err(|e| FlushError::Failed(e.to_string()));
            (job, result)
        });
        let mut outcomes = Vec::new();
        let mut committing: Vec<(EncodedCheckpointRef, Manifest)> = Vec::new();
        for (job, result) in written {
            match result {
                Ok(manifest) => {
                    committing.push((EncodedCheckpointRef::of(&job.checkpoint), manifest))
                }
                Err(e) => outcomes.push(ShardOutcome {
                    shard: job.shard(),
                    result: Err(e),
                }),
            }
        }
        let mut failed: BTreeMap<i32, FlushError> = BTreeMap::new();
        if let Some(Failpoint::StallBeforeCommit(pause)) = inner.failpoint {
            if !committing.is_empty() {
                std::thread::sleep(pause);
            }
        }
        for table in &inner.tables {
            for (job, _) in &committing {
                if !failed.contains_key(&job.shard) && abandoned(job.shard) {
                    failed.insert(job.shard, FlushError::Abandoned);
                }
            }
            let mut entries: Vec<CommitEntry> = committing
                .iter()
                .filter(|(job, _)| !failed.contains_key(&job.shard))
                .map(|(job, manifest)| CommitEntry {
                    shard: job.shard,
                    prev: job.prev,
                    seq: job.seq,
                    adds: manifest
                        .adds
                        .get(table.dataset.name())
                        .cloned()
                        .unwrap_or_default(),
                    status: EntryStatus::Pending,
                })
                .collect();
            if entries.is_empty() {
                continue;
            }
            match table.commit(&inner.engine, &mut entries) {
                Ok(report) => {
                    let mut fenced = 0;
                    for entry in &entries {
                        if let EntryStatus::Fenced { found } = entry.status {
                            fenced += 1;
                            failed.insert(
                                entry.shard,
                                FlushError::Fenced {
                                    table: table.dataset.name(),
                                    found,
                                },
                            );
                        }
                    }
                    observer.committed(
                        table.dataset,
                        report.committed,
                        report.conflicts,
                        fenced,
                        report.seconds,
                    );
                    if report.committed > 0
                        && inner.failpoint == Some(Failpoint::CrashAfterCommit(table.dataset))
                    {
                        eprintln!(
                            "NEWSFLOW_FAILPOINT: crashing after a commit to {}",
                            table.dataset.name()
                        );
                        std::process::abort();
                    }
                }
                Err(e) => {
                    let message = format!("committing to {}: {e}", table.dataset.name());
                    for entry in &entries {
                        failed.insert(entry.shard, FlushError::Failed(message.clone()));
                    }
                }
            }
        }
        for (job, _) in committing {
            let result = match failed.remove(&job.shard) {
                Some(e) => Err(e),
                None => inner
                    .claim(job.shard, job.seq + 1)
                    .map_err(|e| FlushError::Failed(format!("claiming the next flush: {e}"))),
            };
            outcomes.push(ShardOutcome {
                shard: job.shard,
                result,
            });
        }
        outcomes
    }

    /// Reads a cold segment of `shard` back: article id → what remained of it.
    pub fn load_cold_segment(
        &self,
        shard: i32,
        seq: u64,
    ) -> Result<HashMap<String, ColdArticle>, Error> {
        let relative = cold_path(shard, seq);
        let bytes = self.inner.get(&relative)?;
        serde_json::from_slice(&bytes).map_err(|e| Error::CorruptCheckpoint {
            path: relative,
            message: e.to_string(),
        })
    }
}

/// The identity of a job's checkpoint, kept after the job's rows are gone.
struct EncodedCheckpointRef {
    shard: i32,
    seq: u64,
    prev: u64,
}

impl EncodedCheckpointRef {
    fn of(checkpoint: &EncodedCheckpoint) -> Self {
        EncodedCheckpointRef {
            shard: checkpoint.shard,
            seq: checkpoint.seq,
            prev: checkpoint.prev,
        }
    }
}

fn shard_dir(shard: i32) -> String {
    format!("_newsflow/shards/{shard:05}")
}

fn claim_path(shard: i32, seq: u64) -> String {
    format!("{}/claim-{seq:020}", shard_dir(shard))
}

fn checkpoint_path(shard: i32, seq: u64) -> String {
    format!("{}/checkpoint-{seq:020}", shard_dir(shard))
}

fn cold_path(shard: i32, seq: u64) -> String {
    format!("{}/cold-{seq:020}.json", shard_dir(shard))
}

/// The name of a data file of `shard` written by flush `seq` (one per
/// partition folder and flush).
pub fn file_name(shard: i32, seq: u64) -> String {
    format!("part-{shard:05}-{seq:020}.zstd.parquet")
}

impl Inner {
    /// Refuses a root that holds a lake of contract v1 (plain Hive folders
    /// and `_checkpoints/`): it is not converted in place.
    fn refuse_v1_lake(&self) -> Result<(), Error> {
        let prefix = self.location.object_path("_checkpoints/");
        let store = self.location.store.clone();
        let listing = self
            .handle
            .block_on(async move { store.list_with_delimiter(Some(&prefix)).await });
        match listing {
            Ok(list) if !list.objects.is_empty() || !list.common_prefixes.is_empty() => {
                Err(Error::Config {
                    key: "output.uri".into(),
                    message: format!(
                        "{} holds a newsflow lake of contract v1 (it has _checkpoints/), which is not converted in place; \
                         point output.uri at a new location and the workers rebuild it from the topics",
                        self.location.display()
                    ),
                })
            }
            _ => Ok(()),
        }
    }

    /// Creates `relative` (below the root) with `bytes`, failing if it
    /// exists: nothing in the lake is ever overwritten.
    fn create(&self, relative: &str, bytes: Vec<u8>) -> Result<(), CreateError> {
        self.create_at(self.location.object_path(relative), bytes)
    }

    fn create_at(&self, path: ObjectPath, bytes: Vec<u8>) -> Result<(), CreateError> {
        let shown = path.to_string();
        let store = self.location.store.clone();
        let options = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        let result = self.handle.block_on(async move {
            store
                .put_opts(&path, PutPayload::from(bytes), options)
                .await
        });
        match result {
            Ok(_) => Ok(()),
            Err(object_store::Error::AlreadyExists { .. }) => Err(CreateError::Exists),
            Err(e) => Err(CreateError::Store(Error::Store {
                op: "writing",
                path: shown,
                message: e.to_string(),
            })),
        }
    }

    fn create_new(&self, relative: &str, bytes: Vec<u8>) -> Result<(), Error> {
        claimed(self.create(relative, bytes), relative)
    }

    fn get(&self, relative: &str) -> Result<Vec<u8>, Error> {
        let path = self.location.object_path(relative);
        let store = self.location.store.clone();
        let result = self.handle.block_on(async move {
            let got = store.get(&path).await?;
            got.bytes().await
        });
        result.map(|b| b.to_vec()).map_err(|e| Error::Store {
            op: "reading",
            path: relative.to_string(),
            message: e.to_string(),
        })
    }

    /// Claims the first free sequence number of `shard` from `from` on.
    /// Numbers are skipped only when another writer (or a crashed run)
    /// claimed them, which is rare; the bound is a guard, not a limit.
    fn claim(&self, shard: i32, from: u64) -> Result<u64, Error> {
        for seq in from..from + 10_000 {
            match self.create(&claim_path(shard, seq), Vec::new()) {
                Ok(()) => return Ok(seq),
                Err(CreateError::Exists) => continue,
                Err(CreateError::Store(e)) => return Err(e),
            }
        }
        Err(Error::Inconsistent(format!(
            "shard {shard}: 10000 sequence numbers from {from} on are claimed already"
        )))
    }

    fn load_checkpoint(&self, shard: i32, seq: u64) -> Result<checkpoint::LoadedCheckpoint, Error> {
        let relative = checkpoint_path(shard, seq);
        let bytes = self.get(&relative)?;
        let loaded = checkpoint::decode(&bytes, &relative)?;
        if loaded.checkpoint.shard != shard || loaded.checkpoint.seq != seq {
            return Err(Error::CorruptCheckpoint {
                path: relative,
                message: format!(
                    "it holds shard {} flush {} where shard {shard} flush {seq} was expected",
                    loaded.checkpoint.shard, loaded.checkpoint.seq
                ),
            });
        }
        Ok(loaded)
    }

    /// Step 2 of a flush: cold segment, data files, checkpoint. Returns the
    /// manifest of the files, by table.
    fn write_shard(
        &self,
        job: &ShardFlush,
        observer: &dyn FlushObserver,
    ) -> Result<Manifest, Error> {
        let (shard, seq) = (job.checkpoint.shard, job.checkpoint.seq);
        if !job.evicted.is_empty() {
            // Before the checkpoint, whose state no longer holds them.
            let map: BTreeMap<&str, &ColdArticle> =
                job.evicted.iter().map(|(id, a)| (id.as_str(), a)).collect();
            let bytes = serde_json::to_vec(&map).map_err(|e| Error::Encode {
                dataset: "cold segment",
                message: e.to_string(),
            })?;
            self.create_new(&cold_path(shard, seq), bytes)?;
        }
        let mut manifest = Manifest::default();
        for table in &self.tables {
            let started = Instant::now();
            let mut stats = WriteStats::default();
            let mut adds = Vec::new();
            for group in partition_batches(table.dataset, &job.batch)? {
                let (add, bytes) = self.write_file(table, shard, seq, &group.key, &group.batch)?;
                stats.files += 1;
                stats.rows += group.batch.num_rows() as u64;
                stats.bytes += bytes;
                adds.push(add);
            }
            if stats.files > 0 {
                observer.written(table.dataset, stats, started.elapsed().as_secs_f64());
            }
            manifest.adds.insert(table.dataset.name().to_string(), adds);
        }
        let started = Instant::now();
        let bytes = job.checkpoint.file_bytes(&manifest)?;
        self.create_new(&checkpoint_path(shard, seq), bytes)?;
        observer.checkpointed(started.elapsed().as_secs_f64());
        Ok(manifest)
    }

    /// Encodes one data file, stores it create-only, and describes it as
    /// the kernel's add-file metadata (statistics included). Returns the
    /// metadata and the file's size.
    fn write_file(
        &self,
        table: &Table,
        shard: i32,
        seq: u64,
        key: &crate::datasets::PartitionKey,
        batch: &RecordBatch,
    ) -> Result<(RecordBatch, u64), Error> {
        let dataset = table.dataset;
        let context = table.write_context(key)?;
        let url = context
            .write_dir()
            .join(&file_name(shard, seq))
            .map_err(|e| Error::Encode {
                dataset: dataset.name(),
                message: e.to_string(),
            })?;
        let bytes = encode_parquet(dataset, batch)?;
        let size = bytes.len() as u64;
        let path = ObjectPath::from_url_path(url.path()).map_err(|e| Error::Encode {
            dataset: dataset.name(),
            message: e.to_string(),
        })?;
        claimed(self.create_at(path, bytes), url.as_str())?;
        let stats = collect_stats(
            batch,
            context.stats_columns(),
            context.physical_data_schema().as_ref(),
        )
        .map_err(|e| Error::Encode {
            dataset: dataset.name(),
            message: format!("statistics: {e}"),
        })?;
        let modified = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let meta = DataFileMetadata::new(FileMeta::new(url, modified, size), stats);
        let add = build_add_file_metadata(meta, &context).map_err(|e| Error::Encode {
            dataset: dataset.name(),
            message: format!("add action: {e}"),
        })?;
        let add = ArrowEngineData::try_from_engine_data(add)
            .map_err(|e| Error::Encode {
                dataset: dataset.name(),
                message: format!("add action: {e}"),
            })?
            .record_batch()
            .clone();
        Ok((add, size))
    }
}

enum CreateError {
    Exists,
    Store(Error),
}

/// The outcome of creating a file named for a claimed sequence number:
/// that it exists already breaks the claim protocol, and says so.
fn claimed(result: Result<(), CreateError>, what: &str) -> Result<(), Error> {
    result.map_err(|e| match e {
        CreateError::Exists => Error::Inconsistent(format!(
            "{what} exists already although its sequence number was claimed by this writer"
        )),
        CreateError::Store(e) => e,
    })
}

/// Encodes `batch` as zstd Parquet.
fn encode_parquet(dataset: Dataset, batch: &RecordBatch) -> Result<Vec<u8>, Error> {
    // Level 1: in alternating 2M-event drains it was a little faster than
    // level 3 (14.8 s against 15.6 s), and the events came out no larger.
    let mut props = WriterProperties::builder().set_compression(Compression::ZSTD(
        ZstdLevel::try_new(1).expect("valid zstd level"),
    ));
    // Columns where nearly every value is distinct: a dictionary is built
    // for every page only to be thrown away.
    for column in UNIQUE_COLUMNS {
        props = props.set_column_dictionary_enabled(ColumnPath::from(*column), false);
    }
    // Nobody filters on the raw JSON by range.
    props =
        props.set_column_statistics_enabled(ColumnPath::from("payload"), EnabledStatistics::None);
    let props = props
        .set_created_by(concat!("newsflow ", env!("CARGO_PKG_VERSION")).to_string())
        .build();
    let encode_error = |e: parquet::errors::ParquetError| Error::Encode {
        dataset: dataset.name(),
        message: e.to_string(),
    };
    let mut bytes = Vec::new();
    let mut writer =
        ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).map_err(encode_error)?;
    writer.write(batch).map_err(encode_error)?;
    writer.close().map_err(encode_error)?;
    Ok(bytes)
}

/// Runs `work` over `items` on up to one thread per core, keeping order.
fn for_each_parallel<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(items.len());
    if threads <= 1 {
        return items.into_iter().map(work).collect();
    }
    let mut chunks: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        chunks[i % threads].push((i, item));
    }
    let work = &work;
    let mut results: Vec<(usize, R)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .into_iter()
                        .map(|(i, item)| (i, work(item)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a flush thread panicked"))
            .collect()
    });
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}
