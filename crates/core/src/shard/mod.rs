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

mod articles;
mod fingerprints;
mod format_v4;
mod journal;
mod records;
mod snapshot;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::BuildHasherDefault;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

use crate::counted::{Counter, Distinct, PerCounter};
use crate::event::{Event, EventBody, EventType};
use crate::rows::{EngagementRow, TotalsRow};
use crate::time::{window_start, Micros};
use articles::{article_hash, Article, ArticleTable, SourceNames, NO_TIME};
use fingerprints::FingerprintSet;
pub use format_v4::{ShardPatchV4, ShardSnapshotV4};
use journal::{ColdChange, FingerprintChange, Journal};
pub use journal::{PatchError, ShardChanges, ShardPatch};
pub use snapshot::{ColdArticle, ShardSnapshot, ShardSnapshotRef, ShardV1, SnapshotError};

/// The counting parameters, all in event time. The shipped values come
/// from `newsflow-settings` (`window.*`, `dedup.*`); the core has no
/// defaults of its own.
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

/// Counts waiting in an open window, per article and counter.
type Delta = PerCounter<u32>;

/// Open window deltas by article slot. Slot numbers are small dense
/// integers, so a multiplicative hash is as good as SipHash and far cheaper.
type WindowDeltas = HashMap<u32, Delta, BuildHasherDefault<SlotHasher>>;

#[derive(Default)]
struct SlotHasher(u64);

impl std::hash::Hasher for SlotHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.0 = u64::from(n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// The counting state of one partition's articles. See the module docs.
///
/// Dedup memory is one shard-wide [`FingerprintSet`]: a fingerprint of
/// (article, event type, event id) tagged with the *generation* of its event
/// time, an eighth of the horizon wide. A sweep drops whole generations that
/// lie a horizon behind the watermark, so a fingerprint is kept at least a
/// horizon (and at most an eighth more): a redelivery within the horizon
/// always counts once.
#[derive(Clone, Debug)]
pub struct Shard {
    rules: CountingRules,
    /// Width of a fingerprint generation, fixed by the rules.
    generation_width: Micros,
    articles: ArticleTable,
    sources: SourceNames,
    seen: FingerprintSet,
    /// Slots of articles with `changed == true`, so a drain need not scan
    /// them all.
    changed: Vec<u32>,
    /// Open windows: start → article slot → counts not yet emitted.
    open_windows: BTreeMap<Micros, WindowDeltas>,
    max_event_time: Option<Micros>,
    /// Watermark at the last sweep of the dedup memory.
    swept_at: Option<Micros>,
    /// Articles that left memory: hash of the article id → number of the
    /// cold segment that holds them. 16 bytes an article instead of its
    /// whole state.
    cold: HashMap<u64, u64>,
    /// Changes since the last save, once the shard is saved at all.
    journal: Option<Box<Journal>>,
}

fn generation_width(rules: &CountingRules) -> Micros {
    (rules.dedup_horizon / 8).max(1)
}

impl Shard {
    /// An empty shard.
    pub fn new(rules: CountingRules) -> Self {
        Shard {
            rules,
            generation_width: generation_width(&rules),
            articles: ArticleTable::default(),
            sources: SourceNames::default(),
            seen: FingerprintSet::default(),
            changed: Vec::new(),
            open_windows: BTreeMap::new(),
            max_event_time: None,
            swept_at: None,
            cold: HashMap::new(),
            journal: None,
        }
    }

    /// The rules this shard counts by.
    pub fn rules(&self) -> CountingRules {
        self.rules
    }

    /// Replaces the rules, e.g. after a configuration change between runs.
    /// Counts already made stay as they are. If the horizon changed, the
    /// generations of the fingerprints held are no longer comparable, so all
    /// of them move to the newest generation: they are kept a horizon longer
    /// rather than dropped early.
    pub fn set_rules(&mut self, rules: CountingRules) {
        self.rules = rules;
        let width = generation_width(&rules);
        if width != self.generation_width {
            self.generation_width = width;
            let newest = self.generation_tag(self.max_event_time.unwrap_or(0));
            self.seen.retag_all(newest);
            if let Some(journal) = &mut self.journal {
                journal.fingerprint(FingerprintChange::Retag(newest));
            }
        }
    }

    /// Number of articles tracked.
    pub fn article_count(&self) -> usize {
        self.articles.len()
    }

    /// Number of event-id fingerprints held for deduplication.
    pub fn dedup_entries(&self) -> usize {
        self.seen.len()
    }

    /// Heap bytes of the dedup fingerprints.
    pub fn dedup_bytes(&self) -> usize {
        self.seen.heap_bytes()
    }

    /// Approximate heap bytes of the articles: records, index, owned text.
    pub fn article_bytes(&self) -> usize {
        self.articles.heap_bytes()
    }

    /// Number of articles held outside memory, in cold segments.
    pub fn cold_article_count(&self) -> usize {
        self.cold.len()
    }

    /// If `article_id` is not in memory but was evicted, the cold segment
    /// holding it. The caller loads it from there and calls
    /// [`Shard::rehydrate`] before applying the article's next event.
    pub fn cold_segment_of(&self, article_id: &str) -> Option<u64> {
        let hash = article_hash(article_id);
        if self.articles.find(hash, article_id).is_some() {
            return None;
        }
        self.cold.get(&hash).copied()
    }

    /// Brings an evicted article back into memory, exactly as it left.
    pub fn rehydrate(&mut self, article_id: String, cold: ColdArticle) {
        let hash = article_hash(&article_id);
        self.forget_cold_hash(hash);
        if self.articles.find(hash, &article_id).is_some() {
            return;
        }
        let (article, seen) = cold.into_article(&article_id, &mut self.sources);
        for (fingerprint, t) in seen {
            let tag = self.generation_tag(t);
            self.insert_fingerprint(scoped(hash, fingerprint), tag);
        }
        let changed = article.changed;
        let slot = self.articles.insert(hash, article);
        self.note_slot(slot);
        if changed {
            self.changed.push(slot);
        }
    }

    /// Drops the cold-index entry of `article_id` without restoring it: for
    /// when its segment does not hold it (a hash collision), so that it
    /// counts as a new article.
    pub fn forget_cold(&mut self, article_id: &str) {
        self.forget_cold_hash(article_hash(article_id));
    }

    fn forget_cold_hash(&mut self, hash: u64) {
        if self.cold.remove(&hash).is_some() {
            if let Some(journal) = &mut self.journal {
                journal.cold(ColdChange::Remove(hash.to_le_bytes()));
            }
        }
    }

    /// Adds a fingerprint to the dedup memory; false if it was held.
    fn insert_fingerprint(&mut self, fingerprint: u64, tag: u8) -> bool {
        let added = self.seen.insert(fingerprint, tag);
        if added {
            if let Some(journal) = &mut self.journal {
                journal.fingerprint(FingerprintChange::Insert(fingerprint.to_le_bytes(), tag));
            }
        }
        added
    }

    /// Records that an article slot changed, for the next checkpoint.
    fn note_slot(&mut self, slot: u32) {
        if let Some(journal) = &mut self.journal {
            journal.slot(slot);
        }
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

    /// The generation of the oldest fingerprints a sweep now would keep.
    fn cutoff_generation(&self) -> Option<i64> {
        self.watermark().map(|wm| {
            wm.saturating_sub(self.rules.dedup_horizon)
                .div_euclid(self.generation_width)
        })
    }

    /// The tag of a fingerprint of an event at `t`: its generation, or the
    /// oldest one still kept if it is older, so that a sweep holds it for a
    /// while instead of dropping it before its redelivery can be seen.
    fn generation_tag(&self, t: Micros) -> u8 {
        let generation = t.div_euclid(self.generation_width);
        let generation = self
            .cutoff_generation()
            .map_or(generation, |cutoff| generation.max(cutoff));
        // Live generations span about ten numbers, so 8 bits tell them
        // apart; see `sweep`.
        generation as u8
    }

    /// Counts one validated event.
    pub fn apply(&mut self, event: &Event) -> Applied {
        let hash = article_hash(&event.article_id);
        let slot = match self.articles.find(hash, &event.article_id) {
            Some(slot) => slot,
            None => {
                if let Some(&segment) = self.cold.get(&hash) {
                    return Applied::Cold { segment };
                }
                let slot = self.articles.insert(hash, Article::new(&event.article_id));
                self.note_slot(slot);
                slot
            }
        };
        let t = event.occurred_at;
        let fingerprint = event_fingerprint(hash, event.event_type(), &event.event_id);
        let tag = self.generation_tag(t);
        if !self.insert_fingerprint(fingerprint, tag) {
            return Applied::Duplicate;
        }

        self.note_slot(slot);
        let counted = self.count(slot, event);
        if let Some(counter) = counted {
            let start = window_start(event.occurred_at, self.rules.window_size);
            let open = self
                .open_windows
                .entry(start)
                .or_default()
                .entry(slot)
                .or_default();
            open[counter] = open[counter].saturating_add(1);
        }
        let t = event.occurred_at;
        self.max_event_time = Some(self.max_event_time.map_or(t, |m| m.max(t)));
        Applied::Counted
    }

    /// Applies a first delivery to the article in `slot`: its event times,
    /// its title, and the counter its type feeds (the list in
    /// `counted.rs`); returns that counter if the event added to it (a
    /// source already known adds nothing).
    fn count(&mut self, slot: u32, event: &Event) -> Option<Counter> {
        let t = event.occurred_at;
        let article = self.articles.get_mut(slot);
        if article.first_event_at == NO_TIME {
            (article.first_event_at, article.last_event_at) = (t, t);
        } else {
            article.first_event_at = article.first_event_at.min(t);
            article.last_event_at = article.last_event_at.max(t);
        }
        if let EventBody::ArticlePublished { title, .. } = &event.body {
            if article.title_at == NO_TIME || t > article.title_at {
                article.set_title(title);
                article.title_at = t;
            }
        }
        let counter = event.event_type().spec().counter;
        let counted = counter.filter(|counter| match counter.spec().distinct {
            Distinct::SourceId => {
                let source = event.body.source_id().expect("a type counted by source");
                article.add_source(self.sources.number(source))
            }
            Distinct::EventId => {
                article.add_one(*counter);
                true
            }
        });
        if !article.changed {
            article.changed = true;
            self.changed.push(slot);
        }
        counted
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
        for slot in std::mem::take(&mut self.changed) {
            if !self.articles.get(slot).changed {
                continue;
            }
            self.note_slot(slot);
            let article = self.articles.get_mut(slot);
            article.changed = false;
            article.version = article.version.saturating_add(1);
            out.totals.push(TotalsRow {
                article_id: article.id().to_owned(),
                title: article.title().map(str::to_owned),
                counts: PerCounter::from_fn(|c| i64::from(article.count(c))),
                // Only counted events mark an article changed, and they
                // set its event times.
                first_event_at: article.first_event_at,
                last_event_at: article.last_event_at,
                version: i64::from(article.version),
                emitted_at: now,
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
            let Some(deltas) = self.open_windows.remove(&start) else {
                continue;
            };
            let mut rows: Vec<EngagementRow> = deltas
                .into_iter()
                .map(|(slot, d)| EngagementRow {
                    article_id: self.articles.get(slot).id().to_owned(),
                    window_start: start,
                    window_end: start + size,
                    counts: PerCounter::from_fn(|c| i64::from(d[c])),
                    emitted_at: now,
                })
                .collect();
            // HashMap order is random; sorted output keeps files reproducible.
            // An article has one row per window, so no two rows tie.
            rows.sort_unstable_by(|a, b| a.article_id.cmp(&b.article_id));
            out.engagement.extend(rows);
        }
        out.totals
            .sort_unstable_by(|a, b| a.article_id.cmp(&b.article_id));
        out.evicted = self.sweep(segment);
        out
    }

    /// Forgets fingerprints a full horizon behind the watermark, and evicts
    /// articles with nothing left to remember there: no event within the
    /// horizon, no unwritten change, no open window. A sweep walks every
    /// article, so it runs only after the watermark moved by an eighth of
    /// the horizon since the last one.
    fn sweep(&mut self, segment: u64) -> Vec<(String, ColdArticle)> {
        let (Some(wm), Some(cutoff_generation)) = (self.watermark(), self.cutoff_generation())
        else {
            return Vec::new();
        };
        let step = self.generation_width;
        if self.swept_at.is_some_and(|at| wm < at + step) {
            return Vec::new();
        }
        self.swept_at = Some(wm);
        let cutoff_tag = cutoff_generation as u8;
        self.seen.retain(keeps(cutoff_tag));
        if let Some(journal) = &mut self.journal {
            journal.fingerprint(FingerprintChange::Sweep(cutoff_tag));
        }

        let cutoff = wm.saturating_sub(self.rules.dedup_horizon);
        let in_open_windows: HashSet<u32> = self
            .open_windows
            .values()
            .flat_map(|w| w.keys().copied())
            .collect();
        let mut idle: Vec<u32> = self
            .articles
            .iter()
            .filter(|(slot, article)| {
                article.last_event_at < cutoff
                    && !article.changed
                    && !in_open_windows.contains(slot)
            })
            .map(|(slot, _)| slot)
            .collect();
        idle.sort_unstable_by(|a, b| {
            let id = |slot: &u32| self.articles.get(*slot).id_bytes();
            id(a).cmp(id(b))
        });
        idle.into_iter()
            .map(|slot| {
                let article = self.articles.remove(slot);
                let hash = article_hash(article.id());
                self.cold.insert(hash, segment);
                if let Some(journal) = &mut self.journal {
                    journal.slot(slot);
                    journal.cold(ColdChange::Insert(hash.to_le_bytes(), segment));
                }
                let cold = ColdArticle::from_article(&article, &self.sources);
                (article.id().to_owned(), cold)
            })
            .collect()
    }
}

/// Whether a sweep with `cutoff_tag` keeps a fingerprint with a tag.
/// Tags are generations modulo 256. Those held lie between the cutoff's
/// less a few sweeps and the newest, about ten apart, so the wrapped
/// difference tells older from newer.
fn keeps(cutoff_tag: u8) -> impl Fn(u8) -> bool {
    move |tag| (tag.wrapping_sub(cutoff_tag) as i8) >= 0
}

/// Mixes an article's hash into the fingerprints of its events, so one
/// shard-wide set tells apart the same event id under two articles.
fn article_mix(article_hash: u64) -> u64 {
    let mut z = article_hash ^ 0x5851_F42D_4C95_7F2D;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A 64-bit fingerprint of an event id, scoped by type and article. Holding
/// fingerprints instead of ids keeps the dedup memory near 9 bytes an
/// entry. A new event is mistaken for a redelivery only if its fingerprint
/// equals one of the n held: over n events about n²/2⁶⁵, 3·10⁻⁶ for ten
/// million events of one shard within a horizon.
fn event_fingerprint(article_hash: u64, event_type: EventType, event_id: &str) -> u64 {
    scoped(article_hash, unscoped_fingerprint(event_type, event_id))
}

/// Scopes a type-scoped fingerprint (see [`unscoped_fingerprint`]) to its
/// article.
fn scoped(article_hash: u64, unscoped: u64) -> u64 {
    unscoped ^ article_mix(article_hash)
}

/// The fingerprint of an event id scoped by type only: what checkpoints of
/// format 1 held per article, and the part of [`event_fingerprint`] that
/// does not depend on the article.
fn unscoped_fingerprint(event_type: EventType, event_id: &str) -> u64 {
    // The type's tag from the list, not its position in the enum: the
    // fingerprints outlive a release in checkpoints.
    let tag = event_type.spec().fingerprint_tag;
    xxh3_64(event_id.as_bytes()) ^ tag.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
