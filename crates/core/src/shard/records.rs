//! The state's own persisted records (checkpoint format 5), apart from the
//! structs that hold it in memory: an article slot and the counts of open
//! windows, as written and as read back.
//!
//! Numbers that a later release may add to are *tagged*: an article's
//! counts are `(counter state tag, count)` pairs and its other numbers
//! `(field tag, value)` pairs, with absent ones at their default. So a new
//! counter ([`crate::counted`]) or a new per-article number reads every
//! older checkpoint as it is, without a new format or a shim; and a tag
//! this release does not know (a newer release's) is refused by name
//! rather than dropped, since dropping it would lose counts on a rollback.
//!
//! Writing goes through borrowed views of the live state (no copy of a
//! million articles at every checkpoint); reading builds owned records and
//! then the live structs, checking every invariant the live code relies on.

use std::collections::BTreeMap;

use serde::ser::{SerializeSeq, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};

use super::articles::{Article, NO_TIME};
use super::{Delta, WindowDeltas};
use crate::counted::{Counter, Distinct, COUNTER_COUNT};
use crate::time::Micros;

/// Tags of an article's numbers other than its counts. Persisted: never
/// change or reuse one; a new number takes the next.
#[allow(missing_docs)]
pub(crate) mod field {
    pub const TITLE_AT: u8 = 1;
    pub const FIRST_EVENT_AT: u8 = 2;
    pub const LAST_EVENT_AT: u8 = 3;
    pub const VERSION: u8 = 4;
    pub const CHANGED: u8 = 5;
}

/// An article slot as read back. A vacant slot has an empty id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct ArticleRecord {
    pub id: String,
    pub title: Option<String>,
    /// Source numbers, sorted.
    pub sources: Vec<u32>,
    /// (counter state tag, count) of the counters distinct by event id.
    pub counts: Vec<(u8, u32)>,
    /// (field tag, value), see [`field`].
    pub fields: Vec<(u8, i64)>,
}

/// Writes an article slot as an [`ArticleRecord`], borrowing it.
pub(crate) struct ArticleView<'a>(pub &'a Article);

impl Serialize for ArticleView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let article = self.0;
        let mut record = serializer.serialize_struct("ArticleRecord", 5)?;
        if article.is_vacant() {
            record.serialize_field("id", "")?;
            record.serialize_field("title", &None::<&str>)?;
            // Slices, not arrays: serde writes an array as a tuple,
            // without the length a `Vec` is read with.
            record.serialize_field("sources", &[0u32; 0][..])?;
            record.serialize_field("counts", &[(0u8, 0u32); 0][..])?;
            record.serialize_field("fields", &[(0u8, 0i64); 0][..])?;
            return record.end();
        }
        record.serialize_field("id", article.id())?;
        record.serialize_field("title", &article.title())?;
        record.serialize_field("sources", &article.sources())?;
        let mut counts = [(0u8, 0u32); COUNTER_COUNT];
        let mut n = 0;
        for counter in Counter::ALL {
            let count = article.count(counter);
            if counter.spec().distinct == Distinct::EventId && count > 0 {
                counts[n] = (counter.spec().state_tag, count);
                n += 1;
            }
        }
        record.serialize_field("counts", &counts[..n])?;
        let all = [
            (field::TITLE_AT, article.title_at, NO_TIME),
            (field::FIRST_EVENT_AT, article.first_event_at, NO_TIME),
            (field::LAST_EVENT_AT, article.last_event_at, NO_TIME),
            (field::VERSION, i64::from(article.version), 0),
            (field::CHANGED, i64::from(article.changed), 0),
        ];
        let mut fields = [(0u8, 0i64); 5];
        let mut n = 0;
        for (tag, value, default) in all {
            if value != default {
                fields[n] = (tag, value);
                n += 1;
            }
        }
        record.serialize_field("fields", &fields[..n])?;
        record.end()
    }
}

/// The counter a persisted tag names, or why the file cannot be read.
fn counter_of(tag: u8) -> Result<Counter, String> {
    Counter::from_state_tag(tag).ok_or_else(|| {
        format!("it holds counter tag {tag}, which this release does not know (a newer release wrote it)")
    })
}

/// A persisted count, which a well-formed file keeps within `u32`.
fn small(value: i64, what: &str) -> Result<u32, String> {
    u32::try_from(value).map_err(|_| format!("{what} {value} is out of range"))
}

impl ArticleRecord {
    /// The article in memory form, checked: `source_count` is the number
    /// of source names the state holds.
    pub(crate) fn into_article(self, source_count: usize) -> Result<Article, String> {
        if self.id.is_empty() {
            if self.title.is_some() || !self.sources.is_empty() || !self.counts.is_empty() {
                return Err("a vacant article slot holds values".into());
            }
            return Ok(Article::default());
        }
        if self.id.len() > usize::from(u8::MAX) {
            return Err(format!("article id of {} bytes", self.id.len()));
        }
        let mut article = Article::new(&self.id);
        if let Some(title) = &self.title {
            article.set_title(title);
        }
        if !self.sources.windows(2).all(|w| w[0] < w[1]) {
            return Err(format!(
                "the sources of article {} are out of order",
                self.id
            ));
        }
        for source in self.sources {
            if source as usize >= source_count {
                return Err(format!(
                    "article {} refers to a source that is not in the state",
                    self.id
                ));
            }
            article.add_source(source);
        }
        for (tag, count) in self.counts {
            if !article.set_count(counter_of(tag)?, count) {
                return Err(format!("counter tag {tag} is kept by its sources"));
            }
        }
        for (tag, value) in self.fields {
            match tag {
                field::TITLE_AT => article.title_at = value,
                field::FIRST_EVENT_AT => article.first_event_at = value,
                field::LAST_EVENT_AT => article.last_event_at = value,
                field::VERSION => article.version = small(value, "version")?,
                field::CHANGED => article.changed = value != 0,
                other => {
                    return Err(format!(
                        "it holds article field tag {other}, which this release does not know (a newer release wrote it)"
                    ))
                }
            }
        }
        Ok(article)
    }
}

/// Open windows as read back: start → (slot, (counter state tag, count)).
pub(crate) type WindowsRecord = Vec<(Micros, Vec<(u32, Vec<(u8, u32)>)>)>;

/// Writes open windows as a [`WindowsRecord`], borrowing them.
pub(crate) struct WindowsView<'a>(pub &'a BTreeMap<Micros, WindowDeltas>);

impl Serialize for WindowsView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .iter()
                .map(|(start, deltas)| (start, DeltasView(deltas))),
        )
    }
}

struct DeltasView<'a>(&'a WindowDeltas);

impl Serialize for DeltasView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (slot, delta) in self.0 {
            let mut counts = [(0u8, 0u32); COUNTER_COUNT];
            let mut n = 0;
            for (counter, count) in delta.iter() {
                if *count > 0 {
                    counts[n] = (counter.spec().state_tag, *count);
                    n += 1;
                }
            }
            seq.serialize_element(&(slot, &counts[..n]))?;
        }
        seq.end()
    }
}

/// Open windows in memory form; the slots they name are checked by the
/// caller, against the articles.
pub(crate) fn windows_from_record(
    record: WindowsRecord,
) -> Result<BTreeMap<Micros, WindowDeltas>, String> {
    let mut windows = BTreeMap::new();
    for (start, deltas) in record {
        let mut open = WindowDeltas::default();
        for (slot, counts) in deltas {
            let mut delta = Delta::default();
            for (tag, count) in counts {
                delta[counter_of(tag)?] = count;
            }
            open.insert(slot, delta);
        }
        windows.insert(start, open);
    }
    Ok(windows)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(article: &Article) -> Article {
        let bytes = postcard::to_stdvec(&ArticleView(article)).unwrap();
        let record: ArticleRecord = postcard::from_bytes(&bytes).unwrap();
        record.into_article(100).unwrap()
    }

    #[test]
    fn an_article_comes_back_as_it_was_written() {
        let mut article = Article::new("a-1");
        assert_eq!(round_trip(&article), article);
        article.set_title("Titel – ü");
        for source in [3, 9, 1] {
            article.add_source(source);
        }
        article.add_one(Counter::SocialComments);
        article.add_one(Counter::ForumPosts);
        article.add_one(Counter::ForumPosts);
        (
            article.title_at,
            article.first_event_at,
            article.last_event_at,
        ) = (-5, 7, 9);
        (article.version, article.changed) = (12, true);
        assert_eq!(round_trip(&article), article);
        assert_eq!(round_trip(&Article::default()), Article::default());
    }

    /// A record without a count or field reads it at its default (an
    /// older release's), and one with a tag this release does not know (a
    /// newer release's) is refused by name.
    #[test]
    fn absent_tags_read_as_defaults_and_unknown_ones_are_refused() {
        let old = ArticleRecord {
            id: "a".into(),
            ..ArticleRecord::default()
        };
        let article = old.clone().into_article(0).unwrap();
        assert_eq!(
            (article.count(Counter::ForumPosts), article.title_at),
            (0, NO_TIME)
        );
        let newer = ArticleRecord {
            counts: vec![(200, 1)],
            ..old.clone()
        };
        let error = newer.into_article(0).unwrap_err();
        assert!(error.contains("counter tag 200"), "{error}");
        let newer = ArticleRecord {
            fields: vec![(77, 1)],
            ..old
        };
        assert!(newer.into_article(0).unwrap_err().contains("field tag 77"));
    }
}
