//! Following `article_totals`: a full load of its latest snapshot at
//! start, then every `footer.poll_interval` the commits that came since,
//! applied file by file.
//!
//! What is held is never wrong, only late: a row is taken only if its
//! version is above the article's footer held, so a file read twice (a
//! retry, a reload) changes nothing. When the log cannot be followed
//! commit by commit (the commit after the one held is gone, a file a
//! commit added was vacuumed, a commit removes rows), the latest snapshot
//! is loaded beside what is held and swapped in whole, so no answer ever
//! comes from a half-loaded table. When the store cannot be read, the
//! answers go on from what is held, marked stale, and the next poll
//! starts again where this one stopped.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use newsflow_core::counted::COUNTER_COUNT;
use newsflow_lake::{FooterRow, FooterSource, LogTail, MalformedRow, TableState};
use newsflow_telemetry::{FooterReload, Health, Metrics, SkippedRow};

use crate::held::{Applied, Footers};

/// The `/readyz` problem source of the first full load: not ready until it
/// is done.
pub const LOADING: &str = "footers";

/// What the API reads: the footers and how current they are.
pub struct Shared {
    footers: RwLock<Footers>,
    /// The table version the footers reflect.
    version: AtomicU64,
    /// When that version was committed, ms since the epoch (0: unknown).
    committed_at_ms: AtomicI64,
    /// The first full load is done.
    loaded: AtomicBool,
    /// When the log was last read successfully; `None` while reads succeed
    /// (the last one did).
    failing_since: Mutex<Option<Instant>>,
}

/// How current the answers are, as the API tells clients.
#[derive(Clone, Copy, Debug)]
pub struct Freshness {
    /// The table version the footers reflect.
    pub table_version: u64,
    /// When it was committed (ms since the epoch), if known.
    pub committed_at_ms: Option<i64>,
    /// Seconds since the log was last read, while reading it fails.
    pub stale_seconds: Option<u64>,
}

impl Shared {
    fn new() -> Shared {
        Shared {
            footers: RwLock::new(Footers::new()),
            version: AtomicU64::new(0),
            committed_at_ms: AtomicI64::new(0),
            loaded: AtomicBool::new(false),
            failing_since: Mutex::new(None),
        }
    }

    /// The footers, for reading. A panic elsewhere while holding them
    /// leaves plain data behind, still valid to read.
    pub fn footers(&self) -> std::sync::RwLockReadGuard<'_, Footers> {
        self.footers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn footers_mut(&self) -> std::sync::RwLockWriteGuard<'_, Footers> {
        self.footers.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the first full load is done.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Relaxed)
    }

    /// How current the answers are now.
    pub fn freshness(&self) -> Freshness {
        let committed = self.committed_at_ms.load(Ordering::Relaxed);
        let failing_since = *self.failing_since.lock().unwrap_or_else(|e| e.into_inner());
        Freshness {
            table_version: self.version.load(Ordering::Relaxed),
            committed_at_ms: (committed != 0).then_some(committed),
            stale_seconds: failing_since.map(|since| since.elapsed().as_secs()),
        }
    }

    fn set_version(&self, version: u64, committed_at_ms: Option<i64>) {
        self.version.store(version, Ordering::Relaxed);
        if let Some(at) = committed_at_ms {
            self.committed_at_ms.store(at, Ordering::Relaxed);
        }
    }
}

/// Why a poll stopped before it reached the end of the log.
enum Stop {
    /// The store failed; try again at the next poll.
    Unreadable(newsflow_lake::Error),
    /// What is held cannot be patched: load the latest snapshot.
    Reload(FooterReload),
}

/// Reads the table and keeps [`Shared`] current.
pub struct Follower {
    source: FooterSource,
    shared: Arc<Shared>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    poll_interval: Duration,
}

impl Follower {
    /// A follower of `source`'s table, and the state it keeps current.
    pub fn new(
        source: FooterSource,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        poll_interval: Duration,
    ) -> (Follower, Arc<Shared>) {
        let shared = Arc::new(Shared::new());
        let follower = Follower {
            source,
            shared: shared.clone(),
            metrics,
            health,
            poll_interval,
        };
        (follower, shared)
    }

    /// Follows the table until `stop` is set: loads it, then polls. Runs
    /// on a thread of its own (the lake's calls block).
    pub fn run(self, stop: &AtomicBool) {
        let mut reload = Some(FooterReload::Start);
        while !stop.load(Ordering::Relaxed) {
            let started = Instant::now();
            let outcome = match reload {
                Some(reason) => self.load(reason),
                None => self.poll(),
            };
            reload = match outcome {
                Ok(()) => {
                    self.read_succeeded();
                    None
                }
                Err(Stop::Reload(reason)) => Some(reason),
                Err(Stop::Unreadable(error)) => {
                    self.read_failed(&error);
                    reload
                }
            };
            if reload.is_none() || !self.shared.loaded.load(Ordering::Relaxed) {
                let rest = self.poll_interval.saturating_sub(started.elapsed());
                sleep_unless_stopped(rest, stop);
            }
        }
    }

    /// Loads the latest snapshot whole, beside what is held, and swaps it
    /// in.
    fn load(&self, reason: FooterReload) -> Result<(), Stop> {
        let started = Instant::now();
        let Some(state) = self.source.latest().map_err(Stop::Unreadable)? else {
            return Err(Stop::Unreadable(newsflow_lake::Error::Inconsistent(
                "article_totals has no log yet (no worker has opened the lake)".into(),
            )));
        };
        let TableState {
            version,
            committed_at_ms,
            files,
        } = state;
        let mut fresh = Footers::new();
        for file in &files {
            match self.read_file(file, |row| fresh.apply(row)) {
                Ok(()) => {}
                // A file of the snapshot vacuumed while it was read: a
                // newer snapshot no longer names it.
                Err(Stop::Reload(_)) => return Err(Stop::Reload(FooterReload::FileGone)),
                Err(stop) => return Err(stop),
            }
        }
        fresh.shrink_to_fit();
        let articles = fresh.len();
        *self.shared.footers_mut() = fresh;
        self.shared.set_version(version, committed_at_ms);
        self.metrics.footer_reloaded(reason);
        self.held_changed(version, committed_at_ms);
        if !self.shared.loaded.swap(true, Ordering::Relaxed) {
            self.health.clear_problem(LOADING);
        }
        tracing::info!(
            table_version = version,
            articles,
            files = files.len(),
            reason = reason.as_str(),
            seconds = started.elapsed().as_secs_f64(),
            "loaded the footers of article_totals"
        );
        Ok(())
    }

    /// Applies the commits that came after the version held.
    fn poll(&self) -> Result<(), Stop> {
        let held = self.shared.version.load(Ordering::Relaxed);
        let commits = match self.source.commits_after(held).map_err(Stop::Unreadable)? {
            LogTail::Commits(commits) => commits,
            LogTail::Gap => return Err(Stop::Reload(FooterReload::LogGap)),
        };
        for commit in commits {
            if commit.rewrites_table {
                return Err(Stop::Reload(FooterReload::TableRewritten));
            }
            for file in &commit.data_files {
                // Read without the lock (the store may take seconds), then
                // applied to the footers served: a row is taken only if it
                // is newer, so a half-applied commit shows some articles'
                // newer footers early, never a wrong one.
                let mut rows = Vec::new();
                self.read_file(file, |row| {
                    rows.push(OwnedRow::from(row));
                    Applied::Added
                })?;
                let mut footers = self.shared.footers_mut();
                for row in &rows {
                    if let Applied::Skipped(reason) = footers.apply(&row.borrowed()) {
                        self.metrics.footer_rows_skipped(reason, 1);
                    }
                }
            }
            self.shared
                .set_version(commit.version, commit.committed_at_ms);
            self.held_changed(commit.version, commit.committed_at_ms);
        }
        Ok(())
    }

    /// Hands every row of one data file to `take`, counting the ones
    /// that are not footers.
    fn read_file(
        &self,
        file: &str,
        mut take: impl FnMut(&FooterRow<'_>) -> Applied,
    ) -> Result<(), Stop> {
        let mut skipped = [0u64; SkippedRow::ALL.len()];
        let read = self.source.read_footers(file, |row| {
            let applied = match row {
                Ok(row) => take(&row),
                Err(MalformedRow::NullId) => Applied::Skipped(SkippedRow::NullId),
                Err(MalformedRow::NullNumber) => Applied::Skipped(SkippedRow::NullNumber),
            };
            if let Applied::Skipped(reason) = applied {
                let slot = SkippedRow::ALL.iter().position(|r| *r == reason);
                skipped[slot.unwrap_or(0)] += 1;
            }
        });
        for (reason, n) in SkippedRow::ALL.iter().zip(skipped) {
            if n > 0 {
                tracing::warn!(
                    file,
                    rows = n,
                    reason = reason.as_str(),
                    "rows of article_totals are not footers; left out"
                );
                self.metrics.footer_rows_skipped(*reason, n);
            }
        }
        match read {
            Ok(_) => Ok(()),
            Err(e) if e.is_not_found() => Err(Stop::Reload(FooterReload::FileGone)),
            Err(e) if e.is_transient() => Err(Stop::Unreadable(e)),
            Err(e) => {
                // A file nobody can decode would stop the service at this
                // commit forever; its rows are left out instead.
                tracing::error!(error = %e, file, "a data file of article_totals cannot be decoded; its rows are left out");
                self.metrics.footer_file_unreadable();
                Ok(())
            }
        }
    }

    fn held_changed(&self, version: u64, committed_at_ms: Option<i64>) {
        let footers = self.shared.footers();
        self.metrics
            .footers_held(footers.len(), footers.heap_bytes());
        self.metrics
            .footer_table_version(version, committed_at_ms.map(|ms| ms as f64 / 1000.0));
    }

    fn read_succeeded(&self) {
        let mut failing = self
            .shared
            .failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if failing.take().is_some() {
            tracing::info!("the table's log is read again; answers are current");
        }
        let committed = self.shared.committed_at_ms.load(Ordering::Relaxed);
        let freshness = (committed != 0).then(|| (now_ms() - committed).max(0) as f64 / 1000.0);
        self.metrics.footer_freshness(freshness, 0.0);
    }

    fn read_failed(&self, error: &newsflow_lake::Error) {
        self.metrics.footer_log_read_failed();
        let mut failing = self
            .shared
            .failing_since
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let since = *failing.get_or_insert_with(Instant::now);
        let first = since.elapsed() < self.poll_interval;
        if !self.shared.is_loaded() {
            // Nothing to answer from yet: /readyz says why.
            self.health
                .set_problem(LOADING, format!("cannot load article_totals yet: {error}"));
            if first {
                tracing::warn!(%error, "cannot load article_totals yet; retrying every footer.poll_interval");
            }
        } else if first {
            tracing::warn!(%error, "reading article_totals failed; answering from the footers held, marked stale");
        } else {
            tracing::debug!(%error, "reading article_totals still fails");
        }
        self.metrics
            .footer_freshness(None, since.elapsed().as_secs_f64());
    }
}

/// A row copied out of the file it was read from.
struct OwnedRow {
    article_id: String,
    title: Option<String>,
    counts: [i64; COUNTER_COUNT],
    version: i64,
}

impl OwnedRow {
    fn from(row: &FooterRow<'_>) -> OwnedRow {
        OwnedRow {
            article_id: row.article_id.to_string(),
            title: row.title.map(String::from),
            counts: row.counts,
            version: row.version,
        }
    }

    fn borrowed(&self) -> FooterRow<'_> {
        FooterRow {
            article_id: &self.article_id,
            title: self.title.as_deref(),
            counts: self.counts,
            version: self.version,
        }
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Sleeps for `duration`, waking early when `stop` is set.
fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) {
    let until = Instant::now() + duration;
    while !stop.load(Ordering::Relaxed) {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}
