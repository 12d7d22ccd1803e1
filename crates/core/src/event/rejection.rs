//! Why a message is not a valid event: a stable reason code and a
//! readable detail.

/// Why a message was rejected. The code ([`RejectReason::code`]) is stable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectReason {
    /// The message is larger than the configured limit.
    TooLarge,
    /// The message has no value at all (a tombstone).
    EmptyMessage,
    /// The bytes are not valid UTF-8.
    InvalidUtf8,
    /// The text is not JSON, or nests deeper than the parser allows.
    InvalidJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// The same key appears twice in the object.
    DuplicateField,
    /// A required field is absent or null.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A string field escapes a lone UTF-16 surrogate (`"\ud800"`): valid
    /// JSON syntax, but no Unicode text, so no reader could store it.
    LoneSurrogate,
    /// A field has the right type but a value outside its rule.
    InvalidField,
    /// `schema_version` is not one this build understands.
    UnsupportedSchemaVersion,
    /// `event_type` is not one of the four known types.
    UnknownEventType,
    /// `article_id` breaks its rule.
    InvalidArticleId,
    /// `event_id` breaks its rule.
    InvalidEventId,
    /// `occurred_at` is not RFC 3339 with an offset, or is out of range.
    InvalidTimestamp,
    /// The message has no key.
    MissingKey,
    /// The message key differs from the `article_id`.
    KeyMismatch,
}

impl RejectReason {
    /// Every reason, for pre-registering metric label values.
    pub const ALL: [RejectReason; 17] = [
        RejectReason::TooLarge,
        RejectReason::EmptyMessage,
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::NotAnObject,
        RejectReason::DuplicateField,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::LoneSurrogate,
        RejectReason::InvalidField,
        RejectReason::UnsupportedSchemaVersion,
        RejectReason::UnknownEventType,
        RejectReason::InvalidArticleId,
        RejectReason::InvalidEventId,
        RejectReason::InvalidTimestamp,
        RejectReason::MissingKey,
        RejectReason::KeyMismatch,
    ];

    /// The stable snake_case code used in dead-letter headers and metrics.
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::TooLarge => "too_large",
            RejectReason::EmptyMessage => "empty_message",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::LoneSurrogate => "lone_surrogate",
            RejectReason::InvalidField => "invalid_field",
            RejectReason::UnsupportedSchemaVersion => "unsupported_schema_version",
            RejectReason::UnknownEventType => "unknown_event_type",
            RejectReason::InvalidArticleId => "invalid_article_id",
            RejectReason::InvalidEventId => "invalid_event_id",
            RejectReason::InvalidTimestamp => "invalid_timestamp",
            RejectReason::MissingKey => "missing_key",
            RejectReason::KeyMismatch => "key_mismatch",
        }
    }
}

/// A message that is not a valid event: a stable reason and a readable
/// detail for the person who has to fix the sender.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}: {detail}", reason.code())]
pub struct Rejection {
    /// The stable reason.
    pub reason: RejectReason,
    /// What exactly was wrong, naming the field where there is one.
    pub detail: String,
}

/// The most characters a detail holds. A detail quotes at most 80
/// characters of the message (`fields::truncate`); this bound holds for
/// every detail however it was built, because details travel into log
/// lines, HTTP answers and dead-letter headers.
pub const MAX_DETAIL_CHARS: usize = 240;

impl Rejection {
    pub(super) fn new(reason: RejectReason, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if let Some((cut, _)) = detail.char_indices().nth(MAX_DETAIL_CHARS) {
            detail.truncate(cut);
            detail.push('…');
        }
        Rejection { reason, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_detail_is_bounded_however_it_was_built() {
        let long = Rejection::new(RejectReason::InvalidJson, "é".repeat(10_000));
        assert_eq!(long.detail.chars().count(), MAX_DETAIL_CHARS + 1);
        assert!(long.detail.ends_with('…'));
        let short = Rejection::new(RejectReason::InvalidJson, "expected value");
        assert_eq!(short.detail, "expected value");
    }
}
