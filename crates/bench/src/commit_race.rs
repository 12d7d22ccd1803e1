//! `newsflow-bench commit-race`: many writers committing to the same three
//! tables at once, as many worker pods do, to see where Delta's optimistic
//! concurrency starts to cost. Each writer is one shard with its own lake
//! handle (its own kernel engine and snapshot, as a separate pod has) and
//! runs the real flush path: a one-event flush (data files, checkpoint,
//! then one fenced commit per table), again and again.
//!
//! Prints one JSON report: flushes and commits per second, races lost per
//! commit, and commit latency percentiles (retries included), per table.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use newsflow_core::{EventType, Shard};
use newsflow_lake::{
    Dataset, EncodedCheckpoint, EventRow, FlushBatch, FlushObserver, Lake, ShardFlush, WriteStats,
};
use serde_json::json;

/// Commit outcomes per table.
#[derive(Default)]
pub(crate) struct Commits {
    by_table: Mutex<BTreeMap<&'static str, TableCommits>>,
}

#[derive(Default)]
struct TableCommits {
    commits: u64,
    conflicts: u64,
    fenced: u64,
    seconds: Vec<f64>,
}

impl FlushObserver for Commits {
    fn written(&self, _: Dataset, _: WriteStats, _: f64) {}
    fn checkpointed(&self, _: f64) {}
    fn committed(
        &self,
        dataset: Dataset,
        committed: u64,
        conflicts: u64,
        fenced: u64,
        seconds: f64,
    ) {
        let mut by_table = self.by_table.lock().unwrap_or_else(|e| e.into_inner());
        let table = by_table.entry(dataset.name()).or_default();
        table.commits += committed;
        table.conflicts += conflicts;
        table.fenced += fenced;
        table.seconds.push(seconds);
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

/// One writer: shard `shard`, flushing one event at a time until `until`,
/// at most one flush per `interval`. Returns its flushes; a flush that
/// fails (fenced, or the store failing for good) ends the run.
fn writer(
    lake: Lake,
    shard: i32,
    until: Instant,
    interval: Duration,
    commits: &Commits,
) -> anyhow::Result<u64> {
    let settings = newsflow_settings::defaults();
    let restored = lake.restore(shard)?;
    let mut state = restored
        .checkpoint
        .map(|c| c.state)
        .unwrap_or_else(|| Shard::new(settings.counting_rules()));
    let mut chain = restored.chain;
    let (mut committed, mut next_seq) = (restored.committed, restored.next_seq);
    let mut flushes = 0;
    let mut offset = 0i64;
    while Instant::now() < until {
        let started = Instant::now();
        offset += 1;
        let offsets = BTreeMap::from([(format!("race-{shard}"), offset)]);
        let line = format!(
            r#"{{"schema_version":1,"event_id":"w{shard}-{}","event_type":"social_comment","article_id":"a-{shard}","occurred_at":"2026-11-01T09:00:00Z","platform":"x"}}"#,
            offset - 1
        );
        let (checkpoint, batch, evicted) = {
            let event =
                newsflow_core::event::decode_unkeyed(line.as_bytes(), &settings.decode_limits())
                    .map_err(|r| anyhow::anyhow!("the bench's own event was refused: {r:?}"))?;
            state.apply(&event);
            let drained = state.drain(event.occurred_at, true, next_seq);
            let checkpoint = EncodedCheckpoint::encode(
                shard, next_seq, committed, &offsets, &mut state, &mut chain,
            )?;
            let batch = one_event_batch(
                &lake,
                &event,
                drained.totals,
                drained.engagement,
                &line,
                shard,
                offset,
            );
            (checkpoint, batch, drained.evicted)
        };
        let job = ShardFlush {
            checkpoint,
            batch,
            evicted,
        };
        let seq = job.checkpoint.seq();
        next_seq = flush_one(&lake, job, commits, shard)?;
        committed = seq;
        flushes += 1;
        if let Some(rest) = interval.checked_sub(started.elapsed()) {
            std::thread::sleep(rest);
        }
    }
    Ok(flushes)
}

/// Flushes one shard's job; its next sequence number, or why not.
fn flush_one(lake: &Lake, job: ShardFlush, commits: &Commits, shard: i32) -> anyhow::Result<u64> {
    match lake.flush(vec![job], &|_| false, commits).pop() {
        Some(outcome) => outcome
            .result
            .map_err(|e| anyhow::anyhow!("shard {shard}: flush failed: {e:?}")),
        None => anyhow::bail!("shard {shard}: the flush reported nothing"),
    }
}

/// A flush's rows: the drained totals and engagement, and the one event
/// archived.
fn one_event_batch(
    lake: &Lake,
    event: &newsflow_core::Event<'_>,
    totals: Vec<newsflow_core::TotalsRow>,
    engagement: Vec<newsflow_core::EngagementRow>,
    line: &str,
    shard: i32,
    offset: i64,
) -> FlushBatch {
    let mut events = lake.event_archive();
    events.push(&EventRow {
        event_id: &event.event_id,
        event_type: EventType::SocialComment,
        article_id: &event.article_id,
        occurred_at: event.occurred_at,
        topic: "race",
        partition: shard,
        offset,
        payload: line,
    });
    FlushBatch {
        totals,
        engagement,
        events: events.finish(),
    }
}

/// Runs `writers` writers against the lake at `uri` for `seconds`.
pub fn run(uri: &str, writers: i32, seconds: u64, interval: Duration) -> anyhow::Result<()> {
    let storage = BTreeMap::new();
    // One handle per writer, opened before the clock starts.
    let lakes: Vec<Lake> = (0..writers)
        .map(|_| Lake::open(uri, &storage))
        .collect::<Result<_, _>>()?;
    let commits = Commits::default();
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let results: Vec<anyhow::Result<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = lakes
            .into_iter()
            .enumerate()
            .map(|(i, lake)| {
                let commits = &commits;
                scope.spawn(move || writer(lake, i as i32, until, interval, commits))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a writer panicked")))
            })
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut flushes = 0;
    for result in results {
        flushes += result?;
    }
    let tables = table_report(commits, elapsed);
    println!(
        "{}",
        json!({
            "uri": uri,
            "writers": writers,
            "seconds": elapsed,
            "interval_s": interval.as_secs_f64(),
            "flushes": flushes,
            "flushes_per_s": flushes as f64 / elapsed,
            "tables": tables,
        })
    );
    Ok(())
}

/// Commits, races and latency percentiles per table.
fn table_report(commits: Commits, elapsed: f64) -> serde_json::Map<String, serde_json::Value> {
    let by_table = commits
        .by_table
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    by_table
        .into_iter()
        .map(|(name, mut t)| {
            t.seconds.sort_by(f64::total_cmp);
            let value = json!({
                "commits": t.commits,
                "commits_per_s": t.commits as f64 / elapsed,
                "conflicts": t.conflicts,
                "conflicts_per_commit": t.conflicts as f64 / t.commits.max(1) as f64,
                "fenced": t.fenced,
                "latency_p50_s": percentile(&t.seconds, 0.50),
                "latency_p95_s": percentile(&t.seconds, 0.95),
                "latency_p99_s": percentile(&t.seconds, 0.99),
                "latency_max_s": t.seconds.last().copied().unwrap_or(0.0),
            });
            (name.to_string(), value)
        })
        .collect()
}
