//! What the HTTP ingest tests share: the token, a client that opens a
//! new connection per request, and raw exchanges on a socket.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use newsflow_e2e::read_answer;
use reqwest::blocking::Client;
use reqwest::StatusCode;

/// The ingest's bearer token in these tests.
pub const TOKEN: &str = "hostile-token-8d1e7b";

/// A client that opens a new connection per request, as the crowd of
/// scrapers behind a NAT would.
pub fn fresh_client() -> Client {
    client_waiting(Duration::from_secs(60))
}

/// [`fresh_client`], waiting up to `timeout` for an answer.
pub fn client_waiting(timeout: Duration) -> Client {
    Client::builder()
        .timeout(timeout)
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

pub fn post(ingest_url: &str, body: impl Into<reqwest::blocking::Body>) -> (StatusCode, String) {
    post_waiting(ingest_url, body, Duration::from_secs(60))
}

/// [`post`], waiting up to `timeout` for the answer.
pub fn post_waiting(
    ingest_url: &str,
    body: impl Into<reqwest::blocking::Body>,
    timeout: Duration,
) -> (StatusCode, String) {
    let response = client_waiting(timeout)
        .post(ingest_url)
        .bearer_auth(TOKEN)
        .body(body)
        .send()
        .unwrap();
    (response.status(), response.text().unwrap())
}

/// Sends raw bytes on a new connection and returns everything the server
/// writes before it closes (or `within` passes).
pub fn raw_exchange(port: u32, request: &[u8], within: Duration) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port as u16)).unwrap();
    stream.write_all(request).unwrap();
    read_until_closed(&mut stream, within)
}

/// Everything the server writes before it closes (or `within` passes).
pub fn read_until_closed(stream: &mut TcpStream, within: Duration) -> String {
    read_answer(stream, within).unwrap_or_default()
}
