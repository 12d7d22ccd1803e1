//! A server's connections: how many are held, how long a client may take,
//! and which one goes when the cap is reached. The setting names below are
//! the ingest endpoint's (`ingest.*`); the footer service has the same
//! three under `footer.*`.
//!
//! Three rules keep a crowd of idle or slow sockets from locking out the
//! clients a server exists for:
//! - **Head deadline.** The first byte and all headers of a request must
//!   arrive within `ingest.header_timeout` after the connection opened or
//!   the previous answer went out. An idle socket is closed silently; one
//!   that sent part of a request gets a 408 first.
//! - **One request deadline.** The body must be complete by
//!   `ingest.request_timeout` after the request's first byte (the handler
//!   enforces this with the instant recorded here), else 408.
//! - **Strangers first, then the idle.** At `ingest.max_connections`, a
//!   connection without a request in the handler is closed to make room:
//!   first the one waiting longest of those that never had a request
//!   answered other than 401 (strangers: a flood of new sockets that send
//!   nothing is all strangers, whatever their age), else the one waiting
//!   longest (at least a second) of the others. A token holder's new
//!   connection therefore always gets in while strangers hold the cap,
//!   and its head is read within milliseconds, after which it is in a
//!   request and safe. A new connection is refused only when every
//!   connection is mid-request or a token holder's just answered, and
//!   those refusals are logged at most every 10 s.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use newsflow_telemetry::ConnectionClose;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

/// What a connection may hold and for how long.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// `ingest.header_timeout` (or the footer's).
    pub header_timeout: Duration,
    /// `ingest.request_timeout`.
    pub request_timeout: Duration,
    /// `ingest.max_connections`.
    pub max_connections: usize,
    /// The section the three come from (`ingest`, `footer`), named in the
    /// 408 and in log lines so an operator knows which key to change.
    pub section: &'static str,
}

/// Told each time the server closes a connection itself (the binary
/// counts it in its own metric).
pub type CloseObserver = Arc<dyn Fn(ConnectionClose) + Send + Sync>;

/// When the request being served on a connection sent its first byte; the
/// handler's body deadline counts from it. Put into each request's
/// extensions.
#[derive(Clone, Copy, Debug)]
pub struct RequestStarted(pub Instant);

/// How long a connection has waited before it may be closed to make room:
/// long enough for a client's request head to arrive and be read.
const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// How often refusals at the cap are logged, at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// The 408 written straight to the socket when a request's head misses
/// its deadline (hyper has no request to answer yet).
fn head_timeout_answer(section: &str) -> String {
    let body = format!(
        r#"{{"error":"request_timeout","detail":"the request headers did not arrive within {section}.header_timeout"}}"#
    );
    format!(
        "HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Where one connection stands, shared by its socket wrapper, its service
/// and the accept loop.
#[derive(Debug)]
struct ConnectionState {
    /// When the connection opened or last finished answering.
    waiting_since: Instant,
    /// The first byte of the request being read, if one has begun.
    first_byte: Option<Instant>,
    /// A request is in the handler.
    in_request: bool,
    /// A request was answered with something other than 401: the client
    /// holds the token (or none is needed).
    proven: bool,
}

#[derive(Debug)]
struct Connection {
    state: Mutex<ConnectionState>,
    /// Asks the connection's task to close it to make room.
    evict: Notify,
}

impl Connection {
    fn new() -> Self {
        Connection {
            state: Mutex::new(ConnectionState {
                waiting_since: Instant::now(),
                first_byte: None,
                in_request: false,
                proven: false,
            }),
            evict: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ConnectionState> {
        // The state is plain data, valid whatever a panicking holder did.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The head of a request is complete and goes to the handler: returns
    /// when its first byte arrived.
    fn request_started(&self) -> Instant {
        let mut state = self.state();
        state.in_request = true;
        state.first_byte.unwrap_or_else(Instant::now)
    }

    /// The handler answered (`authorized` unless with 401); the next
    /// request's clock starts now.
    fn request_answered(&self, authorized: bool) {
        let mut state = self.state();
        state.proven |= authorized;
        state.in_request = false;
        state.first_byte = None;
        state.waiting_since = Instant::now();
    }

    fn saw_bytes(&self) {
        let mut state = self.state();
        if !state.in_request && state.first_byte.is_none() {
            state.first_byte = Some(Instant::now());
        }
    }

    /// When the head being awaited must be complete, and whether part of a
    /// request has arrived; `None` while a request is in the handler.
    fn head_deadline(&self, limits: &ConnectionLimits) -> Option<(Instant, bool)> {
        let state = self.state();
        if state.in_request {
            return None;
        }
        let mut deadline = state.waiting_since + limits.header_timeout;
        if let Some(first) = state.first_byte {
            deadline = deadline.min(first + limits.request_timeout);
        }
        Some((deadline, state.first_byte.is_some()))
    }

    /// Since when the connection has been without a request in the
    /// handler; `None` while one is.
    fn waiting_since(&self) -> Option<Instant> {
        let state = self.state();
        (!state.in_request).then_some(state.waiting_since)
    }

    /// Where the connection stands in the order of eviction at `now`
    /// (lowest first), or `None` if it may not be closed to make room: in
    /// a request, or a token holder's idle for less than
    /// [`EVICTABLE_AFTER`].
    fn eviction_rank(&self, now: Instant) -> Option<(bool, Instant)> {
        let state = self.state();
        if state.in_request {
            return None;
        }
        if state.proven && now.duration_since(state.waiting_since) < EVICTABLE_AFTER {
            return None;
        }
        Some((state.proven, state.waiting_since))
    }
}

/// The socket as hyper sees it: reads end (EOF) once the head deadline has
/// passed, after a 408 if part of a request had arrived.
struct DeadlineIo {
    socket: TcpStream,
    connection: Arc<Connection>,
    limits: ConnectionLimits,
    timer: Pin<Box<Sleep>>,
    on_close: CloseObserver,
    timed_out: bool,
}

impl DeadlineIo {
    fn head_timed_out(&mut self, partial: bool) {
        self.timed_out = true;
        if partial {
            // Best effort: the socket's buffer is empty while a head is
            // being read, and a client that does not read it loses nothing.
            let answer = head_timeout_answer(self.limits.section);
            let _ = self.socket.try_write(answer.as_bytes());
        }
        (self.on_close)(ConnectionClose::HeaderTimeout);
    }
}

impl AsyncRead for DeadlineIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.timed_out {
            return Poll::Ready(Ok(()));
        }
        if let Some((deadline, partial)) = this.connection.head_deadline(&this.limits) {
            if this.timer.deadline() != deadline {
                this.timer.as_mut().reset(deadline);
            }
            if this.timer.as_mut().poll(cx).is_ready() {
                this.head_timed_out(partial);
                return Poll::Ready(Ok(())); // EOF: hyper closes the connection
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.socket).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            this.connection.saw_bytes();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for DeadlineIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.socket).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.socket).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }
}

/// The open connections, by id.
#[derive(Default)]
struct Registry {
    open: Mutex<HashMap<u64, Arc<Connection>>>,
}

impl Registry {
    fn open(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Connection>>> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for one more connection: below the cap there is room;
    /// at it, the first in the order of eviction (see the module's rules)
    /// is asked to close (it leaves the registry at once, so it is not
    /// chosen twice). `false` when no connection can go.
    fn make_room(&self, cap: usize) -> bool {
        let mut open = self.open();
        if open.len() < cap {
            return true;
        }
        let now = Instant::now();
        let first = open
            .iter()
            .filter_map(|(id, c)| c.eviction_rank(now).map(|rank| (rank, *id)))
            .min();
        match first.and_then(|(_, id)| open.remove(&id)) {
            Some(victim) => {
                victim.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Logs refused connections at most every [`REFUSAL_LOG_EVERY`], with how
/// many were refused since the last line, so a flood cannot flood the log.
struct RefusalLog {
    last: Option<Instant>,
    unreported: u64,
}

impl RefusalLog {
    fn refused(&mut self, limits: &ConnectionLimits) {
        self.unreported += 1;
        if self.last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_EVERY) {
            tracing::warn!(
                refused = self.unreported,
                max_connections = limits.max_connections,
                "every connection at {}.max_connections is mid-request or a client's \
                 just answered; refusing new ones (logged at most every 10 s)",
                limits.section
            );
            self.last = Some(Instant::now());
            self.unreported = 0;
        }
    }
}

/// Accepts connections until `stop_accepting` resolves, then closes idle
/// connections, lets requests in flight finish for up to
/// `ingest.request_timeout`, and returns. `on_close` hears of every
/// connection the server closes itself.
pub async fn accept_until(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    on_close: CloseObserver,
    stop_accepting: impl Future<Output = ()>,
) {
    let registry = Arc::new(Registry::default());
    let (closing, closing_seen) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let mut refusals = RefusalLog {
        last: None,
        unreported: 0,
    };
    let mut next_id = 0u64;
    tokio::pin!(stop_accepting);
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _peer)) => socket,
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut stop_accepting => break,
        };
        while tasks.try_join_next().is_some() {}
        if !registry.make_room(limits.max_connections) {
            on_close(ConnectionClose::Refused);
            refusals.refused(&limits);
            continue;
        }
        next_id += 1;
        let id = next_id;
        let connection = Arc::new(Connection::new());
        registry.open().insert(id, connection.clone());
        let served = serve_connection(
            socket,
            connection,
            app.clone(),
            limits,
            on_close.clone(),
            closing_seen.clone(),
        );
        let registry = registry.clone();
        tasks.spawn(async move {
            served.await;
            registry.open().remove(&id);
        });
    }
    drop(listener);
    finish_in_flight(tasks, closing, &limits).await;
}

/// Tells open connections the server is closing and waits for their
/// requests, for `request_timeout` at most.
async fn finish_in_flight(
    mut tasks: JoinSet<()>,
    closing: watch::Sender<bool>,
    limits: &ConnectionLimits,
) {
    tracing::info!("no longer accepting; finishing requests in flight");
    let _ = closing.send(true);
    let drained = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(limits.request_timeout, drained)
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still open after {}.request_timeout; closing them",
            limits.section
        );
        tasks.abort_all();
    }
}

/// Serves one connection until it ends, is evicted, or the server closes.
async fn serve_connection(
    socket: TcpStream,
    connection: Arc<Connection>,
    app: Router,
    limits: ConnectionLimits,
    on_close: CloseObserver,
    mut closing: watch::Receiver<bool>,
) {
    let io = DeadlineIo {
        socket,
        connection: connection.clone(),
        limits,
        timer: Box::pin(tokio::time::sleep(limits.header_timeout)),
        on_close: on_close.clone(),
        timed_out: false,
    };
    let app = TowerToHyperService::new(app);
    let service = {
        let connection = connection.clone();
        hyper::service::service_fn(move |mut request: Request<Incoming>| {
            let started = connection.request_started();
            request.extensions_mut().insert(RequestStarted(started));
            let answered = hyper::service::Service::call(&app, request);
            let connection = connection.clone();
            async move {
                let response = answered.await;
                let authorized = response
                    .as_ref()
                    .is_ok_and(|r| r.status() != hyper::StatusCode::UNAUTHORIZED);
                connection.request_answered(authorized);
                response
            }
        })
    };
    let served = hyper::server::conn::http1::Builder::new()
        .header_read_timeout(None) // the head deadline lives in DeadlineIo
        .serve_connection(TokioIo::new(io), service);
    tokio::pin!(served);
    let evicted = tokio::select! {
        result = served.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            return;
        }
        () = connection.evict.notified() => true,
        _ = closing.wait_for(|closing| *closing) => false,
    };
    if evicted {
        on_close(ConnectionClose::Evicted);
        if connection.waiting_since().is_some() {
            return; // dropping the connection closes the socket
        }
    }
    // Finish the request in the handler (if any), then close.
    served.as_mut().graceful_shutdown();
    let _ = served.await;
}
