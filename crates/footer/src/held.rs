//! The current footer of every article, held compactly enough for a pod:
//! at 100 million articles (`docs/scaling.md`) a `HashMap<String, Row>`
//! of owned rows would take tens of gigabytes.
//!
//! - An article is one fixed-size [`Entry`] in a vector: its counts as
//!   `u32` (the worker counts in `u32` too), its version, and where its id
//!   and title are in the text arena.
//! - Ids and titles live back to back in an arena of 1 MiB chunks that
//!   never move, so growing it copies nothing and wastes at most the end
//!   of one chunk, where a doubling `Vec` would hold up to twice the text.
//! - The index from id to entry is a `hashbrown::HashTable` of `u32` entry
//!   numbers, hashed by the id it points to: 4 bytes and a control byte per
//!   slot instead of a second copy of the id.
//!
//! A title that changes (it arrives after the counts) is written anew in
//! the arena and its old bytes are left behind; they are few (a title is
//! set about once per article) and go at the next full load.

use std::hash::BuildHasher;

use hashbrown::{DefaultHashBuilder, HashTable};
use newsflow_core::counted::COUNTER_COUNT;
use newsflow_lake::FooterRow;
use newsflow_telemetry::SkippedRow;

/// The longest title an event may carry, in bytes of UTF-8 (1000
/// characters of up to four bytes): a longer one did not come from a
/// valid event.
const MAX_TITLE_BYTES: usize = 4000;

/// Bytes per arena chunk.
const CHUNK: usize = 1 << 20;

/// `Entry::title_len` of an article without a title.
const NO_TITLE: u16 = u16::MAX;

/// One article's footer, 32 bytes.
#[derive(Clone, Copy, Debug)]
struct Entry {
    /// Where its id, then its title, start in the arena.
    text: TextAt,
    id_len: u8,
    title_len: u16,
    counts: [u32; COUNTER_COUNT],
    version: u64,
}

/// A place in the arena: chunk and offset.
#[derive(Clone, Copy, Debug)]
struct TextAt {
    chunk: u32,
    offset: u32,
}

/// One article's footer as the API answers it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Footer<'a> {
    /// The article.
    pub article_id: &'a str,
    /// Its title, once published.
    pub title: Option<&'a str>,
    /// Its counts, in the order of `COUNTERS`.
    pub counts: [u32; COUNTER_COUNT],
    /// The version of the row it comes from.
    pub version: u64,
}

/// What applying one row did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A new article.
    Added,
    /// A newer footer of an article held.
    Updated,
    /// The row is not newer than the footer held (a row read again).
    Older,
    /// The row is not a footer.
    Skipped(SkippedRow),
}

/// The footers held.
#[derive(Default)]
pub struct Footers {
    entries: Vec<Entry>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    chunks: Vec<Vec<u8>>,
}

impl Footers {
    /// No footers.
    pub fn new() -> Footers {
        Footers::default()
    }

    /// Articles held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Bytes of memory held: entries, index and arena, as allocated.
    pub fn heap_bytes(&self) -> usize {
        self.entries.capacity() * size_of::<Entry>()
            + self.index.capacity() * (size_of::<u32>() + 1)
            + self.chunks.iter().map(Vec::capacity).sum::<usize>()
    }

    /// Gives back what growing left unused: after a full load, the
    /// entries' vector may hold up to twice the room it needs.
    pub fn shrink_to_fit(&mut self) {
        self.entries.shrink_to_fit();
        let (entries, chunks, hasher) = (&self.entries, &self.chunks, &self.hasher);
        self.index.shrink_to_fit(|&at| {
            let entry = &entries[at as usize];
            hasher.hash_one(id_str(chunks, entry))
        });
    }

    /// The footer of `article_id`, if held.
    pub fn get(&self, article_id: &str) -> Option<Footer<'_>> {
        let hash = self.hasher.hash_one(article_id);
        let at = *self.index.find(hash, |&at| {
            self.id_of(&self.entries[at as usize]) == article_id
        })?;
        Some(self.footer_of(&self.entries[at as usize]))
    }

    /// Takes `row` if it is newer than the article's footer held.
    pub fn apply(&mut self, row: &FooterRow<'_>) -> Applied {
        let (counts, version) = match checked(row) {
            Ok(numbers) => numbers,
            Err(reason) => return Applied::Skipped(reason),
        };
        let hash = self.hasher.hash_one(row.article_id);
        let (entries, chunks) = (&self.entries, &self.chunks);
        let found = self.index.find(hash, |&at| {
            text_of(
                chunks,
                &entries[at as usize],
                0,
                entries[at as usize].id_len as usize,
            ) == row.article_id.as_bytes()
        });
        let Some(&at) = found else {
            self.add(hash, row, counts, version);
            return Applied::Added;
        };
        let entry = self.entries[at as usize];
        if version <= entry.version {
            return Applied::Older;
        }
        let same_title = self.footer_of(&entry).title == row.title;
        let mut updated = Entry {
            counts,
            version,
            ..entry
        };
        if !same_title {
            let (text, title_len) = self.store_text(row.article_id, row.title);
            updated.text = text;
            updated.title_len = title_len;
        }
        self.entries[at as usize] = updated;
        Applied::Updated
    }

    fn add(&mut self, hash: u64, row: &FooterRow<'_>, counts: [u32; COUNTER_COUNT], version: u64) {
        let (text, title_len) = self.store_text(row.article_id, row.title);
        let at = u32::try_from(self.entries.len()).expect("fewer than 4 billion articles held");
        self.entries.push(Entry {
            text,
            id_len: row.article_id.len() as u8,
            title_len,
            counts,
            version,
        });
        let (entries, chunks, hasher) = (&self.entries, &self.chunks, &self.hasher);
        self.index.insert_unique(hash, at, |&at| {
            let entry = &entries[at as usize];
            hasher.hash_one(
                std::str::from_utf8(text_of(chunks, entry, 0, entry.id_len as usize)).unwrap_or(""),
            )
        });
    }

    /// Writes `id` and `title` back to back into the arena.
    fn store_text(&mut self, id: &str, title: Option<&str>) -> (TextAt, u16) {
        let title_bytes = title.map_or(0, str::len);
        let needed = id.len() + title_bytes;
        let fits = self
            .chunks
            .last()
            .is_some_and(|chunk| chunk.capacity() - chunk.len() >= needed);
        if !fits {
            self.chunks.push(Vec::with_capacity(CHUNK.max(needed)));
        }
        let chunk_number = self.chunks.len() - 1;
        let chunk = self.chunks.last_mut().expect("a chunk was just ensured");
        let offset = chunk.len();
        chunk.extend_from_slice(id.as_bytes());
        if let Some(title) = title {
            chunk.extend_from_slice(title.as_bytes());
        }
        let at = TextAt {
            chunk: chunk_number as u32,
            offset: offset as u32,
        };
        (at, title.map_or(NO_TITLE, |t| t.len() as u16))
    }

    fn id_of(&self, entry: &Entry) -> &str {
        self.text(entry, 0, entry.id_len as usize)
    }

    fn footer_of<'a>(&'a self, entry: &Entry) -> Footer<'a> {
        let id_len = entry.id_len as usize;
        let title = (entry.title_len != NO_TITLE)
            .then(|| self.text(entry, id_len, id_len + entry.title_len as usize));
        Footer {
            article_id: self.id_of(entry),
            title,
            counts: entry.counts,
            version: entry.version,
        }
    }

    fn text(&self, entry: &Entry, from: usize, to: usize) -> &str {
        // Only whole `&str`s are written, and these bounds are theirs.
        std::str::from_utf8(text_of(&self.chunks, entry, from, to)).unwrap_or("")
    }
}

/// The id of `entry`, hashed the way lookups hash theirs (as a `str`).
fn id_str<'a>(chunks: &'a [Vec<u8>], entry: &Entry) -> &'a str {
    std::str::from_utf8(text_of(chunks, entry, 0, entry.id_len as usize)).unwrap_or("")
}

fn text_of<'a>(chunks: &'a [Vec<u8>], entry: &Entry, from: usize, to: usize) -> &'a [u8] {
    let start = entry.text.offset as usize;
    &chunks[entry.text.chunk as usize][start + from..start + to]
}

/// The row's counts and version as held, or why it is not a footer.
fn checked(row: &FooterRow<'_>) -> Result<([u32; COUNTER_COUNT], u64), SkippedRow> {
    if newsflow_core::event::check_article_id(row.article_id).is_err() {
        return Err(SkippedRow::InvalidId);
    }
    if row.title.is_some_and(|t| t.len() > MAX_TITLE_BYTES) {
        return Err(SkippedRow::TitleTooLong);
    }
    let version = u64::try_from(row.version).map_err(|_| SkippedRow::OutOfRange)?;
    let mut counts = [0u32; COUNTER_COUNT];
    for (held, read) in counts.iter_mut().zip(row.counts) {
        *held = u32::try_from(read).map_err(|_| SkippedRow::OutOfRange)?;
    }
    Ok((counts, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row<'a>(
        id: &'a str,
        title: Option<&'a str>,
        counts: [i64; 3],
        version: i64,
    ) -> FooterRow<'a> {
        FooterRow {
            article_id: id,
            title,
            counts,
            version,
        }
    }

    #[test]
    fn the_highest_version_of_an_article_is_its_footer() {
        let mut footers = Footers::new();
        assert_eq!(
            footers.apply(&row("a-1", None, [1, 2, 3], 2)),
            Applied::Added
        );
        assert_eq!(
            footers.apply(&row("a-1", None, [0, 0, 0], 1)),
            Applied::Older
        );
        assert_eq!(
            footers.apply(&row("a-1", None, [1, 2, 3], 2)),
            Applied::Older
        );
        assert_eq!(
            footers.apply(&row("a-1", Some("Die Meldung"), [16, 166, 37], 9)),
            Applied::Updated
        );
        assert_eq!(
            footers.apply(&row("b:2", None, [0, 1, 0], 1)),
            Applied::Added
        );
        let footer = footers.get("a-1").unwrap();
        assert_eq!(footer.title, Some("Die Meldung"));
        assert_eq!(footer.counts, [16, 166, 37]);
        assert_eq!(footer.version, 9);
        assert_eq!(footers.get("b:2").unwrap().counts, [0, 1, 0]);
        assert_eq!(footers.get("b:2").unwrap().title, None);
        assert!(footers.get("c").is_none());
        assert_eq!(footers.len(), 2);
    }

    #[test]
    fn rows_that_are_not_footers_are_skipped_by_reason() {
        let mut footers = Footers::new();
        let skipped = |r| Applied::Skipped(r);
        assert_eq!(
            footers.apply(&row("..", None, [1, 1, 1], 1)),
            skipped(SkippedRow::InvalidId)
        );
        assert_eq!(
            footers.apply(&row("a b", None, [1, 1, 1], 1)),
            skipped(SkippedRow::InvalidId)
        );
        assert_eq!(
            footers.apply(&row("a", None, [-1, 1, 1], 1)),
            skipped(SkippedRow::OutOfRange)
        );
        assert_eq!(
            footers.apply(&row("a", None, [1, 1, 1 << 40], 1)),
            skipped(SkippedRow::OutOfRange)
        );
        assert_eq!(
            footers.apply(&row("a", None, [1, 1, 1], -3)),
            skipped(SkippedRow::OutOfRange)
        );
        let long = "x".repeat(MAX_TITLE_BYTES + 1);
        assert_eq!(
            footers.apply(&row("a", Some(&long), [1, 1, 1], 1)),
            skipped(SkippedRow::TitleTooLong)
        );
        assert_eq!(footers.len(), 0);
    }

    #[test]
    fn many_articles_are_found_again_across_chunks_and_growth() {
        let mut footers = Footers::new();
        let title = "Ü".repeat(300); // 600 bytes: a chunk holds ~1700
        for n in 0..20_000i64 {
            let id = format!("article-{n}");
            footers.apply(&row(&id, Some(&title), [n, n + 1, n + 2], 1));
        }
        for n in (0..20_000i64).step_by(97) {
            let footer = footers.get(&format!("article-{n}")).unwrap();
            assert_eq!(footer.counts, [n as u32, n as u32 + 1, n as u32 + 2]);
            assert_eq!(footer.title, Some(title.as_str()));
        }
        assert!(footers.chunks.len() > 5);
        assert_eq!(size_of::<Entry>(), 32);
    }
}
