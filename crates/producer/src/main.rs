//! `newsflow-producer`: publishes news events to Kafka.
//!
//! - `replay FILE|-`: validates NDJSON lines and publishes the valid ones;
//!   an invalid line is reported with its line number and not sent.
//! - `generate`: a deterministic synthetic stream (see [`generate`]), and
//!   optionally the exact totals it implies, for tests and demos.
//!
//! - `serve`: HTTP ingest, `POST /v1/events` (see [`serve`]).
//!
//! All create missing topics, key every event by `article_id`, and use an
//! idempotent `acks=all` producer.

mod generate;
mod ndjson;
mod publisher;
mod serve;

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};
use newsflow_settings::Settings;
use newsflow_telemetry::{per_second, Binary, Health, Metrics, Progress};

use crate::generate::{Generator, Oracle};
use crate::publisher::Publisher;

// Many small allocations per event (JSON values, strings); see the worker.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Default metrics port of the producer when `metrics.listen` is not set.
const DEFAULT_LISTEN: &str = "127.0.0.1:9465";

#[derive(Parser)]
#[command(
    name = "newsflow-producer",
    version,
    about = "Publishes news events to Kafka."
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
    /// Publish the events of an NDJSON file (`-` for standard input).
    Replay {
        /// The NDJSON file, one event per line.
        file: String,
    },
    /// Publish a deterministic synthetic stream.
    Generate {
        /// Seed of the stream: the same seed gives the same events.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Number of events to publish, redeliveries included.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Events per second; 0 publishes as fast as Kafka takes them.
        #[arg(long, default_value_t = 0)]
        rate: u64,
        /// Write the exact expected totals of what was sent to this JSON file.
        #[arg(long, value_name = "PATH")]
        expected: Option<PathBuf>,
    },
    /// Accept events over HTTP (`POST /v1/events` on `ingest.listen`) until SIGTERM.
    Serve,
    /// Print the effective configuration (secrets redacted) and exit.
    Config,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Arc::new(newsflow_settings::load(cli.config.as_deref())?);
    if let Command::Config = cli.command {
        println!("{settings:#?}");
        return Ok(());
    }
    newsflow_telemetry::init_logging(&settings.log);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let metrics = Arc::new(Metrics::new(Binary::Producer));
        metrics.preregister(&settings.topics.event_topics());
        let health = Health::new();
        let listen = settings
            .metrics
            .listen
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        // Its own thread: a busy ingest must not starve the probes.
        newsflow_telemetry::bind_on_own_thread(listen, metrics.clone(), health.clone())?;
        {
            let settings = settings.clone();
            tokio::task::spawn_blocking(move || newsflow_kafka::verify_connection(&settings))
                .await
                .context("the connection check panicked")??;
        }
        newsflow_kafka::ensure_topics(&settings).await?;
        if let Command::Serve = cli.command {
            return serve::serve(
                settings,
                metrics,
                health,
                newsflow_telemetry::shutdown_signal(),
            )
            .await;
        }
        health.set_ready();
        tokio::task::spawn_blocking(move || match cli.command {
            Command::Replay { file } => replay(&settings, metrics, &file),
            Command::Generate {
                seed,
                count,
                rate,
                expected,
            } => generate(&settings, metrics, seed, count, rate, expected),
            Command::Serve | Command::Config => unreachable!("handled above"),
        })
        .await
        .context("the publishing task panicked")?
    })
}

/// Logs publishing progress once a second, and a summary at the end.
struct PublishProgress(Progress);

impl PublishProgress {
    fn new() -> Self {
        PublishProgress(Progress::new(Duration::from_secs(1)))
    }

    fn tick(&mut self, queued: u64, acked: u64) {
        if let Some(rates) = self.0.due(acked) {
            tracing::info!(
                queued,
                acknowledged = acked,
                rate = per_second(rates.overall),
                "publishing"
            );
        }
    }

    fn done(&self, acked: u64, refused: u64) {
        tracing::info!(
            acknowledged = acked,
            refused,
            seconds = format!("{:.1}", self.0.elapsed().as_secs_f64()),
            rate = per_second(self.0.overall(acked)),
            "published"
        );
    }
}

fn replay(settings: &Settings, metrics: Arc<Metrics>, file: &str) -> anyhow::Result<()> {
    let reader: Box<dyn BufRead> = if file == "-" {
        Box::new(BufReader::new(std::io::stdin()))
    } else {
        Box::new(BufReader::new(
            File::open(file).with_context(|| format!("opening {file}"))?,
        ))
    };
    let limits = settings.decode_limits();
    let mut publisher = Publisher::new(settings, metrics.clone())?;
    let mut progress = PublishProgress::new();
    let mut rejected = 0u64;
    let mut queued = 0u64;
    for (index, line) in reader.split(b'\n').enumerate() {
        let line_number = index + 1;
        let line = line.with_context(|| format!("reading {file}"))?;
        let Some(line) = ndjson::event_on(&line) else {
            continue;
        };
        match newsflow_core::event::decode_unkeyed(line, &limits) {
            Ok(event) => {
                publisher.send(
                    settings.topics.for_event_type(event.event_type()),
                    &event.article_id,
                    line,
                )?;
                queued += 1;
            }
            Err(rejection) => {
                rejected += 1;
                metrics.produce_error(rejection.reason);
                eprintln!("{file}:{line_number}: not sent: {rejection}");
            }
        }
        progress.tick(queued, publisher.acked());
    }
    let (acked, refused) = publisher.finish(Duration::from_secs(60))?;
    progress.done(acked, refused);
    if refused > 0 {
        bail!("Kafka did not acknowledge {refused} of {queued} events");
    }
    if rejected > 0 {
        bail!("{rejected} invalid line(s) were not sent; {acked} valid events were published");
    }
    Ok(())
}

fn generate(
    settings: &Settings,
    metrics: Arc<Metrics>,
    seed: u64,
    count: u64,
    rate: u64,
    expected: Option<PathBuf>,
) -> anyhow::Result<()> {
    let mut publisher = Publisher::new(settings, metrics)?;
    let mut generator = Generator::new(seed);
    let mut oracle = expected.as_ref().map(|_| Oracle::default());
    let mut progress = PublishProgress::new();
    let started = Instant::now();
    for sent in 0..count {
        let event = generator.next_event();
        publisher.send(
            settings.topics.for_event_type(event.event_type),
            &event.article_id,
            event.text.as_bytes(),
        )?;
        if let Some(oracle) = oracle.as_mut() {
            oracle.record(&event);
        }
        if rate > 0 {
            // Pace against the start, not the previous event, so rounding
            // errors do not accumulate.
            let due = Duration::from_secs_f64((sent + 1) as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        progress.tick(sent + 1, publisher.acked());
    }
    let (acked, refused) = publisher.finish(Duration::from_secs(120))?;
    progress.done(acked, refused);
    if refused > 0 {
        bail!("Kafka did not acknowledge {refused} of {count} events");
    }
    if let (Some(path), Some(oracle)) = (expected, oracle) {
        let document = serde_json::json!({
            "seed": seed,
            "messages": oracle.messages,
            "articles": oracle.totals(),
        });
        let mut file =
            File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        file.write_all(serde_json::to_string_pretty(&document)?.as_bytes())?;
        tracing::info!(path = %path.display(), "wrote expected totals");
    }
    Ok(())
}
