//! `newsflow-bench`: the parts of `make bench` that need to be Rust.
//!
//! - `raw-drain`: the ceiling the client library allows here. A consumer with
//!   the worker's own fetch settings that only counts messages, reading
//!   every partition of the three event topics from the beginning to the
//!   high watermark seen at start.
//! - `state`: counting state in memory for N distinct articles, measured in
//!   this process (no Kafka): resident memory before and after, per article.
//! - `footer-table`: an `article_totals` table of N articles for the footer
//!   service's benchmark (`make bench-footer`).
//! - `delete-topics`: removes the benchmark's topics afterwards.
//!
//! Each prints one JSON object on stdout for `deploy/bench/bench.py`.

mod commit_race;
mod footer_table;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use newsflow_core::time::{DAY, SECOND};
use newsflow_core::{Event, EventBody, Micros, Shard};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

#[derive(Parser)]
#[command(name = "newsflow-bench", about = "Benchmark helpers for `make bench`.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Drain the event topics (NEWSFLOW__TOPICS__*) with a counting-only consumer.
    RawDrain,
    /// Hold N distinct articles in counting state and report the memory.
    State {
        /// Distinct articles.
        #[arg(long)]
        articles: u64,
        /// Events per article (comments, posts, sources).
        #[arg(long, default_value_t = 8)]
        events_per_article: u64,
    },
    /// Many writers (shards with their own lake handles) flushing to one
    /// lake at once: commit rate, lost races and commit latency.
    CommitRace {
        /// The lake: a local path or s3://… (AWS_* variables apply).
        #[arg(long)]
        uri: String,
        /// Concurrent writers.
        #[arg(long)]
        writers: i32,
        /// How long they write.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// At most one flush per writer this often (0: as fast as it can).
        #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
        interval: std::time::Duration,
    },
    /// Write an article_totals table of N articles (no Kafka) for `make bench-footer`.
    FooterTable {
        /// The lake: a local path or s3://… (AWS_* variables apply).
        #[arg(long)]
        uri: String,
        /// Articles.
        #[arg(long)]
        articles: u64,
        /// Rows per flush (one commit each).
        #[arg(long, default_value_t = 100_000)]
        per_flush: u64,
        /// Write no titles (articles not published yet).
        #[arg(long)]
        no_titles: bool,
    },
    /// Delete these topics.
    DeleteTopics {
        /// Topic names.
        topics: Vec<String>,
    },
}

// The worker's allocator, so that `state` measures what a worker holds.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = newsflow_settings::load(None)?;
    match cli.command {
        Command::RawDrain => raw_drain(&settings),
        Command::State {
            articles,
            events_per_article,
        } => state(articles, events_per_article),
        Command::CommitRace {
            uri,
            writers,
            seconds,
            interval,
        } => commit_race::run(&uri, writers, seconds, interval),
        Command::FooterTable {
            uri,
            articles,
            per_flush,
            no_titles,
        } => footer_table::run(&uri, articles, per_flush, !no_titles),
        Command::DeleteTopics { topics } => delete_topics(&settings, &topics),
    }
}

fn raw_drain(settings: &newsflow_settings::Settings) -> anyhow::Result<()> {
    let mut config = newsflow_kafka::consumer_config(settings);
    config.set(
        "group.id",
        format!("bench-raw-{}-{}", std::process::id(), now_nanos()),
    );
    let consumer: BaseConsumer = config.create().context("creating the consumer")?;
    let mut assignment = TopicPartitionList::new();
    let mut ends: HashMap<(String, i32), i64> = HashMap::new();
    for topic in settings.topics.event_topics() {
        let partitions = newsflow_kafka::partition_count(&consumer, topic)?
            .with_context(|| format!("topic {topic} does not exist"))?;
        for p in 0..partitions {
            let (low, high) =
                consumer.fetch_watermarks(topic, p, newsflow_kafka::REQUEST_TIMEOUT)?;
            if high > low {
                assignment.add_partition_offset(topic, p, Offset::Beginning)?;
                ends.insert((topic.to_string(), p), high);
            }
        }
    }
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let (mut messages, mut bytes) = (0u64, 0u64);
    while !ends.is_empty() {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                messages += 1;
                bytes += (message.payload_len() + message.key().map_or(0, <[u8]>::len)) as u64;
                let key = (message.topic().to_string(), message.partition());
                if ends
                    .get(&key)
                    .is_some_and(|end| message.offset() + 1 >= *end)
                {
                    ends.remove(&key);
                }
            }
            Some(Err(e)) => anyhow::bail!("consumer error: {e}"),
            None => {}
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({ "messages": messages, "bytes": bytes, "seconds": seconds })
    );
    Ok(())
}

/// A field of /proc/self/status in bytes (Linux): `VmRSS` now, `VmHWM` peak.
fn status_bytes(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with(field))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Holds `articles` distinct articles the way a worker does: they appear
/// over one day of event time, each with `events_per_article` events (a
/// title, sources, forum posts, comments) in the minutes after it, and the
/// shard is drained every 65,536 events as a flush would, so windows close
/// behind the watermark. Every article stays tracked (the dedup horizon is
/// a week). Reports resident memory before and after, and the peak.
fn state(articles: u64, events_per_article: u64) -> anyhow::Result<()> {
    const FLUSH_EVERY: u64 = 65_536;
    let mut shard = Shard::new(newsflow_settings::defaults().counting_rules());
    let start: Micros = 1_795_852_800_000_000; // 2026-11-28T00:00:00Z
    let spacing = DAY / articles.max(1) as i64;
    let before = status_bytes("VmRSS:");
    let started = Instant::now();
    let mut events = 0u64;
    for a in 0..articles {
        let article_id = format!("art-{a:08}");
        let published = start + a as i64 * spacing;
        for e in 0..events_per_article {
            let body = bench_body(a, e);
            shard.apply(&Event {
                event_id: format!("e-{a}-{e}").into(),
                article_id: article_id.as_str().into(),
                occurred_at: published + e as i64 * 30 * SECOND,
                body,
            });
            events += 1;
            if events % FLUSH_EVERY == 0 {
                shard.drain(0, false, events / FLUSH_EVERY);
            }
        }
    }
    shard.drain(0, false, u64::MAX);
    let seconds = started.elapsed().as_secs_f64();
    let after = status_bytes("VmRSS:");
    let held = after.saturating_sub(before);
    println!(
        "{}",
        serde_json::json!({
            "articles": articles,
            "events": events,
            "tracked": shard.article_count(),
            "dedup_entries": shard.dedup_entries(),
            "dedup_bytes": shard.dedup_bytes(),
            "article_bytes": shard.article_bytes(),
            "rss_bytes": after,
            "peak_rss_bytes": status_bytes("VmHWM:"),
            "state_bytes": held,
            "bytes_per_article": held as f64 / articles.max(1) as f64,
            "seconds": seconds,
        })
    );
    Ok(())
}

/// The body of event `e` of article `a` in the state benchmark: a title
/// first, then sources, posts and comments in turn.
fn bench_body(a: u64, e: u64) -> EventBody<'static> {
    match e % 4 {
        0 if e == 0 => EventBody::ArticlePublished {
            title: "A headline of typical length for a news article".into(),
            url: format!("https://example.org/news/{a}").into(),
            section: None,
            language: None,
            author: None,
        },
        1 => EventBody::SourceConfirmed {
            source_id: format!("source-{}.example", (a + e) % 40).into(),
            source_url: None,
        },
        2 => EventBody::ForumPost {
            forum: "forum".into(),
            thread_id: None,
            author_id: None,
        },
        _ => EventBody::SocialComment {
            platform: "x".into(),
            author_id: None,
        },
    }
}

fn delete_topics(settings: &newsflow_settings::Settings, topics: &[String]) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        newsflow_kafka::base_config(settings).create()?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let results = runtime.block_on(admin.delete_topics(&names, &AdminOptions::new()))?;
    for result in results {
        if let Err((topic, code)) = result {
            eprintln!("deleting {topic}: {code}");
        }
    }
    Ok(())
}

fn now_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}
