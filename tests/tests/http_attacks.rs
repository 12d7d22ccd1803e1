//! `newsflow-producer serve` against a catalogue of attacks that once
//! worked against HTTP servers like it, and must keep failing: tokens,
//! path tricks, smuggling shapes, deep nesting, a gzip bomb, slowloris,
//! the token never in a trace log.

use std::io::Write;
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use newsflow_e2e::{social_comment, TestEnv};
use reqwest::StatusCode;

mod common;
use common::{fresh_client, post, raw_exchange, read_until_closed, TOKEN};

#[test]
fn the_catalogue_of_attacks_that_held_keeps_holding() {
    let env = TestEnv::new("hostile-catalogue", 1);
    let log_dir = tempfile::tempdir().unwrap();
    let log_path = log_dir.path().join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let ingest = env.spawn_ingest_logging(
        &[
            ("NEWSFLOW__INGEST__AUTH_TOKEN", TOKEN),
            ("NEWSFLOW__INGEST__HEADER_TIMEOUT", "2s"),
            ("RUST_LOG", "trace"),
        ],
        Stdio::from(log),
    );
    let port = ingest.port;
    let event = social_comment("catalogue", "a1");
    let request = |method: &str, path: &str, headers: &str, body: &str| {
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let bearer = format!("Authorization: Bearer {TOKEN}\r\n");
    let cases: Vec<(&str, String, &str)> = vec![
        // No way in without the exact token.
        ("no token", request("POST", "/v1/events", "", &event), "401"),
        (
            "lower-case scheme with a wrong token",
            request("POST", "/v1/events", "Authorization: bearer nope\r\n", &event),
            "401",
        ),
        (
            "token with a character too many",
            request(
                "POST",
                "/v1/events",
                &format!("Authorization: Bearer {TOKEN}0\r\n"),
                &event,
            ),
            "401",
        ),
        (
            "token in the query string",
            request("POST", &format!("/v1/events?access_token={TOKEN}"), "", &event),
            "401",
        ),
        (
            "two Authorization headers, the first wrong",
            request(
                "POST",
                "/v1/events",
                &format!("Authorization: Bearer nope\r\n{bearer}"),
                &event,
            ),
            "401",
        ),
        // Path tricks reach nothing.
        ("trailing slash", request("POST", "/v1/events/", &bearer, &event), "404"),
        ("dot segments", request("POST", "/v1/x/../events", &bearer, &event), "404"),
        ("double slash", request("POST", "//v1/events", &bearer, &event), "404"),
        ("upper case", request("POST", "/V1/EVENTS", &bearer, &event), "404"),
        ("encoded slash", request("POST", "/v1%2Fevents", &bearer, &event), "404"),
        ("GET", request("GET", "/v1/events", &bearer, ""), "405"),
        // Request smuggling shapes are refused, not reinterpreted.
        (
            "two different Content-Lengths",
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\n{bearer}Content-Length: 3\r\nContent-Length: {}\r\n\r\n{event}",
                event.len()
            ),
            "400",
        ),
        (
            "Content-Length and chunked together",
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: x\r\n{bearer}Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nPOST /v1/events HTTP/1.1\r\nHost: x\r\n{bearer}Content-Length: {}\r\n\r\n{event}",
                event.len()
            ),
            "400",
        ),
        // Deep nesting is refused before anything recurses on it.
        (
            "an array nested 100,000 deep",
            request(
                "POST",
                "/v1/events",
                &bearer,
                &format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            ),
            "200",
        ),
        // A lone surrogate gets its own reason (see the body check below).
        (
            "a lone surrogate in article_id",
            request(
                "POST",
                "/v1/events",
                &bearer,
                &social_comment("surrogate", r"a\ud800"),
            ),
            "200",
        ),
    ];
    // The scheme is case-insensitive (RFC 9110); the token is not.
    let lower_case = request(
        "POST",
        "/v1/events",
        &format!("Authorization: bearer {TOKEN}\r\n"),
        &social_comment("lower-case-scheme", "a1"),
    );
    let answer = raw_exchange(port, lower_case.as_bytes(), Duration::from_secs(10));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for (name, request, status) in &cases {
        let answer = raw_exchange(port, request.as_bytes(), Duration::from_secs(10));
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: expected {status}, got {answer:?}"
        );
        assert!(
            !answer.contains(TOKEN),
            "{name}: the answer holds the token"
        );
        if *name == "an array nested 100,000 deep" {
            assert!(answer.contains("nests deeper than 64 levels"), "{answer}");
        }
        if *name == "a lone surrogate in article_id" {
            assert!(
                answer.contains(r#""reason":"lone_surrogate""#)
                    && answer.contains("`article_id` escapes a lone UTF-16 surrogate"),
                "{answer}"
            );
        }
    }

    // A gzip bomb is not inflated: a Content-Encoding the endpoint does
    // not decode is refused (415) instead of read as text and rejected
    // line by line, so the answer and the memory stay small.
    let zeros = std::process::Command::new("sh")
        .args(["-c", "head -c 50000000 /dev/zero | gzip -9"])
        .output()
        .unwrap()
        .stdout;
    assert!(zeros.len() < 100_000);
    let response = fresh_client()
        .post(ingest.url())
        .bearer_auth(TOKEN)
        .header("Content-Encoding", "gzip")
        .body(zeros)
        .send()
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let outcome: serde_json::Value = response.json().unwrap();
    assert_eq!(outcome["error"], "unsupported_content_encoding");
    assert!(ingest.peak_rss_mib() < 100.0);

    // Slowloris: 200 connections trickling a header each; authorised
    // requests are served meanwhile, and every trickler gets a 408 at the
    // head deadline.
    let mut tricklers: Vec<TcpStream> = (0..200)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
            s.write_all(b"POST /v1/events HTTP/1.1\r\nHost: x\r\n")
                .unwrap();
            s
        })
        .collect();
    for round in 0..3 {
        for s in &mut tricklers {
            let _ = s.write_all(b"X-Slow: 1\r\n");
        }
        let (status, _) = post(
            &ingest.url(),
            social_comment(&format!("loris-{round}"), "a1"),
        );
        assert_eq!(status, StatusCode::OK);
        std::thread::sleep(Duration::from_millis(300));
    }
    for s in &mut tricklers {
        let answer = read_until_closed(s, Duration::from_secs(10));
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    }
    assert_eq!(env.events_in_topics(), 4);

    // Even at trace level the token never reaches the log.
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(log.contains("TRACE"), "the log is at trace level");
    assert!(!log.contains(TOKEN), "the token appears in the trace log");
}
