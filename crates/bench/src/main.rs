//! `newsflow-bench`: the parts of `make bench` that need to be Rust.
//!
//! - `raw-drain`: the ceiling the client library allows here. A consumer with
//!   the worker's own fetch settings that only counts messages, reading
//!   every partition of the three event topics from the beginning to the
//!   high watermark seen at start.
//! - `state`: counting state in memory for N distinct articles, measured in
//!   this process (no Kafka): resident memory before and after, per article.
//! - `delete-topics`: removes the benchmark's topics afterwards.
//!
//! Each prints one JSON object on stdout for `deploy/bench/bench.py`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use newsflow_core::event::decode_unkeyed;
use newsflow_core::{CountingRules, DecodeLimits, Shard};
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
    /// Delete these topics.
    DeleteTopics {
        /// Topic names.
        topics: Vec<String>,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = newsflow_settings::load(None)?;
    match cli.command {
        Command::RawDrain => raw_drain(&settings),
        Command::State {
            articles,
            events_per_article,
        } => state(articles, events_per_article),
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

/// Resident memory of this process in bytes (Linux), from /proc.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

fn state(articles: u64, events_per_article: u64) -> anyhow::Result<()> {
    let limits = DecodeLimits::default();
    let mut shard = Shard::new(CountingRules::default());
    let before = rss_bytes();
    let started = Instant::now();
    let mut events = 0u64;
    for a in 0..articles {
        for e in 0..events_per_article {
            // A realistic mix: comments, forum posts, sources, one title.
            let text = match e % 4 {
                0 if e == 0 => format!(
                    r#"{{"schema_version":1,"event_id":"p-{a}","event_type":"article_published","article_id":"art-{a:08}","occurred_at":"2026-11-28T08:00:00Z","title":"A headline of typical length for a news article","url":"https://example.org/news/{a}"}}"#
                ),
                1 => format!(
                    r#"{{"schema_version":1,"event_id":"s-{a}-{e}","event_type":"source_confirmed","article_id":"art-{a:08}","occurred_at":"2026-11-28T08:00:01Z","source_id":"source-{}.example"}}"#,
                    e % 40
                ),
                2 => format!(
                    r#"{{"schema_version":1,"event_id":"f-{a}-{e}","event_type":"forum_post","article_id":"art-{a:08}","occurred_at":"2026-11-28T08:00:02Z","forum":"forum"}}"#
                ),
                _ => format!(
                    r#"{{"schema_version":1,"event_id":"c-{a}-{e}","event_type":"social_comment","article_id":"art-{a:08}","occurred_at":"2026-11-28T08:00:03Z","platform":"x"}}"#
                ),
            };
            let event = decode_unkeyed(text.as_bytes(), &limits)
                .map_err(|r| anyhow::anyhow!("generated event rejected: {r}"))?;
            shard.apply(&event);
            events += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = rss_bytes();
    let held = after.saturating_sub(before);
    println!(
        "{}",
        serde_json::json!({
            "articles": articles,
            "events": events,
            "tracked": shard.article_count(),
            "dedup_entries": shard.dedup_entries(),
            "rss_bytes": after,
            "state_bytes": held,
            "bytes_per_article": held as f64 / articles.max(1) as f64,
            "seconds": seconds,
        })
    );
    Ok(())
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
