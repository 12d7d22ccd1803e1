//! `footer-table`: an `article_totals` table of N articles for `make
//! bench-footer`, written through the lake's own flush path (the same
//! files, commits and checkpoints a worker makes), without Kafka: a
//! million articles from a generated stream would take twenty million
//! events.
//!
//! Ids and titles are as long as the seed article's
//! (`politik.2026-11-01.russland-nordkorea-buendnis`, 46 characters; a
//! title of about 70), because the footer service's memory per article is
//! mostly its id and title.

use std::collections::BTreeMap;

use newsflow_core::counted::PerCounter;
use newsflow_core::{Shard, TotalsRow};
use newsflow_lake::{Checkpoint, EncodedCheckpoint, FlushBatch, Lake, ShardFlush};

use crate::commit_race::Commits;

const WORDS: [&str; 12] = [
    "Allianz",
    "Regierung",
    "Bündnis",
    "Wahl",
    "Haushalt",
    "Reform",
    "Gipfel",
    "Streit",
    "Abkommen",
    "Krise",
    "Einigung",
    "Bericht",
];

/// The id of article `n`, 46 characters like the seed article's; zero
/// padded, so that a load generator's pattern
/// (`politik\.2026-11-01\.neue-allianz-meldung-[0-9]{7}`) names only
/// articles that exist when the table holds ten million.
pub fn article_id(n: u64) -> String {
    format!("politik.2026-11-01.neue-allianz-meldung-{n:07}")
}

fn title(n: u64) -> String {
    let (a, b, c) = (
        WORDS[(n % 12) as usize],
        WORDS[((n / 7) % 12) as usize],
        WORDS[((n / 49) % 12) as usize],
    );
    format!("Neue {a} nach dem {b}: Was die {c} für Europa und die Welt bedeutet ({n})")
}

/// Writes `articles` footers in flushes of `per_flush` rows (one commit
/// each) as shard 0 of the lake at `uri`, and prints a JSON report.
/// The rows of articles `numbers`, emitted at `now`.
fn rows(numbers: std::ops::Range<u64>, titles: bool, now: i64) -> Vec<TotalsRow> {
    numbers
        .map(|n| TotalsRow {
            article_id: article_id(n),
            title: titles.then(|| title(n)),
            counts: PerCounter([n % 40, n % 700, n % 90].map(|c| c as i64)),
            first_event_at: now,
            last_event_at: now,
            version: 1,
            emitted_at: now,
        })
        .collect()
}

/// Without `titles`, no article has one (as before its `article_published`
/// event): what the service holds per article besides the titles.
pub fn run(uri: &str, articles: u64, per_flush: u64, titles: bool) -> anyhow::Result<()> {
    let storage = BTreeMap::new();
    let lake = Lake::open(uri, &storage)?;
    let settings = newsflow_settings::defaults();
    let shard = 0;
    let restored = lake.restore(shard)?;
    let mut state = restored
        .checkpoint
        .map(|c: Checkpoint| c.state)
        .unwrap_or_else(|| Shard::new(settings.counting_rules()));
    let mut chain = restored.chain;
    let (mut committed, mut next_seq) = (restored.committed, restored.next_seq);
    let started = std::time::Instant::now();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_micros() as i64;
    let mut written = 0;
    while written < articles {
        let upto = (written + per_flush).min(articles);
        let totals = rows(written..upto, titles, now);
        let offsets = BTreeMap::from([("bench-footer".to_string(), upto as i64)]);
        let checkpoint = EncodedCheckpoint::encode(
            shard, next_seq, committed, &offsets, &mut state, &mut chain,
        )?;
        let job = ShardFlush {
            checkpoint,
            batch: FlushBatch {
                totals,
                engagement: Vec::new(),
                events: Default::default(),
            },
            evicted: Vec::new(),
        };
        let seq = job.checkpoint.seq();
        let outcome = lake
            .flush(vec![job], &|_| false, &Commits::default())
            .pop()
            .ok_or_else(|| anyhow::anyhow!("the flush reported nothing"))?;
        next_seq = outcome
            .result
            .map_err(|e| anyhow::anyhow!("flush failed: {e:?}"))?;
        committed = seq;
        written = upto;
    }
    let report = serde_json::json!({
        "articles": articles,
        "commits": articles.div_ceil(per_flush),
        "seconds": started.elapsed().as_secs_f64(),
        "mean_id_bytes": (0..1000).map(|n| article_id(n * 997).len()).sum::<usize>() as f64 / 1000.0,
        "mean_title_bytes": if titles { (0..1000).map(|n| title(n * 997).len()).sum::<usize>() as f64 / 1000.0 } else { 0.0 },
    });
    println!("{report}");
    Ok(())
}
