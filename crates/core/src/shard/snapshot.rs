//! The persisted forms of a [`Shard`]: its snapshot (what checkpoints hold),
//! the [`ColdArticle`] of an evicted article, and [`ShardV1`], the layout of
//! checkpoints written before the shard-wide dedup memory, read so that an
//! upgrade resumes from them.
//!
//! A snapshot keeps slot numbers (vacant slots included), because open
//! windows refer to articles by slot, and is written straight from the live
//! state without copying it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::ser::SerializeSeq;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::articles::{article_hash, Article, ArticleTable, SourceNames, NO_TIME};
use super::fingerprints::FingerprintSet;
use super::{CountingRules, Delta, Shard, WindowDeltas};
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
    social_comments: i64,
    forum_posts: i64,
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
            social_comments: i64::from(article.social_comments),
            forum_posts: i64::from(article.forum_posts),
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
        article.social_comments = small(self.social_comments);
        article.forum_posts = small(self.forum_posts);
        article.version = small(self.version);
        article.changed = self.changed;
        (article, self.seen)
    }
}

/// The snapshot as written: borrowed views of the live state.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    rules: CountingRules,
    generation_width: Micros,
    max_event_time: Option<Micros>,
    swept_at: Option<Micros>,
    sources: &'a [Box<str>],
    articles: Slots<'a>,
    open_windows: &'a BTreeMap<Micros, WindowDeltas>,
    fingerprints: Fingerprints<'a>,
    cold: &'a HashMap<u64, u64>,
}

/// The snapshot as read.
#[derive(Deserialize)]
struct Snapshot {
    rules: CountingRules,
    generation_width: Micros,
    max_event_time: Option<Micros>,
    swept_at: Option<Micros>,
    sources: Vec<Box<str>>,
    articles: Vec<Article>,
    open_windows: BTreeMap<Micros, WindowDeltas>,
    /// Fingerprints as fixed 8 bytes (a varint of a random number would
    /// take 10), with their tags.
    fingerprints: Vec<([u8; 8], u8)>,
    cold: HashMap<u64, u64>,
}

struct Slots<'a>(&'a ArticleTable);

impl Serialize for Slots<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.all_slots().map(|(_, article)| article))
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

impl Serialize for Shard {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SnapshotRef {
            rules: self.rules,
            generation_width: self.generation_width,
            max_event_time: self.max_event_time,
            swept_at: self.swept_at,
            sources: self.sources.names(),
            articles: Slots(&self.articles),
            open_windows: &self.open_windows,
            fingerprints: Fingerprints(&self.seen),
            cold: &self.cold,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Shard {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let snapshot = Snapshot::deserialize(deserializer)?;
        let source_count = snapshot.sources.len();
        for (slot, article) in snapshot.articles.iter().enumerate() {
            if !article.is_well_formed() {
                return Err(serde::de::Error::custom(format!(
                    "article slot {slot} is malformed"
                )));
            }
            if article
                .sources()
                .iter()
                .any(|n| *n as usize >= source_count)
            {
                return Err(serde::de::Error::custom(format!(
                    "article {} refers to a source that is not in the snapshot",
                    article.id()
                )));
            }
        }
        let articles = ArticleTable::from_slots(snapshot.articles);
        let slots = articles.all_slots().len();
        for deltas in snapshot.open_windows.values() {
            if let Some(slot) = deltas
                .keys()
                .find(|slot| (**slot as usize) >= slots || articles.get(**slot).is_vacant())
            {
                return Err(serde::de::Error::custom(format!(
                    "an open window refers to article slot {slot}, which is empty"
                )));
            }
        }
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
            rules: snapshot.rules,
            generation_width: snapshot.generation_width.max(1),
            articles,
            sources: SourceNames::from_names(snapshot.sources),
            seen,
            changed,
            open_windows: snapshot.open_windows,
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
                *open = Delta {
                    sources: small(d.sources),
                    comments: small(d.comments),
                    posts: small(d.posts),
                };
            }
        }
        shard
    }
}
