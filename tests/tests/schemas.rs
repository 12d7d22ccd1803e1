//! The committed JSON Schemas and the Rust decoder agree: every fixture is
//! accepted by both or refused by both.

use std::path::Path;

use newsflow_core::event::decode_unkeyed;
use serde_json::Value;

fn validators() -> Vec<(String, jsonschema::Validator)> {
    let dir = newsflow_e2e::workspace().join("schemas/events/v1");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("schemas/events/v1") {
        let path = entry.unwrap().path();
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{} is not a valid schema: {e}", path.display()));
        out.push((
            path.file_stem().unwrap().to_string_lossy().into_owned(),
            validator,
        ));
    }
    // One schema per event type of core's list (`counted.rs`): a type
    // added there without its schema, or a schema left behind, fails here.
    let mut names: Vec<&str> = out.iter().map(|(name, _)| name.as_str()).collect();
    let mut types: Vec<&str> = newsflow_core::EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .collect();
    names.sort_unstable();
    types.sort_unstable();
    assert_eq!(names, types, "one schema per event type");
    out
}

/// Whether the schema of the document's own event type accepts it (a
/// document of no known type is refused by all four).
fn schema_accepts(validators: &[(String, jsonschema::Validator)], doc: &Value) -> bool {
    validators.iter().any(|(_, v)| v.is_valid(doc))
}

fn rust_accepts(text: &str) -> bool {
    decode_unkeyed(
        text.as_bytes(),
        &newsflow_settings::defaults().decode_limits(),
    )
    .is_ok()
}

fn valid_fixtures() -> Vec<String> {
    let seed = std::fs::read_to_string(
        newsflow_e2e::workspace().join("tests/fixtures/seed-article.ndjson"),
    )
    .unwrap();
    let mut lines: Vec<String> = seed.lines().map(String::from).collect();
    lines.extend(
        [
            r#"{"schema_version":1,"event_id":"x","event_type":"article_published","article_id":"A.b_c:d-9","occurred_at":"2026-01-01T00:00:00.123456-05:00","title":"","url":"u","unknown":{"x":[1,2]}}"#,
            r#"{"schema_version":1,"event_id":"x","event_type":"forum_post","article_id":"a","occurred_at":"2099-12-31T23:59:59Z","forum":"f","thread_id":null,"author_id":"k"}"#,
            r#"{"schema_version":1,"event_id":"é","event_type":"social_comment","article_id":"a","occurred_at":"2000-01-01T00:00:00Z","platform":"x"}"#,
        ]
        .map(String::from),
    );
    lines
}

fn invalid_fixtures() -> Vec<String> {
    let base = r#"{"schema_version":1,"event_id":"e","event_type":"social_comment","article_id":"a","occurred_at":"2026-11-01T10:00:00Z","platform":"x"}"#;
    let mut docs: Vec<String> = vec![
        base.replace(r#","platform":"x""#, ""),
        base.replace(r#""platform":"x""#, r#""platform":null"#),
        base.replace(r#""platform":"x""#, r#""platform":1"#),
        base.replace(r#""platform":"x""#, r#""platform":"""#),
        base.replace("social_comment", "carrier_pigeon"),
        base.replace(r#""schema_version":1"#, r#""schema_version":2"#),
        base.replace(r#""schema_version":1"#, r#""schema_version":"1""#),
        base.replace(r#""article_id":"a""#, r#""article_id":"a/b""#),
        base.replace(r#""article_id":"a""#, r#""article_id":"a b""#),
        base.replace(r#""article_id":"a""#, r#""article_id":"..""#),
        base.replace(r#""article_id":"a""#, r#""article_id":".""#),
        base.replace(r#""article_id":"a""#, r#""article_id":"""#),
        base.replace(r#""article_id":"a""#, &format!(r#""article_id":"{}""#, "a".repeat(129))),
        base.replace(r#""event_id":"e""#, r#""event_id":"""#),
        base.replace(r#""event_id":"e""#, &format!(r#""event_id":"{}""#, "e".repeat(129))),
        base.replace("2026-11-01T10:00:00Z", "2026-11-01T10:00:00"),
        base.replace("2026-11-01T10:00:00Z", "9999-11-01T10:00:00Z"),
        base.replace("2026-11-01T10:00:00Z", "1999-11-01T10:00:00Z"),
        base.replace("2026-11-01T10:00:00Z", "yesterday"),
        base.replace(r#","platform":"x""#, r#","platform":"x","author_id":5"#),
        r#"{"schema_version":1,"event_id":"e","event_type":"source_confirmed","article_id":"a","occurred_at":"2026-11-01T10:00:00Z","source_id":""}"#.into(),
        r#"{"schema_version":1,"event_id":"e","event_type":"article_published","article_id":"a","occurred_at":"2026-11-01T10:00:00Z","title":"t"}"#.into(),
        "[1,2,3]".into(),
        "\"text\"".into(),
    ];
    docs.push(
        base.replace(
            r#""platform":"x""#,
            &format!(r#""platform":"x","title":"{}""#, "t".repeat(5)),
        )
        .replace("social_comment", "article_published"),
    );
    docs.push(format!(
        r#"{{"schema_version":1,"event_id":"e","event_type":"article_published","article_id":"a","occurred_at":"2026-11-01T10:00:00Z","title":"{}","url":"u"}}"#,
        "t".repeat(1001)
    ));
    docs
}

#[test]
fn schemas_and_decoder_accept_the_same_valid_events() {
    let validators = validators();
    for text in valid_fixtures() {
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert!(rust_accepts(&text), "decoder refused {text}");
        assert!(schema_accepts(&validators, &doc), "schemas refused {text}");
    }
}

#[test]
fn schemas_and_decoder_refuse_the_same_invalid_events() {
    let validators = validators();
    for text in invalid_fixtures() {
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert!(!rust_accepts(&text), "decoder accepted {text:.200}");
        assert!(
            !schema_accepts(&validators, &doc),
            "schemas accepted {text:.200}"
        );
    }
}

#[test]
fn each_schema_names_its_type_and_the_envelope() {
    for (name, _) in validators() {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../schemas/events/v1/{name}.json"));
        let schema: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        assert_eq!(
            schema["properties"]["event_type"]["const"],
            Value::String(name.clone())
        );
        let required: Vec<&str> = schema["required"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for field in [
            "schema_version",
            "event_id",
            "event_type",
            "article_id",
            "occurred_at",
        ] {
            assert!(required.contains(&field), "{name} does not require {field}");
        }
        assert!(
            newsflow_core::EventType::parse(&name).is_some(),
            "{name} is not an event type the decoder knows"
        );
    }
}

/// The contract names every event type and every counter column of core's
/// list (`counted.rs`): a type or counter added there and not written into
/// `docs/CONTRACT.md` fails here.
#[test]
fn the_contract_names_every_type_and_counter_of_the_list() {
    let contract =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/CONTRACT.md"))
            .unwrap();
    for event_type in newsflow_core::EventType::ALL {
        let name = format!("`{}`", event_type.as_str());
        assert!(
            contract.contains(&name),
            "docs/CONTRACT.md does not name {name}"
        );
    }
    for counter in newsflow_core::Counter::ALL {
        let row = format!("| `{}` | int64", counter.column());
        assert!(
            contract.matches(&row).count() >= 2,
            "docs/CONTRACT.md does not list {row} in both tables"
        );
    }
}
