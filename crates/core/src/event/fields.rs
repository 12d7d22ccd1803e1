//! The checks of single fields: present, a string, within its length, and
//! the article id's rule. Each failure names its field.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::{RejectReason, Rejection, MAX_ID_CHARS, MAX_TEXT_CHARS};

/// A present, non-null field.
pub(super) fn required<'a>(
    raw: Option<&'a RawValue>,
    field: &str,
) -> Result<&'a RawValue, Rejection> {
    match raw {
        Some(v) if v.get() != "null" => Ok(v),
        _ => Err(Rejection::new(
            RejectReason::MissingField,
            format!("required field `{field}` is missing or null"),
        )),
    }
}

pub(super) fn required_string(raw: Option<&RawValue>, field: &str) -> Result<String, Rejection> {
    string(required(raw, field)?, field)
}

/// The string a field holds. A JSON string that still fails to decode has
/// passed the syntax check, so what is left is an escaped UTF-16 surrogate
/// without its pair: no Unicode character at all.
pub(super) fn string(raw: &RawValue, field: &str) -> Result<String, Rejection> {
    serde_json::from_str::<String>(raw.get()).map_err(|e| {
        if raw.get().starts_with('"') {
            Rejection::new(
                RejectReason::LoneSurrogate,
                format!(
                    "field `{field}` escapes a lone UTF-16 surrogate (like \\ud800 without \\udc00..\\udfff after it), which is no Unicode character: {}",
                    e.to_string().split(" at line").next().unwrap_or_default()
                ),
            )
        } else {
            wrong_type(field, "a string", raw)
        }
    })
}

pub(super) fn optional_string(
    raw: Option<&RawValue>,
    field: &str,
) -> Result<Option<Cow<'static, str>>, Rejection> {
    match raw {
        None => Ok(None),
        Some(v) if v.get() == "null" => Ok(None),
        Some(v) => {
            bounded(string(v, field)?, field, 0, MAX_TEXT_CHARS).map(|s| Some(Cow::Owned(s)))
        }
    }
}

/// A required string field of `min` to `max` characters.
pub(super) fn required_bounded(
    raw: Option<&RawValue>,
    field: &str,
    min: usize,
    max: usize,
) -> Result<Cow<'static, str>, Rejection> {
    bounded(required_string(raw, field)?, field, min, max).map(Cow::Owned)
}

fn bounded(value: String, field: &str, min: usize, max: usize) -> Result<String, Rejection> {
    let chars = value.chars().count();
    if chars < min || chars > max {
        return Err(Rejection::new(
            RejectReason::InvalidField,
            format!("`{field}` must be {min} to {max} characters, got {chars}"),
        ));
    }
    Ok(value)
}

pub(super) fn wrong_type(field: &str, expected: &str, raw: &RawValue) -> Rejection {
    let got = match raw.get().as_bytes().first() {
        Some(b'"') => "a string",
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b't') | Some(b'f') => "a boolean",
        _ => "a number",
    };
    Rejection::new(
        RejectReason::WrongType,
        format!("field `{field}` must be {expected}, got {got}"),
    )
}

/// The contract's rule for article ids: 1 to 128 characters of
/// `[A-Za-z0-9._:-]`, and not `.` or `..`. Ids become part of nothing on
/// disk, but the rule keeps them safe to print, to use in URLs and paths of
/// downstream tools, and to join on. (The two dot names are refused beyond
/// the contract's pattern: they mean "here" and "parent" to every file
/// system and URL resolver.)
pub fn check_article_id(article_id: &str) -> Result<(), Rejection> {
    let len = article_id.len();
    if len == 0 || len > MAX_ID_CHARS {
        return Err(Rejection::new(
            RejectReason::InvalidArticleId,
            format!(
                "article_id must be 1 to {MAX_ID_CHARS} characters, got {}",
                article_id.chars().count()
            ),
        ));
    }
    // Every allowed character is one ASCII byte, so a byte check decides;
    // the character that failed is looked up only for the message.
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-');
    if !article_id.bytes().all(allowed) {
        // A byte outside the set belongs to a character outside it, so the
        // fallback is never shown.
        let bad = article_id
            .chars()
            .find(|c| !u8::try_from(*c).is_ok_and(allowed))
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        return Err(Rejection::new(
            RejectReason::InvalidArticleId,
            format!(
                "article_id `{}` contains {bad:?}; allowed are A-Z a-z 0-9 . _ : -",
                truncate(article_id)
            ),
        ));
    }
    if article_id == "." || article_id == ".." {
        return Err(Rejection::new(
            RejectReason::InvalidArticleId,
            format!("article_id `{article_id}` is a reserved path name"),
        ));
    }
    Ok(())
}

/// Shortens user-controlled text quoted in a detail message, so one huge
/// field cannot blow up a log line or a header.
pub(super) fn truncate(text: &str) -> String {
    const MAX: usize = 80;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let head: String = text.chars().take(MAX).collect();
        format!("{head}…")
    }
}
