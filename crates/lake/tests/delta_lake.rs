//! The lake's flush and restore protocol on a local root: a shard resumes
//! from what the tables' logs committed, two writers racing for one shard
//! leave exactly one of them in the logs (the other is fenced), nothing is
//! ever overwritten, and a damaged checkpoint is refused by name.

use std::collections::BTreeMap;

use newsflow_core::event::decode_unkeyed;
use newsflow_core::{Counter, CountingRules, EventType, Shard};
use newsflow_lake::{
    CheckpointChain, Dataset, EncodedCheckpoint, EventRow, FlushBatch, FlushError, FlushObserver,
    Lake, ShardFlush, WriteStats,
};

const NOW: i64 = 1_800_000_000_000_000;

/// Counts what a flush reports.
#[derive(Default)]
struct Tally(std::sync::Mutex<BTreeMap<String, u64>>);

impl Tally {
    fn add(&self, key: &str, n: u64) {
        *self.0.lock().unwrap().entry(key.into()).or_default() += n;
    }
    fn get(&self, key: &str) -> u64 {
        self.0.lock().unwrap().get(key).copied().unwrap_or(0)
    }
}

impl FlushObserver for Tally {
    fn written(&self, dataset: Dataset, stats: WriteStats, _: f64) {
        self.add(&format!("files.{}", dataset.name()), stats.files);
    }
    fn checkpointed(&self, _: f64) {
        self.add("checkpoints", 1);
    }
    fn committed(&self, dataset: Dataset, committed: u64, conflicts: u64, fenced: u64, _: f64) {
        self.add(&format!("commits.{}", dataset.name()), committed);
        self.add("conflicts", conflicts);
        self.add("fenced", fenced);
    }
}

/// A worker's view of one shard, counting comments `c-<from>..c-<to>` of
/// article `a-1` read from offsets `from..to` of topic `t`.
struct Writer {
    lake: Lake,
    shard: Shard,
    chain: CheckpointChain,
    committed: u64,
    next_seq: u64,
}

impl Writer {
    fn restore(lake: &Lake, shard: i32) -> Writer {
        let restored = lake.restore(shard).expect("restore");
        let state = restored
            .checkpoint
            .map(|c| c.state)
            .unwrap_or_else(|| Shard::new(rules()));
        assert!(restored.next_seq > restored.committed);
        Writer {
            lake: lake.clone(),
            shard: state,
            chain: restored.chain,
            committed: restored.committed,
            next_seq: restored.next_seq,
        }
    }

    /// Counts comments `from..to` and cuts a flush of shard 0.
    fn cut(&mut self, from: i64, to: i64) -> ShardFlush {
        let texts: Vec<(i64, String)> = (from..to)
            .map(|i| (i, format!(
                r#"{{"schema_version":1,"event_id":"c-{i}","event_type":"social_comment","article_id":"a-1","occurred_at":"2026-11-01T09:{:02}:00Z","platform":"x"}}"#,
                i % 60
            )))
            .collect();
        let mut lines = Vec::new();
        for (i, line) in &texts {
            let event = decode_unkeyed(line.as_bytes(), &LIMITS).unwrap();
            self.shard.apply(&event);
            lines.push((*i, event, line));
        }
        let mut events = self.lake.event_archive();
        events.extend(lines.iter().map(|(i, event, line)| EventRow {
            event_id: &event.event_id,
            event_type: EventType::SocialComment,
            article_id: &event.article_id,
            occurred_at: event.occurred_at,
            topic: "t",
            partition: 0,
            offset: *i,
            payload: line,
        }));
        let drained = self.shard.drain(NOW, true, self.next_seq);
        let offsets = BTreeMap::from([("t".to_string(), to)]);
        let checkpoint = EncodedCheckpoint::encode(
            0,
            self.next_seq,
            self.committed,
            &offsets,
            &mut self.shard,
            &mut self.chain,
        )
        .unwrap();
        ShardFlush {
            checkpoint,
            batch: FlushBatch {
                totals: drained.totals,
                engagement: drained.engagement,
                events: events.finish(),
            },
            evicted: drained.evicted,
        }
    }

    fn flush(&mut self, job: ShardFlush, tally: &Tally) -> Result<(), FlushError> {
        let seq = job.checkpoint.seq();
        let mut outcomes = self.lake.flush(vec![job], &|_| false, tally);
        assert_eq!(outcomes.len(), 1);
        let next = outcomes.pop().unwrap().result?;
        self.committed = seq;
        self.next_seq = next;
        Ok(())
    }
}

#[test]
fn a_shard_resumes_from_what_the_logs_committed() {
    let root = tempfile::tempdir().unwrap();
    let uri = root.path().display().to_string();
    let lake = Lake::open(&uri, &BTreeMap::new()).unwrap();
    let tally = Tally::default();

    let mut writer = Writer::restore(&lake, 0);
    assert_eq!(writer.committed, 0);
    let job = writer.cut(0, 10);
    writer.flush(job, &tally).unwrap();
    let job = writer.cut(10, 25);
    writer.flush(job, &tally).unwrap();
    assert_eq!(tally.get("commits.events"), 2);
    assert_eq!(tally.get("commits.article_totals"), 2);
    assert_eq!(tally.get("checkpoints"), 2);

    // Another process opening the same root resumes after the second flush.
    let reopened = Lake::open(&uri, &BTreeMap::new()).unwrap();
    let restored = reopened.restore(0).unwrap();
    assert_eq!(restored.committed, writer.committed);
    assert_eq!(restored.rolled_forward, 0);
    let checkpoint = restored.checkpoint.unwrap();
    assert_eq!(checkpoint.offsets["t"], 25);
    let footer = checkpoint
        .state
        .clone()
        .drain(NOW, true, 99)
        .totals
        .into_iter()
        .find(|r| r.article_id == "a-1");
    // Nothing changed since the last drain, so no new row: the counts live
    // in the state, which a further comment shows.
    assert!(footer.is_none());
    let mut state = checkpoint.state;
    let line = r#"{"schema_version":1,"event_id":"c-new","event_type":"social_comment","article_id":"a-1","occurred_at":"2026-11-01T09:59:00Z","platform":"x"}"#;
    state.apply(&decode_unkeyed(line.as_bytes(), &LIMITS).unwrap());
    let row = state.drain(NOW, true, 100).totals.remove(0);
    assert_eq!(row.counts[Counter::SocialComments], 26);

    // Every table is a Delta table with a log; the shard files are apart.
    for table in ["article_totals", "article_engagement", "events"] {
        assert!(
            root.path().join(table).join("_delta_log").is_dir(),
            "{table}"
        );
    }
    assert!(root.path().join("_newsflow/shards/00000").is_dir());
}

/// The checkpoint files of shard 0, by sequence number, with their sizes.
/// A table created beside an existing lake (a release that writes one
/// more, or one an operator removed) holds no flush of any shard: a
/// restore starts it from the other tables' latest flush instead of
/// calling the shard inconsistent, and flushing goes on in every table.
#[test]
fn a_table_added_to_an_existing_lake_starts_from_the_others() {
    let root = tempfile::tempdir().unwrap();
    let uri = root.path().display().to_string();
    let tally = Tally::default();
    {
        let lake = Lake::open(&uri, &BTreeMap::new()).unwrap();
        let mut writer = Writer::restore(&lake, 0);
        let job = writer.cut(0, 10);
        writer.flush(job, &tally).unwrap();
        let job = writer.cut(10, 25);
        writer.flush(job, &tally).unwrap();
    }
    std::fs::remove_dir_all(root.path().join("article_engagement")).unwrap();

    let lake = Lake::open(&uri, &BTreeMap::new()).unwrap();
    let restored = lake.restore(0).unwrap();
    assert_eq!((restored.committed, restored.rolled_forward), (2, 1));
    let mut writer = Writer::restore(&lake, 0);
    assert_eq!(writer.committed, 2);
    let job = writer.cut(25, 30);
    writer.flush(job, &tally).unwrap();
    let again = Lake::open(&uri, &BTreeMap::new())
        .unwrap()
        .restore(0)
        .unwrap();
    assert_eq!(
        (again.committed, again.rolled_forward),
        (writer.committed, 0)
    );
}

fn checkpoint_files(root: &std::path::Path) -> BTreeMap<u64, u64> {
    std::fs::read_dir(root.join("_newsflow/shards/00000"))
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            let seq = name.strip_prefix("checkpoint-")?.parse().ok()?;
            Some((seq, entry.metadata().unwrap().len()))
        })
        .collect()
}

/// Most checkpoints hold only the changes since the one before; a restore
/// reads back to the last whole one and applies them in order, vacuum
/// keeps exactly that chain, and a damaged link is refused by name.
#[test]
fn a_shard_resumes_through_checkpoints_of_changes() {
    let root = tempfile::tempdir().unwrap();
    let uri = root.path().display().to_string();
    let lake = Lake::open(&uri, &BTreeMap::new()).unwrap();
    let tally = Tally::default();
    let mut writer = Writer::restore(&lake, 0);
    for k in 0..45 {
        let job = writer.cut(10 * k, 10 * k + 10);
        writer.flush(job, &tally).unwrap();
    }

    let restored = Lake::open(&uri, &BTreeMap::new())
        .unwrap()
        .restore(0)
        .unwrap();
    assert_eq!(restored.committed, writer.committed);
    let (base, patches) = (restored.chain.base(), restored.chain.patches());
    assert!(
        patches > 0 && base < restored.committed,
        "the last checkpoint holds changes: base {base}, {patches} after it"
    );
    let files = checkpoint_files(root.path());
    assert_eq!(files.len(), 45);
    // The state grows by ten comments a flush: a whole checkpoint holds
    // them all, one of changes only its flush's (beside the manifest of
    // the flush's files, about the same in every checkpoint).
    assert!(
        files[&restored.committed] < files[&base],
        "changes are smaller than the whole state: {files:?}"
    );
    let mut checkpoint = restored.checkpoint.unwrap();
    assert_eq!(checkpoint.offsets["t"], 450);
    let line = r#"{"schema_version":1,"event_id":"c-new","event_type":"social_comment","article_id":"a-1","occurred_at":"2026-11-01T09:59:00Z","platform":"x"}"#;
    let event = decode_unkeyed(line.as_bytes(), &LIMITS).unwrap();
    checkpoint.state.apply(&event);
    let row = checkpoint.state.drain(NOW, true, 1000).totals.remove(0);
    assert_eq!(
        row.counts[Counter::SocialComments],
        451,
        "every flush's comments, once"
    );
    let redelivered = decode_unkeyed(
        br#"{"schema_version":1,"event_id":"c-3","event_type":"social_comment","article_id":"a-1","occurred_at":"2026-11-01T09:03:00Z","platform":"x"}"#,
        &LIMITS,
    )
    .unwrap();
    assert_eq!(
        checkpoint.state.apply(&redelivered),
        newsflow_core::Applied::Duplicate,
        "the first flush's dedup memory came through the chain"
    );

    // Vacuum deletes what lies before the chain's whole checkpoint, and
    // nothing of the chain. It spares files written within the last hour
    // whatever the retention, so the files are made to look two hours old.
    age_files(root.path(), std::time::Duration::from_secs(7200));
    let report = lake
        .vacuum(std::time::Duration::ZERO, std::time::Duration::ZERO)
        .unwrap();
    let kept = checkpoint_files(root.path());
    assert_eq!(
        kept.keys().copied().collect::<Vec<_>>(),
        (base..=restored.committed).collect::<Vec<_>>(),
        "{report:?}"
    );
    let again = Lake::open(&uri, &BTreeMap::new())
        .unwrap()
        .restore(0)
        .unwrap();
    assert_eq!(again.checkpoint.unwrap().offsets["t"], 450);

    // A damaged checkpoint inside the chain stops the restore, by name.
    let link = base + 1;
    assert!(link < restored.committed, "a chain of more than one link");
    let path = root
        .path()
        .join(format!("_newsflow/shards/00000/checkpoint-{link:020}"));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes.truncate(middle);
    std::fs::write(&path, bytes).unwrap();
    let err = Lake::open(&uri, &BTreeMap::new())
        .unwrap()
        .restore(0)
        .unwrap_err()
        .to_string();
    assert!(err.contains(&format!("checkpoint-{link:020}")), "{err}");
}

#[test]
fn of_two_writers_racing_for_a_shard_one_is_fenced() {
    let root = tempfile::tempdir().unwrap();
    let uri = root.path().display().to_string();
    let tally = Tally::default();
    let old = Lake::open(&uri, &BTreeMap::new()).unwrap();
    let mut paused = Writer::restore(&old, 0);
    let job = paused.cut(0, 10);
    paused.flush(job, &tally).unwrap();

    // The old owner cuts its next flush, then pauses; the group gives the
    // shard to a new owner, which restores from the logs and commits first.
    let late = paused.cut(10, 20);
    let new = Lake::open(&uri, &BTreeMap::new()).unwrap();
    let mut owner = Writer::restore(&new, 0);
    assert_eq!(owner.committed, 1);
    assert!(
        owner.next_seq > paused.next_seq,
        "the new owner must not reuse the sequence number the old one claimed"
    );
    let job = owner.cut(10, 30);
    owner.flush(job, &tally).unwrap();

    // The old owner thaws and tries to commit: it is fenced, in the first
    // table it tries, so it adds nothing anywhere.
    let err = paused.flush(late, &tally).unwrap_err();
    assert!(
        matches!(err, FlushError::Fenced { table: Dataset::Events, found } if found == owner.committed),
        "{err:?}"
    );
    assert_eq!(tally.get("fenced"), 1);

    // The logs hold the new owner's flush, and its checkpoint.
    let restored = Lake::open(&uri, &BTreeMap::new())
        .unwrap()
        .restore(0)
        .unwrap();
    assert_eq!(restored.committed, owner.committed);
    assert_eq!(restored.checkpoint.unwrap().offsets["t"], 30);
}

#[test]
fn bad_storage_options_and_schemes_name_their_key() {
    let root = tempfile::tempdir().unwrap();
    let uri = root.path().display().to_string();
    let options = BTreeMap::from([("aws_region".to_string(), "x".to_string())]);
    let err = Lake::open(&uri, &options).unwrap_err().to_string();
    assert!(err.contains("output.storage.aws_region"), "{err}");
    let err = Lake::open("ftp://host/lake", &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("output.uri"), "{err}");
    let options = BTreeMap::from([("no_such_key".to_string(), "x".to_string())]);
    let err = Lake::open("s3://bucket/lake", &options)
        .unwrap_err()
        .to_string();
    assert!(err.contains("output.storage.no_such_key"), "{err}");
}

#[test]
fn a_lake_of_contract_v1_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("_checkpoints")).unwrap();
    std::fs::write(root.path().join("_checkpoints/shard-00000.ckpt"), b"x").unwrap();
    let err = Lake::open(&root.path().display().to_string(), &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("contract v1"), "{err}");
}

/// The contract's 256 KiB message limit.
const LIMITS: newsflow_core::DecodeLimits = newsflow_core::DecodeLimits {
    max_message_bytes: 256 * 1024,
};

/// Hour windows, a week's dedup horizon, five minutes of out-of-orderness.
fn rules() -> CountingRules {
    use newsflow_core::time::{DAY, SECOND};
    CountingRules {
        window_size: 3600 * SECOND,
        dedup_horizon: 7 * DAY,
        max_out_of_orderness: 300 * SECOND,
    }
}

/// Sets the modification time of every file below `root` back by `age`,
/// as if the files had been written that long ago (vacuum reads a file's
/// age from it, as object stores report it).
fn age_files(root: &std::path::Path, age: std::time::Duration) {
    let then = std::time::SystemTime::now() - age;
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                std::fs::File::options()
                    .write(true)
                    .open(&path)
                    .and_then(|f| f.set_modified(then))
                    .unwrap();
            }
        }
    }
}

/// A flush that failed at its commit leaves its checkpoint behind; if the
/// lake was wiped under it, the claim that guarded its number is gone
/// while the checkpoint is not. The next claim steps over that number
/// instead of handing it out again (whose checkpoint could then not be
/// written).
#[test]
fn a_checkpoint_left_without_its_claim_is_never_claimed_again() {
    let dir = tempfile::tempdir().unwrap();
    let uri = dir.path().to_str().unwrap().to_string();
    let shard_dir = dir.path().join("_newsflow/shards/00000");
    std::fs::create_dir_all(&shard_dir).unwrap();
    std::fs::write(shard_dir.join(format!("checkpoint-{:020}", 1)), b"stray").unwrap();
    let lake = Lake::open(&uri, &BTreeMap::new()).unwrap();
    let restored = lake.restore(0).unwrap();
    assert_eq!(restored.committed, 0);
    assert_eq!(restored.next_seq, 2, "number 1 has a checkpoint already");
}
