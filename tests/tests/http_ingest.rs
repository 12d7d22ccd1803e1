//! `newsflow-producer serve` with a real HTTP client against the real
//! broker: authentication, body limits, per-line rejections, a client that
//! never finishes, and a burst that fills the producer's queue.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use newsflow_e2e::{current_totals, metric_value, read_answer, social_comment, workspace, TestEnv};
use reqwest::blocking::Client;
use reqwest::StatusCode;

const TOKEN: &str = "test-token-5f2c9a";
const ARTICLE: &str = "politik.2026-11-01.russland-nordkorea-buendnis";

fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

fn json(response: reqwest::blocking::Response) -> (StatusCode, serde_json::Value) {
    let status = response.status();
    let body = response.text().unwrap();
    let value = serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("response is not JSON ({e}): {body}"));
    (status, value)
}

#[test]
fn only_the_token_holder_publishes_and_oversized_bodies_are_refused() {
    let env = TestEnv::new("ingest-auth", 1);
    let ingest = env.spawn_ingest(&[
        ("NEWSFLOW__INGEST__AUTH_TOKEN", TOKEN),
        ("NEWSFLOW__INGEST__MAX_BODY_BYTES", "65536"),
    ]);
    let body = social_comment("c1", "a1");
    let http = client();

    let missing = http.post(ingest.url()).body(body.clone()).send().unwrap();
    assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    for header in [
        "Bearer wrong-token".to_string(),
        format!("Bearer {TOKEN}x"),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]),
        format!("Basic {TOKEN}"),
        TOKEN.to_string(),
    ] {
        let response = http
            .post(ingest.url())
            .header("Authorization", &header)
            .body(body.clone())
            .send()
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{header}");
    }
    assert_eq!(
        env.events_in_topics(),
        0,
        "nothing published without the token"
    );

    // Over the limit, announced by Content-Length and streamed in chunks.
    let line = social_comment("c-pad", "a1") + "\n";
    let big = line.repeat(65536 / line.len() + 10);
    let response = http
        .post(ingest.url())
        .bearer_auth(TOKEN)
        .body(big.clone())
        .send()
        .unwrap();
    // Answered before the body was read: the connection is not reused.
    assert_eq!(response.headers()["connection"], "close");
    let (status, problem) = json(response);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["error"], "body_too_large");
    let chunked = reqwest::blocking::Body::new(std::io::Cursor::new(big.into_bytes()));
    let response = http
        .post(ingest.url())
        .bearer_auth(TOKEN)
        .body(chunked)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        env.events_in_topics(),
        0,
        "nothing published from a refused body"
    );

    let (status, outcome) = json(
        http.post(ingest.url())
            .bearer_auth(TOKEN)
            .body(body)
            .send()
            .unwrap(),
    );
    assert_eq!(status, StatusCode::OK);
    assert_eq!(outcome["accepted"], 1);
    assert_eq!(env.events_in_topics(), 1);

    let metrics = ingest.metrics();
    assert_eq!(
        metric_value(&metrics, "newsflow_ingest_requests_total{code=\"401\"}"),
        Some(6.0)
    );
    assert_eq!(
        metric_value(&metrics, "newsflow_ingest_requests_total{code=\"413\"}"),
        Some(2.0)
    );
    assert!(
        !metrics.contains(TOKEN),
        "the token never appears in /metrics"
    );
}

#[test]
fn good_lines_are_published_and_bad_ones_reported_by_number() {
    let env = TestEnv::new("ingest-mixed", 3);
    let ingest = env.spawn_ingest(&[("NEWSFLOW__INGEST__AUTH_TOKEN", TOKEN)]);
    let fixture =
        std::fs::read_to_string(workspace().join("tests/fixtures/seed-article.ndjson")).unwrap();
    let events: Vec<&str> = fixture.lines().filter(|l| !l.trim().is_empty()).collect();
    let (first, rest) = events.split_at(events.len() / 2);

    // NDJSON with bad lines among the good ones (and a blank line, skipped).
    let mut body = String::new();
    let mut bad_lines = Vec::new();
    let mut line_number = 0;
    for (i, event) in first.iter().enumerate() {
        if i % 20 == 5 {
            line_number += 1;
            body.push_str("{\"this is\": \"not an event\"}\n");
            bad_lines.push((line_number, "missing_field"));
            line_number += 1;
            body.push('\n');
        }
        if i % 20 == 9 {
            line_number += 1;
            body.push_str("not json\n");
            bad_lines.push((line_number, "invalid_json"));
        }
        line_number += 1;
        body.push_str(event);
        body.push('\n');
    }
    let (status, outcome) = json(
        client()
            .post(ingest.url())
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/x-ndjson")
            .body(body)
            .send()
            .unwrap(),
    );
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], first.len());
    let rejected: Vec<(u64, String)> = outcome["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["line"].as_u64().unwrap(),
                r["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let expected: Vec<(u64, String)> = bad_lines
        .iter()
        .map(|(n, reason)| (*n, reason.to_string()))
        .collect();
    assert_eq!(rejected, expected);

    // The rest as a JSON array, with one element that is not an object.
    let mut array = rest.join(",");
    array.push_str(",[1,2]");
    let (status, outcome) = json(
        client()
            .post(ingest.url())
            .bearer_auth(TOKEN)
            .header("Content-Type", "application/json")
            .body(format!("[{array}]"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["accepted"], rest.len());
    assert_eq!(outcome["rejected"][0]["line"], rest.len() + 1);
    assert_eq!(outcome["rejected"][0]["reason"], "not_an_object");

    env.consume_until_caught_up();
    let footer = &current_totals(env.lake_path())[ARTICLE];
    assert_eq!(
        (
            footer.confirming_sources,
            footer.social_comments,
            footer.forum_posts
        ),
        (16, 166, 37),
        "the seed article's footer, published over HTTP"
    );
}

#[test]
fn a_client_that_never_finishes_is_cut_off_and_others_are_served_meanwhile() {
    let env = TestEnv::new("ingest-slow", 1);
    let ingest = env.spawn_ingest(&[
        ("NEWSFLOW__INGEST__AUTH_TOKEN", TOKEN),
        ("NEWSFLOW__INGEST__REQUEST_TIMEOUT", "2s"),
    ]);
    let address = format!("127.0.0.1:{}", ingest.port);

    // Promises 1000 bytes of body and sends 10.
    let mut slow_body = TcpStream::connect(&address).unwrap();
    write!(
        slow_body,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n{{\"schema_"
    )
    .unwrap();
    // Never finishes its headers.
    let mut slow_headers = TcpStream::connect(&address).unwrap();
    write!(
        slow_headers,
        "POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthor"
    )
    .unwrap();
    let opened = Instant::now();

    // Meanwhile a well-behaved client is served.
    let (status, _) = json(
        client()
            .post(ingest.url())
            .bearer_auth(TOKEN)
            .body(social_comment("c1", "a1"))
            .send()
            .unwrap(),
    );
    assert_eq!(status, StatusCode::OK);

    let answer = read_answer(&mut slow_body, Duration::from_secs(10))
        .expect("the server answers a stalled body within its timeout");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let closed = read_answer(&mut slow_headers, Duration::from_secs(10))
        .expect("the server closes a connection whose headers never end");
    assert!(
        closed.starts_with("HTTP/1.1 408"),
        "a request cut off mid-head still gets its 408: {closed:?}"
    );
    assert!(
        opened.elapsed() < Duration::from_secs(15),
        "both slow clients were cut off near the 2 s timeout"
    );
    assert_eq!(
        env.events_in_topics(),
        1,
        "the stalled request published nothing"
    );
}

#[test]
fn a_burst_beyond_the_queue_gets_503_with_retry_after_and_loses_nothing_it_accepted() {
    let env = TestEnv::new("ingest-burst", 1);
    let ingest = env.spawn_ingest(&[
        ("NEWSFLOW__INGEST__AUTH_TOKEN", TOKEN),
        ("NEWSFLOW__INGEST__MAX_QUEUED_EVENTS", "10"),
    ]);
    let body: String = (0..5000)
        .map(|i| social_comment(&format!("burst-{i}"), &format!("a{}", i % 50)) + "\n")
        .collect();
    let response = client()
        .post(ingest.url())
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "1");
    let (_, outcome) = json(response);
    assert_eq!(outcome["error"], "queue_full");
    let accepted = outcome["accepted"].as_i64().unwrap();
    let unpublished = outcome["unpublished"].as_i64().unwrap();
    assert!(accepted < 5000 && unpublished > 0, "{outcome}");
    assert_eq!(accepted + unpublished, 5000);
    assert_eq!(
        env.events_in_topics(),
        accepted,
        "exactly the acknowledged events are in Kafka"
    );
}
