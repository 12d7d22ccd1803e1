//! Where a shard keeps its articles: a compact record per article in a
//! chunked slab, found through a hash index of slot numbers, and source
//! names interned once per shard.
//!
//! The layout is for a million articles in a few hundred megabytes: the
//! index costs 5 bytes a bucket (a `u32` slot and hashbrown's control byte)
//! instead of a key and a whole record, the slab grows a chunk at a time (no
//! reallocation copying everything), and an article's sources are a small
//! sorted array of `u32` name numbers instead of a set of strings.

use std::collections::HashSet;

use hashbrown::HashTable;
use xxhash_rust::xxh3::xxh3_64;

use crate::counted::{Counter, Distinct, COUNTERS, COUNTER_COUNT};
use crate::time::Micros;

/// How many counters an article keeps as numbers: those distinct by event
/// id.
const TALLIED: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < COUNTER_COUNT {
        if matches!(COUNTERS[i].distinct, Distinct::EventId) {
            n += 1;
        }
        i += 1;
    }
    n
};

/// Where each counter's number sits in [`Article`]'s tallies; `None` for
/// the count by source id, which the source set holds.
const TALLY_SLOT: [Option<usize>; COUNTER_COUNT] = {
    let mut slots = [None; COUNTER_COUNT];
    let mut next = 0;
    let mut i = 0;
    while i < COUNTER_COUNT {
        if matches!(COUNTERS[i].distinct, Distinct::EventId) {
            slots[i] = Some(next);
            next += 1;
        }
        i += 1;
    }
    slots
};

/// Marks an absent time in [`Article`]'s time fields; accepted event times
/// lie between 2000 and 2100.
pub(crate) const NO_TIME: Micros = Micros::MIN;

/// Sources an article keeps inline, in its text allocation; past this
/// many they move to a hash set, so that an article with thousands of
/// sources costs O(1) per new one instead of a copy of them all.
const INLINE_SOURCES: usize = 16;

/// Everything a shard remembers of one article, except its dedup
/// fingerprints (held shard-wide): 64 bytes, plus one allocation for its id,
/// title and (up to [`INLINE_SOURCES`]) source numbers together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Article {
    /// The id, then the title (if `has_title`), then `inline_sources`
    /// source numbers (little-endian `u32`, sorted). Empty for a vacant slot.
    text: Box<[u8]>,
    /// All source numbers, once there are more than [`INLINE_SOURCES`].
    /// Boxed so that the common case costs 8 bytes, not a whole set's 48.
    #[allow(clippy::box_collection)]
    many_sources: Option<Box<HashSet<u32>>>,
    /// Event time of the `article_published` event the title came from: the
    /// latest one wins, whatever order they arrive in.
    pub title_at: Micros,
    /// Earliest and latest event time counted ([`NO_TIME`] before the first).
    pub first_event_at: Micros,
    pub last_event_at: Micros,
    /// The counts of the counters distinct by event id ([`TALLY_SLOT`]);
    /// the count by source id is the size of the source set. Far below
    /// `u32::MAX` for any article (each counted event also holds a 9-byte
    /// fingerprint for a whole horizon); they saturate rather than wrap.
    tallies: [u32; TALLIED],
    /// Version of the last totals row written; 0 before the first.
    pub version: u32,
    /// Whether the article changed since its last totals row.
    pub changed: bool,
    /// Length of the id at the start of `text` (ids have 1 to 128 bytes).
    id_len: u8,
    has_title: bool,
    inline_sources: u8,
}

impl Article {
    pub(crate) fn new(id: &str) -> Self {
        Article {
            text: id.as_bytes().into(),
            many_sources: None,
            title_at: NO_TIME,
            first_event_at: NO_TIME,
            last_event_at: NO_TIME,
            tallies: [0; TALLIED],
            version: 0,
            changed: false,
            id_len: u8::try_from(id.len()).expect("article ids are at most 128 bytes"),
            has_title: false,
            inline_sources: 0,
        }
    }

    /// The article's count of `counter`.
    pub(crate) fn count(&self, counter: Counter) -> u32 {
        match TALLY_SLOT[counter as usize] {
            Some(slot) => self.tallies[slot],
            None => self.source_count() as u32,
        }
    }

    /// Counts one more event of a counter distinct by event id.
    pub(crate) fn add_one(&mut self, counter: Counter) {
        let slot = TALLY_SLOT[counter as usize].expect("a counter distinct by event id");
        self.tallies[slot] = self.tallies[slot].saturating_add(1);
    }

    /// Sets the count of a counter distinct by event id (from a persisted
    /// record); false for the count by source id, which the sources hold.
    pub(crate) fn set_count(&mut self, counter: Counter, n: u32) -> bool {
        match TALLY_SLOT[counter as usize] {
            Some(slot) => {
                self.tallies[slot] = n;
                true
            }
            None => false,
        }
    }

    fn sources_at(&self) -> usize {
        self.text.len() - 4 * usize::from(self.inline_sources)
    }

    pub(crate) fn id_bytes(&self) -> &[u8] {
        &self.text[..usize::from(self.id_len)]
    }

    pub(crate) fn id(&self) -> &str {
        std::str::from_utf8(self.id_bytes()).expect("built from a str")
    }

    pub(crate) fn title(&self) -> Option<&str> {
        self.has_title.then(|| {
            std::str::from_utf8(&self.text[usize::from(self.id_len)..self.sources_at()])
                .expect("built from a str")
        })
    }

    /// Rebuilds the text with a new title and/or inline sources.
    fn rebuild(&mut self, title: Option<&str>, inline: &[u32]) {
        let title_len = title.map_or(0, str::len);
        let mut text = Vec::with_capacity(usize::from(self.id_len) + title_len + 4 * inline.len());
        text.extend_from_slice(self.id_bytes());
        text.extend_from_slice(title.unwrap_or_default().as_bytes());
        for number in inline {
            text.extend_from_slice(&number.to_le_bytes());
        }
        self.text = text.into_boxed_slice();
        self.has_title = title.is_some();
        self.inline_sources = u8::try_from(inline.len()).expect("at most INLINE_SOURCES");
    }

    fn inline(&self) -> Vec<u32> {
        self.text[self.sources_at()..]
            .chunks_exact(4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    }

    pub(crate) fn set_title(&mut self, title: &str) {
        let inline = self.inline();
        self.rebuild(Some(title), &inline);
    }

    /// The number of distinct sources.
    pub(crate) fn source_count(&self) -> usize {
        self.many_sources
            .as_ref()
            .map_or(usize::from(self.inline_sources), |many| many.len())
    }

    /// The source numbers, sorted.
    pub(crate) fn sources(&self) -> Vec<u32> {
        match &self.many_sources {
            None => self.inline(),
            Some(many) => {
                let mut all: Vec<u32> = many.iter().copied().collect();
                all.sort_unstable();
                all
            }
        }
    }

    /// Adds source number `source`; false if the article already had it.
    pub(crate) fn add_source(&mut self, source: u32) -> bool {
        if let Some(many) = &mut self.many_sources {
            return many.insert(source);
        }
        let mut inline = self.inline();
        let Err(at) = inline.binary_search(&source) else {
            return false;
        };
        inline.insert(at, source);
        let title = self.title().map(str::to_owned);
        if inline.len() > INLINE_SOURCES {
            self.many_sources = Some(Box::new(inline.into_iter().collect()));
            self.rebuild(title.as_deref(), &[]);
        } else {
            self.rebuild(title.as_deref(), &inline);
        }
        true
    }

    pub(crate) fn is_vacant(&self) -> bool {
        self.text.is_empty()
    }

    /// Bytes of heap this article owns.
    fn heap_bytes(&self) -> usize {
        self.text.len() + self.many_sources.as_ref().map_or(0, |m| m.capacity() * 5)
    }
}

/// The hash of an article id, shared by the index, the cold index and the
/// dedup fingerprints, so an event's article id is hashed once.
pub(crate) fn article_hash(article_id: &str) -> u64 {
    xxh3_64(article_id.as_bytes())
}

const CHUNK: usize = 4096;

/// The articles in memory, by slot number.
#[derive(Clone, Debug, Default)]
pub(crate) struct ArticleTable {
    chunks: Vec<Vec<Article>>,
    index: HashTable<u32>,
    vacant: Vec<u32>,
}

impl ArticleTable {
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    pub(crate) fn get(&self, slot: u32) -> &Article {
        let slot = slot as usize;
        &self.chunks[slot / CHUNK][slot % CHUNK]
    }

    pub(crate) fn get_mut(&mut self, slot: u32) -> &mut Article {
        let slot = slot as usize;
        &mut self.chunks[slot / CHUNK][slot % CHUNK]
    }

    /// The slot of `article_id`, whose [`article_hash`] is `hash`.
    pub(crate) fn find(&self, hash: u64, article_id: &str) -> Option<u32> {
        let chunks = &self.chunks;
        self.index
            .find(hash, |&slot| {
                let slot = slot as usize;
                chunks[slot / CHUNK][slot % CHUNK].id_bytes() == article_id.as_bytes()
            })
            .copied()
    }

    /// Stores a new article (absent until now) and returns its slot.
    pub(crate) fn insert(&mut self, hash: u64, article: Article) -> u32 {
        debug_assert!(!article.is_vacant());
        let slot = match self.vacant.pop() {
            Some(slot) => {
                *self.get_mut(slot) = article;
                slot
            }
            None => self.push_slot(article),
        };
        index_slot(&mut self.index, &self.chunks, hash, slot);
        slot
    }

    /// Adds a slot after the last one, holding `article`.
    fn push_slot(&mut self, article: Article) -> u32 {
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let slot = (self.chunks.len() - 1) * CHUNK + self.chunks.last().map_or(0, Vec::len);
        self.chunks.last_mut().expect("a chunk").push(article);
        u32::try_from(slot).expect("fewer than 2^32 articles in one shard")
    }

    /// Takes the article out of `slot`, leaving it vacant for reuse.
    pub(crate) fn remove(&mut self, slot: u32) -> Article {
        let article = std::mem::take(self.get_mut(slot));
        if let Ok(entry) = self
            .index
            .find_entry(article_hash(article.id()), |&s| s == slot)
        {
            entry.remove();
        }
        self.vacant.push(slot);
        article
    }

    /// Puts `article` (vacant or not) in `slot`, whatever was there,
    /// adding vacant slots up to it: for applying a checkpoint's changes.
    /// [`ArticleTable::settle`] must follow before the table is used.
    pub(crate) fn overwrite(&mut self, slot: u32, article: Article) {
        let total: usize = self.chunks.iter().map(Vec::len).sum();
        for _ in total..=slot as usize {
            self.push_slot(Article::default());
        }
        let old = std::mem::replace(self.get_mut(slot), article);
        if !old.is_vacant() {
            if let Ok(entry) = self
                .index
                .find_entry(article_hash(old.id()), |&s| s == slot)
            {
                entry.remove();
            }
        }
        if !self.get(slot).is_vacant() {
            let hash = article_hash(self.get(slot).id());
            index_slot(&mut self.index, &self.chunks, hash, slot);
        }
    }

    /// Lists the vacant slots (again, after [`ArticleTable::overwrite`]),
    /// so that low slots are reused first, as a fresh table would.
    pub(crate) fn settle(&mut self) {
        let mut vacant: Vec<u32> = self
            .all_slots()
            .filter(|(_, a)| a.is_vacant())
            .map(|(slot, _)| slot)
            .collect();
        vacant.reverse();
        self.vacant = vacant;
    }

    /// Occupied slots with their articles.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u32, &Article)> + '_ {
        self.all_slots().filter(|(_, a)| !a.is_vacant())
    }

    /// Every slot, vacant ones included, in slot order: the persisted form,
    /// which keeps slot numbers (the open windows refer to them).
    pub(crate) fn all_slots(&self) -> impl ExactSizeIterator<Item = (u32, &Article)> + '_ {
        SlotIter {
            chunks: &self.chunks,
            next: 0,
            total: self.chunks.iter().map(Vec::len).sum(),
        }
    }

    /// Rebuilds a table from its persisted slots.
    pub(crate) fn from_slots(slots: Vec<Article>) -> Self {
        let mut table = ArticleTable::default();
        let mut slots = slots.into_iter();
        loop {
            let mut chunk = Vec::with_capacity(CHUNK);
            chunk.extend(slots.by_ref().take(CHUNK));
            if chunk.is_empty() {
                break;
            }
            table.chunks.push(chunk);
        }
        for (slot, article) in table.chunks.iter().flatten().enumerate() {
            if !article.is_vacant() {
                let hash = article_hash(article.id());
                index_slot(&mut table.index, &table.chunks, hash, slot as u32);
            }
        }
        table.settle();
        table
    }

    /// Approximate heap bytes: records, index, and the strings they own.
    pub(crate) fn heap_bytes(&self) -> usize {
        let records = self.chunks.len() * CHUNK * std::mem::size_of::<Article>();
        let index = self.index.capacity() * (std::mem::size_of::<u32>() + 1);
        let owned: usize = self.iter().map(|(_, a)| a.heap_bytes()).sum();
        records + index + owned
    }
}

/// Makes the article in `slot`, whose id hashes to `hash`, findable: adds
/// the slot to `index`, which rehashes other slots' ids from `chunks` when
/// it grows. (A function, not a method, so that a caller iterating the
/// chunks can borrow the index alongside.)
fn index_slot(index: &mut HashTable<u32>, chunks: &[Vec<Article>], hash: u64, slot: u32) {
    index.insert_unique(hash, slot, |&s| {
        let s = s as usize;
        article_hash(chunks[s / CHUNK][s % CHUNK].id())
    });
}

struct SlotIter<'a> {
    chunks: &'a [Vec<Article>],
    next: usize,
    total: usize,
}

impl<'a> Iterator for SlotIter<'a> {
    type Item = (u32, &'a Article);

    fn next(&mut self) -> Option<Self::Item> {
        if self.next == self.total {
            return None;
        }
        let slot = self.next;
        self.next += 1;
        Some((slot as u32, &self.chunks[slot / CHUNK][slot % CHUNK]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.total - self.next, Some(self.total - self.next))
    }
}

impl ExactSizeIterator for SlotIter<'_> {}

/// Source names, lower-cased, each stored once per shard and referred to
/// by number.
#[derive(Clone, Debug, Default)]
pub(crate) struct SourceNames {
    names: Vec<Box<str>>,
    numbers: hashbrown::HashMap<Box<str>, u32>,
}

impl SourceNames {
    /// The number of `source_id`, compared case-insensitively.
    pub(crate) fn number(&mut self, source_id: &str) -> u32 {
        let lowered;
        // Only ASCII without capitals is sure to be its own lower case.
        let name = if source_id
            .bytes()
            .any(|b| b.is_ascii_uppercase() || !b.is_ascii())
        {
            lowered = source_id.to_lowercase();
            lowered.as_str()
        } else {
            source_id
        };
        if let Some(number) = self.numbers.get(name) {
            return *number;
        }
        let number = u32::try_from(self.names.len()).expect("fewer than 2^32 sources");
        self.names.push(name.into());
        self.numbers.insert(name.into(), number);
        number
    }

    pub(crate) fn name(&self, number: u32) -> &str {
        &self.names[number as usize]
    }

    pub(crate) fn names(&self) -> &[Box<str>] {
        &self.names
    }

    /// Adds a name known to be lower-cased, as the next number; false if it
    /// is held already.
    pub(crate) fn push_new(&mut self, name: Box<str>) -> bool {
        if self.numbers.contains_key(&name) {
            return false;
        }
        let number = u32::try_from(self.names.len()).expect("fewer than 2^32 sources");
        self.numbers.insert(name.clone(), number);
        self.names.push(name);
        true
    }

    pub(crate) fn from_names(names: Vec<Box<str>>) -> Self {
        let numbers = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.clone(), i as u32))
            .collect();
        SourceNames { names, numbers }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_articles_across_chunks_and_reuses_vacant_slots() {
        let mut table = ArticleTable::default();
        let ids: Vec<String> = (0..10_000).map(|i| format!("a-{i}")).collect();
        for id in &ids {
            table.insert(article_hash(id), Article::new(id));
        }
        assert_eq!(table.len(), ids.len());
        let gone = table.find(article_hash("a-5000"), "a-5000").unwrap();
        assert_eq!(table.remove(gone).id(), "a-5000");
        assert_eq!(table.find(article_hash("a-5000"), "a-5000"), None);
        let again = table.insert(article_hash("new"), Article::new("new"));
        assert_eq!(again, gone, "the vacant slot is reused");

        let restored =
            ArticleTable::from_slots(table.all_slots().map(|(_, a)| a.clone()).collect());
        for id in ids
            .iter()
            .filter(|id| *id != "a-5000")
            .chain([&"new".to_string()])
        {
            let slot = restored.find(article_hash(id), id).unwrap();
            assert_eq!(restored.get(slot).id(), id.as_str());
            assert_eq!(Some(slot), table.find(article_hash(id), id));
        }
        assert_eq!(restored.len(), table.len());
    }

    #[test]
    fn an_article_keeps_id_title_and_sources_through_every_change() {
        // 56 bytes and 4 per counter kept as a number (64 with today's
        // two): a field added by accident shows here.
        let expected = (56 + 4 * TALLIED).next_multiple_of(8);
        assert_eq!(std::mem::size_of::<Article>(), expected);
        let mut article = Article::new("a-1");
        assert_eq!((article.id(), article.title()), ("a-1", None));
        let mut expected = std::collections::BTreeSet::new();
        // Past INLINE_SOURCES the sources move to a set; the title is
        // replaced on the way, and repeats are refused throughout.
        for (i, n) in [7u32, 3, 3, 900, 1, 7]
            .into_iter()
            .chain((0..40).map(|k| k * 37 % 101))
            .enumerate()
        {
            assert_eq!(article.add_source(n), expected.insert(n), "source {n}");
            assert_eq!(article.source_count(), expected.len());
            assert_eq!(
                article.sources(),
                expected.iter().copied().collect::<Vec<_>>()
            );
            if i % 9 == 0 {
                article.set_title(&format!("Titel {i} – ü"));
            }
            assert_eq!(article.id(), "a-1");
        }
        assert_eq!(article.title(), Some("Titel 45 – ü"));
        assert!(article.many_sources.is_some());
    }

    #[test]
    fn source_names_are_case_insensitive_and_numbered_once() {
        let mut names = SourceNames::default();
        let a = names.number("Tagesschau.de");
        assert_eq!(names.number("tagesschau.de"), a);
        assert_ne!(names.number("ÖRF.at"), a);
        assert_eq!(names.number("örf.at"), names.number("ÖRF.AT"));
        assert_eq!(names.name(a), "tagesschau.de");
    }
}
