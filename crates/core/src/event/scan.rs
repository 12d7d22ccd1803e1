//! The fast path of decoding: one pass over the bytes of an event as
//! producers write it (a flat object of strings without escapes, integers
//! and nulls), without allocating: the event's strings borrow from the
//! text.
//!
//! It only ever accepts. Whatever it does not recognise, and every event
//! that fails a check, goes to the general parser in `mod.rs`, which finds
//! the rejection and its reason. So the fast path needs to be right about
//! one thing only: when it returns an event, the general parser returns the
//! same one. The differential tests (`tests/decode_mutations.rs`) and the
//! fuzz target hold it to that.
//!
//! The general parser took about a fifth of the worker's CPU: UTF-8 check,
//! nesting scan, a serde pass that borrowed every field as raw JSON, then a
//! second parse of each field (see `docs/benchmarks.md`).

use std::borrow::Cow;

use super::{
    check_article_id, Event, EventBody, EventType, MAX_ID_CHARS, MAX_SOURCE_ID_CHARS,
    MAX_TEXT_CHARS, MAX_TITLE_CHARS, SCHEMA_VERSION,
};
use crate::time;

/// A field's value, as far as the fast path reads it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Scalar<'a> {
    /// A string without escapes: its text between the quotes.
    Str(&'a str),
    /// An integer that fits 18 digits.
    Int(i64),
    Null,
    /// `true` or `false`: fine in an unknown field, never in a known one.
    Bool,
}

/// How many fields an event may carry: the variants of [`Field`].
const FIELD_COUNT: usize = 16;

/// A field an event may carry; its value is its place in [`Fields`].
#[derive(Clone, Copy)]
enum Field {
    SchemaVersion,
    EventId,
    EventType,
    ArticleId,
    OccurredAt,
    Title,
    Url,
    Section,
    Language,
    Author,
    SourceId,
    SourceUrl,
    Platform,
    AuthorId,
    Forum,
    ThreadId,
}

fn known(key: &str) -> Option<Field> {
    Some(match key {
        "schema_version" => Field::SchemaVersion,
        "event_id" => Field::EventId,
        "event_type" => Field::EventType,
        "article_id" => Field::ArticleId,
        "occurred_at" => Field::OccurredAt,
        "title" => Field::Title,
        "url" => Field::Url,
        "section" => Field::Section,
        "language" => Field::Language,
        "author" => Field::Author,
        "source_id" => Field::SourceId,
        "source_url" => Field::SourceUrl,
        "platform" => Field::Platform,
        "author_id" => Field::AuthorId,
        "forum" => Field::Forum,
        "thread_id" => Field::ThreadId,
        _ => return None,
    })
}

/// The known fields of one object; `None` where absent.
struct Fields<'a>([Option<Scalar<'a>>; FIELD_COUNT]);

impl<'a> Fields<'a> {
    fn get(&self, field: Field) -> Option<Scalar<'a>> {
        self.0[field as usize]
    }

    /// A present, non-null string.
    fn required(&self, field: Field) -> Option<&'a str> {
        match self.get(field)? {
            Scalar::Str(text) => Some(text),
            _ => None,
        }
    }

    /// A required string of `min` to `max` characters.
    fn bounded(&self, field: Field, min: usize, max: usize) -> Option<Cow<'a, str>> {
        let text = self.required(field)?;
        within(text, min, max).then_some(Cow::Borrowed(text))
    }

    /// An optional string of at most [`MAX_TEXT_CHARS`] characters:
    /// `Some(None)` when absent or null, `None` when the general parser
    /// must decide.
    fn optional(&self, field: Field) -> Option<Option<Cow<'a, str>>> {
        match self.get(field) {
            None | Some(Scalar::Null) => Some(None),
            Some(Scalar::Str(text)) => {
                within(text, 0, MAX_TEXT_CHARS).then_some(Some(Cow::Borrowed(text)))
            }
            Some(_) => None,
        }
    }
}

/// Whether `text` has `min` to `max` characters, as the general parser
/// counts them.
fn within(text: &str, min: usize, max: usize) -> bool {
    (min..=max).contains(&text.chars().count())
}

/// The event in `text` when it is simple and valid; `None` sends it to the
/// general parser. `text` is already known to be UTF-8 within the size
/// limit.
pub(super) fn simple_event(text: &str) -> Option<Event<'_>> {
    let fields = scan(text)?;
    match fields.get(Field::SchemaVersion)? {
        Scalar::Int(SCHEMA_VERSION) => {}
        _ => return None,
    }
    let event_type = EventType::parse(fields.required(Field::EventType)?)?;
    let event_id = fields.required(Field::EventId)?;
    if !within(event_id, 1, MAX_ID_CHARS) {
        return None;
    }
    let article_id = fields.required(Field::ArticleId)?;
    check_article_id(article_id).ok()?;
    let occurred_at = time::parse_rfc3339(fields.required(Field::OccurredAt)?).ok()?;
    if !(time::EARLIEST_ACCEPTED..time::LATEST_ACCEPTED).contains(&occurred_at) {
        return None;
    }
    let body = match event_type {
        EventType::ArticlePublished => EventBody::ArticlePublished {
            title: fields.bounded(Field::Title, 0, MAX_TITLE_CHARS)?,
            url: fields.bounded(Field::Url, 1, MAX_TEXT_CHARS)?,
            section: fields.optional(Field::Section)?,
            language: fields.optional(Field::Language)?,
            author: fields.optional(Field::Author)?,
        },
        EventType::SourceConfirmed => EventBody::SourceConfirmed {
            source_id: fields.bounded(Field::SourceId, 1, MAX_SOURCE_ID_CHARS)?,
            source_url: fields.optional(Field::SourceUrl)?,
        },
        EventType::SocialComment => EventBody::SocialComment {
            platform: fields.bounded(Field::Platform, 1, MAX_TEXT_CHARS)?,
            author_id: fields.optional(Field::AuthorId)?,
        },
        EventType::ForumPost => EventBody::ForumPost {
            forum: fields.bounded(Field::Forum, 1, MAX_TEXT_CHARS)?,
            thread_id: fields.optional(Field::ThreadId)?,
            author_id: fields.optional(Field::AuthorId)?,
        },
    };
    Some(Event {
        event_id: Cow::Borrowed(event_id),
        article_id: Cow::Borrowed(article_id),
        occurred_at,
        body,
    })
}

/// Reads a flat JSON object whose keys and strings have no escapes and
/// whose numbers are integers. `None` for anything else, including a known
/// field given twice (the general parser rejects that; an unknown one
/// twice it ignores, and so does this).
fn scan(text: &str) -> Option<Fields<'_>> {
    let mut reader = Reader { text, at: 0 };
    let mut fields = Fields([None; FIELD_COUNT]);
    reader.skip_whitespace();
    reader.expect(b'{')?;
    reader.skip_whitespace();
    if reader.peek() == Some(b'}') {
        reader.at += 1;
    } else {
        loop {
            let key = reader.string()?;
            reader.skip_whitespace();
            reader.expect(b':')?;
            reader.skip_whitespace();
            let value = reader.scalar()?;
            if let Some(field) = known(key) {
                let slot = &mut fields.0[field as usize];
                if slot.is_some() || value == Scalar::Bool {
                    return None;
                }
                *slot = Some(value);
            }
            reader.skip_whitespace();
            match reader.next()? {
                b',' => reader.skip_whitespace(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    reader.skip_whitespace();
    (reader.at == reader.text.len()).then_some(fields)
}

struct Reader<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Reader<'a> {
    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes().get(self.at).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let byte = self.peek()?;
        self.at += 1;
        Some(byte)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    /// JSON's four whitespace characters.
    fn skip_whitespace(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    /// A string without escapes or control characters: its text.
    fn string(&mut self) -> Option<&'a str> {
        self.expect(b'"')?;
        let start = self.at;
        let rest = &self.bytes()[start..];
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        // An escape is for the general parser, and so is a control
        // character, which JSON does not allow unescaped (checked without
        // an early exit, so that it runs on whole words).
        if rest[end] != b'"' || rest[..end].iter().fold(false, |bad, &b| bad | (b < 0x20)) {
            return None;
        }
        self.at = start + end + 1;
        // Both ends sit next to an ASCII quote, so they are character
        // boundaries of the UTF-8 text.
        self.text.get(start..start + end)
    }

    fn scalar(&mut self) -> Option<Scalar<'a>> {
        let value = match self.peek()? {
            b'"' => Scalar::Str(self.string()?),
            b'-' | b'0'..=b'9' => Scalar::Int(self.integer()?),
            b'n' => self.literal(b"null", Scalar::Null)?,
            b't' => self.literal(b"true", Scalar::Bool)?,
            b'f' => self.literal(b"false", Scalar::Bool)?,
            _ => return None,
        };
        // A value ends at whitespace, a comma or the closing brace; a
        // fraction, an exponent or anything else is for the general parser.
        match self.peek()? {
            b' ' | b'\t' | b'\n' | b'\r' | b',' | b'}' => Some(value),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8], value: Scalar<'a>) -> Option<Scalar<'a>> {
        let end = self.at + word.len();
        (self.bytes().get(self.at..end)? == word).then(|| {
            self.at = end;
            value
        })
    }

    /// `-?(0|[1-9][0-9]*)` of at most 18 digits, so it fits an `i64`.
    fn integer(&mut self) -> Option<i64> {
        let negative = self.peek() == Some(b'-');
        if negative {
            self.at += 1;
        }
        let start = self.at;
        let mut value: i64 = 0;
        while let Some(digit @ b'0'..=b'9') = self.peek() {
            if self.at - start == 18 {
                return None;
            }
            value = value * 10 + i64::from(digit - b'0');
            self.at += 1;
        }
        let digits = self.at - start;
        if digits == 0 || (digits > 1 && self.bytes()[start] == b'0') {
            return None;
        }
        Some(if negative { -value } else { value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_producers_event() {
        let text = r#"{"schema_version":1,"event_id":"e-1","event_type":"forum_post","article_id":"a-1","occurred_at":"2026-11-01T09:00:00Z","forum":"f","thread_id":null,"extra":[1]}"#;
        // An unknown field holding an array is for the general parser.
        assert!(simple_event(text).is_none());
        let text = text.replace(r#","extra":[1]"#, r#", "extra" : true , "n": -12 "#);
        let event = simple_event(&text).expect("simple");
        assert_eq!(event.event_id, "e-1");
        // Borrowed from the text: the worker decodes without allocating.
        assert!(matches!(event.event_id, Cow::Borrowed(_)));
        assert!(matches!(event.article_id, Cow::Borrowed(_)));
        assert!(matches!(
            event.body,
            EventBody::ForumPost {
                forum: Cow::Borrowed(_),
                ..
            }
        ));
        assert_eq!(
            event.body,
            EventBody::ForumPost {
                forum: "f".into(),
                thread_id: None,
                author_id: None
            }
        );
    }

    #[test]
    fn leaves_the_unusual_to_the_general_parser() {
        let base = r#"{"schema_version":1,"event_id":"e-1","event_type":"social_comment","article_id":"a-1","occurred_at":"2026-11-01T09:00:00Z","platform":"x"}"#;
        assert!(simple_event(base).is_some());
        for unusual in [
            base.replace(r#""x""#, r#""\u0078""#), // an escape
            base.replace(r#""schema_version":1"#, r#""schema_version":1.0"#), // a fraction
            base.replace(r#""schema_version":1"#, r#""schema_version":01"#), // a leading zero
            base.replace(r#""platform":"x""#, r#""platform":"x","platform":"y""#), // twice
            base.replace(r#""platform":"x""#, r#""platform":true"#), // a known field as a boolean
            format!("{base} x"),                   // trailing text
            base.replace('}', ""),                 // unterminated
            base.replace(r#""x""#, "\"\t\""),      // a control character
        ] {
            assert!(simple_event(&unusual).is_none(), "{unusual}");
        }
    }
}
