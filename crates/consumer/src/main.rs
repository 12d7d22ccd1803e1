//! `newsflow-consumer`: the worker. It reads the three event topics as a
//! member of a consumer group, counts events per article exactly, and writes
//! `article_totals/`, `article_engagement/` and `events/` as Parquet.
//!
//! Wiring lives here; the counting is `newsflow-core`, the files are
//! `newsflow-lake`, and the per-shard bookkeeping is [`worker`].

mod context;
mod dead_letters;
mod failure;
mod topics;
mod watchdog;
mod worker;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use newsflow_lake::Lake;
use newsflow_settings::Settings;
use newsflow_telemetry::{per_second, Binary, Health, Metrics, Progress};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;

use crate::context::WorkerContext;
use crate::dead_letters::DeadLetters;
use crate::failure::Failure;
use crate::watchdog::Liveness;
use crate::worker::{Flushed, Worker};

// The worker allocates and frees many small strings per record (ids,
// payloads, rows); mimalloc does that markedly faster than glibc's malloc,
// whose free-list work was a quarter of the profile (see docs/benchmarks.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Default metrics port of the worker when `metrics.listen` is not set.
const DEFAULT_LISTEN: &str = "127.0.0.1:9464";

#[derive(Parser)]
#[command(
    name = "newsflow-consumer",
    version,
    about = "The newsflow worker: Kafka events in, exact per-article counts out as Parquet."
)]
struct Cli {
    /// TOML configuration file; environment variables NEWSFLOW__SECTION__KEY override it.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the worker until SIGTERM or SIGINT (flushes, checkpoints, commits, exits 0).
    Run {
        /// Exit 0 once every assigned partition is read to its end and flushed:
        /// a one-shot backfill, and what `make demo` uses.
        #[arg(long)]
        exit_when_caught_up: bool,
        /// How often to log progress (consumed, rate, lag), e.g. `2s`, `1m`.
        #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
        progress_every: Duration,
    },
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
}

pub(crate) fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = newsflow_settings::load(cli.config.as_deref())?;
    let (exit_when_caught_up, progress_every) = match cli.command {
        Command::Config => {
            println!("{settings:#?}");
            return Ok(());
        }
        Command::Run {
            exit_when_caught_up,
            progress_every,
        } => (exit_when_caught_up, progress_every),
    };
    newsflow_telemetry::init_logging(&settings.log);
    let options = RunOptions {
        exit_when_caught_up,
        progress_every,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(Arc::new(settings), options))
}

/// How this run of the worker behaves, from the command line.
#[derive(Clone, Copy)]
struct RunOptions {
    exit_when_caught_up: bool,
    progress_every: Duration,
}

async fn run(settings: Arc<Settings>, options: RunOptions) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new(Binary::Worker));
    metrics.preregister(&settings.topics.event_topics());
    let health = Health::new();
    let listen = settings
        .metrics
        .listen
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
    let bound = newsflow_telemetry::bind(listen, metrics.clone(), health.clone()).await?;
    tracing::info!(listen = %bound, "serving /metrics /healthz /readyz");

    let shutdown = Arc::new(AtomicBool::new(false));
    {
        let shutdown = shutdown.clone();
        let grace = settings.shutdown.grace_period;
        tokio::spawn(async move {
            newsflow_telemetry::shutdown_signal().await;
            tracing::info!(grace_period = ?grace, "shutdown requested: draining");
            shutdown.store(true, Ordering::Release);
            // A drain that outlives its grace period is abandoned: exiting
            // without the last commit is safe, because whoever owns the
            // partitions next resumes from their last checkpoint.
            tokio::time::sleep(grace).await;
            tracing::error!(grace_period = ?grace, "drain did not finish within shutdown.grace_period; exiting without it");
            std::process::exit(1);
        });
    }
    let liveness = Arc::new(Liveness::new());
    tokio::spawn(watchdog::watch(
        liveness.clone(),
        metrics.clone(),
        health.clone(),
        watchdog::Limits {
            stall_after: settings.watchdog.stall_after,
            flush_overdue_after: watchdog::Limits::flush_overdue_after(
                settings.output.flush_interval,
            ),
            output: settings.output.uri.clone(),
        },
    ));

    let loop_settings = settings.clone();
    let loop_health = health.clone();
    let result = tokio::task::spawn_blocking(move || {
        run_loop(
            &loop_settings,
            metrics,
            &loop_health,
            &liveness,
            &shutdown,
            options,
        )
    })
    .await
    .context("the run loop panicked")?;
    health.set_not_ready("stopped");
    result
}

/// Largest number of records handled under one lock of the worker. Large
/// enough to hold records of several shards (a partition's fetch arrives
/// as one run of up to `max.partition.fetch.bytes`, about 1,000-4,000
/// records), so that they can be counted side by side.
const BATCH: usize = 16384;

/// The run loop, on its own thread: poll, handle, flush on time or size,
/// commit after each checkpoint, and drain on shutdown.
fn run_loop(
    settings: &Arc<Settings>,
    metrics: Arc<Metrics>,
    health: &Health,
    liveness: &Arc<Liveness>,
    shutdown: &AtomicBool,
    options: RunOptions,
) -> anyhow::Result<()> {
    let consumer = join_group(settings, metrics, liveness)?;
    health.set_ready();

    let mut flushes = FlushSchedule::new(settings);
    let mut progress = Progress::new(options.progress_every);
    let mut activity = Activity::default();
    let mut last_caught_up_check = Instant::now();
    while !shutdown.load(Ordering::Acquire) {
        let batch = poll_batch(&consumer);
        let idle = batch.is_empty();
        if !idle {
            activity.saw_records();
            liveness.progressed();
        }
        let buffered = {
            let mut w = consumer.context().lock();
            w.handle_batch(&consumer, &batch, activity.last_record);
            w.publish_tally();
            if let Some(failure) = w.fatal.take() {
                bail!(failure);
            }
            liveness.set_owns_partitions(!w.shards().is_empty());
            w.buffered()
        };
        drop(batch);

        flushes.step(&consumer, health, buffered);
        report(&consumer, liveness, &mut progress);
        if options.exit_when_caught_up
            && idle
            // One watermark request per partition; cheap enough to ask
            // five times a second, and a drain ends that much sooner.
            && last_caught_up_check.elapsed() >= Duration::from_millis(200)
        {
            last_caught_up_check = Instant::now();
            if consumer.context().lock().caught_up(&consumer) {
                tracing::info!("caught up with every assigned partition");
                break;
            }
        }
    }
    drain(consumer, health, &activity)
}

/// Leaves what the watchdog needs of this round (the flush in flight), and
/// logs progress when it is due.
fn report(consumer: &BaseConsumer<WorkerContext>, liveness: &Liveness, progress: &mut Progress) {
    let consumed = {
        let w = consumer.context().lock();
        liveness.set_flush_started(w.flush_started());
        w.consumed
    };
    if let Some(rates) = progress.due(consumed) {
        let lag = liveness.total_lag();
        let lag = if lag < 0 {
            "unknown".to_string()
        } else {
            lag.to_string()
        };
        tracing::info!(consumed, rate = per_second(rates.recent), lag, "progress");
    }
}

/// Opens the lake and the dead-letter producer, creates the consumer
/// around a [`Worker`], and subscribes.
fn join_group(
    settings: &Arc<Settings>,
    metrics: Arc<Metrics>,
    liveness: &Arc<Liveness>,
) -> anyhow::Result<BaseConsumer<WorkerContext>> {
    newsflow_kafka::verify_connection(settings)?;
    let shards = newsflow_kafka::check_co_partitioned(settings)?;
    let lake = Lake::open(&settings.output.uri, &settings.output.storage_options())
        .context("opening the lake")?;
    lake.set_log_checkpoint_interval(settings.output.log_checkpoint_interval);
    liveness.watch_store_failures(lake.store_failures());
    let lake_root = lake.root();
    let dead_letters = DeadLetters::new(settings)?;
    let worker = Arc::new(Mutex::new(Worker::new(
        settings.clone(),
        lake,
        metrics.clone(),
        dead_letters,
    )));
    let context = WorkerContext {
        worker,
        metrics,
        topics: settings.topics.event_topics().map(String::from),
        liveness: liveness.clone(),
    };
    let consumer: BaseConsumer<WorkerContext> = newsflow_kafka::create_client(
        &newsflow_kafka::consumer_config(settings),
        context,
        "creating the Kafka consumer",
    )?;
    // Membership follows the articles topic only; the rebalance callback
    // adds the co-partitions of the other two (see context.rs).
    consumer
        .subscribe(&[&settings.topics.articles])
        .context("subscribing to the articles topic")?;
    tracing::info!(
        brokers = %settings.kafka.brokers,
        group = %settings.kafka.group_id,
        shards,
        output = %lake_root,
        "worker started"
    );
    Ok(consumer)
}

/// Up to [`BATCH`] records: waits up to 100 ms for the first, then takes
/// what the client already holds.
fn poll_batch(consumer: &BaseConsumer<WorkerContext>) -> Vec<BorrowedMessage<'_>> {
    let mut batch = Vec::with_capacity(BATCH);
    let mut timeout = Duration::from_millis(100);
    while batch.len() < BATCH {
        match consumer.poll(timeout) {
            Some(Ok(message)) => batch.push(message),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
            None => break,
        }
        timeout = Duration::ZERO;
    }
    batch
}

/// When records arrived, for the closing summary's rate.
struct Activity {
    first_record: Option<Instant>,
    last_record: Instant,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            first_record: None,
            last_record: Instant::now(),
        }
    }
}

impl Activity {
    fn saw_records(&mut self) {
        self.last_record = Instant::now();
        self.first_record.get_or_insert(self.last_record);
    }

    /// Seconds from the first record to the last.
    fn busy_seconds(&self) -> f64 {
        self.first_record
            .map(|first| (self.last_record - first).as_secs_f64())
            .unwrap_or(0.0)
    }
}

/// When to start the next flush, and what finished flushes mean for the
/// group and for readiness.
struct FlushSchedule {
    interval: Duration,
    max_events: usize,
    last: Instant,
    output: OutputHealth,
}

impl FlushSchedule {
    fn new(settings: &Settings) -> Self {
        FlushSchedule {
            interval: settings.output.flush_interval,
            max_events: settings.output.flush_max_events,
            last: Instant::now(),
            output: OutputHealth::new(),
        }
    }

    /// Flushes are written on a background thread while counting goes on;
    /// what finished is committed here, on the consumer's thread. A new
    /// flush starts on time or size, unless the output is paused after a
    /// failure. While one is still writing, a flush due on time waits for
    /// it without blocking the loop (progress, metrics and the watchdog's
    /// view go on through a slow store); only a full buffer waits on it.
    fn step(&mut self, consumer: &BaseConsumer<WorkerContext>, health: &Health, buffered: usize) {
        let (finished, writing) = {
            let mut worker = consumer.context().lock();
            let finished = worker.poll_flushed();
            (finished, worker.flush_started().is_some())
        };
        if let Some(flushed) = finished {
            settle_flush(consumer, &mut self.output, health, flushed);
        }
        if self.output.resume_due() {
            self.output.resume(consumer);
        } else if !self.output.paused()
            && ((self.last.elapsed() >= self.interval && !writing) || buffered >= self.max_events)
        {
            let flushed = consumer.context().lock().start_flush(now_micros());
            settle_flush(consumer, &mut self.output, health, flushed);
            self.last = Instant::now();
        }
    }
}

/// Writes everything, closes every window, checkpoints, commits, and
/// leaves the group.
fn drain(
    consumer: BaseConsumer<WorkerContext>,
    health: &Health,
    activity: &Activity,
) -> anyhow::Result<()> {
    health.set_not_ready("draining");
    let flushed = consumer.context().lock().flush(now_micros(), true, None);
    let drain_failure = commit(&consumer, flushed);
    let consumed = consumer.context().lock().consumed;
    let busy = activity.busy_seconds();
    // A rate over less than a second of work says nothing.
    let rate = if busy >= 1.0 {
        per_second(consumed as f64 / busy)
    } else {
        "n/a".to_string()
    };
    tracing::info!(
        consumed,
        seconds = format!("{busy:.1}"),
        rate,
        "flushed and committed; leaving the group"
    );
    consumer.unsubscribe();
    drop(consumer);
    if let Some(failure) = drain_failure {
        // Nothing is lost: the next owner resumes from the last checkpoint.
        bail!("the last flush failed ({failure}); progress since the last checkpoint will be read again");
    }
    Ok(())
}

/// Longest wait between attempts while the output or the dead-letter
/// topic keeps failing.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// Whether the output can be written, and when to try again if not.
///
/// A failed flush resets the shards to their checkpoints (nothing is
/// committed past them) and pauses fetching, so the worker neither buffers
/// without bound nor re-reads the same records in a tight loop. After a
/// back-off that doubles up to [`MAX_RETRY_DELAY`], fetching resumes from
/// the checkpoints and the next flush tries again. Meanwhile `/readyz`
/// reports the problem.
struct OutputHealth {
    failing: bool,
    delay: Duration,
    resume_at: Option<Instant>,
}

impl OutputHealth {
    fn new() -> Self {
        OutputHealth {
            failing: false,
            delay: Duration::from_secs(1),
            resume_at: None,
        }
    }

    fn paused(&self) -> bool {
        self.resume_at.is_some()
    }

    fn resume_due(&self) -> bool {
        self.resume_at.is_some_and(|at| Instant::now() >= at)
    }

    fn failed(
        &mut self,
        consumer: &BaseConsumer<WorkerContext>,
        health: &Health,
        failure: &Failure,
    ) {
        tracing::warn!(retry_in = ?self.delay, "pausing the partitions until the output can be written");
        health.set_problem("output", failure.readiness_reason());
        self.failing = true;
        if let Ok(assignment) = consumer.assignment() {
            if let Err(e) = consumer.pause(&assignment) {
                tracing::warn!(error = %e, "pausing partitions failed");
            }
        }
        self.resume_at = Some(Instant::now() + self.delay);
        self.delay = (self.delay * 2).min(MAX_RETRY_DELAY);
    }

    fn resume(&mut self, consumer: &BaseConsumer<WorkerContext>) {
        self.resume_at = None;
        if let Ok(assignment) = consumer.assignment() {
            if let Err(e) = consumer.resume(&assignment) {
                tracing::warn!(error = %e, "resuming partitions failed");
            }
        }
        consumer.context().lock().rewind(consumer);
        tracing::info!("resuming from the checkpoints to retry the output");
    }

    fn succeeded(&mut self, health: &Health) {
        if self.failing {
            tracing::info!("output written again; ready");
            health.clear_problem("output");
            self.failing = false;
            self.delay = Duration::from_secs(1);
        }
    }
}

/// Commits what finished flushes made durable, and tells the output's
/// health: a failure pauses fetching; a finished flush, with no shard
/// still re-reading after a failure, proves the output works.
fn settle_flush(
    consumer: &BaseConsumer<WorkerContext>,
    output: &mut OutputHealth,
    health: &Health,
    flushed: Flushed,
) {
    let completed = flushed.completed;
    match commit(consumer, flushed) {
        None => {
            // Shards restored after an output failure read their records
            // again from here.
            let mut worker = consumer.context().lock();
            worker.rewind(consumer);
            if completed && !worker.recovering() {
                output.succeeded(health);
            }
        }
        Some(failure) => output.failed(consumer, health, &failure),
    }
}

/// Commits the offsets of a flush; returns its failure, if any.
fn commit(consumer: &BaseConsumer<WorkerContext>, flushed: Flushed) -> Option<Failure> {
    if let Some(offsets) = flushed.commit {
        context::commit_offsets(consumer, &offsets);
    }
    flushed.failure
}
