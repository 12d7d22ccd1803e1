//! Reading a request body within its limit, and walking the events in it
//! one at a time, so that memory stays a small multiple of the body
//! whatever it holds.

use axum::body::Body;
use http_body_util::BodyExt;
use serde::de::{Deserializer as _, IgnoredAny, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// What reading a request body came to.
pub enum BodyRead {
    /// The whole body, within the limit.
    Complete(Vec<u8>),
    /// More than the limit.
    TooLarge,
    /// The connection failed mid-body.
    Failed(axum::Error),
}

/// How much of an oversized body is still read (and dropped) before the
/// 413 goes out.
pub const DRAIN_BEYOND_LIMIT: usize = 1 << 20;

/// Reads a body of at most `limit` bytes, reserving `declared` bytes (the
/// Content-Length, already checked against the limit) up front so the
/// buffer does not double past the body. Past the limit the rest is read
/// and dropped (up to [`DRAIN_BEYOND_LIMIT`] more, never kept): a server that
/// answers and closes while request bytes are still unread makes the kernel
/// reset the connection, and the client sees a broken connection instead of
/// the 413.
pub async fn read_body(mut body: Body, limit: usize, declared: Option<usize>) -> BodyRead {
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(limit));
    let mut dropped: Option<usize> = None;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers
            },
            Err(_) if dropped.is_some() => break,
            Err(e) => return BodyRead::Failed(e),
        };
        match dropped.as_mut() {
            Some(n) => {
                *n += data.len();
                if *n > DRAIN_BEYOND_LIMIT {
                    break;
                }
            }
            None if bytes.len() + data.len() > limit => {
                dropped = Some(data.len());
                bytes = Vec::new();
            }
            None => bytes.extend_from_slice(&data),
        }
    }
    match dropped {
        Some(_) => BodyRead::TooLarge,
        None => BodyRead::Complete(bytes),
    }
}

/// Reads and drops up to `limit` bytes of a body that will not be used,
/// before an early answer (401, 413, 415): a client that sends its whole
/// body before reading (Python's `urllib` and `requests` do) would
/// otherwise see the connection reset instead of the answer.
pub async fn drain(mut body: Body, limit: usize) {
    let mut dropped = 0usize;
    while let Some(Ok(frame)) = body.frame().await {
        if let Ok(data) = frame.into_data() {
            dropped += data.len();
            if dropped > limit {
                break;
            }
        }
    }
}

/// Calls `each(number, event)` for every event of a body, in order, and
/// returns how many there were: the elements of a JSON array (numbered from
/// 1), or the non-blank lines of NDJSON (numbered as lines of the body).
/// Nothing is collected, so a body of millions of tiny lines costs no more
/// memory than one of a few large ones.
///
/// A body that starts with `[` but is not a JSON array is refused whole,
/// before `each` sees any element.
pub fn for_each_event<'a>(
    body: &'a [u8],
    mut each: impl FnMut(usize, &'a [u8]),
) -> Result<usize, String> {
    let Some(first) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(0);
    };
    if body[first] == b'[' {
        let not_an_array =
            |e: serde_json::Error| format!("the body starts with `[` but is not a JSON array: {e}");
        serde_json::from_slice::<IgnoredAny>(body).map_err(not_an_array)?;
        let mut parser = serde_json::Deserializer::from_slice(body);
        return parser.deserialize_seq(Elements(each)).map_err(not_an_array);
    }
    let mut count = 0;
    for (index, line) in body.split(|b| *b == b'\n').enumerate() {
        if let Some(event) = crate::ndjson::event_on(line) {
            count += 1;
            each(index + 1, event);
        }
    }
    Ok(count)
}

/// Hands each element of a JSON array, unparsed, to a callback.
struct Elements<F>(F);

impl<'de, F: FnMut(usize, &'de [u8])> Visitor<'de> for Elements<F> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON array of events")
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut elements: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while let Some(raw) = elements.next_element::<&'de RawValue>()? {
            count += 1;
            (self.0)(count, raw.get().as_bytes());
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::for_each_event;

    fn events(body: &[u8]) -> Result<Vec<(usize, &[u8])>, String> {
        let mut seen = Vec::new();
        let count = for_each_event(body, |n, raw| seen.push((n, raw)))?;
        assert_eq!(count, seen.len());
        Ok(seen)
    }

    #[test]
    fn ndjson_lines_keep_their_numbers() {
        let items = events(b"{\"a\":1}\r\n\n  \n{\"b\":2}\nnot json").unwrap();
        let numbers: Vec<usize> = items.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 4, 5]);
        assert_eq!(items[0].1, b"{\"a\":1}");
        assert_eq!(items[2].1, b"not json");
    }

    #[test]
    fn arrays_are_numbered_by_element() {
        let items = events(b" [ {\"a\":1}, 7, {\"b\":[2]} ] ").unwrap();
        let raws: Vec<&[u8]> = items.iter().map(|(_, r)| *r).collect();
        assert_eq!(raws, [&b"{\"a\":1}"[..], b"7", b"{\"b\":[2]}"]);
        assert_eq!(items[2].0, 3);
        assert!(events(b"  \n ").unwrap().is_empty());
    }

    #[test]
    fn a_broken_array_is_refused_before_any_element_is_seen() {
        for body in [&b"[{\"a\":1}"[..], b"[1, 2] trailing", b"[1, 2,]"] {
            let mut seen = 0;
            let error = for_each_event(body, |_, _| seen += 1).unwrap_err();
            assert!(error.contains("not a JSON array"), "{error}");
            assert_eq!(seen, 0, "{}", String::from_utf8_lossy(body));
        }
    }
}
