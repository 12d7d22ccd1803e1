//! `newsflow-footer serve` as a test starts it, and what a site asks it.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::Duration;

use crate::{free_port, wait_for, Footer, ServerProcess, TestEnv};

/// An answer of the footer API.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// Header names (lower case) and values.
    pub headers: BTreeMap<String, String>,
    /// The body.
    pub body: String,
}

impl Answer {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Splits a raw HTTP/1.1 answer (read to its end) into its parts.
pub fn parse_answer(raw: &str) -> Answer {
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {raw:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body: body.to_string(),
    }
}

impl ServerProcess {
    /// `GET path` on the API, with extra request headers.
    pub fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Answer {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.port as u16))
            .expect("connecting to the footer API");
        let extra: String = headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}Connection: close\r\n\r\n"
        )
        .expect("sending the request");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("reading the answer");
        parse_answer(&raw)
    }

    /// `GET path` on the API.
    pub fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[])
    }

    /// The footer of `article_id` as the API answers it, `None` if unknown.
    pub fn footer_of(&self, article_id: &str) -> Option<Footer> {
        let answer = self.get(&format!("/v1/articles/{article_id}/footer"));
        match answer.status {
            404 => None,
            200 => Some(footer_of_json(&answer.json())),
            other => panic!("footer of {article_id}: {other} {}", answer.body),
        }
    }

    /// The footers of many articles, asked `per_request` at a time through
    /// `/v1/footers?ids=`.
    pub fn footers_of<'a>(
        &self,
        ids: impl IntoIterator<Item = &'a String>,
        per_request: usize,
    ) -> BTreeMap<String, Footer> {
        let ids: Vec<&String> = ids.into_iter().collect();
        let mut found = BTreeMap::new();
        for chunk in ids.chunks(per_request) {
            let list: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
            let answer = self.get(&format!("/v1/footers?ids={}", list.join(",")));
            assert_eq!(answer.status, 200, "{}", answer.body);
            for item in answer.json().as_array().expect("a JSON list") {
                let id = item["article_id"].as_str().unwrap().to_string();
                found.insert(id, footer_of_json(item));
            }
        }
        found
    }
}

/// The counts and title of one footer object of the API.
pub fn footer_of_json(value: &serde_json::Value) -> Footer {
    Footer {
        title: value["title"].as_str().map(String::from),
        confirming_sources: value["confirming_sources"].as_i64().unwrap(),
        social_comments: value["social_comments"].as_i64().unwrap(),
        forum_posts: value["forum_posts"].as_i64().unwrap(),
    }
}

impl TestEnv {
    /// Publishes NDJSON `lines` with `newsflow-producer replay` and asserts
    /// every one was acknowledged.
    pub fn publish(&self, lines: &str) {
        let file = tempfile::NamedTempFile::new().expect("a temporary file");
        std::fs::write(file.path(), lines).expect("writing the events");
        let replay = self.producer(&["replay", file.path().to_str().unwrap()]);
        assert!(
            replay.status.success(),
            "replaying events failed: {}",
            String::from_utf8_lossy(&replay.stderr)
        );
    }

    /// Starts `newsflow-footer serve` on this test's lake with extra
    /// environment variables and waits until it is ready (its first full
    /// load is done); the guard stops it when dropped.
    pub fn spawn_footer(&self, extra_env: &[(&str, &str)]) -> ServerProcess {
        let service = self.spawn_footer_unready(extra_env);
        wait_for(
            "the footer service to be ready",
            Duration::from_secs(60),
            || service.ready(),
        );
        service
    }

    /// Starts `newsflow-footer serve` without waiting for it to be ready.
    pub fn spawn_footer_unready(&self, extra_env: &[(&str, &str)]) -> ServerProcess {
        let port = free_port();
        let metrics_port = free_port();
        let child = self
            .command("newsflow-footer")
            .arg("serve")
            .env("NEWSFLOW__FOOTER__LISTEN", format!("127.0.0.1:{port}"))
            .env(
                "NEWSFLOW__METRICS__LISTEN",
                format!("127.0.0.1:{metrics_port}"),
            )
            .envs(extra_env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting newsflow-footer serve");
        ServerProcess {
            child,
            port,
            metrics_port,
        }
    }
}
