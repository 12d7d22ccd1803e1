//! The persisted forms of a [`Shard`]: its snapshot (what a whole
//! checkpoint of format 5 holds, written from borrowed views of the live
//! state and read back as [`ShardSnapshot`]), the [`ColdArticle`] of an
//! evicted article, and [`ShardV1`], the layout of checkpoints written
//! before the shard-wide dedup memory. Format 3 and 4 snapshots are read by
//! `format_v4.rs`, which turns them into a [`ShardSnapshot`].
//!
//! A snapshot keeps slot numbers (vacant slots included), because open
//! windows refer to articles by slot.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::ser::SerializeSeq;
use serde::{Deserialize, Serialize, Serializer};

use super::articles::{article_hash, Article, ArticleTable, SourceNames, NO_TIME};
use super::fingerprints::FingerprintSet;
use super::records::{windows_from_record, ArticleRecord, ArticleView, WindowsRecord, WindowsView};
use super::{CountingRules, Shard, WindowDeltas};
use crate::counted::{Counter, Distinct};
use crate::time::Micros;

/// What remains of an article that has been idle for a whole dedup
/// horizon: its footer, title, distinct sources and version. Opaque to
/// callers, who only store it and hand it back through
/// [`Shard::rehydrate`]; counting then continues exactly where it stopped.
///
/// Its serde form is the article layout of format-1 checkpoints, whose
/// `seen` field held the article's dedup fingerprints; evicted articles
/// have none.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdArticle {
    title: Option<String>,
    title_at: Option<Micros>,
    /// Lower-cased source ids.
    sources: BTreeSet<String>,
    /// The counts of the counters distinct by event id, by column name
    /// (`social_comments`, `forum_posts`, ...), so that a counter added
    /// later reads older segments.
    #[serde(flatten)]
    counts: BTreeMap<String, i64>,
    /// Fingerprints scoped by event type (not article) with event times:
    /// only in format-1 checkpoints.
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    seen: HashMap<u64, Micros>,
    span: Option<(Micros, Micros)>,
    version: i64,
    changed: bool,
}

fn time(t: Micros) -> Option<Micros> {
    (t != NO_TIME).then_some(t)
}

/// Counts stored as `u32` in memory; a persisted value beyond that can only
/// come from a damaged file, and saturates.
fn small(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

impl ColdArticle {
    pub(super) fn from_article(article: &Article, names: &SourceNames) -> Self {
        ColdArticle {
            title: article.title().map(str::to_owned),
            title_at: time(article.title_at),
            sources: article
                .sources()
                .iter()
                .map(|n| names.name(*n).to_owned())
                .collect(),
            counts: Counter::ALL
                .into_iter()
                .filter(|c| c.spec().distinct == Distinct::EventId)
                .map(|c| (c.column().to_owned(), i64::from(article.count(c))))
                .collect(),
            seen: HashMap::new(),
            span: time(article.first_event_at).map(|first| (first, article.last_event_at)),
            version: i64::from(article.version),
            changed: article.changed,
        }
    }

    /// The article in memory form, with the type-scoped fingerprints it
    /// carried (format 1 only) and their event times.
    pub(super) fn into_article(
        self,
        id: &str,
        names: &mut SourceNames,
    ) -> (Article, HashMap<u64, Micros>) {
        let (first, last) = self.span.unwrap_or((NO_TIME, NO_TIME));
        let mut article = Article::new(id);
        if let Some(title) = &self.title {
            article.set_title(title);
        }
        for source in &self.sources {
            article.add_source(names.number(source));
        }
        article.title_at = self.title_at.unwrap_or(NO_TIME);
        (article.first_event_at, article.last_event_at) = (first, last);
        for (column, count) in &self.counts {
            // A segment is written by this release or an older one (a
            // newer one's checkpoint is refused before its segments are
            // read), so every column is known.
            if let Some(counter) = Counter::ALL.into_iter().find(|c| c.column() == column) {
                article.set_count(counter, small(*count));
            }
        }
        article.version = small(self.version);
        article.changed = self.changed;
        (article, self.seen)
    }
}

/// The snapshot as written: borrowed views of the live state. Read back
/// as a [`ShardSnapshot`].
#[derive(Serialize)]
pub struct ShardSnapshotRef<'a> {
    rules: (Micros, Micros, Micros),
    generation_width: Micros,
    max_event_time: Option<Micros>,
    swept_at: Option<Micros>,
    sources: &'a [Box<str>],
    articles: Slots<'a>,
    open_windows: WindowsView<'a>,
    fingerprints: Fingerprints<'a>,
    cold: &'a HashMap<u64, u64>,
}

/// A whole snapshot as read, to be turned into a [`Shard`] with
/// `Shard::try_from`, which checks it.
#[derive(Deserialize)]
pub struct ShardSnapshot {
    pub(super) rules: (Micros, Micros, Micros),
    pub(super) generation_width: Micros,
    pub(super) max_event_time: Option<Micros>,
    pub(super) swept_at: Option<Micros>,
    pub(super) sources: Vec<Box<str>>,
    pub(super) articles: Vec<ArticleRecord>,
    pub(super) open_windows: WindowsRecord,
    /// Fingerprints as fixed 8 bytes (a varint of a random number would
    /// take 10), with their tags.
    pub(super) fingerprints: Vec<([u8; 8], u8)>,
    pub(super) cold: HashMap<u64, u64>,
}

/// Why a persisted state cannot be read: a damaged file, or one written by
/// a newer release.
#[derive(Debug, thiserror::Error)]
#[error("the saved shard state cannot be read: {0}")]
pub struct SnapshotError(pub(super) String);

pub(super) fn rules_record(rules: &CountingRules) -> (Micros, Micros, Micros) {
    (
        rules.window_size,
        rules.dedup_horizon,
        rules.max_out_of_orderness,
    )
}

pub(super) fn rules_from_record(
    (window_size, dedup_horizon, max_out_of_orderness): (Micros, Micros, Micros),
) -> CountingRules {
    CountingRules {
        window_size,
        dedup_horizon,
        max_out_of_orderness,
    }
}

struct Slots<'a>(&'a ArticleTable);

impl Serialize for Slots<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.all_slots().map(|(_, article)| ArticleView(article)))
    }
}

struct Fingerprints<'a>(&'a FingerprintSet);

impl Serialize for Fingerprints<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Binary formats need the length up front.
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (key, tag) in self.0.iter() {
            seq.serialize_element(&(key.to_le_bytes(), tag))?;
        }
        seq.end()
    }
}

impl Shard {
    /// The whole state as a record to write (checkpoint format 5).
    pub fn snapshot(&self) -> ShardSnapshotRef<'_> {
        ShardSnapshotRef {
            rules: rules_record(&self.rules),
            generation_width: self.generation_width,
            max_event_time: self.max_event_time,
            swept_at: self.swept_at,
            sources: self.sources.names(),
            articles: Slots(&self.articles),
            open_windows: WindowsView(&self.open_windows),
            fingerprints: Fingerprints(&self.seen),
            cold: &self.cold,
        }
    }
}

/// Checks that every open window names an occupied slot of `articles`.
pub(super) fn check_windows(
    windows: &BTreeMap<Micros, WindowDeltas>,
    articles: &ArticleTable,
) -> Result<(), String> {
    let slots = articles.all_slots().len();
    for deltas in windows.values() {
        if let Some(slot) = deltas
            .keys()
            .find(|slot| (**slot as usize) >= slots || articles.get(**slot).is_vacant())
        {
            return Err(format!(
                "an open window refers to article slot {slot}, which is empty"
            ));
        }
    }
    Ok(())
}

impl TryFrom<ShardSnapshot> for Shard {
    type Error = SnapshotError;

    fn try_from(snapshot: ShardSnapshot) -> Result<Self, SnapshotError> {
        let source_count = snapshot.sources.len();
        let slots = snapshot
            .articles
            .into_iter()
            .enumerate()
            .map(|(slot, record)| {
                record
                    .into_article(source_count)
                    .map_err(|e| SnapshotError(format!("article slot {slot}: {e}")))
            })
            .collect::<Result<Vec<Article>, _>>()?;
        let articles = ArticleTable::from_slots(slots);
        let open_windows = windows_from_record(snapshot.open_windows).map_err(SnapshotError)?;
        check_windows(&open_windows, &articles).map_err(SnapshotError)?;
        let mut seen = FingerprintSet::default();
        for (key, tag) in snapshot.fingerprints {
            seen.insert(u64::from_le_bytes(key), tag);
        }
        let changed = articles
            .iter()
            .filter(|(_, a)| a.changed)
            .map(|(slot, _)| slot)
            .collect();
        Ok(Shard {
            rules: rules_from_record(snapshot.rules),
            generation_width: snapshot.generation_width.max(1),
            articles,
            sources: SourceNames::from_names(snapshot.sources),
            seen,
            changed,
            open_windows,
            max_event_time: snapshot.max_event_time,
            swept_at: snapshot.swept_at,
            cold: snapshot.cold,
            journal: None,
        })
    }
}

/// A shard as checkpoints of format 1 stored it (JSON): articles by id,
/// each with its own type-scoped fingerprints. Convert with
/// `Shard::from`; counting continues exactly, dedup included.
#[derive(Deserialize)]
pub struct ShardV1 {
    rules: CountingRules,
    articles: HashMap<String, ColdArticle>,
    open_windows: BTreeMap<Micros, HashMap<String, DeltaV1>>,
    max_event_time: Option<Micros>,
    swept_at: Option<Micros>,
    #[serde(default)]
    cold: HashMap<u64, u64>,
}

#[derive(Deserialize)]
struct DeltaV1 {
    sources: i64,
    comments: i64,
    posts: i64,
}

impl From<ShardV1> for Shard {
    fn from(v1: ShardV1) -> Self {
        let mut shard = Shard::new(v1.rules);
        shard.max_event_time = v1.max_event_time;
        shard.swept_at = v1.swept_at;
        shard.cold = v1.cold;
        let mut ids: Vec<String> = v1.articles.keys().cloned().collect();
        ids.sort();
        let mut articles = v1.articles;
        for id in ids {
            let cold = articles.remove(&id).expect("listed above");
            shard.rehydrate(id, cold);
        }
        for (start, deltas) in v1.open_windows {
            for (id, d) in deltas {
                let hash = article_hash(&id);
                let slot = match shard.articles.find(hash, &id) {
                    Some(slot) => slot,
                    None => shard.articles.insert(hash, Article::new(&id)),
                };
                let open = shard
                    .open_windows
                    .entry(start)
                    .or_default()
                    .entry(slot)
                    .or_default();
                open[Counter::ConfirmingSources] = small(d.sources);
                open[Counter::SocialComments] = small(d.comments);
                open[Counter::ForumPosts] = small(d.posts);
            }
        }
        shard
    }
}
