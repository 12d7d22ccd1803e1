//! Events of schema version 1 and their validation.
//!
//! [`decode`] is the single gate every Kafka message passes through, in the
//! producer (before sending) and in the consumer (before counting). It either
//! returns a typed [`Event`] or a [`Rejection`] whose [`RejectReason`] is a
//! stable snake_case code: the code goes into dead-letter headers and metric
//! labels, so codes are never renamed.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

pub use crate::counted::EventType;
use crate::time::{self, Micros};

mod fields;
mod rejection;
mod scan;

pub use fields::check_article_id;
use fields::{optional_string, required, required_bounded, required_string, truncate, wrong_type};
pub use rejection::{RejectReason, Rejection};

/// The schema version this build understands.
pub const SCHEMA_VERSION: i64 = 1;
/// Longest accepted `event_id` and `article_id`, in characters.
pub const MAX_ID_CHARS: usize = 128;
/// Longest accepted `source_id`, in characters (a DNS name's limit).
pub const MAX_SOURCE_ID_CHARS: usize = 253;
/// Longest accepted `title`, in characters.
pub const MAX_TITLE_CHARS: usize = 1000;
/// Longest accepted value of any other string field, in characters.
pub const MAX_TEXT_CHARS: usize = 4096;

/// A validated event. Its strings borrow from the message they were
/// decoded from wherever the JSON holds them without escapes, which is
/// every event producers write: the worker decodes each record without
/// allocating, and copies only what it keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    /// Unique per observation; a redelivery carries the same id.
    pub event_id: Cow<'a, str>,
    /// The article the observation is about; also the Kafka message key.
    pub article_id: Cow<'a, str>,
    /// Event time.
    pub occurred_at: Micros,
    /// The type-specific fields.
    pub body: EventBody<'a>,
}

impl Event<'_> {
    /// The event's type.
    pub fn event_type(&self) -> EventType {
        match self.body {
            EventBody::ArticlePublished { .. } => EventType::ArticlePublished,
            EventBody::SourceConfirmed { .. } => EventType::SourceConfirmed,
            EventBody::SocialComment { .. } => EventType::SocialComment,
            EventBody::ForumPost { .. } => EventType::ForumPost,
        }
    }
}

impl EventBody<'_> {
    /// The key a [`crate::Distinct::SourceId`] counter tells events apart
    /// by: the `source_id`.
    pub fn source_id(&self) -> Option<&str> {
        match self {
            EventBody::SourceConfirmed { source_id, .. } => Some(source_id),
            _ => None,
        }
    }
}

/// The fields that depend on the event type. Optional fields are `None` when
/// absent or null.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(missing_docs)] // the fields are the contract's, documented there
pub enum EventBody<'a> {
    ArticlePublished {
        title: Cow<'a, str>,
        url: Cow<'a, str>,
        section: Option<Cow<'a, str>>,
        language: Option<Cow<'a, str>>,
        author: Option<Cow<'a, str>>,
    },
    SourceConfirmed {
        source_id: Cow<'a, str>,
        source_url: Option<Cow<'a, str>>,
    },
    SocialComment {
        platform: Cow<'a, str>,
        author_id: Option<Cow<'a, str>>,
    },
    ForumPost {
        forum: Cow<'a, str>,
        thread_id: Option<Cow<'a, str>>,
        author_id: Option<Cow<'a, str>>,
    },
}

/// Deepest JSON nesting accepted. Events are flat; the limit exists so that
/// a hostile document cannot make any later reader of the archived payload
/// recurse without bound.
pub const MAX_NESTING: usize = 64;

/// Returns the depth reached if `text` nests arrays or objects deeper than
/// `limit`, scanning bytes once and skipping string contents.
fn nesting_beyond(text: &str, limit: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in text.as_bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Limits applied while decoding. The shipped values come from
/// `newsflow-settings` (`limits.*`); the core has no defaults of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Largest accepted message value, in bytes.
    pub max_message_bytes: usize,
}

/// The wire form: every known field as unparsed JSON, so that each one can
/// be checked with an error that names it. serde's derive rejects duplicate
/// keys and ignores unknown ones, both as the contract wants.
#[derive(Deserialize)]
struct Wire<'a> {
    #[serde(borrow, default)]
    schema_version: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    event_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    article_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    occurred_at: Option<&'a RawValue>,
    #[serde(borrow, default)]
    title: Option<&'a RawValue>,
    #[serde(borrow, default)]
    url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    section: Option<&'a RawValue>,
    #[serde(borrow, default)]
    language: Option<&'a RawValue>,
    #[serde(borrow, default)]
    author: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source_url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    platform: Option<&'a RawValue>,
    #[serde(borrow, default)]
    author_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    forum: Option<&'a RawValue>,
    #[serde(borrow, default)]
    thread_id: Option<&'a RawValue>,
}

/// Decodes and validates one Kafka message.
///
/// `key` is the message key (`None` when the message has none). Pass the
/// article id itself as the key to validate a line that has no Kafka message
/// yet (the producer's `replay` does so).
pub fn decode<'a>(
    key: Option<&[u8]>,
    value: &'a [u8],
    limits: &DecodeLimits,
) -> Result<Event<'a>, Rejection> {
    decode_keeping_text(key, value, limits).map(|(event, _)| event)
}

/// [`decode`], also handing back the value as the UTF-8 text it was
/// checked to be, for a caller that keeps the text (the worker archives
/// it) without checking it again.
pub fn decode_keeping_text<'a>(
    key: Option<&[u8]>,
    value: &'a [u8],
    limits: &DecodeLimits,
) -> Result<(Event<'a>, &'a str), Rejection> {
    let text = checked_text(value, limits)?;
    let event = decode_str(text)?;
    match key {
        None => Err(Rejection::new(
            RejectReason::MissingKey,
            "message has no key; the key must be the article_id",
        )),
        Some(k) if k != event.article_id.as_bytes() => Err(Rejection::new(
            RejectReason::KeyMismatch,
            format!(
                "message key `{}` differs from article_id `{}`",
                truncate(&String::from_utf8_lossy(k)),
                event.article_id
            ),
        )),
        Some(_) => Ok((event, text)),
    }
}

/// Validates an event that has no Kafka message (and so no key) yet, as the
/// producer does before it sends a line; the key will be its `article_id`.
pub fn decode_unkeyed<'a>(value: &'a [u8], limits: &DecodeLimits) -> Result<Event<'a>, Rejection> {
    decode_str(checked_text(value, limits)?)
}

/// Events as producers write them take one pass (`scan.rs`); the rest, and
/// every rejection, take the general parser.
fn decode_str(text: &str) -> Result<Event<'_>, Rejection> {
    match scan::simple_event(text) {
        Some(event) => Ok(event),
        None => decode_general(text),
    }
}

/// [`decode_unkeyed`]'s fast path alone: `None` where it defers to the
/// general parser. For the tests and the fuzz target.
#[doc(hidden)]
pub fn decode_unkeyed_fast<'a>(value: &'a [u8], limits: &DecodeLimits) -> Option<Event<'a>> {
    scan::simple_event(checked_text(value, limits).ok()?)
}

/// [`decode_unkeyed`] without its fast path: the general parser alone. For
/// the tests and the fuzz target that hold the two to the same answers.
#[doc(hidden)]
pub fn decode_unkeyed_general<'a>(
    value: &'a [u8],
    limits: &DecodeLimits,
) -> Result<Event<'a>, Rejection> {
    decode_general(checked_text(value, limits)?)
}

/// The value as text, if it is within the size limit, not empty and UTF-8.
fn checked_text<'a>(value: &'a [u8], limits: &DecodeLimits) -> Result<&'a str, Rejection> {
    if value.len() > limits.max_message_bytes {
        return Err(Rejection::new(
            RejectReason::TooLarge,
            format!(
                "message is {} bytes, over the limit of {} bytes",
                value.len(),
                limits.max_message_bytes
            ),
        ));
    }
    if value.is_empty() {
        return Err(Rejection::new(
            RejectReason::EmptyMessage,
            "message has no value",
        ));
    }
    std::str::from_utf8(value).map_err(|e| {
        Rejection::new(
            RejectReason::InvalidUtf8,
            format!("value is not UTF-8: {e}"),
        )
    })
}

/// Decodes and validates UTF-8 text with the general parser: every field
/// borrowed as raw JSON first, so that each can be checked with an error
/// that names it. Its strings are owned: it is the path of the unusual.
fn decode_general(text: &str) -> Result<Event<'static>, Rejection> {
    if let Some(depth) = nesting_beyond(text, MAX_NESTING) {
        return Err(Rejection::new(
            RejectReason::InvalidJson,
            format!("value nests deeper than {MAX_NESTING} levels (at least {depth}); events are flat objects"),
        ));
    }
    let wire = parse_wire(text)?;

    check_schema_version(&wire)?;
    let event_type = event_type_of(&wire)?;

    let event_id = required_string(wire.event_id, "event_id")?;
    let chars = event_id.chars().count();
    if chars == 0 || chars > MAX_ID_CHARS {
        return Err(Rejection::new(
            RejectReason::InvalidEventId,
            format!("event_id must be 1 to {MAX_ID_CHARS} characters, got {chars}"),
        ));
    }

    let article_id = required_string(wire.article_id, "article_id")?;
    check_article_id(&article_id)?;

    let occurred_at = occurred_at_of(&wire)?;
    let body = body(event_type, &wire)?;

    Ok(Event {
        event_id: event_id.into(),
        article_id: article_id.into(),
        occurred_at,
        body,
    })
}

fn check_schema_version(wire: &Wire<'_>) -> Result<(), Rejection> {
    let version = required(wire.schema_version, "schema_version")?;
    match serde_json::from_str::<i64>(version.get()) {
        Ok(SCHEMA_VERSION) => Ok(()),
        Ok(other) => Err(Rejection::new(
            RejectReason::UnsupportedSchemaVersion,
            format!("schema_version {other} is not supported (this build reads {SCHEMA_VERSION})"),
        )),
        Err(_) => Err(wrong_type("schema_version", "an integer", version)),
    }
}

/// The event type, one of the list in `counted.rs`.
fn event_type_of(wire: &Wire<'_>) -> Result<EventType, Rejection> {
    let type_name = required_string(wire.event_type, "event_type")?;
    EventType::parse(&type_name).ok_or_else(|| {
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        Rejection::new(
            RejectReason::UnknownEventType,
            format!(
                "event_type `{}` is not one of {}",
                truncate(&type_name),
                known.join(", ")
            ),
        )
    })
}

fn occurred_at_of(wire: &Wire<'_>) -> Result<Micros, Rejection> {
    let occurred_text = required_string(wire.occurred_at, "occurred_at")?;
    let occurred_at = time::parse_rfc3339(&occurred_text).map_err(|e| {
        Rejection::new(
            RejectReason::InvalidTimestamp,
            format!("occurred_at `{}`: {e}", truncate(&occurred_text)),
        )
    })?;
    if !(time::EARLIEST_ACCEPTED..time::LATEST_ACCEPTED).contains(&occurred_at) {
        return Err(Rejection::new(
            RejectReason::InvalidTimestamp,
            format!(
                "occurred_at `{}` is outside 2000-01-01..2100-01-01",
                truncate(&occurred_text)
            ),
        ));
    }
    Ok(occurred_at)
}

/// The fields of one event type, each checked by name.
fn body(event_type: EventType, wire: &Wire<'_>) -> Result<EventBody<'static>, Rejection> {
    Ok(match event_type {
        EventType::ArticlePublished => EventBody::ArticlePublished {
            title: required_bounded(wire.title, "title", 0, MAX_TITLE_CHARS)?,
            url: required_bounded(wire.url, "url", 1, MAX_TEXT_CHARS)?,
            section: optional_string(wire.section, "section")?,
            language: optional_string(wire.language, "language")?,
            author: optional_string(wire.author, "author")?,
        },
        EventType::SourceConfirmed => EventBody::SourceConfirmed {
            source_id: required_bounded(wire.source_id, "source_id", 1, MAX_SOURCE_ID_CHARS)?,
            source_url: optional_string(wire.source_url, "source_url")?,
        },
        EventType::SocialComment => EventBody::SocialComment {
            platform: required_bounded(wire.platform, "platform", 1, MAX_TEXT_CHARS)?,
            author_id: optional_string(wire.author_id, "author_id")?,
        },
        EventType::ForumPost => EventBody::ForumPost {
            forum: required_bounded(wire.forum, "forum", 1, MAX_TEXT_CHARS)?,
            thread_id: optional_string(wire.thread_id, "thread_id")?,
            author_id: optional_string(wire.author_id, "author_id")?,
        },
    })
}

fn parse_wire(text: &str) -> Result<Wire<'_>, Rejection> {
    // Look at the first significant character before parsing, so that an
    // array or a scalar gets its own reason rather than serde's "expected
    // struct" wording.
    match text.trim_start().as_bytes().first() {
        Some(b'{') => {}
        Some(_) => {
            // Distinguish "valid JSON of the wrong kind" from "not JSON".
            return Err(match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => {
                    Rejection::new(RejectReason::NotAnObject, "value is JSON but not an object")
                }
                Err(e) => {
                    Rejection::new(RejectReason::InvalidJson, format!("value is not JSON: {e}"))
                }
            });
        }
        None => return Err(Rejection::new(RejectReason::InvalidJson, "value is blank")),
    }
    serde_json::from_str::<Wire<'_>>(text).map_err(|e| {
        let message = e.to_string();
        if message.starts_with("duplicate field") {
            Rejection::new(RejectReason::DuplicateField, message)
        } else if message.starts_with("invalid type") {
            // A known field holding something RawValue cannot borrow does not
            // happen; this arm is kept for serde's own "invalid type" errors.
            Rejection::new(RejectReason::WrongType, message)
        } else {
            Rejection::new(
                RejectReason::InvalidJson,
                format!("value is not valid JSON: {message}"),
            )
        }
    })
}
