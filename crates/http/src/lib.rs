//! The HTTP hardening both newsflow servers share (`newsflow-producer
//! serve`'s ingest endpoint and `newsflow-footer serve`): a deadline for
//! each request's head and one for the whole request, a cap on
//! connections that lets the idle and the strangers go first, and a
//! shutdown that finishes the requests in flight. The routes are the
//! server's own; this crate only owns the sockets (see [`connections`]).

pub mod connections;

pub use connections::{accept_until, CloseObserver, ConnectionLimits, RequestStarted};
