//! Checkpoints: the binary format round-trips a shard exactly, damaged files
//! are refused by name, and a format-1 (JSON) checkpoint written by the
//! previous version resumes exactly where it stopped.
//!
//! `fixtures/checkpoint-v1/` was written by the commit before format 2 from
//! `fixtures/legacy-events.ndjson`: the lines before `---` applied, a drain,
//! then the lines after it.

use std::collections::BTreeMap;
use std::path::Path;

use newsflow_core::event::decode_unkeyed;
use newsflow_core::{Applied, CountingRules, Drained, Event, Shard};
use newsflow_lake::{Checkpoint, Error, Lake};

const NOW: i64 = 1_800_000_000_000_000;

fn events(text: &str) -> Vec<Event> {
    text.lines()
        .map(|line| decode_unkeyed(line.as_bytes(), &Default::default()).unwrap())
        .collect()
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(name),
    )
    .unwrap()
}

/// The shard the fixture checkpoint holds, rebuilt from its events.
fn fixture_shard() -> Shard {
    let text = fixture("legacy-events.ndjson");
    let (before, after) = text.split_once("---\n").unwrap();
    let mut shard = Shard::new(CountingRules::default());
    for event in events(before) {
        shard.apply(&event);
    }
    shard.drain(NOW, false, 1);
    for event in events(after) {
        shard.apply(&event);
    }
    shard
}

/// Redeliveries of events the shard holds, and new events.
const MORE: &str = r#"{"schema_version":1,"event_id":"c-1","event_type":"social_comment","article_id":"a-1","occurred_at":"2026-11-01T09:10:00Z","platform":"x"}
{"schema_version":1,"event_id":"c-1","event_type":"social_comment","article_id":"a-2","occurred_at":"2026-11-01T09:31:00Z","platform":"x"}
{"schema_version":1,"event_id":"s-3","event_type":"source_confirmed","article_id":"a-2","occurred_at":"2026-11-01T11:02:00Z","source_id":"TAGESSCHAU.DE"}
{"schema_version":1,"event_id":"f-2","event_type":"forum_post","article_id":"a-3","occurred_at":"2026-11-01T11:03:00Z","forum":"f"}
{"schema_version":1,"event_id":"c-1","event_type":"forum_post","article_id":"a-1","occurred_at":"2026-11-01T12:00:00Z","forum":"f"}
{"schema_version":1,"event_id":"s-9","event_type":"source_confirmed","article_id":"a-1","occurred_at":"2026-11-01T12:01:00Z","source_id":"EXAMPLE.org"}
{"schema_version":1,"event_id":"s-10","event_type":"source_confirmed","article_id":"a-3","occurred_at":"2026-11-01T12:02:00Z","source_id":"new.example"}
{"schema_version":1,"event_id":"c-4","event_type":"social_comment","article_id":"a-4","occurred_at":"2026-11-01T13:00:00Z","platform":"x"}"#;

/// Applies `MORE` and drains everything: what the shard does from here on.
fn continue_counting(shard: &mut Shard) -> (Vec<Applied>, Drained) {
    let applied = events(MORE).iter().map(|e| shard.apply(e)).collect();
    (applied, shard.drain(NOW + 1, true, 2))
}

fn assert_same_future(mut actual: Shard, mut expected: Shard) {
    let (applied, drained) = continue_counting(&mut actual);
    let (expected_applied, expected_drained) = continue_counting(&mut expected);
    assert_eq!(applied, expected_applied);
    assert_eq!(
        &applied[..4],
        [Applied::Duplicate; 4],
        "redeliveries of checkpointed events count once"
    );
    assert_eq!(drained.totals, expected_drained.totals);
    assert_eq!(drained.engagement, expected_drained.engagement);
}

fn offsets() -> BTreeMap<String, i64> {
    [
        ("news.articles".to_string(), 3),
        ("news.comments".to_string(), 7),
        ("news.forum-posts".to_string(), 2),
    ]
    .into()
}

#[test]
fn a_format_1_checkpoint_resumes_exactly_and_is_replaced_by_format_2() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = dir.path().join("_checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    std::fs::write(
        checkpoints.join("shard-00003.json"),
        fixture("checkpoint-v1/_checkpoints/shard-00003.json"),
    )
    .unwrap();
    let lake = Lake::open(dir.path()).unwrap();

    let loaded = lake
        .load_checkpoint(3)
        .unwrap()
        .expect("the format-1 checkpoint");
    assert_eq!(
        (loaded.format, loaded.shard, loaded.seq, &loaded.offsets),
        (Checkpoint::FORMAT, 3, 2, &offsets())
    );
    assert_eq!(loaded.state.article_count(), 3);
    assert_eq!(loaded.state.dedup_entries(), 11);
    assert_same_future(loaded.state.clone(), fixture_shard());

    lake.save_checkpoint(3, 3, &loaded.offsets, &loaded.state)
        .unwrap();
    assert!(checkpoints.join("shard-00003.ckpt").exists());
    assert!(
        !checkpoints.join("shard-00003.json").exists(),
        "the superseded format-1 file is gone"
    );
    let again = lake.load_checkpoint(3).unwrap().unwrap();
    assert_eq!(again.seq, 3);
    assert_same_future(again.state, fixture_shard());
}

#[test]
fn the_binary_checkpoint_round_trips_a_shard_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path()).unwrap();
    assert!(lake.load_checkpoint(0).unwrap().is_none());
    lake.save_checkpoint(0, 7, &offsets(), &fixture_shard())
        .unwrap();
    let loaded = lake.load_checkpoint(0).unwrap().unwrap();
    assert_eq!((loaded.seq, &loaded.offsets), (7, &offsets()));
    assert_same_future(loaded.state, fixture_shard());
}

#[test]
fn damaged_checkpoints_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path()).unwrap();
    lake.save_checkpoint(1, 1, &offsets(), &fixture_shard())
        .unwrap();
    let path = dir.path().join("_checkpoints/shard-00001.ckpt");
    let bytes = std::fs::read(&path).unwrap();

    let damages: [(&str, Vec<u8>); 3] = [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("not a checkpoint", b"{\"format\":2}".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, damaged) in damages {
        std::fs::write(&path, damaged).unwrap();
        match lake.load_checkpoint(1) {
            Err(Error::CorruptCheckpoint { path: named, .. }) => {
                assert_eq!(named, path, "{what}")
            }
            other => panic!("{what}: expected a corrupt-checkpoint error, got {other:?}"),
        }
    }

    // A checkpoint of another shard under this shard's name is refused too.
    lake.save_checkpoint(2, 1, &offsets(), &fixture_shard())
        .unwrap();
    std::fs::copy(dir.path().join("_checkpoints/shard-00002.ckpt"), &path).unwrap();
    let error = lake.load_checkpoint(1).unwrap_err().to_string();
    assert!(error.contains("shard 2 where format 2 shard 1"), "{error}");
}
