//! Metrics as operators see them: a real Prometheus (Debian's package)
//! scrapes the HTTP-ingest producer and two workers while a stream runs.
//! Through Prometheus's HTTP API: the consumed rate is positive while the
//! stream runs, the consumed total equals what was produced, lag returns to
//! zero, and dead letters are counted by reason. Then every PromQL
//! expression of every Grafana panel must return data (no dead panels), the
//! alert rules load, and both binaries' /metrics pass `promtool check metrics`.

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use newsflow_e2e::{brokers, free_port, http_get, wait_for, workspace, TestEnv};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

const TOKEN: &str = "observability-token";

/// Prometheus on loopback, stopped when dropped.
struct Prometheus {
    child: Child,
    port: u32,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(dir: &Path, targets: &[(&str, u32)]) -> Self {
        let port = free_port();
        let scrape: String = targets
            .iter()
            .map(|(pod, port)| {
                format!(
                    "      - targets: [\"127.0.0.1:{port}\"]\n        labels: {{ namespace: test, pod: {pod} }}\n"
                )
            })
            .collect();
        let alerts = workspace().join("deploy/prometheus/alerts.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  - job_name: newsflow\n    static_configs:\n{scrape}",
            alerts.display()
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting prometheus (Debian's `prometheus` package; `make deps` installs it)");
        let prometheus = Prometheus { child, port };
        wait_for("Prometheus to be ready", Duration::from_secs(60), || {
            http_get(port, "/-/ready").is_ok_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        prometheus
    }

    /// An instant query; the `data.result` array.
    fn query(&self, promql: &str) -> Vec<serde_json::Value> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let response = reqwest::blocking::Client::new()
            .get(url)
            .query(&[("query", promql)])
            .send()
            .expect("querying Prometheus");
        let body: serde_json::Value = response.json().expect("Prometheus answers JSON");
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The single value of a query that returns one series, if any.
    fn scalar(&self, promql: &str) -> Option<f64> {
        let result = self.query(promql);
        let value = result.first()?["value"][1].as_str()?.parse().ok()?;
        Some(value)
    }

    fn rules_loaded(&self) -> usize {
        let url = format!("http://127.0.0.1:{}/api/v1/rules", self.port);
        let body: serde_json::Value = reqwest::blocking::get(url).unwrap().json().unwrap();
        body["data"]["groups"]
            .as_array()
            .map(|groups| {
                groups
                    .iter()
                    .map(|g| g["rules"].as_array().map_or(0, Vec::len))
                    .sum()
            })
            .unwrap_or(0)
    }
}

fn event(i: usize) -> String {
    let article = format!("obs-{}", i % 40);
    match i % 10 {
        0 => format!(
            r#"{{"schema_version":1,"event_id":"p-{i}","event_type":"article_published","article_id":"{article}","occurred_at":"2026-11-28T08:00:00Z","title":"T","url":"https://example.org/{i}"}}"#
        ),
        1 | 2 => format!(
            r#"{{"schema_version":1,"event_id":"s-{i}","event_type":"source_confirmed","article_id":"{article}","occurred_at":"2026-11-28T08:00:01Z","source_id":"src-{i}"}}"#
        ),
        3 | 4 => format!(
            r#"{{"schema_version":1,"event_id":"f-{i}","event_type":"forum_post","article_id":"{article}","occurred_at":"2026-11-28T08:00:02Z","forum":"f"}}"#
        ),
        _ => format!(
            r#"{{"schema_version":1,"event_id":"c-{i}","event_type":"social_comment","article_id":"{article}","occurred_at":"2026-11-28T08:00:03Z","platform":"x"}}"#
        ),
    }
}

fn promtool_check_metrics(name: &str, response: &str) {
    let (head, text) = response
        .split_once("\r\n\r\n")
        .expect("an HTTP response with a body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("chunked"), "{head}");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "promtool check metrics on the {name}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn prometheus_sees_the_truth_and_every_dashboard_panel_has_data() {
    let env = TestEnv::new("observability", 4);
    let dir = tempfile::tempdir().unwrap();
    let ingest = env.spawn_ingest(&[("NEWSFLOW__INGEST__AUTH_TOKEN", TOKEN)]);
    let workers = [env.spawn_worker(), env.spawn_worker()];
    // Ready once the workers have created article_totals.
    let footer = env.spawn_footer(&[]);
    let prometheus = Prometheus::start(
        dir.path(),
        &[
            ("producer", ingest.metrics_port),
            ("worker-1", workers[0].port),
            ("worker-2", workers[1].port),
            ("footer", footer.metrics_port),
        ],
    );
    assert_eq!(prometheus.rules_loaded(), 11, "the alert rules load");

    // Dead letters first, straight into the comments topic.
    let [_, comments, _, _] = env.topics();
    let raw: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let unkeyed = event(5); // a valid comment, but without its key
    for (key, value) in [
        (Some("obs-1"), "not json"),
        (Some("obs-2"), "{]"),
        (None, unkeyed.as_str()),
    ] {
        let mut record: BaseRecord<'_, str, str> = BaseRecord::to(&comments).payload(value);
        if let Some(key) = key {
            record = record.key(key);
        }
        raw.send(record).map_err(|(e, _)| e).unwrap();
    }
    raw.flush(Duration::from_secs(10)).unwrap();

    // The stream: 24 batches of 500 over HTTP, about 10 s.
    let http = reqwest::blocking::Client::new();
    let batches = 24;
    let mut seen_rate = false;
    for batch in 0..batches {
        let body: String = (batch * 500..(batch + 1) * 500)
            .map(|i| event(i) + "\n")
            .collect();
        let response = http
            .post(ingest.url())
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .unwrap();
        assert_eq!(response.status(), 200);
        // A page load asks for a footer (404 until its first flush).
        footer.get(&format!("/v1/articles/obs-{}/footer", batch % 40));
        std::thread::sleep(Duration::from_millis(400));
        if batch >= 8 && !seen_rate {
            let rate = prometheus
                .scalar(r#"sum(rate(newsflow_events_consumed_total{namespace="test"}[5s]))"#)
                .unwrap_or(0.0);
            seen_rate = rate > 0.0;
        }
    }
    assert!(
        seen_rate,
        "Prometheus saw a positive consumed rate while the stream ran"
    );
    let produced = (batches * 500) as f64;

    env.wait_until_committed(Duration::from_secs(90));
    wait_for(
        "consumed total to equal produced",
        Duration::from_secs(30),
        || {
            prometheus.scalar(r#"sum(newsflow_events_consumed_total{namespace="test"})"#)
                == Some(produced)
        },
    );
    // Each target is scraped on its own clock: the producer's last
    // scrape can trail the consumers' by an interval.
    wait_for(
        "produced total to equal what was sent",
        Duration::from_secs(30),
        || {
            prometheus.scalar(r#"sum(newsflow_events_produced_total{pod="producer"})"#)
                == Some(produced)
        },
    );
    wait_for("lag to return to 0", Duration::from_secs(60), || {
        prometheus.scalar(r#"max(newsflow_consumer_lag_messages{namespace="test"})"#) == Some(0.0)
    });
    let dead: Vec<(String, f64)> = prometheus
        .query(r#"sum by (reason) (newsflow_events_dead_lettered_total{namespace="test"}) > 0"#)
        .iter()
        .map(|r| {
            (
                r["metric"]["reason"].as_str().unwrap().to_string(),
                r["value"][1].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    let mut dead = dead;
    dead.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        dead,
        [
            ("invalid_json".to_string(), 2.0),
            ("missing_key".to_string(), 1.0)
        ]
    );

    // No dead panels: every expression of the dashboard returns data.
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(workspace().join("deploy/grafana/dashboards/newsflow.json"))
            .unwrap(),
    )
    .unwrap();
    let mut checked = 0;
    let mut dead_panels = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$namespace", "test")
                .replace("$pod", ".*")
                .replace("$__rate_interval", "30s");
            checked += 1;
            if prometheus.query(&expr).is_empty() {
                dead_panels.push(format!("{}: {expr}", panel["title"]));
            }
        }
    }
    assert!(
        checked >= 25,
        "only {checked} expressions found in the dashboard"
    );
    assert!(
        dead_panels.is_empty(),
        "panels without data: {dead_panels:#?}"
    );

    promtool_check_metrics("producer", &ingest.metrics());
    promtool_check_metrics("footer", &footer.metrics());
    for worker in &workers {
        promtool_check_metrics("worker", &worker.metrics());
    }
    // Each binary exports its own series, none of the other's at zero.
    let series = |text: &str| -> std::collections::BTreeSet<String> {
        text.lines()
            .filter_map(|l| l.strip_prefix("# TYPE newsflow_"))
            .map(|l| l.split(' ').next().unwrap().to_string())
            .collect()
    };
    let producer = series(&ingest.metrics());
    let worker = series(&workers[0].metrics());
    let footers = series(&footer.metrics());
    for (a, b, pair) in [
        (&producer, &worker, "producer and worker"),
        (&producer, &footers, "producer and footer"),
        (&worker, &footers, "worker and footer"),
    ] {
        let shared: Vec<&String> = a.intersection(b).collect();
        assert_eq!(shared, ["build_info"], "series the {pair} both export");
    }
    assert!(footers.contains("footer_requests_total") && footers.contains("footer_table_version"));
    assert!(
        producer.contains("ingest_requests_total") && producer.contains("events_produced_total")
    );
    assert!(worker.contains("events_consumed_total") && worker.contains("lake_commits_total"));
    for worker in workers {
        worker.terminate();
    }
}
