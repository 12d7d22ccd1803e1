//! Criterion micro-benchmarks of the worker's hot stages, without Kafka:
//! decoding and validating a message, counting an event, and encoding a
//! flush's rows as Parquet. Run with `make bench-micro` (or `cargo bench -p
//! newsflow-bench`); a regression shows here before it shows in `make bench`.

// criterion_group! defines an undocumented public function.
#![allow(missing_docs)]

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use newsflow_core::{decode, Shard};
use newsflow_lake::{
    Dataset, EncodedCheckpoint, EventRow, FlushBatch, FlushObserver, Lake, ShardFlush, WriteStats,
};

const FIXTURE: &str = include_str!("../../../tests/fixtures/seed-article.ndjson");

fn lines() -> Vec<&'static str> {
    FIXTURE.lines().filter(|l| !l.is_empty()).collect()
}

fn key_of(line: &str) -> &str {
    let start = line.find("\"article_id\":\"").expect("article_id") + 14;
    let end = start + line[start..].find('"').expect("closing quote");
    &line[start..end]
}

fn decode_and_validate(c: &mut Criterion) {
    let lines = lines();
    let limits = newsflow_settings::defaults().decode_limits();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("seed article events", |b| {
        b.iter(|| {
            for line in &lines {
                let event = decode(Some(key_of(line).as_bytes()), line.as_bytes(), &limits);
                std::hint::black_box(event.is_ok());
            }
        })
    });
    // What every message took before the fast path (and what a message
    // the fast path defers still takes).
    group.bench_function("seed article events, general parser only", |b| {
        b.iter(|| {
            for line in &lines {
                let event = newsflow_core::event::decode_unkeyed_general(line.as_bytes(), &limits);
                std::hint::black_box(event.is_ok());
            }
        })
    });
    group.finish();
}

fn count(c: &mut Criterion) {
    let limits = newsflow_settings::defaults().decode_limits();
    let events: Vec<_> = lines()
        .iter()
        .map(|l| newsflow_core::event::decode_unkeyed(l.as_bytes(), &limits).unwrap())
        .collect();
    let mut group = c.benchmark_group("count");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("apply to a fresh shard", |b| {
        b.iter_batched(
            || Shard::new(newsflow_settings::defaults().counting_rules()),
            |mut shard| {
                for event in &events {
                    std::hint::black_box(shard.apply(event));
                }
                shard
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Owned records of 20 copies of the fixtures' lines, archived anew for
/// each flush: (event id, event, line, offset).
fn records<'a>(lines: &'a [&'a str]) -> Vec<(String, newsflow_core::Event<'a>, &'a str, i64)> {
    let limits = newsflow_settings::defaults().decode_limits();
    (0..20)
        .flat_map(|copy| {
            lines.iter().enumerate().map(move |(i, line)| {
                let event = newsflow_core::event::decode_unkeyed(line.as_bytes(), &limits).unwrap();
                let event_id = format!("{}-{copy}", event.event_id);
                (event_id, event, *line, (copy * 1000 + i) as i64)
            })
        })
        .collect()
}

fn encode(c: &mut Criterion) {
    let lines = lines();
    let records = records(&lines);
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(&dir.path().display().to_string(), &Default::default()).unwrap();
    // The rows are encoded as they are archived, so archiving them is part
    // of the work measured.
    let archive = || {
        let mut archive = lake.event_archive();
        archive.extend(
            records
                .iter()
                .map(|(event_id, event, line, offset)| EventRow {
                    event_id,
                    event_type: event.event_type(),
                    article_id: &event.article_id,
                    occurred_at: event.occurred_at,
                    topic: "news.comments",
                    partition: 0,
                    offset: *offset,
                    payload: line,
                }),
        );
        archive.finish()
    };
    let restored = lake.restore(0).unwrap();
    let (mut committed, mut next_seq) = (restored.committed, restored.next_seq);
    let mut state = Shard::new(newsflow_settings::defaults().counting_rules());
    let mut chain = restored.chain;
    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(records.len() as u64));
    group.sample_size(20);
    group.bench_function("events table, one flush written and committed", |b| {
        b.iter(|| {
            let batch = FlushBatch {
                totals: Vec::new(),
                engagement: Vec::new(),
                events: archive(),
            };
            let checkpoint = EncodedCheckpoint::encode(
                0,
                next_seq,
                committed,
                &Default::default(),
                &mut state,
                &mut chain,
            )
            .unwrap();
            let job = ShardFlush {
                checkpoint,
                batch,
                evicted: Vec::new(),
            };
            let outcome = lake.flush(vec![job], &|_| false, &NoMetrics).remove(0);
            committed = next_seq;
            next_seq = outcome.result.unwrap();
        })
    });
    group.finish();
}

/// Flush reports go nowhere here.
struct NoMetrics;

impl FlushObserver for NoMetrics {
    fn written(&self, _: Dataset, _: WriteStats, _: f64) {}
    fn checkpointed(&self, _: f64) {}
    fn committed(&self, _: Dataset, _: u64, _: u64, _: u64, _: f64) {}
}

criterion_group!(benches, decode_and_validate, count, encode);
criterion_main!(benches);
