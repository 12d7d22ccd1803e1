//! Events and shards for the counting tests, built from plain data.
#![allow(dead_code)]

use newsflow_core::time::{parse_rfc3339, SECOND};
use newsflow_core::{Counter, Event, EventBody, Micros, Shard, ShardSnapshot, TotalsRow};

pub const HOUR: Micros = 3600 * SECOND;
pub const NOW: Micros = 1_800_000_000 * SECOND;

pub fn at(text: &str) -> Micros {
    parse_rfc3339(text).unwrap()
}

pub fn event<'a>(id: &'a str, article: &'a str, t: &str, body: EventBody<'a>) -> Event<'a> {
    Event {
        event_id: id.into(),
        article_id: article.into(),
        occurred_at: at(t),
        body,
    }
}

pub fn comment<'a>(id: &'a str, article: &'a str, t: &str) -> Event<'a> {
    event(
        id,
        article,
        t,
        EventBody::SocialComment {
            platform: "x".into(),
            author_id: None,
        },
    )
}

pub fn post<'a>(id: &'a str, article: &'a str, t: &str) -> Event<'a> {
    event(
        id,
        article,
        t,
        EventBody::ForumPost {
            forum: "f".into(),
            thread_id: None,
            author_id: None,
        },
    )
}

pub fn source<'a>(id: &'a str, article: &'a str, t: &str, source_id: &'a str) -> Event<'a> {
    event(
        id,
        article,
        t,
        EventBody::SourceConfirmed {
            source_id: source_id.into(),
            source_url: None,
        },
    )
}

pub fn published<'a>(id: &'a str, article: &'a str, t: &str, title: &'a str) -> Event<'a> {
    event(
        id,
        article,
        t,
        EventBody::ArticlePublished {
            title: title.into(),
            url: "https://x".into(),
            section: None,
            language: None,
            author: None,
        },
    )
}

/// Applies events and returns the latest totals row of each article.
pub fn totals_after(events: &[Event<'_>]) -> Vec<TotalsRow> {
    let mut shard = Shard::new(super::rules());
    for e in events {
        shard.apply(e);
    }
    shard.drain(NOW, true, 0).totals
}

/// A shard's whole state written as a checkpoint holds it, and read back.
pub fn round_trip(shard: &Shard) -> Shard {
    restore(&postcard::to_stdvec(&shard.snapshot()).unwrap())
}

pub fn restore(snapshot: &[u8]) -> Shard {
    Shard::try_from(postcard::from_bytes::<ShardSnapshot>(snapshot).unwrap()).unwrap()
}

pub fn footer(row: &TotalsRow) -> (i64, i64, i64) {
    (
        row.counts[Counter::ConfirmingSources],
        row.counts[Counter::SocialComments],
        row.counts[Counter::ForumPosts],
    )
}
