//! `newsflow-producer serve`: HTTP ingest for crawlers and scrapers that
//! cannot speak Kafka.
//!
//! `POST /v1/events` takes NDJSON (one event per line) or a JSON array of
//! events, validates every event against the contract, and publishes the
//! valid ones keyed by `article_id`. The response is sent only after Kafka
//! acknowledged every accepted event (`acks=all`, idempotent producer), and
//! lists each rejected line with its number and reason:
//!
//! ```text
//! 200 {"accepted": 998, "rejected": [{"line": 3, "reason": "invalid_json", "detail": "..."}]}
//! ```
//!
//! When the producer's queue is full (`ingest.max_queued_events`) or Kafka
//! does not acknowledge, the answer is 503 with `Retry-After`. Resending the
//! whole request is safe: events already published carry their `event_id`,
//! and the workers count a redelivered event once.
//!
//! The endpoint is guarded by a bearer token compared in constant time, a
//! body limit (413), and a request timeout that covers reading headers and
//! body (408), so a slow client cannot hold a connection.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::BodyExt;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use newsflow_core::DecodeLimits;
use newsflow_settings::{Secret, Settings, Topics};
use newsflow_telemetry::{Health, Metrics};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::publisher::delivery_failure_reason;

/// Connections served at once; further ones are closed on accept, so a
/// flood of idle sockets cannot exhaust file descriptors.
const MAX_CONNECTIONS: usize = 1024;

/// What `Retry-After` asks a client to wait when the queue is full.
const RETRY_AFTER_SECONDS: &str = "1";

/// The ingest endpoint's shared state.
struct Ingest {
    producer: FutureProducer,
    topics: Topics,
    limits: DecodeLimits,
    token: Option<Secret>,
    max_body_bytes: usize,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
}

/// One line (or array element) that was not published, and why.
#[derive(Serialize)]
struct Rejected {
    line: usize,
    reason: &'static str,
    detail: String,
}

#[derive(Serialize)]
struct Outcome {
    accepted: usize,
    rejected: Vec<Rejected>,
    /// Valid events not published because Kafka was busy or unavailable.
    #[serde(skip_serializing_if = "Option::is_none")]
    unpublished: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hint: Option<&'static str>,
}

/// Serves `POST /v1/events` on `ingest.listen` until `shutdown` resolves,
/// then finishes the requests in flight and waits for Kafka's
/// acknowledgements.
pub async fn serve(
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let ingest_settings = &settings.ingest;
    let token = ingest_settings.required_token()?.cloned();
    let listen = ingest_settings.listen;
    if token.is_none() {
        tracing::warn!(%listen, "ingest.allow_unauthenticated is set: anyone who reaches the endpoint can publish");
    }
    let producer: FutureProducer = ingest_producer_config(&settings)
        .create()
        .context("creating the Kafka producer")?;
    let ingest = Arc::new(Ingest {
        producer,
        topics: settings.topics.clone(),
        limits: settings.decode_limits(),
        token,
        max_body_bytes: ingest_settings.max_body_bytes,
        request_timeout: ingest_settings.request_timeout,
        metrics,
    });
    let app = Router::new()
        .route("/v1/events", post(post_events))
        .with_state(ingest.clone());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding ingest.listen {listen}"))?;
    tracing::info!(listen = %listener.local_addr()?, "accepting events on POST /v1/events");
    health.set_ready();

    accept_until(listener, app, ingest.request_timeout, shutdown).await;

    health.set_not_ready("draining");
    let producer = ingest.producer.clone();
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
        .await
        .context("flushing the producer")?
        .context("waiting for Kafka to acknowledge queued events")?;
    tracing::info!("ingest stopped");
    Ok(())
}

/// The accept loop: HTTP/1.1 connections with a header-read timeout, at
/// most [`MAX_CONNECTIONS`] at once, drained gracefully on shutdown.
async fn accept_until(
    listener: tokio::net::TcpListener,
    app: Router,
    request_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(connection) => connection,
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many connections; closing a new one");
            continue;
        };
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(request_timeout)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    tracing::info!("shutdown requested: finishing requests in flight");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(request_timeout) => {
            tracing::warn!("requests still open after ingest.request_timeout; closing them");
        }
    }
}

/// The event producer's configuration with the ingest queue bound, and a
/// delivery timeout no longer than a request may take.
fn ingest_producer_config(settings: &Settings) -> rdkafka::ClientConfig {
    let ingest = &settings.ingest;
    newsflow_kafka::producer_config_with(
        settings,
        &[
            (
                "queue.buffering.max.messages",
                ingest.max_queued_events.to_string(),
            ),
            ("linger.ms", "5".to_string()),
            (
                "message.timeout.ms",
                ingest.request_timeout.as_millis().max(1000).to_string(),
            ),
        ],
    )
}

async fn post_events(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let response = ingest.handle(&headers, body).await;
    ingest.metrics.ingest_request(response.status().as_u16());
    response
}

/// What reading a request body came to.
enum BodyRead {
    /// The whole body, within the limit.
    Complete(Vec<u8>),
    /// More than the limit.
    TooLarge,
    /// The connection failed mid-body.
    Failed(axum::Error),
}

/// How much of an oversized body is still read (and dropped) before the
/// 413 goes out.
const DRAIN_LIMIT: usize = 1 << 20;

/// Reads a body of at most `limit` bytes. Past the limit the rest is read
/// and dropped (up to [`DRAIN_LIMIT`] more, never kept): a server that
/// answers and closes while request bytes are still unread makes the kernel
/// reset the connection, and the client sees a broken connection instead of
/// the 413.
async fn read_body(mut body: Body, limit: usize) -> BodyRead {
    let mut bytes = Vec::new();
    let mut dropped: Option<usize> = None;
    while let Some(frame) = body.frame().await {
        let data = match frame {
            Ok(frame) => match frame.into_data() {
                Ok(data) => data,
                Err(_) => continue, // trailers
            },
            Err(_) if dropped.is_some() => break,
            Err(e) => return BodyRead::Failed(e),
        };
        match dropped.as_mut() {
            Some(n) => {
                *n += data.len();
                if *n > DRAIN_LIMIT {
                    break;
                }
            }
            None if bytes.len() + data.len() > limit => {
                dropped = Some(data.len());
                bytes = Vec::new();
            }
            None => bytes.extend_from_slice(&data),
        }
    }
    match dropped {
        Some(_) => BodyRead::TooLarge,
        None => BodyRead::Complete(bytes),
    }
}

fn problem(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": error, "detail": detail.into() });
    (status, Json(body)).into_response()
}

impl Ingest {
    async fn handle(&self, headers: &HeaderMap, body: Body) -> Response {
        if !self.authorized(headers) {
            let mut response = problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send a valid `Authorization: Bearer <token>` header",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return self.too_large();
        }
        let reading = read_body(body, self.max_body_bytes);
        let bytes = match tokio::time::timeout(self.request_timeout, reading).await {
            Err(_) => {
                return problem(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the body did not arrive within {:?} (ingest.request_timeout)",
                        self.request_timeout
                    ),
                )
            }
            Ok(BodyRead::TooLarge) => return self.too_large(),
            Ok(BodyRead::Failed(e)) => {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    format!("reading the body failed: {e}"),
                )
            }
            Ok(BodyRead::Complete(bytes)) => bytes,
        };
        let items = match split_events(&bytes) {
            Ok(items) if items.is_empty() => {
                return problem(StatusCode::BAD_REQUEST, "empty", "the body holds no events")
            }
            Ok(items) => items,
            Err(detail) => return problem(StatusCode::BAD_REQUEST, "malformed_body", detail),
        };
        self.publish(items).await
    }

    fn too_large(&self) -> Response {
        problem(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the body exceeds {} bytes (ingest.max_body_bytes); send smaller batches",
                self.max_body_bytes
            ),
        )
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        headers
            .get(header::AUTHORIZATION)
            .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
            .is_some_and(|presented| token.matches(presented))
    }

    /// Validates each event, queues the valid ones, and waits for Kafka.
    async fn publish(&self, items: Vec<(usize, &[u8])>) -> Response {
        let mut rejected = Vec::new();
        let mut in_flight = Vec::with_capacity(items.len());
        let mut unpublished = 0usize;
        let mut queue_full = false;
        for (line, raw) in items {
            let event = match newsflow_core::event::decode_unkeyed(raw, &self.limits) {
                Ok(event) => event,
                Err(rejection) => {
                    self.metrics.produce_error(rejection.reason.code());
                    self.metrics.ingest_events("rejected", 1);
                    rejected.push(Rejected {
                        line,
                        reason: rejection.reason.code(),
                        detail: rejection.detail,
                    });
                    continue;
                }
            };
            if queue_full {
                unpublished += 1;
                continue;
            }
            let topic = self.topics.for_event_type(event.event_type());
            let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
                .key(event.article_id.as_str())
                .payload(raw);
            match self.producer.send_result(record) {
                Ok(delivery) => in_flight.push((topic, delivery)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    queue_full = true;
                    unpublished += 1;
                }
                Err((error, _)) => {
                    self.metrics.produce_error(delivery_failure_reason(&error));
                    unpublished += 1;
                }
            }
        }
        let mut accepted = 0usize;
        for (topic, delivery) in in_flight {
            match delivery.await {
                Ok(Ok(_)) => {
                    accepted += 1;
                    self.metrics.produced(topic, 1);
                }
                Ok(Err((error, _))) => {
                    self.metrics.produce_error(delivery_failure_reason(&error));
                    unpublished += 1;
                }
                Err(_cancelled) => unpublished += 1,
            }
        }
        self.metrics.ingest_events("accepted", accepted as u64);
        if queue_full {
            self.metrics.produce_error("queue_full");
        }
        if unpublished > 0 {
            self.metrics
                .ingest_events("unpublished", unpublished as u64);
        }
        let unavailable = unpublished > 0;
        let outcome = Outcome {
            accepted,
            rejected,
            unpublished: unavailable.then_some(unpublished),
            error: if queue_full {
                Some("queue_full")
            } else if unavailable {
                Some("kafka_unavailable")
            } else {
                None
            },
            hint: unavailable.then_some(
                "retry the whole request after Retry-After; events already accepted are counted once by event_id",
            ),
        };
        if unavailable {
            let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(outcome)).into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECONDS),
            );
            response
        } else {
            (StatusCode::OK, Json(outcome)).into_response()
        }
    }
}

/// Splits a body into numbered events: the elements of a JSON array, or
/// the non-blank lines of NDJSON (numbered as lines of the body, from 1).
fn split_events(body: &[u8]) -> Result<Vec<(usize, &[u8])>, String> {
    let Some(first) = body.iter().position(|b| !b.is_ascii_whitespace()) else {
        return Ok(Vec::new());
    };
    if body[first] == b'[' {
        let elements: Vec<&RawValue> = serde_json::from_slice(body)
            .map_err(|e| format!("the body starts with `[` but is not a JSON array: {e}"))?;
        return Ok(elements
            .into_iter()
            .enumerate()
            .map(|(i, raw)| (i + 1, raw.get().as_bytes()))
            .collect());
    }
    Ok(body
        .split(|b| *b == b'\n')
        .enumerate()
        .map(|(i, line)| (i + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::split_events;

    #[test]
    fn ndjson_lines_keep_their_numbers() {
        let body = b"{\"a\":1}\r\n\n  \n{\"b\":2}\nnot json";
        let items = split_events(body).unwrap();
        let numbers: Vec<usize> = items.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 4, 5]);
        assert_eq!(items[0].1, b"{\"a\":1}");
        assert_eq!(items[2].1, b"not json");
    }

    #[test]
    fn arrays_are_numbered_by_element() {
        let items = split_events(b" [ {\"a\":1}, 7, {\"b\":[2]} ] ").unwrap();
        let raws: Vec<&[u8]> = items.iter().map(|(_, r)| *r).collect();
        assert_eq!(raws, [&b"{\"a\":1}"[..], b"7", b"{\"b\":[2]}"]);
        assert_eq!(items[2].0, 3);
        assert!(split_events(b"[{\"a\":1}")
            .unwrap_err()
            .contains("not a JSON array"));
        assert!(split_events(b"  \n ").unwrap().is_empty());
    }
}
