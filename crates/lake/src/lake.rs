//! [`Lake`]: the output root, its three Delta tables, and the flush and
//! restore protocol that makes the output exactly-once per shard.
//!
//! Per shard, beside the tables, the lake keeps claims, checkpoints and
//! cold segments (`crate::shard_files`).
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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use newsflow_core::ColdArticle;
use newsflow_lanes::Lanes;

use crate::archive::{EventArchive, EventsEncoding};
use crate::checkpoint::{
    Checkpoint, CheckpointChain, EncodedCheckpoint, LoadedCheckpoint, Manifest,
};
use crate::data_files::{write_data_file, write_encoded_data_file, DataFile};
use crate::datasets::{partition_batches, Dataset, WriteStats};
use crate::delta::{CommitEntry, Engine, Engines, EntryStatus, Table};
use crate::failpoint::Failpoint;
use crate::flush::{FlushError, FlushObserver, Restored, ShardFlush, ShardOutcome};
use crate::location::Location;
use crate::shard_files;
use crate::store::Store;
use crate::Error;

/// The order in which a flush commits to the tables. `events` goes first:
/// of two writers racing for a shard, the one that wins there is the one
/// whose flush every table ends up with.
const COMMIT_ORDER: [Dataset; 3] = [
    Dataset::Events,
    Dataset::ArticleEngagement,
    Dataset::ArticleTotals,
];

/// Commits between two log checkpoints unless set otherwise.
const DEFAULT_LOG_CHECKPOINT_INTERVAL: u64 = 100;

/// A handle on the output root. Cheap to clone; usable from any thread
/// that is not itself running async code.
#[derive(Clone)]
pub struct Lake {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    /// Runs object-store calls and the kernel's I/O. Held in an `Option` so
    /// that dropping the lake can shut it down without blocking, whatever
    /// thread it happens on.
    runtime: Option<tokio::runtime::Runtime>,
    engines: Arc<Engines>,
    /// In [`COMMIT_ORDER`].
    tables: Vec<Table>,
    /// A fault injected for the tests of the protocol; never in production.
    failpoint: Option<Failpoint>,
    /// A log checkpoint is written after this many commits since the last
    /// one (`output.log_checkpoint_interval`).
    log_checkpoint_interval: AtomicU64,
    /// The lanes a flush's shards are written on, one per core.
    writers: Lanes,
    /// What the `events/` rows of a flush are encoded with as they arrive.
    events_encoding: Arc<EventsEncoding>,
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
            .field("root", &self.inner.store.location.display())
            .finish()
    }
}

impl Lake {
    /// Opens the output root named by `uri` (a local path, `file://`,
    /// `s3://`, `gs://`, `az://`), with `storage` options on top of the
    /// environment's, and creates the three tables if they are missing.
    pub fn open(uri: &str, storage: &BTreeMap<String, String>) -> Result<Lake, Error> {
        let location = Location::parse(uri, storage)?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            // Local-disk calls run on blocking threads; left at tokio's
            // 512, short-lived ones came and went, each leaving its
            // allocator pages behind: compacting a 5M-event lake peaked
            // at 1.4 GB instead of 0.8 (docs/benchmarks.md).
            .max_blocking_threads(8)
            .thread_name("newsflow-lake")
            .enable_all()
            .build()
            .map_err(|source| Error::Io {
                op: "starting the lake's runtime",
                path: uri.into(),
                source,
            })?;
        let handle = runtime.handle().clone();
        let engines = Arc::new(Engines::new(&location.store, &handle));
        let failpoint = Failpoint::from_env();
        if let Some(failpoint) = failpoint {
            tracing::warn!(?failpoint, "a test fault is injected (NEWSFLOW_FAILPOINT)");
        }
        let store = Store::new(location, handle);
        refuse_v1_lake(&store)?;
        let mut tables = Vec::with_capacity(COMMIT_ORDER.len());
        for dataset in COMMIT_ORDER {
            tables.push(Table::open(&engines, &store, dataset)?);
        }
        let events = tables
            .iter()
            .find(|t| t.dataset == Dataset::Events)
            .expect("COMMIT_ORDER holds every table");
        let events_encoding = Arc::new(EventsEncoding::of(events)?);
        Ok(Lake {
            inner: Arc::new(Inner {
                store,
                runtime: Some(runtime),
                engines,
                tables,
                failpoint,
                log_checkpoint_interval: AtomicU64::new(DEFAULT_LOG_CHECKPOINT_INTERVAL),
                writers: Lanes::new("write", newsflow_lanes::available_cores()),
                events_encoding,
            }),
        })
    }

    /// An empty archive of a shard's `events/` rows, which encodes them
    /// into this lake's data files as they arrive (see `archive.rs`).
    pub fn event_archive(&self) -> EventArchive {
        EventArchive::new(self.inner.events_encoding.clone())
    }

    /// The store, the kernel engine and the tables, for maintenance.
    pub(crate) fn parts(&self) -> (&Store, &Engine, &[Table]) {
        (
            &self.inner.store,
            &self.inner.engines.engine,
            &self.inner.tables,
        )
    }

    /// Writes a log checkpoint after every `commits` commits to a table
    /// (at least 1), so that opening a table reads at most that many JSON
    /// commits after a Parquet checkpoint.
    pub fn set_log_checkpoint_interval(&self, commits: u64) {
        self.inner
            .log_checkpoint_interval
            .store(commits.max(1), Ordering::Relaxed);
    }

    fn log_checkpoint_interval(&self) -> u64 {
        self.inner.log_checkpoint_interval.load(Ordering::Relaxed)
    }

    /// The output root, for logs (no credentials in it).
    pub fn root(&self) -> String {
        self.inner.store.location.display()
    }

    /// Reads every table's latest snapshot from scratch (creating a table
    /// whose log is gone), for a retry after a failure that a stale cached
    /// snapshot may have caused: a lake wiped or replaced under the worker.
    pub fn reload_tables(&self) -> Result<(), Error> {
        let (store, _, tables) = self.parts();
        tables.iter().try_for_each(|t| t.reload(store))
    }

    /// The count of object-store calls that failed since the lake was
    /// opened (each was logged where it happened), shared, so that it can
    /// be read while the lake's user is blocked on the store.
    pub fn store_failures(&self) -> Arc<AtomicU64> {
        self.inner.store.location.failures.clone()
    }

    /// Finds where `shard` resumes: the last flush every table committed
    /// for it (finishing one a crash left half-committed), that flush's
    /// checkpoint, and a fresh sequence number claimed for the next flush.
    pub fn restore(&self, shard: i32) -> Result<Restored, Error> {
        let inner = &self.inner;
        let mut seqs = Vec::with_capacity(inner.tables.len());
        for table in &inner.tables {
            let snapshot = table.refresh(&inner.engines.engine)?;
            seqs.push(table.committed_seq(&inner.engines.engine, &snapshot, shard)?);
        }
        let latest = seqs.iter().copied().max().unwrap_or(0);
        if latest == 0 {
            return Ok(Restored {
                checkpoint: None,
                chain: CheckpointChain::default(),
                committed: 0,
                next_seq: shard_files::claim(&inner.store, shard, 1)?,
                rolled_forward: 0,
            });
        }
        let loaded = shard_files::load_checkpoint(&inner.store, shard, latest)?;
        let rolled_forward = self.roll_forward(shard, &seqs, &loaded)?;
        let (format, prev, offsets) =
            (loaded.head.format, loaded.head.prev, loaded.offsets.clone());
        let (state, chain) = shard_files::load_state(&inner.store, shard, loaded)?;
        Ok(Restored {
            checkpoint: Some(Checkpoint {
                format,
                shard,
                seq: latest,
                prev,
                offsets,
                state,
            }),
            chain,
            committed: latest,
            next_seq: shard_files::claim(&inner.store, shard, latest + 1)?,
            rolled_forward,
        })
    }

    /// Brings every table to the shard's latest flush (the checkpoint
    /// `loaded`) where a crash left it a flush behind, by committing that
    /// flush's manifest; returns how many tables it moved. `seqs` is what
    /// each table holds for the shard.
    fn roll_forward(
        &self,
        shard: i32,
        seqs: &[u64],
        loaded: &LoadedCheckpoint,
    ) -> Result<usize, Error> {
        let inner = &self.inner;
        let latest = loaded.head.seq;
        let mut rolled_forward = 0;
        for (table, &seq) in inner.tables.iter().zip(seqs) {
            if seq == latest {
                continue;
            }
            if seq == 0 {
                // A table added to an existing lake (by a release that
                // writes one more) holds no flush of any shard yet: it
                // starts from the others' state, at their latest flush.
                tracing::warn!(
                    shard,
                    table = table.dataset.name(),
                    flush = latest,
                    "table holds no flush of the shard while the others do: taken as a table added since, starting at their latest flush"
                );
            } else if seq != loaded.head.prev {
                return Err(Error::Inconsistent(format!(
                    "shard {shard}: {} holds flush {seq}, but the latest flush {latest} follows {}",
                    table.dataset.name(),
                    loaded.head.prev
                )));
            }
            let mut entries = [CommitEntry {
                shard,
                prev: seq,
                seq: latest,
                adds: loaded.manifest.adds_of(table.dataset),
                status: EntryStatus::Pending,
            }];
            table.commit(
                &inner.engines.engine,
                &mut entries,
                self.log_checkpoint_interval(),
            )?;
            if let EntryStatus::Fenced { found } = entries[0].status {
                return Err(Error::Inconsistent(format!(
                    "shard {shard}: {} moved to flush {found} while flush {latest} was being finished; another worker owns the shard",
                    table.dataset.name()
                )));
            }
            rolled_forward += 1;
        }
        Ok(rolled_forward)
    }

    /// Writes and commits the flushes of several shards: each shard's files
    /// and checkpoint (shards in parallel, one thread per core), then one
    /// commit per table for all of them, then a claim of each committed
    /// shard's next sequence number. Shards for which `abandoned` answers
    /// true are skipped from then on. Returns one outcome per job.
    pub fn flush(
        &self,
        jobs: Vec<ShardFlush>,
        abandoned: &(dyn Fn(i32) -> bool + Sync),
        observer: &dyn FlushObserver,
    ) -> Vec<ShardOutcome> {
        let inner = &self.inner;
        let written = inner.writers.run(
            jobs,
            |_| 1,
            |mut job| {
                let result = if abandoned(job.shard()) {
                    Err(FlushError::Abandoned)
                } else {
                    inner
                        .write_shard(&mut job, observer)
                        .map_err(|e| FlushError::failed("writing its files", e))
                };
                (Written::of(&job.checkpoint), result)
            },
        );
        let mut outcomes = Vec::new();
        let mut committing = Vec::new();
        for (job, result) in written {
            match result {
                Ok(manifest) => committing.push((job, manifest)),
                Err(e) => outcomes.push(job.outcome(Err(e))),
            }
        }
        if let Some(Failpoint::StallBeforeCommit(pause)) = inner.failpoint {
            if !committing.is_empty() {
                std::thread::sleep(pause);
            }
        }
        let mut failed: BTreeMap<i32, FlushError> = BTreeMap::new();
        for table in &inner.tables {
            for (job, _) in &committing {
                if !failed.contains_key(&job.shard) && abandoned(job.shard) {
                    failed.insert(job.shard, FlushError::Abandoned);
                }
            }
            inner.commit_table(table, &committing, &mut failed, observer);
        }
        for (job, _) in committing {
            let result = match failed.remove(&job.shard) {
                Some(e) => Err(e),
                None => shard_files::claim(&inner.store, job.shard, job.seq + 1)
                    .map_err(|e| FlushError::failed("claiming the next flush", e)),
            };
            outcomes.push(job.outcome(result));
        }
        outcomes
    }

    /// Reads a cold segment of `shard` back: article id → what remained of it.
    pub fn load_cold_segment(
        &self,
        shard: i32,
        seq: u64,
    ) -> Result<HashMap<String, ColdArticle>, Error> {
        shard_files::load_cold_segment(&self.inner.store, shard, seq)
    }
}

/// A shard whose files and checkpoint were written, kept after its rows
/// are gone.
struct Written {
    shard: i32,
    seq: u64,
    prev: u64,
}

impl Written {
    fn of(checkpoint: &EncodedCheckpoint) -> Self {
        Written {
            shard: checkpoint.shard,
            seq: checkpoint.seq,
            prev: checkpoint.prev,
        }
    }

    fn outcome(&self, result: Result<u64, FlushError>) -> ShardOutcome {
        ShardOutcome {
            shard: self.shard,
            seq: self.seq,
            result,
        }
    }
}

/// Refuses a root that holds a lake of contract v1 (plain Hive folders and
/// `_checkpoints/`): it is not converted in place.
fn refuse_v1_lake(store: &Store) -> Result<(), Error> {
    match store.list(store.path("_checkpoints/")) {
        Ok((names, folders)) if !names.is_empty() || folders => Err(Error::Config {
            key: "output.uri".into(),
            message: format!(
                "{} holds a newsflow lake of contract v1 (it has _checkpoints/), which is not converted in place; \
                 point output.uri at a new location and the workers rebuild it from the topics",
                store.location.display()
            ),
        }),
        _ => Ok(()),
    }
}

impl Inner {
    /// Step 2 of a flush: cold segment, data files, checkpoint. Returns the
    /// manifest of the files, by table.
    fn write_shard(
        &self,
        job: &mut ShardFlush,
        observer: &dyn FlushObserver,
    ) -> Result<Manifest, Error> {
        let (shard, seq) = (job.checkpoint.shard, job.checkpoint.seq);
        if !job.evicted.is_empty() {
            shard_files::write_cold_segment(&self.store, shard, seq, &job.evicted)?;
            tracing::debug!(
                shard,
                seq,
                articles = job.evicted.len(),
                "idle articles left memory"
            );
        }
        let mut manifest = Manifest::default();
        for table in &self.tables {
            let started = Instant::now();
            let mut stats = WriteStats::default();
            let mut adds = Vec::new();
            let mut add = |file: DataFile, rows: usize| {
                stats.files += 1;
                stats.rows += rows as u64;
                stats.bytes += file.bytes;
                adds.push(file.add);
            };
            if table.dataset == Dataset::Events {
                for (key, rows, encoded) in std::mem::take(&mut job.batch.events).encode() {
                    add(
                        write_encoded_data_file(&self.store, table, shard, seq, &key, encoded?)?,
                        rows,
                    );
                }
            } else {
                for group in partition_batches(table.dataset, &job.batch)? {
                    let file =
                        write_data_file(&self.store, table, shard, seq, &group.key, &group.batch)?;
                    add(file, group.batch.num_rows());
                }
            }
            if stats.files > 0 {
                observer.written(table.dataset, stats, started.elapsed().as_secs_f64());
            }
            manifest.adds.insert(table.dataset.name().to_string(), adds);
        }
        let started = Instant::now();
        let payload = job.checkpoint.file_payload(&manifest)?;
        shard_files::write_checkpoint(&self.store, shard, seq, payload)?;
        observer.checkpointed(started.elapsed().as_secs_f64());
        Ok(manifest)
    }

    /// Step 3 of a flush, for one table: one commit for every shard not
    /// failed yet; shards fenced or failed here are added to `failed`, so
    /// the later tables leave them out.
    fn commit_table(
        &self,
        table: &Table,
        committing: &[(Written, Manifest)],
        failed: &mut BTreeMap<i32, FlushError>,
        observer: &dyn FlushObserver,
    ) {
        let mut entries: Vec<CommitEntry> = committing
            .iter()
            .filter(|(job, _)| !failed.contains_key(&job.shard))
            .map(|(job, manifest)| CommitEntry {
                shard: job.shard,
                prev: job.prev,
                seq: job.seq,
                adds: manifest.adds_of(table.dataset),
                status: EntryStatus::Pending,
            })
            .collect();
        if entries.is_empty() {
            return;
        }
        match table.commit(
            &self.engines.engine,
            &mut entries,
            self.log_checkpoint_interval.load(Ordering::Relaxed),
        ) {
            Ok(report) => {
                let mut fenced = 0;
                for entry in &entries {
                    if let EntryStatus::Fenced { found } = entry.status {
                        fenced += 1;
                        let table = table.dataset;
                        failed.insert(entry.shard, FlushError::Fenced { table, found });
                    }
                }
                observer.committed(
                    table.dataset,
                    report.committed,
                    report.conflicts,
                    fenced,
                    report.seconds,
                );
                if report.committed > 0 {
                    self.crash_if_asked(table.dataset);
                }
            }
            Err(e) => {
                let step = format!("committing to {}", table.dataset.name());
                let source = Arc::new(e);
                for entry in &entries {
                    let error = FlushError::Failed {
                        step: step.clone(),
                        source: Arc::clone(&source),
                    };
                    failed.insert(entry.shard, error);
                }
            }
        }
    }

    /// The protocol tests' crash right after a commit to `dataset`
    /// (`NEWSFLOW_FAILPOINT=crash_after_commit:<table>`).
    fn crash_if_asked(&self, dataset: Dataset) {
        if self.failpoint == Some(Failpoint::CrashAfterCommit(dataset)) {
            eprintln!(
                "NEWSFLOW_FAILPOINT: crashing after a commit to {}",
                dataset.name()
            );
            std::process::abort();
        }
    }
}
