//! The pure heart of newsflow: what an event is, whether a Kafka message
//! holds a valid one, and how events become the footer counts under a news
//! story.
//!
//! Nothing here does I/O, reads a clock or knows about Kafka, Arrow or tokio.
//! Time is passed in as a value, so every behaviour can be tested with plain
//! data:
//!
//! ```
//! use newsflow_core::time::{DAY, SECOND};
//! use newsflow_core::{decode, Applied, Counter, CountingRules, DecodeLimits, Shard};
//!
//! let raw = br#"{"schema_version":1,"event_id":"c-1","event_type":"social_comment",
//!     "article_id":"a-1","occurred_at":"2026-11-01T10:00:00Z","platform":"x"}"#;
//! let limits = DecodeLimits { max_message_bytes: 256 * 1024 };
//! let event = decode(Some(b"a-1"), raw, &limits).unwrap();
//!
//! let rules = CountingRules {
//!     window_size: 3600 * SECOND,
//!     dedup_horizon: 7 * DAY,
//!     max_out_of_orderness: 300 * SECOND,
//! };
//! let mut shard = Shard::new(rules);
//! assert_eq!(shard.apply(&event), Applied::Counted);
//! assert_eq!(shard.apply(&event), Applied::Duplicate); // a redelivery counts once
//!
//! let out = shard.drain(1_800_000_000_000_000, true, 0);
//! assert_eq!(out.totals[0].counts[Counter::SocialComments], 1);
//! ```
//!
//! Module map:
//! - [`counted`]: the one list of event types and the counters they
//!   feed, from which state, rows, schemas and tallies are derived.
//! - [`event`]: the four event types and [`decode`], which turns message
//!   bytes into an [`Event`] or a [`Rejection`] with a stable reason code.
//! - [`shard`]: [`Shard`], the counting state machine for one partition's
//!   articles: dedup, distinct sources, windows, watermark, snapshots.
//! - [`rows`]: the rows of the three Parquet datasets, as plain structs.
//! - [`time`]: event time as microseconds since the Unix epoch.

pub mod counted;
pub mod event;
pub mod rng;
pub mod rows;
pub mod shard;
pub mod time;

pub use counted::{
    Counter, CounterSpec, Counts, Distinct, EventTopic, PerCounter, TypeSpec, COUNTERS,
    COUNTER_COUNT, EVENT_TYPES, EVENT_TYPE_COUNT,
};
pub use event::{
    decode, decode_keeping_text, DecodeLimits, Event, EventBody, EventType, RejectReason, Rejection,
};
pub use rng::SplitMix64;
pub use rows::{EngagementRow, Footer, TotalsRow};
pub use shard::{
    Applied, ColdArticle, CountingRules, Drained, PatchError, Shard, ShardChanges, ShardPatch,
    ShardPatchV4, ShardSnapshot, ShardSnapshotRef, ShardSnapshotV4, ShardV1, SnapshotError,
};
pub use time::Micros;
