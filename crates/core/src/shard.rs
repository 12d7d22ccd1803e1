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
    /// Not applied: the article left memory and waits in cold segment
    /// `segment`. Load it, [`Shard::rehydrate`] it, and apply the event
    /// again.
    Cold {
        /// The cold segment holding the article.
        segment: u64,
    },
}

/// The rows a drain produced.
#[derive(Debug, Default)]
pub struct Drained {
    /// One row per article whose counts or title changed since its last row.
    pub totals: Vec<TotalsRow>,
    /// One additive row per article and emitted window.
    pub engagement: Vec<EngagementRow>,
    /// Articles that left memory in this drain, to be stored by the caller
    /// in the cold segment numbered as passed to [`Shard::drain`] before the
    /// shard's state is persisted. See [`ColdArticle`].
    pub evicted: Vec<(String, ColdArticle)>,
}

/// What remains of an article that has been idle for a whole dedup
/// horizon: its footer, title, distinct sources and version, but no dedup
/// memory (all of it has expired). Opaque to callers, who only store it and
/// hand it back through [`Shard::rehydrate`]; counting then continues
/// exactly where it stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdArticle(ArticleState);

/// Counts waiting in an open window, per article.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Delta {
    sources: i64,
    comments: i64,
    posts: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Articles that left memory: fingerprint of the article id → number
    /// of the cold segment that holds them. 16 bytes an article instead of
    /// its whole state.
    #[serde(default)]
    cold: HashMap<u64, u64>,
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
            cold: HashMap::new(),
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

    /// Heap bytes of the dedup fingerprints: each table's capacity times an
    /// entry (fingerprint and event time, 16 bytes) plus its control byte.
    pub fn dedup_bytes(&self) -> usize {
        self.articles
            .values()
            .map(|a| a.seen.capacity() * (std::mem::size_of::<(u64, Micros)>() + 1))
            .sum()
    }

    /// Number of articles held outside memory, in cold segments.
    pub fn cold_article_count(&self) -> usize {
        self.cold.len()
    }

    /// If `article_id` is not in memory but was evicted, the cold segment
    /// holding it. The caller loads it from there and calls
    /// [`Shard::rehydrate`] before applying the article's next event.
    pub fn cold_segment_of(&self, article_id: &str) -> Option<u64> {
        if self.articles.contains_key(article_id) {
            return None;
        }
        self.cold.get(&article_fingerprint(article_id)).copied()
    }

    /// Brings an evicted article back into memory, exactly as it left.
    pub fn rehydrate(&mut self, article_id: String, cold: ColdArticle) {
        self.cold.remove(&article_fingerprint(&article_id));
        self.articles.entry(article_id).or_insert(cold.0);
    }

    /// Drops the cold-index entry of `article_id` without restoring it: for
    /// when its segment does not hold it (a fingerprint collision), so that
    /// it counts as a new article.
    pub fn forget_cold(&mut self, article_id: &str) {
        self.cold.remove(&article_fingerprint(article_id));
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
        if let Some(segment) = self.cold_segment_of(&event.article_id) {
            return Applied::Cold { segment };
        }
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
    /// Articles idle for a whole horizon leave memory: they are returned in
    /// [`Drained::evicted`] and recorded as stored in cold segment
    /// `segment`.
    pub fn drain(&mut self, now: Micros, close_all: bool, segment: u64) -> Drained {
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
        out.evicted = self.sweep(segment);
        out
    }

    /// Forgets fingerprints a full horizon behind the watermark, and evicts
    /// articles with nothing left to remember there: no fingerprint, no
    /// unwritten change, no open window. A sweep walks every article, so it
    /// runs only after the watermark moved by an eighth of the horizon since
    /// the last one.
    fn sweep(&mut self, segment: u64) -> Vec<(String, ColdArticle)> {
        let Some(wm) = self.watermark() else {
            return Vec::new();
        };
        let step = (self.rules.dedup_horizon / 8).max(1);
        if self.swept_at.is_some_and(|at| wm < at + step) {
            return Vec::new();
        }
        self.swept_at = Some(wm);
        let cutoff = wm.saturating_sub(self.rules.dedup_horizon);
        let in_open_windows: std::collections::HashSet<&str> = self
            .open_windows
            .values()
            .flat_map(|w| w.keys().map(String::as_str))
            .collect();
        let mut idle = Vec::new();
        for (article_id, article) in self.articles.iter_mut() {
            article.seen.retain(|_, t| *t >= cutoff);
            let quiet = article.span.is_none_or(|(_, last)| last < cutoff);
            if quiet
                && article.seen.is_empty()
                && !article.changed
                && !in_open_windows.contains(article_id.as_str())
            {
                idle.push(article_id.clone());
            }
        }
        idle.sort();
        idle.into_iter()
            .filter_map(|article_id| {
                let state = self.articles.remove(&article_id)?;
                self.cold.insert(article_fingerprint(&article_id), segment);
                Some((article_id, ColdArticle(state)))
            })
            .collect()
    }
}

/// A 64-bit fingerprint of an article id, the key of the cold index. Two
/// evicted articles sharing one would share an index entry; the caller
/// checks the id in the segment, so a collision can only make an article
/// look new, with odds below 10⁻⁹ for 10⁵ evicted articles per shard.
fn article_fingerprint(article_id: &str) -> u64 {
    xxh3_64(article_id.as_bytes())
}

/// A 64-bit fingerprint of an event id, scoped by type. Holding fingerprints
/// instead of ids keeps the dedup memory at a fixed 16 bytes an entry; two
/// distinct ids of one article collide with a probability near n²/2⁶⁵,
/// below 10⁻⁹ even for a million comments on one article within a horizon.
fn fingerprint(event_type: EventType, event_id: &str) -> u64 {
    xxh3_64(event_id.as_bytes()) ^ (event_type as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
