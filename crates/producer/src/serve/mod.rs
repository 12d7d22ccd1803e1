//! `newsflow-producer serve`: HTTP ingest for crawlers and scrapers that
//! cannot speak Kafka.
//!
//! `POST /v1/events` takes NDJSON (one event per line) or a JSON array of
//! events, validates every event against the contract, and publishes the
//! valid ones keyed by `article_id`. The response is sent only after Kafka
//! acknowledged every accepted event (`acks=all`, idempotent producer), and
//! lists the first rejected lines with their numbers and reasons (see
//! [`answer`]), counting all of them by reason:
//!
//! ```text
//! 200 {"accepted": 998, "rejected": [{"line": 3, "reason": "invalid_json", "detail": "..."}],
//!      "rejected_count": 2, "rejected_by_reason": {"invalid_json": 2}}
//! ```
//!
//! When the producer's queue is full (`ingest.max_queued_events`) or Kafka
//! does not acknowledge, the answer is 503 with `Retry-After`. Resending the
//! whole request is safe: events already published carry their `event_id`,
//! and the workers count a redelivered event once.
//!
//! The endpoint is guarded by a bearer token compared in constant time, a
//! body limit (413), and the deadlines and connection cap of
//! `newsflow_http`, so neither a slow client nor a crowd of idle sockets
//! can hold the endpoint.
//!
//! On SIGTERM, `/readyz` turns red first; requests are still taken for
//! `ingest.shutdown_delay`, so load balancers stop routing before the port
//! closes; then the requests in flight finish and Kafka acknowledges.

mod answer;
mod body;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Extension, Json, Router};
use newsflow_core::{DecodeLimits, EventType};
use newsflow_settings::{Secret, Settings, Topics};
use newsflow_telemetry::{DeliveryFailure, Health, IngestOutcome, Metrics};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::publisher::delivery_failure;
use answer::{Outcome, Rejections};
use body::{drain, for_each_event, read_body, BodyRead, DRAIN_BEYOND_LIMIT};
use newsflow_http::{
    accept_until, unready_then_stop, CloseObserver, ConnectionLimits, RequestStarted,
};

/// What `Retry-After` asks a client to wait when the queue is full.
const RETRY_AFTER_SECONDS: &str = "1";

/// The ingest endpoint's shared state.
struct Ingest {
    producer: FutureProducer,
    topics: Topics,
    limits: DecodeLimits,
    token: Option<Secret>,
    max_body_bytes: usize,
    max_rejected_details: usize,
    request_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Ingest {
    /// The endpoint's state: its Kafka producer, limits and token.
    fn new(settings: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let ingest_settings = &settings.ingest;
        let token = ingest_settings.required_token()?;
        if token.is_none() {
            tracing::warn!(listen = %ingest_settings.listen, "ingest.allow_unauthenticated is set: anyone who reaches the endpoint can publish");
        }
        let producer: FutureProducer = newsflow_kafka::create_client(
            &ingest_producer_config(settings),
            rdkafka::client::DefaultClientContext,
            "creating the Kafka producer",
        )?;
        Ok(Ingest {
            producer,
            topics: settings.topics.clone(),
            limits: settings.decode_limits(),
            token,
            max_body_bytes: ingest_settings.max_body_bytes,
            max_rejected_details: ingest_settings.max_rejected_details,
            request_timeout: ingest_settings.request_timeout,
            metrics,
        })
    }
}

/// Serves `POST /v1/events` on `ingest.listen` until `shutdown` resolves,
/// then shuts down in the order a load balancer needs (see the module
/// documentation) and waits for Kafka's acknowledgements.
pub async fn serve(
    settings: Arc<Settings>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let ingest_settings = &settings.ingest;
    let ingest = Arc::new(Ingest::new(&settings, metrics.clone())?);
    let app = Router::new()
        .route("/v1/events", post(post_events))
        .with_state(ingest.clone());
    let listen = ingest_settings.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding ingest.listen {listen}"))?;
    tracing::info!(listen = %listener.local_addr()?, "accepting events on POST /v1/events");
    health.set_ready();
    let kafka_watch = tokio::spawn(watch_kafka(
        ingest.producer.clone(),
        settings.topics.articles.clone(),
        health.clone(),
    ));

    let limits = ConnectionLimits {
        header_timeout: ingest_settings.header_timeout,
        request_timeout: ingest_settings.request_timeout,
        max_connections: ingest_settings.max_connections,
        section: "ingest",
    };
    let on_close: CloseObserver = {
        let metrics = metrics.clone();
        Arc::new(move |reason| metrics.ingest_connection_closed(reason))
    };
    let stop_accepting = unready_then_stop(
        shutdown,
        health.clone(),
        ingest_settings.shutdown_delay,
        "ingest",
    );
    accept_until(listener, app, limits, on_close, stop_accepting).await;
    kafka_watch.abort();

    let producer = ingest.producer.clone();
    tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
        .await
        .context("flushing the producer")?
        .context("waiting for Kafka to acknowledge queued events")?;
    tracing::info!("ingest stopped");
    Ok(())
}

/// How often the endpoint asks Kafka whether it answers, and how long it
/// waits for the answer.
const KAFKA_CHECK_EVERY: Duration = Duration::from_secs(2);

/// Keeps `/readyz` red while Kafka does not answer: events taken then
/// could only wait in the queue until their delivery times out, and a load
/// balancer should send them to an endpoint that can deliver them. Asks
/// for one topic's metadata every [`KAFKA_CHECK_EVERY`].
async fn watch_kafka(producer: FutureProducer, topic: String, health: Arc<Health>) {
    let mut ticker = tokio::time::interval(KAFKA_CHECK_EVERY);
    let mut unreachable = false;
    loop {
        ticker.tick().await;
        let (client, topic) = (producer.clone(), topic.clone());
        let answer = tokio::task::spawn_blocking(move || {
            client
                .client()
                .fetch_metadata(Some(&topic), KAFKA_CHECK_EVERY)
                .map(|_| ())
        })
        .await;
        match answer {
            Ok(Ok(())) if unreachable => {
                unreachable = false;
                tracing::info!("Kafka answers again; ready");
                health.clear_problem("kafka");
            }
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                if !unreachable {
                    tracing::warn!(%error, "Kafka does not answer; /readyz is red until it does");
                }
                unreachable = true;
                health.set_problem("kafka", format!("Kafka does not answer: {error}"));
            }
            Err(_) => {} // the check itself panicked or was cancelled
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
    started: Option<Extension<RequestStarted>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = started.map_or_else(tokio::time::Instant::now, |Extension(s)| s.0);
    let response = ingest.handle(started, &headers, body).await;
    ingest.metrics.ingest_request(response.status().as_u16());
    response
}

fn problem(status: StatusCode, error: &'static str, detail: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": error, "detail": detail.into() });
    (status, Json(body)).into_response()
}

/// An answer given before the request body was read to its end: the
/// connection cannot carry another request, and `Connection: close` says
/// so, or a client would send its next request on a connection the server
/// is closing (and lose a body it cannot replay).
fn closing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The credentials of a `Bearer` authorization. The scheme is
/// case-insensitive (RFC 9110, section 11.1); the token is not.
fn bearer_credentials(value: &[u8]) -> Option<&[u8]> {
    let (scheme, credentials) = value.split_at_checked(7)?;
    scheme
        .eq_ignore_ascii_case(b"Bearer ")
        .then_some(credentials)
}

/// What queueing the valid events of a body came to.
struct Queued {
    in_flight: Vec<(EventType, DeliveryFuture)>,
    unpublished: usize,
    queue_full: bool,
}

/// What validating a body and queueing its valid events came to.
struct Validated {
    rejections: Rejections,
    queued: Queued,
    events: Result<usize, String>,
}

impl Ingest {
    async fn handle(
        self: &Arc<Self>,
        started: tokio::time::Instant,
        headers: &HeaderMap,
        body: Body,
    ) -> Response {
        let deadline = started + self.request_timeout;
        if let Some(early) = self.early_answer(headers) {
            // Read (and drop) what a client that sends before it reads is
            // still sending, within the request's deadline, so it sees
            // this answer and not a reset connection.
            let limit = self.max_body_bytes + DRAIN_BEYOND_LIMIT;
            let _ = tokio::time::timeout_at(deadline, drain(body, limit)).await;
            return closing(early);
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // One deadline for the whole request, counted from its first byte.
        let reading = read_body(body, self.max_body_bytes, declared.map(|n| n as usize));
        let bytes = match tokio::time::timeout_at(deadline, reading).await {
            Err(_) => {
                return closing(problem(
                    StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    format!(
                        "the request did not arrive within {:?} of its first byte (ingest.request_timeout)",
                        self.request_timeout
                    ),
                ))
            }
            Ok(BodyRead::TooLarge) => return closing(self.too_large()),
            Ok(BodyRead::Failed(e)) => {
                return closing(problem(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    format!("reading the body failed: {e}"),
                ))
            }
            Ok(BodyRead::Complete(bytes)) => bytes,
        };
        self.publish(bytes).await
    }

    /// The answer to a request refused on its head alone: no token (401),
    /// a body encoded in a way this endpoint does not decode (415), or a
    /// declared length over the limit (413).
    fn early_answer(&self, headers: &HeaderMap) -> Option<Response> {
        if !self.authorized(headers) {
            let mut response = problem(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "send a valid `Authorization: Bearer <token>` header",
            );
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return Some(response);
        }
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim());
        if encoding.is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            return Some(problem(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_content_encoding",
                "send the body uncompressed (no Content-Encoding, or identity)",
            ));
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        declared
            .is_some_and(|n| n > self.max_body_bytes as u64)
            .then(|| self.too_large())
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
            .and_then(|value| bearer_credentials(value.as_bytes()))
            .is_some_and(|presented| token.matches(presented))
    }

    /// Validates each event of the body and queues the valid ones, on the
    /// blocking pool: a 16 MiB body takes a CPU for about a second, which
    /// on an async thread would stall every other request and probe.
    /// Then waits for Kafka, and answers.
    async fn publish(self: &Arc<Self>, body: Vec<u8>) -> Response {
        let ingest = self.clone();
        let validated = tokio::task::spawn_blocking(move || ingest.validate(&body)).await;
        let Ok(Validated {
            rejections,
            queued,
            events,
        }) = validated
        else {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "validating the body failed; nothing of it was published",
            );
        };
        match events {
            Ok(0) => return problem(StatusCode::BAD_REQUEST, "empty", "the body holds no events"),
            Ok(_) => {}
            Err(detail) => return problem(StatusCode::BAD_REQUEST, "malformed_body", detail),
        }
        // Counted once per reason, not once per line: a body of a million
        // bad lines should not cost a million metric updates.
        for (reason, n) in rejections.by_reason() {
            self.metrics.produce_errors(reason, n as u64);
        }
        self.metrics
            .ingest_events(IngestOutcome::Rejected, rejections.total() as u64);

        let queue_full = queued.queue_full;
        let (accepted, unpublished) = self.delivered(queued).await;
        self.metrics
            .ingest_events(IngestOutcome::Accepted, accepted as u64);
        if queue_full {
            self.metrics.produce_error(DeliveryFailure::QueueFull);
        }
        if unpublished > 0 {
            self.metrics
                .ingest_events(IngestOutcome::Unpublished, unpublished as u64);
        }
        let mut outcome = Outcome::new(accepted, rejections);
        if unpublished == 0 {
            return (StatusCode::OK, Json(outcome)).into_response();
        }
        outcome.unpublished = Some(unpublished);
        outcome.error = Some(if queue_full {
            "queue_full"
        } else {
            "kafka_unavailable"
        });
        outcome.hint = Some(
            "retry the whole request after Retry-After; events already accepted are counted once by event_id",
        );
        let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(outcome)).into_response();
        response.headers_mut().insert(
            header::RETRY_AFTER,
            HeaderValue::from_static(RETRY_AFTER_SECONDS),
        );
        response
    }

    /// Waits for Kafka's acknowledgement of every queued event: how many
    /// were accepted, and how many were not published.
    async fn delivered(&self, queued: Queued) -> (usize, usize) {
        let (mut accepted, mut unpublished) = (0, queued.unpublished);
        for (event_type, delivery) in queued.in_flight {
            match delivery.await {
                Ok(Ok(_)) => {
                    accepted += 1;
                    self.metrics
                        .produced(self.topics.for_event_type(event_type), 1);
                }
                Ok(Err((error, _))) => {
                    self.metrics.produce_error(delivery_failure(&error));
                    unpublished += 1;
                }
                Err(_cancelled) => unpublished += 1,
            }
        }
        (accepted, unpublished)
    }

    /// Validates every event of `body` and queues the valid ones.
    fn validate(&self, body: &[u8]) -> Validated {
        let mut rejections = Rejections::new(self.max_rejected_details);
        let mut queued = Queued {
            in_flight: Vec::new(),
            unpublished: 0,
            queue_full: false,
        };
        let events = for_each_event(
            body,
            |line, raw| match newsflow_core::event::decode_unkeyed(raw, &self.limits) {
                Ok(event) => self.queue(&event, raw, &mut queued),
                Err(rejection) => rejections.add(line, rejection),
            },
        );
        Validated {
            rejections,
            queued,
            events,
        }
    }

    /// Hands one valid event to the producer. Once the queue is full, the
    /// rest of the body is only counted as unpublished.
    fn queue(&self, event: &newsflow_core::Event<'_>, raw: &[u8], queued: &mut Queued) {
        if queued.queue_full {
            queued.unpublished += 1;
            return;
        }
        let event_type = event.event_type();
        let topic = self.topics.for_event_type(event_type);
        let record: FutureRecord<'_, str, [u8]> = FutureRecord::to(topic)
            .key(event.article_id.as_ref())
            .payload(raw);
        match self.producer.send_result(record) {
            Ok(delivery) => queued.in_flight.push((event_type, delivery)),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                queued.queue_full = true;
                queued.unpublished += 1;
            }
            Err((error, _)) => {
                self.metrics.produce_error(delivery_failure(&error));
                queued.unpublished += 1;
            }
        }
    }
}
