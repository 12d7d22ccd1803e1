//! The shard state as checkpoints of formats 3 and 4 hold it, frozen: those
//! releases wrote the in-memory structs as they were, so these are copies
//! of those structs' layouts, read and turned into the current records
//! ([`ShardSnapshot`], [`ShardPatch`]). Never change them: the golden
//! fixtures under `tests/fixtures/checkpoints/` hold files in this layout.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;

use super::journal::{ColdChange, FingerprintChange};
use super::records::{field, ArticleRecord, WindowsRecord};
use super::snapshot::{ShardSnapshot, SnapshotError};
use super::ShardPatch;
use crate::counted::Counter;
use crate::time::Micros;

/// Sources an article of format 4 held inline.
const INLINE_SOURCES: usize = 16;

/// The article record of formats 3 and 4 (the in-memory `Article` of
/// those releases, field for field).
#[derive(Debug, Deserialize)]
struct ArticleV4 {
    /// The id, then the title (if `has_title`), then `inline_sources`
    /// little-endian `u32` source numbers. Empty for a vacant slot.
    text: Box<[u8]>,
    /// (A `Box<HashSet>` in memory; serde reads the same bytes.)
    many_sources: Option<HashSet<u32>>,
    title_at: Micros,
    first_event_at: Micros,
    last_event_at: Micros,
    social_comments: u32,
    forum_posts: u32,
    version: u32,
    changed: bool,
    id_len: u8,
    has_title: bool,
    inline_sources: u8,
}

impl ArticleV4 {
    /// The current record of the same article, with its layout checked.
    fn into_record(self) -> Result<ArticleRecord, String> {
        if self.text.is_empty() {
            return Ok(ArticleRecord::default());
        }
        let id_len = usize::from(self.id_len);
        let inline = usize::from(self.inline_sources);
        let sources_at = self.text.len().checked_sub(4 * inline);
        let Some(sources_at) = sources_at.filter(|at| id_len > 0 && *at >= id_len) else {
            return Err("an article's text is shorter than its parts".into());
        };
        if inline > INLINE_SOURCES || (self.many_sources.is_some() && inline > 0) {
            return Err("an article's sources are malformed".into());
        }
        let text = |bytes: &[u8]| String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string());
        let id = text(&self.text[..id_len])?;
        let title = match self.has_title {
            true => Some(text(&self.text[id_len..sources_at])?),
            false if sources_at == id_len => None,
            false => return Err(format!("article {id} holds a title it does not have")),
        };
        let mut sources: Vec<u32> = match self.many_sources {
            Some(many) => many.into_iter().collect(),
            None => self.text[sources_at..]
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        };
        sources.sort_unstable();
        let tag = |counter: Counter| counter.spec().state_tag;
        Ok(ArticleRecord {
            id,
            title,
            sources,
            counts: vec![
                (tag(Counter::SocialComments), self.social_comments),
                (tag(Counter::ForumPosts), self.forum_posts),
            ],
            fields: vec![
                (field::TITLE_AT, self.title_at),
                (field::FIRST_EVENT_AT, self.first_event_at),
                (field::LAST_EVENT_AT, self.last_event_at),
                (field::VERSION, i64::from(self.version)),
                (field::CHANGED, i64::from(self.changed)),
            ],
        })
    }
}

/// The open-window counts of formats 3 and 4.
#[derive(Debug, Deserialize)]
struct DeltaV4 {
    sources: u32,
    comments: u32,
    posts: u32,
}

type WindowsV4 = BTreeMap<Micros, HashMap<u32, DeltaV4>>;

fn windows_record(windows: WindowsV4) -> WindowsRecord {
    let tag = |counter: Counter| counter.spec().state_tag;
    windows
        .into_iter()
        .map(|(start, deltas)| {
            let deltas = deltas
                .into_iter()
                .map(|(slot, d)| {
                    let counts = vec![
                        (tag(Counter::ConfirmingSources), d.sources),
                        (tag(Counter::SocialComments), d.comments),
                        (tag(Counter::ForumPosts), d.posts),
                    ];
                    (slot, counts)
                })
                .collect();
            (start, deltas)
        })
        .collect()
}

fn records(
    articles: impl IntoIterator<Item = ArticleV4>,
) -> Result<Vec<ArticleRecord>, SnapshotError> {
    articles
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            a.into_record()
                .map_err(|e| SnapshotError(format!("article {i}: {e}")))
        })
        .collect()
}

/// A whole state of formats 3 and 4.
#[derive(Deserialize)]
pub struct ShardSnapshotV4 {
    rules: (Micros, Micros, Micros),
    generation_width: Micros,
    max_event_time: Option<Micros>,
    swept_at: Option<Micros>,
    sources: Vec<Box<str>>,
    articles: Vec<ArticleV4>,
    open_windows: WindowsV4,
    fingerprints: Vec<([u8; 8], u8)>,
    cold: HashMap<u64, u64>,
}

impl TryFrom<ShardSnapshotV4> for ShardSnapshot {
    type Error = SnapshotError;

    fn try_from(v4: ShardSnapshotV4) -> Result<Self, SnapshotError> {
        Ok(ShardSnapshot {
            rules: v4.rules,
            generation_width: v4.generation_width,
            max_event_time: v4.max_event_time,
            swept_at: v4.swept_at,
            sources: v4.sources,
            articles: records(v4.articles)?,
            open_windows: windows_record(v4.open_windows),
            fingerprints: v4.fingerprints,
            cold: v4.cold,
        })
    }
}

/// The changes since the flush before, as format 4 held them.
#[derive(Deserialize)]
pub struct ShardPatchV4 {
    rules: (Micros, Micros, Micros),
    generation_width: Micros,
    max_event_time: Option<Micros>,
    swept_at: Option<Micros>,
    sources_from: u64,
    new_sources: Vec<Box<str>>,
    slot_count: u64,
    articles: Vec<(u32, ArticleV4)>,
    open_windows: WindowsV4,
    fingerprints: Vec<FingerprintChange>,
    cold: Vec<ColdChange>,
}

impl TryFrom<ShardPatchV4> for ShardPatch {
    type Error = SnapshotError;

    fn try_from(v4: ShardPatchV4) -> Result<Self, SnapshotError> {
        let (slots, articles): (Vec<u32>, Vec<ArticleV4>) = v4.articles.into_iter().unzip();
        Ok(ShardPatch {
            rules: v4.rules,
            generation_width: v4.generation_width,
            max_event_time: v4.max_event_time,
            swept_at: v4.swept_at,
            sources_from: v4.sources_from,
            new_sources: v4.new_sources,
            slot_count: v4.slot_count,
            articles: slots.into_iter().zip(records(articles)?).collect(),
            open_windows: windows_record(v4.open_windows),
            fingerprints: v4.fingerprints,
            cold: v4.cold,
        })
    }
}
