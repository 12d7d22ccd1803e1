//! Decoding and validation: every rule of the contract's section 2, with the
//! stable reason code each breach gets.

mod common;

use newsflow_core::event::decode_unkeyed;
use newsflow_core::{decode, DecodeLimits, EventBody, EventType, RejectReason};

fn valid(event_type: &str, extra: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"e-1","event_type":"{event_type}","article_id":"a-1","occurred_at":"2026-11-01T10:00:00+01:00"{extra}}}"#
    )
}

fn reason(key: Option<&[u8]>, value: &[u8]) -> RejectReason {
    match decode(key, value, &common::LIMITS) {
        Ok(e) => panic!(
            "accepted {e:?} from {:.200}",
            String::from_utf8_lossy(value)
        ),
        Err(r) => r.reason,
    }
}

#[test]
fn accepts_each_type_and_ignores_unknown_fields() {
    let cases = [
        (
            valid(
                "article_published",
                r#","title":"T","url":"https://x","extra":{"a":[1]}"#,
            ),
            EventType::ArticlePublished,
        ),
        (
            valid(
                "source_confirmed",
                r#","source_id":"tagesschau.de","source_url":null"#,
            ),
            EventType::SourceConfirmed,
        ),
        (
            valid("social_comment", r#","platform":"x","author_id":"u1""#),
            EventType::SocialComment,
        ),
        (
            valid("forum_post", r#","forum":"f","thread_id":null"#),
            EventType::ForumPost,
        ),
    ];
    for (text, expected) in cases {
        let event = decode(Some(b"a-1"), text.as_bytes(), &common::LIMITS).unwrap();
        assert_eq!(event.event_type(), expected);
        assert_eq!(event.article_id, "a-1");
        assert_eq!(
            event.occurred_at,
            newsflow_core::time::parse_rfc3339("2026-11-01T09:00:00Z").unwrap()
        );
    }
    let escaped = valid("forum_post", r#","forum":"f\u00fc""#);
    let event = decode(Some(b"a-1"), escaped.as_bytes(), &common::LIMITS).unwrap();
    assert_eq!(
        event.body,
        EventBody::ForumPost {
            forum: "fü".into(),
            thread_id: None,
            author_id: None
        }
    );
}

type Case<'a> = (Option<&'a [u8]>, Vec<u8>, RejectReason);

#[test]
fn rejects_each_breach_with_its_reason() {
    let long_id = "a".repeat(129);
    // (message key, message value, the reason it must be refused for)
    let cases: Vec<Case> = vec![
        (
            Some(b"a-1"),
            vec![0xff, 0xfe, b'{'],
            RejectReason::InvalidUtf8,
        ),
        (
            Some(b"a-1"),
            b"not json".to_vec(),
            RejectReason::InvalidJson,
        ),
        (
            Some(b"a-1"),
            b"{\"schema_version\":1,".to_vec(),
            RejectReason::InvalidJson,
        ),
        (Some(b"a-1"), b"[1,2]".to_vec(), RejectReason::NotAnObject),
        (Some(b"a-1"), b"42".to_vec(), RejectReason::NotAnObject),
        (Some(b"a-1"), b"".to_vec(), RejectReason::EmptyMessage),
        (
            Some(b"a-1"),
            valid("social_comment", "").into_bytes(),
            RejectReason::MissingField,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":null"#).into_bytes(),
            RejectReason::MissingField,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":7"#).into_bytes(),
            RejectReason::WrongType,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"""#).into_bytes(),
            RejectReason::InvalidField,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"x\ud800""#).into_bytes(),
            RejectReason::LoneSurrogate,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"x","author_id":"\udc00""#).into_bytes(),
            RejectReason::LoneSurrogate,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"\ud800\u0041""#).into_bytes(),
            RejectReason::LoneSurrogate,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"x","platform":"y""#).into_bytes(),
            RejectReason::DuplicateField,
        ),
        (
            Some(b"a-1"),
            valid("carrier_pigeon", r#","platform":"x""#).into_bytes(),
            RejectReason::UnknownEventType,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"x""#)
                .replace("\"schema_version\":1", "\"schema_version\":2")
                .into_bytes(),
            RejectReason::UnsupportedSchemaVersion,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"x""#)
                .replace("\"schema_version\":1", "\"schema_version\":\"1\"")
                .into_bytes(),
            RejectReason::WrongType,
        ),
        (
            Some(b"a/1"),
            valid("social_comment", r#","platform":"x""#)
                .replace("a-1", "a/1")
                .into_bytes(),
            RejectReason::InvalidArticleId,
        ),
        (
            Some(b"../x"),
            valid("social_comment", r#","platform":"x""#)
                .replace("a-1", "../x")
                .into_bytes(),
            RejectReason::InvalidArticleId,
        ),
        (
            Some(b".."),
            valid("social_comment", r#","platform":"x""#)
                .replace("a-1", "..")
                .into_bytes(),
            RejectReason::InvalidArticleId,
        ),
        (
            Some(b"a 1"),
            valid("social_comment", r#","platform":"x""#)
                .replace("a-1", "a 1")
                .into_bytes(),
            RejectReason::InvalidArticleId,
        ),
        (
            Some(long_id.as_bytes()),
            valid("social_comment", r#","platform":"x""#)
                .replace("a-1", &long_id)
                .into_bytes(),
            RejectReason::InvalidArticleId,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"x""#)
                .replace("\"e-1\"", "\"\"")
                .into_bytes(),
            RejectReason::InvalidEventId,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"x""#)
                .replace("\"e-1\"", &format!("\"{}\"", "e".repeat(129)))
                .into_bytes(),
            RejectReason::InvalidEventId,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"x""#)
                .replace("2026-11-01T10:00:00+01:00", "2026-11-01T10:00:00")
                .into_bytes(),
            RejectReason::InvalidTimestamp,
        ),
        (
            Some(b"a-1"),
            valid("social_comment", r#","platform":"x""#)
                .replace("2026-11-01T10:00:00+01:00", "9999-12-31T23:59:59Z")
                .into_bytes(),
            RejectReason::InvalidTimestamp,
        ),
        (
            None,
            valid("social_comment", r#","platform":"x""#).into_bytes(),
            RejectReason::MissingKey,
        ),
        (
            Some(b"a-2"),
            valid("social_comment", r#","platform":"x""#).into_bytes(),
            RejectReason::KeyMismatch,
        ),
        (
            Some(b"a-1"),
            valid(
                "article_published",
                &format!(r#","title":"{}","url":"u""#, "t".repeat(1001)),
            )
            .into_bytes(),
            RejectReason::InvalidField,
        ),
        (
            Some(b"a-1"),
            valid(
                "source_confirmed",
                &format!(r#","source_id":"{}""#, "s".repeat(254)),
            )
            .into_bytes(),
            RejectReason::InvalidField,
        ),
    ];
    for (key, value, expected) in cases {
        assert_eq!(
            reason(key, &value),
            expected,
            "for {}",
            String::from_utf8_lossy(&value)
        );
    }
}

#[test]
fn size_limit_and_deep_nesting_are_refused_without_harm() {
    let limits = DecodeLimits {
        max_message_bytes: 1024,
    };
    let big = valid(
        "social_comment",
        &format!(r#","platform":"x","pad":"{}""#, "p".repeat(2000)),
    );
    assert_eq!(
        decode(Some(b"a-1"), big.as_bytes(), &limits)
            .unwrap_err()
            .reason,
        RejectReason::TooLarge
    );

    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    assert_eq!(
        reason(Some(b"a-1"), deep.as_bytes()),
        RejectReason::InvalidJson
    );
    // Brackets inside strings are text, not nesting.
    let brackets_in_text = valid(
        "social_comment",
        &format!(
            r#","platform":"x","note":"{} \" {}""#,
            "[".repeat(100),
            "{".repeat(100)
        ),
    );
    assert!(decode(Some(b"a-1"), brackets_in_text.as_bytes(), &common::LIMITS).is_ok());
    let deep_in_object = valid(
        "social_comment",
        &format!(
            r#","platform":"x","nest":{}{}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
    );
    assert_eq!(
        reason(Some(b"a-1"), deep_in_object.as_bytes()),
        RejectReason::InvalidJson
    );
}

#[test]
fn details_name_the_field_and_stay_short() {
    let text = valid("social_comment", r#","platform":7"#);
    let rejection = decode(Some(b"a-1"), text.as_bytes(), &common::LIMITS).unwrap_err();
    assert!(
        rejection.detail.contains("`platform`"),
        "{}",
        rejection.detail
    );
    // A lone surrogate in the article id is neither a wrong type nor a
    // string "that must be a string".
    let text = valid("social_comment", r#","platform":"x""#).replace("a-1", r"a\ud800");
    let rejection = decode_unkeyed(text.as_bytes(), &common::LIMITS).unwrap_err();
    assert_eq!(rejection.reason, RejectReason::LoneSurrogate);
    assert!(
        rejection.detail.contains("`article_id`")
            && rejection.detail.contains("surrogate")
            && !rejection.detail.contains("must be a string"),
        "{}",
        rejection.detail
    );
    let huge_type = valid(&"z".repeat(10_000), "");
    let huge_time = valid("social_comment", r#","platform":"x""#)
        .replace("2026-11-01T10:00:00+01:00", &"9".repeat(200_000));
    for (field, text) in [("event_type", huge_type), ("occurred_at", huge_time)] {
        let rejection = decode(Some(b"a-1"), text.as_bytes(), &common::LIMITS).unwrap_err();
        assert!(
            rejection.detail.starts_with(field) || rejection.detail.contains(field),
            "{}",
            rejection.detail
        );
        // Details go into log lines, HTTP answers and dead-letter headers:
        // the value is quoted in at most 80 characters.
        assert!(
            rejection.detail.len() < 300,
            "{field}: detail is {} bytes",
            rejection.detail.len()
        );
    }
}

#[test]
fn reason_codes_are_unique_snake_case() {
    let codes: std::collections::HashSet<&str> =
        RejectReason::ALL.iter().map(|r| r.code()).collect();
    assert_eq!(codes.len(), RejectReason::ALL.len());
    for code in codes {
        assert!(
            code.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
            "{code}"
        );
    }
}
