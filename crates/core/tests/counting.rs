//! The counting semantics of the contract's section 3, tested with plain data.

use newsflow_core::time::{parse_rfc3339, DAY, SECOND};
use std::collections::{BTreeMap, HashMap, HashSet};

mod common;
use common::Rng;

use newsflow_core::{
    Applied, ColdArticle, Counter, CountingRules, Drained, Event, EventBody, Micros, Shard,
    ShardSnapshot, TotalsRow,
};

const HOUR: Micros = 3600 * SECOND;
const NOW: Micros = 1_800_000_000 * SECOND;

fn at(text: &str) -> Micros {
    parse_rfc3339(text).unwrap()
}

fn event<'a>(id: &'a str, article: &'a str, t: &str, body: EventBody<'a>) -> Event<'a> {
    Event {
        event_id: id.into(),
        article_id: article.into(),
        occurred_at: at(t),
        body,
    }
}

fn comment<'a>(id: &'a str, article: &'a str, t: &str) -> Event<'a> {
    event(
        id,
        article,
        t,
        EventBody::SocialComment {
            platform: "x".into(),
            author_id: None,
        },
    )
}

fn post<'a>(id: &'a str, article: &'a str, t: &str) -> Event<'a> {
    event(
        id,
        article,
        t,
        EventBody::ForumPost {
            forum: "f".into(),
            thread_id: None,
            author_id: None,
        },
    )
}

fn source<'a>(id: &'a str, article: &'a str, t: &str, source_id: &'a str) -> Event<'a> {
    event(
        id,
        article,
        t,
        EventBody::SourceConfirmed {
            source_id: source_id.into(),
            source_url: None,
        },
    )
}

fn published<'a>(id: &'a str, article: &'a str, t: &str, title: &'a str) -> Event<'a> {
    event(
        id,
        article,
        t,
        EventBody::ArticlePublished {
            title: title.into(),
            url: "https://x".into(),
            section: None,
            language: None,
            author: None,
        },
    )
}

/// Applies events and returns the latest totals row of each article.
fn totals_after(events: &[Event<'_>]) -> Vec<TotalsRow> {
    let mut shard = Shard::new(common::rules());
    for e in events {
        shard.apply(e);
    }
    shard.drain(NOW, true, 0).totals
}

/// A shard's whole state written as a checkpoint holds it, and read back.
fn round_trip(shard: &Shard) -> Shard {
    restore(&postcard::to_stdvec(&shard.snapshot()).unwrap())
}

fn restore(snapshot: &[u8]) -> Shard {
    Shard::try_from(postcard::from_bytes::<ShardSnapshot>(snapshot).unwrap()).unwrap()
}

fn footer(row: &TotalsRow) -> (i64, i64, i64) {
    (
        row.counts[Counter::ConfirmingSources],
        row.counts[Counter::SocialComments],
        row.counts[Counter::ForumPosts],
    )
}

#[test]
fn distinct_sources_are_compared_case_insensitively() {
    let rows = totals_after(&[
        source("s1", "a", "2026-11-01T10:00:00Z", "tagesschau.de"),
        source("s2", "a", "2026-11-01T10:05:00Z", "Tagesschau.DE"),
        source("s3", "a", "2026-11-01T10:06:00Z", "spiegel.de"),
    ]);
    assert_eq!(footer(&rows[0]), (2, 0, 0));
}

#[test]
fn a_redelivered_event_counts_once_and_is_reported_as_duplicate() {
    let mut shard = Shard::new(common::rules());
    let c = comment("c1", "a", "2026-11-01T10:00:00Z");
    assert_eq!(shard.apply(&c), Applied::Counted);
    assert_eq!(shard.apply(&c), Applied::Duplicate);
    let p = post("p1", "a", "2026-11-01T10:00:00Z");
    assert_eq!(shard.apply(&p), Applied::Counted);
    assert_eq!(shard.apply(&p), Applied::Duplicate);
    let rows = shard.drain(NOW, true, 0).totals;
    assert_eq!(footer(&rows[0]), (0, 1, 1));
}

#[test]
fn the_same_event_id_in_two_types_or_two_articles_is_two_events() {
    let rows = totals_after(&[
        comment("x", "a", "2026-11-01T10:00:00Z"),
        post("x", "a", "2026-11-01T10:00:00Z"),
        comment("x", "b", "2026-11-01T10:00:00Z"),
    ]);
    assert_eq!(footer(&rows[0]), (0, 1, 1));
    assert_eq!(footer(&rows[1]), (0, 1, 0));
}

#[test]
fn counts_exist_before_the_article_and_the_title_appears_when_it_arrives() {
    let mut shard = Shard::new(common::rules());
    shard.apply(&comment("c1", "a", "2026-11-01T10:00:00Z"));
    let first = shard.drain(NOW, true, 0).totals;
    assert_eq!(first[0].title, None);
    assert_eq!(first[0].counts[Counter::SocialComments], 1);
    assert_eq!(first[0].version, 1);

    shard.apply(&published("p", "a", "2026-11-01T09:00:00Z", "Allianz"));
    let second = shard.drain(NOW + SECOND, true, 0).totals;
    assert_eq!(second[0].title.as_deref(), Some("Allianz"));
    assert_eq!(second[0].counts[Counter::SocialComments], 1);
    assert_eq!(second[0].version, 2, "version grows with every changed row");
    assert_eq!(second[0].first_event_at, at("2026-11-01T09:00:00Z"));
    assert_eq!(second[0].last_event_at, at("2026-11-01T10:00:00Z"));
}

#[test]
fn arrival_order_does_not_matter() {
    let events = vec![
        published("p1", "a", "2026-11-01T08:00:00Z", "first title"),
        source("s1", "a", "2026-11-01T09:00:00Z", "a.example"),
        comment("c1", "a", "2026-11-01T12:00:00Z"),
        comment("c2", "a", "2026-11-01T08:30:00Z"),
        comment("c1", "a", "2026-11-01T12:00:00Z"),
        post("f1", "a", "2026-11-01T15:00:00Z"),
        source("s2", "a", "2026-11-01T07:00:00Z", "A.EXAMPLE"),
        source("s3", "a", "2026-11-01T07:30:00Z", "b.example"),
        published("p2", "a", "2026-11-01T10:00:00Z", "corrected title"),
    ];
    let expected = totals_after(&events);
    assert_eq!(footer(&expected[0]), (2, 2, 1));
    assert_eq!(
        expected[0].title.as_deref(),
        Some("corrected title"),
        "latest event time wins"
    );
    // Every rotation and the reversal give the same footer and title.
    for k in 0..events.len() {
        let mut order = events.clone();
        order.rotate_left(k);
        let got = totals_after(&order);
        assert_eq!(footer(&got[0]), footer(&expected[0]), "rotation {k}");
        assert_eq!(got[0].title, expected[0].title, "rotation {k}");
        assert_eq!(
            (got[0].first_event_at, got[0].last_event_at),
            (expected[0].first_event_at, expected[0].last_event_at)
        );
    }
    let mut reversed = events.clone();
    reversed.reverse();
    assert_eq!(footer(&totals_after(&reversed)[0]), footer(&expected[0]));
}

#[test]
fn a_redelivery_beyond_the_dedup_horizon_counts_again() {
    let rules = CountingRules {
        dedup_horizon: DAY,
        ..common::rules()
    };
    let mut shard = Shard::new(rules);
    let old = comment("c1", "a", "2026-11-01T00:00:00Z");
    assert_eq!(shard.apply(&old), Applied::Counted);
    // Event time moves three days on; the sweep forgets c1, and article a,
    // idle for a whole horizon, leaves memory for cold segment 7.
    shard.apply(&comment("c2", "b", "2026-11-04T00:00:00Z"));
    let evicted = shard.drain(NOW, true, 7).evicted;
    assert_eq!(evicted.len(), 1);
    assert_eq!(shard.apply(&old), Applied::Cold { segment: 7 });
    let (id, cold) = evicted.into_iter().next().unwrap();
    shard.rehydrate(id, cold);
    assert_eq!(
        shard.apply(&old),
        Applied::Counted,
        "outside the horizon a redelivery is a new observation"
    );
    let a = shard
        .drain(NOW, true, 8)
        .totals
        .into_iter()
        .find(|r| r.article_id == "a")
        .unwrap();
    assert_eq!(
        (a.counts[Counter::SocialComments], a.version),
        (2, 2),
        "counting went on from the evicted state"
    );
    // Within the horizon it is still remembered.
    assert_eq!(
        shard.apply(&comment("c2", "b", "2026-11-04T00:00:00Z")),
        Applied::Duplicate
    );
}

#[test]
fn unchanged_articles_get_no_new_row() {
    let mut shard = Shard::new(common::rules());
    let c = comment("c1", "a", "2026-11-01T10:00:00Z");
    shard.apply(&c);
    assert_eq!(shard.drain(NOW, true, 0).totals.len(), 1);
    shard.apply(&c); // duplicate only
    assert!(shard.drain(NOW, true, 0).totals.is_empty());
}

#[test]
fn windows_close_when_the_watermark_passes_and_late_events_add_rows() {
    let rules = CountingRules {
        window_size: HOUR,
        max_out_of_orderness: 10 * 60 * SECOND,
        ..common::rules()
    };
    let mut shard = Shard::new(rules);
    shard.apply(&comment("c1", "a", "2026-11-01T10:15:00Z"));
    shard.apply(&comment("c2", "a", "2026-11-01T10:45:00Z"));
    // Watermark 10:50 - 10 min = 10:40: the 10:00 window is still open.
    assert!(shard.drain(NOW, false, 0).engagement.is_empty());

    shard.apply(&comment("c3", "a", "2026-11-01T11:20:00Z"));
    // Watermark 11:10 passes 11:00, the end of the 10:00 window.
    let rows = shard.drain(NOW, false, 0).engagement;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].window_start, at("2026-11-01T10:00:00Z"));
    assert_eq!(rows[0].window_end, at("2026-11-01T11:00:00Z"));
    assert_eq!(rows[0].counts[Counter::SocialComments], 2);

    // A late comment for the closed window is not dropped: it adds a row.
    shard.apply(&comment("late", "a", "2026-11-01T10:30:00Z"));
    let rows = shard.drain(NOW, false, 0).engagement;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].window_start,
            rows[0].counts[Counter::SocialComments]
        ),
        (at("2026-11-01T10:00:00Z"), 1)
    );

    // Closing everything emits the open 11:00 window; sums equal totals.
    let rest = shard.drain(NOW, true, 0);
    assert_eq!(rest.engagement.len(), 1);
    assert!(
        rest.totals.is_empty(),
        "nothing changed since the last drain"
    );
}

#[test]
fn engagement_sums_equal_totals_and_sources_land_in_their_first_window() {
    let rules = CountingRules {
        window_size: HOUR,
        ..common::rules()
    };
    let mut shard = Shard::new(rules);
    let events = [
        source("s1", "a", "2026-11-01T10:00:00Z", "x.example"),
        source("s2", "a", "2026-11-01T12:00:00Z", "X.example"),
        source("s3", "a", "2026-11-01T12:30:00Z", "y.example"),
        comment("c1", "a", "2026-11-01T11:00:00Z"),
        comment("c1", "a", "2026-11-01T11:00:00Z"),
        post("p1", "a", "2026-11-01T13:00:00Z"),
    ];
    for e in &events {
        shard.apply(e);
    }
    let out = shard.drain(NOW, true, 0);
    let sum = out.engagement.iter().fold((0, 0, 0), |acc, r| {
        (
            acc.0 + r.counts[Counter::ConfirmingSources],
            acc.1 + r.counts[Counter::SocialComments],
            acc.2 + r.counts[Counter::ForumPosts],
        )
    });
    assert_eq!(sum, footer(&out.totals[0]));
    let ten = out
        .engagement
        .iter()
        .find(|r| r.window_start == at("2026-11-01T10:00:00Z"))
        .unwrap();
    assert_eq!(ten.counts[Counter::ConfirmingSources], 1);
    let twelve = out
        .engagement
        .iter()
        .find(|r| r.window_start == at("2026-11-01T12:00:00Z"))
        .unwrap();
    assert_eq!(
        twelve.counts[Counter::ConfirmingSources],
        1,
        "X.example is not new; y.example is"
    );
}

#[test]
fn a_restored_snapshot_behaves_exactly_like_the_original() {
    let mut shard = Shard::new(common::rules());
    shard.apply(&comment("c1", "a", "2026-11-01T10:00:00Z"));
    shard.apply(&source("s1", "a", "2026-11-01T10:00:00Z", "x.example"));
    shard.drain(NOW, false, 0);
    let mut restored = round_trip(&shard);
    for s in [&mut shard, &mut restored] {
        assert_eq!(
            s.apply(&comment("c1", "a", "2026-11-01T10:00:00Z")),
            Applied::Duplicate
        );
        s.apply(&source("s2", "a", "2026-11-01T10:00:00Z", "X.EXAMPLE"));
        s.apply(&comment("c2", "a", "2026-11-01T10:01:00Z"));
    }
    let a = shard.drain(NOW, true, 0);
    let b = restored.drain(NOW, true, 0);
    assert_eq!(a.totals, b.totals);
    assert_eq!(a.engagement, b.engagement);
    assert_eq!(a.totals[0].version, 2);
}

#[test]
fn idle_articles_leave_memory_and_come_back_exactly() {
    let rules = CountingRules {
        dedup_horizon: DAY,
        window_size: HOUR,
        ..common::rules()
    };
    let mut shard = Shard::new(rules);
    shard.apply(&published("p", "old", "2026-11-01T09:00:00Z", "Old story"));
    shard.apply(&source("s1", "old", "2026-11-01T10:00:00Z", "x.example"));
    shard.apply(&comment("c1", "old", "2026-11-01T10:00:00Z"));
    let first = shard.drain(NOW, false, 1);
    assert!(
        first.evicted.is_empty(),
        "still inside the horizon, and its windows are open"
    );

    // Two days later the watermark closes old's windows and its dedup
    // memory expires, in the same drain.
    shard.apply(&comment("n1", "new", "2026-11-03T12:00:00Z"));
    let out = shard.drain(NOW, false, 3);
    let evicted: Vec<&str> = out.evicted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        evicted,
        ["old"],
        "only the idle article leaves; new has open windows"
    );
    assert_eq!((shard.article_count(), shard.cold_article_count()), (1, 1));

    // It survives a snapshot while cold.
    let mut shard = round_trip(&shard);
    let again = source("s2", "old", "2026-11-03T21:00:00Z", "X.EXAMPLE");
    assert_eq!(shard.apply(&again), Applied::Cold { segment: 3 });
    let (id, cold) = out.evicted.into_iter().next().unwrap();
    shard.rehydrate(id, cold);
    assert_eq!(shard.apply(&again), Applied::Counted);
    shard.apply(&comment("c2", "old", "2026-11-03T21:00:00Z"));
    let old = shard
        .drain(NOW, true, 4)
        .totals
        .into_iter()
        .find(|r| r.article_id == "old")
        .unwrap();
    assert_eq!(old.title.as_deref(), Some("Old story"));
    assert_eq!(
        footer(&old),
        (1, 2, 0),
        "X.EXAMPLE is the same source; c2 adds to c1"
    );
    assert_eq!(old.version, 2, "versions go on from the evicted state");
    assert_eq!(old.first_event_at, at("2026-11-01T09:00:00Z"));
    assert_eq!(shard.cold_article_count(), 0);
}

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
            EventBody::ArticlePublished { .. } => {}
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
