//! [`Shard`]: the exact counting of one partition's articles.
//!
//! The three event topics are co-partitioned by `article_id`, so partition
//! `p` of all three topics together holds every event of a fixed set of
//! articles. A `Shard` is the state for that set: it takes validated events
//! in any order and, when drained, gives the rows to write.
//!
//! **Invariant:** a `Shard` is a deterministic function of the events applied
//! to it and the `now`/`close_all` values passed to [`Shard::drain`]; its
//! serialized form (serde) restores exactly the same behaviour. That is what
//! lets the consumer checkpoint it next to the offsets it covers.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::event::{Event, EventBody, EventType};
use crate::rows::{EngagementRow, TotalsRow};
use crate::time::{window_start, Micros, DAY, SECOND};

/// The counting parameters, all in event time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountingRules {
    /// Length of the tumbling engagement windows.
    pub window_size: Micros,
    /// A redelivered `event_id` counts once while the watermark has not moved
    /// more than this past the first delivery's event time.
    pub dedup_horizon: Micros,
    /// How far behind the largest event time seen the watermark trails, so
    /// that slightly out-of-order events still land in an open window.
    pub max_out_of_orderness: Micros,
}

impl Default for CountingRules {
    fn default() -> Self {
        CountingRules {
            window_size: 3600 * SECOND,
            dedup_horizon: 7 * DAY,
            max_out_of_orderness: 300 * SECOND,
        }
    }
}

/// What [`Shard::apply`] did with an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// First delivery within the dedup horizon: it counts.
    Counted,
    /// The same `event_id` was already counted within the horizon.
    Duplicate,
}

/// The rows a drain produced.
#[derive(Debug, Default)]
pub struct Drained {
    /// One row per article whose counts or title changed since its last row.
    pub totals: Vec<TotalsRow>,
    /// One additive row per article and emitted window.
    pub engagement: Vec<EngagementRow>,
}

/// Counts waiting in an open window, per article.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Delta {
    sources: i64,
    comments: i64,
    posts: i64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct ArticleState {
    title: Option<String>,
    /// Event time of the `article_published` event the title came from: the
    /// latest one wins, whatever order they arrive in.
    title_at: Option<Micros>,
    /// Source ids, lower-cased, so that `Tagesschau.de` and `tagesschau.de`
    /// are one source.
    sources: BTreeSet<String>,
    social_comments: i64,
    forum_posts: i64,
    /// Fingerprints of counted event ids with their event time, forgotten
    /// once the watermark has moved a horizon past them.
    seen: HashMap<u64, Micros>,
    /// Earliest and latest event time counted.
    span: Option<(Micros, Micros)>,
    /// Version of the last totals row written; 0 before the first.
    version: i64,
    /// Whether the article changed since its last totals row.
    changed: bool,
}

/// The counting state of one partition's articles. See the module docs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Shard {
    rules: CountingRules,
    articles: HashMap<String, ArticleState>,
    /// Articles with `changed == true`, so a drain need not scan them all.
    changed: Vec<String>,
    /// Open windows: start → article → counts not yet emitted.
    open_windows: BTreeMap<Micros, HashMap<String, Delta>>,
    max_event_time: Option<Micros>,
    /// Watermark at the last sweep of the dedup memory.
    swept_at: Option<Micros>,
}

impl Shard {
    /// An empty shard.
    pub fn new(rules: CountingRules) -> Self {
        Shard {
            rules,
            articles: HashMap::new(),
            changed: Vec::new(),
            open_windows: BTreeMap::new(),
            max_event_time: None,
            swept_at: None,
        }
    }

    /// The rules this shard counts by.
    pub fn rules(&self) -> CountingRules {
        self.rules
    }

    /// Replaces the rules, e.g. after a configuration change between runs.
    /// Counts already made stay as they are.
    pub fn set_rules(&mut self, rules: CountingRules) {
        self.rules = rules;
    }

    /// Number of articles tracked.
    pub fn article_count(&self) -> usize {
        self.articles.len()
    }

    /// Number of event-id fingerprints held for deduplication.
    pub fn dedup_entries(&self) -> usize {
        self.articles.values().map(|a| a.seen.len()).sum()
    }

    /// The event-time watermark: the largest event time seen, less the
    /// allowed out-of-orderness. `None` before the first event.
    pub fn watermark(&self) -> Option<Micros> {
        self.max_event_time
            .map(|t| t.saturating_sub(self.rules.max_out_of_orderness))
    }

    /// Whether anything waits to be emitted by [`Shard::drain`].
    pub fn has_pending(&self) -> bool {
        !self.changed.is_empty() || !self.open_windows.is_empty()
    }

    /// Counts one validated event.
    pub fn apply(&mut self, event: &Event) -> Applied {
        let event_type = event.event_type();
        let fingerprint = fingerprint(event_type, &event.event_id);
        let t = event.occurred_at;
        let article = self.articles.entry(event.article_id.clone()).or_default();
        if article.seen.contains_key(&fingerprint) {
            return Applied::Duplicate;
        }
        article.seen.insert(fingerprint, t);

        article.span = Some(match article.span {
            None => (t, t),
            Some((first, last)) => (first.min(t), last.max(t)),
        });

        let mut delta = Delta::default();
        match &event.body {
            EventBody::ArticlePublished { title, .. } => {
                if article.title_at.is_none_or(|at| t > at) {
                    article.title = Some(title.clone());
                    article.title_at = Some(t);
                }
            }
            EventBody::SourceConfirmed { source_id, .. } => {
                if article.sources.insert(source_id.to_lowercase()) {
                    delta.sources = 1;
                }
            }
            EventBody::SocialComment { .. } => {
                article.social_comments += 1;
                delta.comments = 1;
            }
            EventBody::ForumPost { .. } => {
                article.forum_posts += 1;
                delta.posts = 1;
            }
        }
        if !article.changed {
            article.changed = true;
            self.changed.push(event.article_id.clone());
        }
        if delta != Delta::default() {
            let start = window_start(t, self.rules.window_size);
            let open = self
                .open_windows
                .entry(start)
                .or_default()
                .entry(event.article_id.clone())
                .or_default();
            open.sources += delta.sources;
            open.comments += delta.comments;
            open.posts += delta.posts;
        }
        self.max_event_time = Some(self.max_event_time.map_or(t, |m| m.max(t)));
        Applied::Counted
    }

    /// Takes the rows to write: a totals row for every article that changed
    /// since its last row, and an engagement row for every article in every
    /// window the watermark has passed (all open windows when `close_all`,
    /// which the consumer asks for when the partition is idle or stopping,
    /// so that sums over `article_engagement` match the totals at rest).
    /// Also forgets dedup fingerprints older than the horizon.
    pub fn drain(&mut self, now: Micros, close_all: bool) -> Drained {
        let mut out = Drained::default();
        for article_id in std::mem::take(&mut self.changed) {
            let Some(article) = self.articles.get_mut(&article_id) else {
                continue;
            };
            // Only counted events mark an article changed, and they set its span.
            let (first_event_at, last_event_at) = article.span.unwrap_or_default();
            article.changed = false;
            article.version += 1;
            out.totals.push(TotalsRow {
                title: article.title.clone(),
                confirming_sources: article.sources.len() as i64,
                social_comments: article.social_comments,
                forum_posts: article.forum_posts,
                first_event_at,
                last_event_at,
                version: article.version,
                emitted_at: now,
                article_id,
            });
        }

        let size = self.rules.window_size;
        let closed: Vec<Micros> = match (close_all, self.watermark()) {
            (true, _) => self.open_windows.keys().copied().collect(),
            (false, Some(wm)) => self
                .open_windows
                .range(..=wm.saturating_sub(size))
                .map(|(start, _)| *start)
                .collect(),
            (false, None) => Vec::new(),
        };
        for start in closed {
            let Some(articles) = self.open_windows.remove(&start) else {
                continue;
            };
            let mut rows: Vec<EngagementRow> = articles
                .into_iter()
                .map(|(article_id, d)| EngagementRow {
                    article_id,
                    window_start: start,
                    window_end: start + size,
                    confirming_sources: d.sources,
                    social_comments: d.comments,
                    forum_posts: d.posts,
                    emitted_at: now,
                })
                .collect();
            // HashMap order is random; sorted output keeps files reproducible.
            rows.sort_by(|a, b| a.article_id.cmp(&b.article_id));
            out.engagement.extend(rows);
        }
        out.totals.sort_by(|a, b| a.article_id.cmp(&b.article_id));
        self.sweep_dedup_memory();
        out
    }

    /// Forgets fingerprints a full horizon behind the watermark. A sweep
    /// walks every article, so it runs only after the watermark moved by an
    /// eighth of the horizon since the last one.
    fn sweep_dedup_memory(&mut self) {
        let Some(wm) = self.watermark() else { return };
        let step = (self.rules.dedup_horizon / 8).max(1);
        if self.swept_at.is_some_and(|at| wm < at + step) {
            return;
        }
        self.swept_at = Some(wm);
        let cutoff = wm.saturating_sub(self.rules.dedup_horizon);
        for article in self.articles.values_mut() {
            article.seen.retain(|_, t| *t >= cutoff);
        }
    }
}

/// A 64-bit fingerprint of an event id, scoped by type. Holding fingerprints
/// instead of ids keeps the dedup memory at a fixed 16 bytes an entry; two
/// distinct ids of one article collide with a probability near n²/2⁶⁵,
/// below 10⁻⁹ even for a million comments on one article within a horizon.
fn fingerprint(event_type: EventType, event_id: &str) -> u64 {
    xxh3_64(event_id.as_bytes()) ^ (event_type as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
