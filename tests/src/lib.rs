//! Harness for newsflow's end-to-end tests: a real Kafka broker, a real S3
//! API server (s3proxy), the real binaries, and DuckDB reading the Delta
//! tables through their logs.
//!
//! Nothing here skips: a missing broker, binary or DuckDB is a failure with
//! a message saying which `make` target provides it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use newsflow_core::Footer;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
pub use readers::{footers_by_every_reader, live_files, spark_footers, table_version, Footers};

/// A valid `social_comment` event on `article`, as one NDJSON line.
pub fn social_comment(id: &str, article: &str) -> String {
    format!(
        r#"{{"schema_version":1,"event_id":"{id}","event_type":"social_comment","article_id":"{article}","occurred_at":"2026-11-01T10:00:00Z","platform":"x"}}"#
    )
}

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Bootstrap servers of the test broker.
pub fn brokers() -> String {
    std::env::var("NEWSFLOW_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Path of a workspace binary built by `cargo build --workspace`, or of
/// the one in `NEWSFLOW_BIN_DIR` when set (another release's binaries, for
/// the upgrade tests and the checkpoint fixtures).
pub fn binary(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("NEWSFLOW_BIN_DIR") {
        return binary_in(Path::new(&dir), name);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"));
    binary_in(&target.join("debug"), name)
}

/// Path of binary `name` in `dir`, which must hold it.
pub fn binary_in(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (`make test` does, or `cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// A fresh, isolated set of topics, a consumer group and an output root.
pub struct TestEnv {
    /// Name prefix of this test's topics.
    pub prefix: String,
    /// Consumer group of this test's workers.
    pub group: String,
    /// The output root.
    pub lake: tempfile::TempDir,
    /// Partitions of each topic.
    pub partitions: i32,
    /// Where the workers write: the local `lake` folder, or a prefix of the
    /// local S3 server's bucket.
    pub lake_uri: String,
    /// The S3 endpoint the workers and readers use.
    pub s3_endpoint: String,
}

mod footer_service;
mod kafka;
mod processes;
mod queries;
mod readers;
pub mod s3;

pub use footer_service::*;
pub use kafka::*;
pub use processes::*;
pub use queries::*;

/// A lake to read: its URI (a folder or `s3://…`) and the S3 endpoint.
#[derive(Clone, Debug)]
pub struct LakeRef {
    /// The output root.
    pub uri: String,
    /// The S3 server, for `s3://` roots.
    pub s3_endpoint: String,
}

impl From<&Path> for LakeRef {
    fn from(path: &Path) -> Self {
        LakeRef {
            uri: path.display().to_string(),
            s3_endpoint: s3::endpoint(),
        }
    }
}

impl From<&TestEnv> for LakeRef {
    fn from(env: &TestEnv) -> Self {
        LakeRef {
            uri: env.lake_uri.clone(),
            s3_endpoint: env.s3_endpoint.clone(),
        }
    }
}

impl TestEnv {
    /// Creates names unique to this run; topics are created by the producer.
    pub fn new(name: &str, partitions: i32) -> Self {
        assert_broker_answers();
        let unique = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
        );
        let lake = tempfile::tempdir().expect("temporary directory");
        let lake_uri = lake.path().display().to_string();
        TestEnv {
            prefix: format!("test.{name}.{unique}"),
            group: format!("test-{name}-{unique}"),
            lake,
            partitions,
            lake_uri,
            s3_endpoint: s3::endpoint(),
        }
    }

    /// Like [`TestEnv::new`], with the lake on the local S3 server.
    pub fn on_s3(name: &str, partitions: i32) -> Self {
        Self::on_s3_at(name, partitions, &s3::endpoint())
    }

    /// Like [`TestEnv::on_s3`], on the S3 server at `endpoint`.
    pub fn on_s3_at(name: &str, partitions: i32, endpoint: &str) -> Self {
        s3::assert_answers(endpoint);
        let mut env = TestEnv::new(name, partitions);
        env.lake_uri = format!("s3://{}/tests/{}", s3::BUCKET, env.prefix);
        env.s3_endpoint = endpoint.to_string();
        env
    }

    /// Topic names: articles, comments, forum posts, dead letters.
    pub fn topics(&self) -> [String; 4] {
        ["articles", "comments", "forum-posts", "dead-letters"]
            .map(|t| format!("{}.{t}", self.prefix))
    }

    /// The output root.
    pub fn lake_path(&self) -> &Path {
        self.lake.path()
    }

    /// The folder that holds this test's lake files: the lake itself, or
    /// for an `s3://` lake the files of the local s3proxy's filesystem
    /// backend (`deploy/local/s3.sh`), whose objects' times are their
    /// files'.
    pub fn lake_files_dir(&self) -> PathBuf {
        if !self.lake_uri.starts_with("s3://") {
            return self.lake_path().to_path_buf();
        }
        assert_eq!(
            self.s3_endpoint,
            s3::endpoint(),
            "only the local s3proxy's files are on this machine"
        );
        let state = std::env::var("S3_STATE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| workspace().join("var/s3proxy"));
        state
            .join("data")
            .join(self.lake_uri.trim_start_matches("s3://"))
    }

    /// Sets the modification time of every file of this test's lake back
    /// by `age`, as if it had been written that long ago: vacuum spares
    /// files younger than an hour whatever its retention, and reads their
    /// age from the store.
    pub fn age_lake_files(&self, age: Duration) {
        let folder = self.lake_files_dir();
        assert!(folder.is_dir(), "no lake files at {}", folder.display());
        let then = std::time::SystemTime::now() - age;
        let mut stack = vec![folder];
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
                        .unwrap_or_else(|e| panic!("ageing {}: {e}", path.display()));
                }
            }
        }
    }

    /// The environment of the binaries: the contract's variables.
    pub fn vars(&self) -> Vec<(String, String)> {
        let [a, c, f, d] = self.topics();
        vec![
            ("NEWSFLOW__KAFKA__BROKERS".into(), brokers()),
            ("NEWSFLOW__KAFKA__GROUP_ID".into(), self.group.clone()),
            (
                "NEWSFLOW__KAFKA__PARTITIONS".into(),
                self.partitions.to_string(),
            ),
            ("NEWSFLOW__TOPICS__ARTICLES".into(), a),
            ("NEWSFLOW__TOPICS__COMMENTS".into(), c),
            ("NEWSFLOW__TOPICS__FORUM_POSTS".into(), f),
            ("NEWSFLOW__TOPICS__DEAD_LETTERS".into(), d),
            ("NEWSFLOW__OUTPUT__URI".into(), self.lake_uri.clone()),
            ("NEWSFLOW__OUTPUT__FLUSH_INTERVAL".into(), "1s".into()),
            (
                "NEWSFLOW__METRICS__LISTEN".into(),
                format!("127.0.0.1:{}", free_port()),
            ),
        ]
        .into_iter()
        .chain(s3::vars(&self.s3_endpoint))
        .collect()
    }

    /// A command running one of the binaries with this test's environment.
    pub fn command(&self, binary_name: &str) -> Command {
        self.command_of(&binary(binary_name))
    }

    /// A command running the binary at `path` with this test's environment.
    pub fn command_of(&self, path: &Path) -> Command {
        let mut command = Command::new(path);
        command
            .envs(self.vars())
            .env("RUST_LOG", "warn,newsflow=info");
        command
    }

    /// Runs `newsflow-producer` to completion.
    pub fn producer(&self, args: &[&str]) -> Output {
        let output = self
            .command("newsflow-producer")
            .args(args)
            .output()
            .expect("running newsflow-producer");
        output
    }

    /// Runs `newsflow-consumer run --exit-when-caught-up` to completion and
    /// asserts it exits 0.
    pub fn consume_until_caught_up(&self) -> Output {
        let output = self
            .command("newsflow-consumer")
            .args(["run", "--exit-when-caught-up"])
            .output()
            .expect("running newsflow-consumer");
        assert!(
            output.status.success(),
            "consumer failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts a long-running worker; its metrics listen on the returned port.
    pub fn spawn_worker(&self) -> Worker {
        self.spawn_worker_with(&[])
    }

    /// Starts a long-running worker with extra environment variables. The
    /// returned guard kills it if the test ends early, so no worker outlives
    /// a failed test.
    pub fn spawn_worker_with(&self, extra_env: &[(&str, &str)]) -> Worker {
        self.spawn_worker_of(&binary("newsflow-consumer"), extra_env)
    }

    /// Starts the worker binary at `consumer` (another release's, in the
    /// upgrade tests) with extra environment variables.
    pub fn spawn_worker_of(&self, consumer: &Path, extra_env: &[(&str, &str)]) -> Worker {
        let port = free_port();
        let child = self
            .command_of(consumer)
            .arg("run")
            .env("NEWSFLOW__METRICS__LISTEN", format!("127.0.0.1:{port}"))
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting newsflow-consumer");
        Worker { child, port }
    }

    /// Starts `newsflow-producer serve` with extra environment variables and
    /// waits until it is ready; the guard stops it when dropped.
    pub fn spawn_ingest(&self, extra_env: &[(&str, &str)]) -> Ingest {
        self.spawn_ingest_logging(extra_env, Stdio::inherit())
    }

    /// [`TestEnv::spawn_ingest`] with its log (stderr) sent to `log`.
    pub fn spawn_ingest_logging(&self, extra_env: &[(&str, &str)], log: Stdio) -> Ingest {
        let port = free_port();
        let metrics_port = free_port();
        let child = self
            .command("newsflow-producer")
            .arg("serve")
            .env("NEWSFLOW__INGEST__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "NEWSFLOW__METRICS__LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting newsflow-producer serve");
        let ingest = Ingest {
            child,
            port,
            metrics_port,
        };
        wait_for(
            "the ingest endpoint to be ready",
            Duration::from_secs(60),
            || http_get(metrics_port, "/readyz").is_ok_and(|r| r.starts_with("HTTP/1.1 200")),
        );
        ingest
    }

    /// A client that reads this test's group offsets and watermarks.
    fn group_client(&self) -> BaseConsumer {
        ClientConfig::new()
            .set("bootstrap.servers", brokers())
            .set("group.id", &self.group)
            .create()
            .expect("metadata client")
    }

    /// For every partition of the three event topics: the group's
    /// committed offset (0 when none), and the low and high watermarks.
    /// Transient broker answers (a coordinator moving after a restart, say)
    /// are retried for up to 30 s before they fail the test.
    fn partition_positions(&self, consumer: &BaseConsumer) -> Vec<(i64, i64, i64)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.try_partition_positions(consumer) {
                Ok(positions) => return positions,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("reading the group's positions: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(500));
                }
                Err(e) => panic!("reading the group's positions: {e}"),
            }
        }
    }

    /// Every partition of the three event topics.
    fn event_partitions(&self) -> TopicPartitionList {
        let [a, c, f, _] = self.topics();
        let mut list = TopicPartitionList::new();
        for topic in [&a, &c, &f] {
            for p in 0..self.partitions {
                list.add_partition(topic, p);
            }
        }
        list
    }

    fn try_partition_positions(
        &self,
        consumer: &BaseConsumer,
    ) -> rdkafka::error::KafkaResult<Vec<(i64, i64, i64)>> {
        let committed =
            consumer.committed_offsets(self.event_partitions(), Duration::from_secs(10))?;
        committed
            .elements()
            .iter()
            .map(|element| {
                let (low, high) = consumer.fetch_watermarks(
                    element.topic(),
                    element.partition(),
                    Duration::from_secs(10),
                )?;
                let at = match element.offset() {
                    Offset::Offset(o) => o,
                    _ => 0,
                };
                Ok((at, low, high))
            })
            .collect()
    }

    /// Sum of the group's committed offsets over the three event topics.
    pub fn committed_total(&self) -> i64 {
        self.partition_positions(&self.group_client())
            .iter()
            .map(|(at, _, _)| at)
            .sum()
    }

    /// How many events the three event topics hold.
    pub fn events_in_topics(&self) -> i64 {
        self.partition_positions(&self.group_client())
            .iter()
            .map(|(_, low, high)| high - low)
            .sum()
    }

    /// Publishes the seed article's 234 records (`newsflow-producer replay`
    /// of tests/fixtures/seed-article.ndjson): footer 16 / 166 / 37.
    pub fn replay_seed_article(&self) {
        let fixture = workspace().join("tests/fixtures/seed-article.ndjson");
        let replay = self.producer(&["replay", fixture.to_str().unwrap()]);
        assert!(
            replay.status.success(),
            "replaying the seed article failed: {}",
            String::from_utf8_lossy(&replay.stderr)
        );
    }

    /// Creates this test's topics by publishing the first event of the
    /// generated stream of `seed`. A later `stream` of the same seed starts
    /// with that event again, so it is also a redelivery to count once.
    pub fn create_topics(&self, seed: u64) {
        let output = self.producer(&["generate", "--seed", &seed.to_string(), "--count", "1"]);
        assert!(
            output.status.success(),
            "creating topics: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Publishes `count` generated events of `seed` at `rate` per second in
    /// the background; the expected totals are written when it finishes.
    pub fn stream(&self, seed: u64, count: u64, rate: u64) -> Stream {
        let expected = self
            .lake_path()
            .with_extension(format!("expected-{seed}.json"));
        let child = self
            .command("newsflow-producer")
            .env("RUST_LOG", "warn")
            .args([
                "generate",
                "--seed",
                &seed.to_string(),
                "--count",
                &count.to_string(),
            ])
            .args(["--rate", &rate.to_string(), "--expected"])
            .arg(&expected)
            .stdout(Stdio::null())
            .spawn()
            .expect("starting newsflow-producer");
        Stream { child, expected }
    }

    /// Asserts that the output equals the expected totals of `stream` for
    /// every article and keeps the invariants, with `extra` records
    /// published besides the stream itself (e.g. by [`TestEnv::create_topics`]).
    pub fn assert_output_matches(&self, stream: &Stream, extra: u64, after: &str) {
        self.assert_output_matches_file(&stream.expected, extra, after);
    }

    /// [`TestEnv::assert_output_matches`] against the generator's expected
    /// totals file at `expected`.
    pub fn assert_output_matches_file(&self, expected: &Path, extra: u64, after: &str) {
        let (messages, expected) = read_expected(expected);
        let got = current_totals(self);
        let wrong: Vec<_> = expected
            .iter()
            .filter(|(id, footer)| got.get(*id) != Some(footer))
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "after {after}, articles whose totals differ (first 5): {wrong:?}"
        );
        assert_eq!(
            got.len(),
            expected.len(),
            "after {after}, articles in the output"
        );
        assert_eq!(
            assert_output_invariants(self) as u64,
            messages + extra,
            "after {after}, every record archived exactly once"
        );
    }

    /// Waits until the group's committed offsets reach the end of every
    /// partition of the three event topics: all that was sent is counted,
    /// written and checkpointed.
    pub fn wait_until_committed(&self, timeout: Duration) {
        let consumer = self.group_client();
        let deadline = Instant::now() + timeout;
        loop {
            let behind: i64 = self
                .partition_positions(&consumer)
                .iter()
                .map(|(at, _, high)| (high - at).max(0))
                .sum();
            if behind == 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "workers did not commit to the end within {timeout:?}: {behind} messages behind"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

/// A failed test keeps its local lake (it says where) and its topics for a
/// post-mortem; a passing one leaves nothing behind.
impl Drop for TestEnv {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let dir = std::mem::replace(
                &mut self.lake,
                tempfile::TempDir::new().expect("temporary directory"),
            );
            eprintln!(
                "the lake of this failed test is kept at {}",
                dir.keep().display()
            );
        } else {
            self.delete_topics();
        }
    }
}

/// Fails the test unless a Kafka broker answers at [`brokers`].
pub fn assert_broker_answers() {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("metadata client");
    if let Err(e) = consumer.fetch_metadata(None, Duration::from_secs(15)) {
        panic!(
            "no Kafka broker answers at {} ({e}); start one with `make kafka-up`",
            brokers()
        );
    }
}

/// Polls `condition` every 200 ms until it holds, failing the test with
/// `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
