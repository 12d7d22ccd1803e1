//! A long random stream counted through snapshots, patches and evictions
//! equals a naive oracle of the contract's counting semantics.

use newsflow_core::time::{DAY, SECOND};
use std::collections::{BTreeMap, HashMap, HashSet};

mod common;
use common::events::*;
use common::Rng;

use newsflow_core::{
    Applied, ColdArticle, Counter, CountingRules, Drained, Event, EventBody, Shard, TotalsRow,
};

/// A shard under test together with the cold segments it evicted into, as
/// the worker keeps them.
struct Counted {
    shard: Shard,
    segments: HashMap<u64, HashMap<String, ColdArticle>>,
}

impl Counted {
    fn apply(&mut self, event: &Event<'_>) -> Applied {
        match self.shard.apply(event) {
            Applied::Cold { segment } => {
                let cold = self.segments[&segment][&*event.article_id].clone();
                self.shard.rehydrate(event.article_id.to_string(), cold);
                self.shard.apply(event)
            }
            applied => applied,
        }
    }

    fn drain(&mut self, close_all: bool, segment: u64) -> Drained {
        let drained = self.shard.drain(NOW, close_all, segment);
        let stored = self.segments.entry(segment).or_default();
        for (id, cold) in &drained.evicted {
            stored.insert(id.clone(), cold.clone());
        }
        drained
    }
}

/// Keeps the latest totals row of each article and adds up its engagement
/// rows, as an analyst's queries would.
fn collect(
    drained: Drained,
    latest: &mut BTreeMap<String, TotalsRow>,
    sums: &mut HashMap<String, (i64, i64, i64)>,
) {
    for row in drained.totals {
        latest.insert(row.article_id.clone(), row);
    }
    for row in drained.engagement {
        let sum = sums.entry(row.article_id).or_default();
        sum.0 += row.counts[Counter::ConfirmingSources];
        sum.1 += row.counts[Counter::SocialComments];
        sum.2 += row.counts[Counter::ForumPosts];
    }
}

/// A shard checkpointed as the worker does it: a whole snapshot now and
/// then, and the changes since the last checkpoint at every other flush.
/// Restoring reads the last snapshot and applies every patch after it.
struct Chained {
    counted: Counted,
    snapshot: Vec<u8>,
    patches: Vec<Vec<u8>>,
}

impl Chained {
    fn new(rules: CountingRules) -> Self {
        let mut shard = Shard::new(rules);
        shard.mark_saved();
        Chained {
            snapshot: postcard::to_stdvec(&shard.snapshot()).unwrap(),
            patches: Vec::new(),
            counted: Counted {
                shard,
                segments: HashMap::new(),
            },
        }
    }

    /// Checkpoints the shard (after a drain, as a flush does).
    fn save(&mut self) {
        if self.patches.len() == 4 {
            self.snapshot = postcard::to_stdvec(&self.counted.shard.snapshot()).unwrap();
            self.patches.clear();
        } else {
            let changes = self.counted.shard.changes().expect("saved before");
            self.patches.push(postcard::to_stdvec(&changes).unwrap());
        }
        self.counted.shard.mark_saved();
    }

    /// Replaces the shard by the one its checkpoints restore.
    fn restore(&mut self) {
        let mut shard = restore(&self.snapshot);
        for patch in &self.patches {
            shard
                .apply_patch(postcard::from_bytes(patch).unwrap())
                .unwrap();
        }
        shard.mark_saved();
        self.counted.shard = shard;
    }
}

/// Thousands of events over weeks of event time, with redeliveries (always
/// within the horizon), case variants of sources, out-of-order arrival,
/// articles going idle and coming back. One shard is snapshotted and
/// restored through JSON every few hundred events, one is checkpointed as
/// snapshots and patches and restored from them, the other never: all
/// must emit exactly the same rows, and the final footers must equal a
/// naive oracle's distinct counts.
#[test]
fn a_long_random_stream_counts_like_a_naive_oracle_through_snapshots_and_evictions() {
    let rules = CountingRules {
        dedup_horizon: DAY,
        window_size: HOUR,
        max_out_of_orderness: 10 * 60 * SECOND,
    };
    let mut rng = Rng::new(42);
    let mut plain = Counted {
        shard: Shard::new(rules),
        segments: HashMap::new(),
    };
    let mut snapshotted = Counted {
        shard: Shard::new(rules),
        segments: HashMap::new(),
    };
    let mut chained = Chained::new(rules);
    let mut restores_from_patches = 0;
    // The oracle: per article, distinct (type, id) and lower-cased sources.
    let mut comments: HashMap<String, HashSet<String>> = HashMap::new();
    let mut posts: HashMap<String, HashSet<String>> = HashMap::new();
    let mut sources: HashMap<String, HashSet<String>> = HashMap::new();
    let mut recent: Vec<Event<'static>> = Vec::new();
    let mut latest: BTreeMap<String, TotalsRow> = BTreeMap::new();
    let mut engagement_sums: HashMap<String, (i64, i64, i64)> = HashMap::new();
    let mut evictions = 0;
    let start = at("2026-10-01T00:00:00Z");
    let mut clock = start;

    for n in 0..20_000u64 {
        clock += rng.below(4 * 60) as i64 * SECOND;
        let event = if !recent.is_empty() && rng.below(10) == 0 {
            // A redelivery of one of the last 200 events: within hours.
            recent[rng.below(recent.len())].clone()
        } else {
            // Articles drift: most events go to the newest 50 articles, some
            // to an old one, which comes back from a cold segment.
            let newest = (clock - start) / (2 * HOUR);
            let article = if rng.below(50) == 0 {
                rng.below(newest as usize + 1) as i64
            } else {
                (newest - rng.below(50) as i64).max(0)
            };
            let article = format!("art-{article}");
            let t = clock - rng.below(5 * 60) as i64 * SECOND;
            let id = format!("e-{n}");
            let body = match rng.below(4) {
                0 => EventBody::SourceConfirmed {
                    source_id: match rng.below(3) {
                        0 => format!("Source-{}.EXAMPLE", rng.below(20)).into(),
                        _ => format!("source-{}.example", rng.below(20)).into(),
                    },
                    source_url: None,
                },
                1 => EventBody::ForumPost {
                    forum: "f".into(),
                    thread_id: None,
                    author_id: None,
                },
                2 if rng.below(4) == 0 => EventBody::ArticlePublished {
                    title: format!("Title {n}").into(),
                    url: "https://x".into(),
                    section: None,
                    language: None,
                    author: None,
                },
                _ => EventBody::SocialComment {
                    platform: "x".into(),
                    author_id: None,
                },
            };
            Event {
                event_id: id.into(),
                article_id: article.into(),
                occurred_at: t,
                body,
            }
        };
        match &event.body {
            EventBody::SourceConfirmed { source_id, .. } => {
                sources
                    .entry(event.article_id.to_string())
                    .or_default()
                    .insert(source_id.to_lowercase());
            }
            EventBody::SocialComment { .. } => {
                comments
                    .entry(event.article_id.to_string())
                    .or_default()
                    .insert(event.event_id.to_string());
            }
            EventBody::ForumPost { .. } => {
                posts
                    .entry(event.article_id.to_string())
                    .or_default()
                    .insert(event.event_id.to_string());
            }
            // Titles are not counted, and the stream holds no other type.
            _ => {}
        }
        recent.push(event.clone());
        if recent.len() > 200 {
            recent.remove(0);
        }

        let applied = plain.apply(&event);
        assert_eq!(applied, snapshotted.apply(&event), "event {n}");
        assert_eq!(applied, chained.counted.apply(&event), "event {n}");
        if n % 150 == 149 {
            let segment = n / 150;
            let a = plain.drain(false, segment);
            let b = snapshotted.drain(false, segment);
            let c = chained.counted.drain(false, segment);
            for other in [&b, &c] {
                assert_eq!(a.totals, other.totals, "drain after event {n}");
                assert_eq!(a.engagement, other.engagement, "drain after event {n}");
                assert_eq!(a.evicted, other.evicted, "drain after event {n}");
            }
            chained.save();
            if segment % 7 == 6 {
                restores_from_patches += usize::from(!chained.patches.is_empty());
                chained.restore();
            }
            evictions += a.evicted.len();
            collect(a, &mut latest, &mut engagement_sums);
        }
        if n % 700 == 699 {
            snapshotted.shard = round_trip(&snapshotted.shard);
        }
    }
    let a = plain.drain(true, 1_000_000);
    let b = snapshotted.drain(true, 1_000_000);
    let c = chained.counted.drain(true, 1_000_000);
    assert_eq!((&a.totals, &a.engagement), (&b.totals, &b.engagement));
    assert_eq!((&a.totals, &a.engagement), (&c.totals, &c.engagement));
    collect(a, &mut latest, &mut engagement_sums);

    assert!(
        restores_from_patches >= 10,
        "{restores_from_patches} restores applied patches"
    );
    assert!(evictions > 100, "idle articles left memory ({evictions})");
    assert!(latest.len() > 300, "{} articles", latest.len());
    for (article, row) in &latest {
        let expected = (
            sources.get(article).map_or(0, HashSet::len) as i64,
            comments.get(article).map_or(0, HashSet::len) as i64,
            posts.get(article).map_or(0, HashSet::len) as i64,
        );
        assert_eq!(footer(row), expected, "{article}");
        assert_eq!(
            engagement_sums.get(article).copied().unwrap_or_default(),
            expected,
            "{article}: engagement rows sum to the footer"
        );
    }
}
