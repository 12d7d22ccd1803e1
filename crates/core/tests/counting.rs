//! The counting semantics of the contract's section 3, tested with plain data.

use newsflow_core::time::{DAY, SECOND};

mod common;
use common::events::*;

use newsflow_core::{Applied, Counter, CountingRules, Shard};

#[test]
fn distinct_sources_are_compared_case_insensitively() {
    let rows = totals_after(&[
        source("s1", "a", "2026-11-01T10:00:00Z", "tagesschau.de"),
        source("s2", "a", "2026-11-01T10:05:00Z", "Tagesschau.DE"),
        source("s3", "a", "2026-11-01T10:06:00Z", "spiegel.de"),
    ]);
    assert_eq!(footer(&rows[0]), (2, 0, 0));
}

#[test]
fn a_redelivered_event_counts_once_and_is_reported_as_duplicate() {
    let mut shard = Shard::new(common::rules());
    let c = comment("c1", "a", "2026-11-01T10:00:00Z");
    assert_eq!(shard.apply(&c), Applied::Counted);
    assert_eq!(shard.apply(&c), Applied::Duplicate);
    let p = post("p1", "a", "2026-11-01T10:00:00Z");
    assert_eq!(shard.apply(&p), Applied::Counted);
    assert_eq!(shard.apply(&p), Applied::Duplicate);
    let rows = shard.drain(NOW, true, 0).totals;
    assert_eq!(footer(&rows[0]), (0, 1, 1));
}

#[test]
fn the_same_event_id_in_two_types_or_two_articles_is_two_events() {
    let rows = totals_after(&[
        comment("x", "a", "2026-11-01T10:00:00Z"),
        post("x", "a", "2026-11-01T10:00:00Z"),
        comment("x", "b", "2026-11-01T10:00:00Z"),
    ]);
    assert_eq!(footer(&rows[0]), (0, 1, 1));
    assert_eq!(footer(&rows[1]), (0, 1, 0));
}

#[test]
fn counts_exist_before_the_article_and_the_title_appears_when_it_arrives() {
    let mut shard = Shard::new(common::rules());
    shard.apply(&comment("c1", "a", "2026-11-01T10:00:00Z"));
    let first = shard.drain(NOW, true, 0).totals;
    assert_eq!(first[0].title, None);
    assert_eq!(first[0].counts[Counter::SocialComments], 1);
    assert_eq!(first[0].version, 1);

    shard.apply(&published("p", "a", "2026-11-01T09:00:00Z", "Allianz"));
    let second = shard.drain(NOW + SECOND, true, 0).totals;
    assert_eq!(second[0].title.as_deref(), Some("Allianz"));
    assert_eq!(second[0].counts[Counter::SocialComments], 1);
    assert_eq!(second[0].version, 2, "version grows with every changed row");
    assert_eq!(second[0].first_event_at, at("2026-11-01T09:00:00Z"));
    assert_eq!(second[0].last_event_at, at("2026-11-01T10:00:00Z"));
}

#[test]
fn arrival_order_does_not_matter() {
    let events = vec![
        published("p1", "a", "2026-11-01T08:00:00Z", "first title"),
        source("s1", "a", "2026-11-01T09:00:00Z", "a.example"),
        comment("c1", "a", "2026-11-01T12:00:00Z"),
        comment("c2", "a", "2026-11-01T08:30:00Z"),
        comment("c1", "a", "2026-11-01T12:00:00Z"),
        post("f1", "a", "2026-11-01T15:00:00Z"),
        source("s2", "a", "2026-11-01T07:00:00Z", "A.EXAMPLE"),
        source("s3", "a", "2026-11-01T07:30:00Z", "b.example"),
        published("p2", "a", "2026-11-01T10:00:00Z", "corrected title"),
    ];
    let expected = totals_after(&events);
    assert_eq!(footer(&expected[0]), (2, 2, 1));
    assert_eq!(
        expected[0].title.as_deref(),
        Some("corrected title"),
        "latest event time wins"
    );
    // Every rotation and the reversal give the same footer and title.
    for k in 0..events.len() {
        let mut order = events.clone();
        order.rotate_left(k);
        let got = totals_after(&order);
        assert_eq!(footer(&got[0]), footer(&expected[0]), "rotation {k}");
        assert_eq!(got[0].title, expected[0].title, "rotation {k}");
        assert_eq!(
            (got[0].first_event_at, got[0].last_event_at),
            (expected[0].first_event_at, expected[0].last_event_at)
        );
    }
    let mut reversed = events.clone();
    reversed.reverse();
    assert_eq!(footer(&totals_after(&reversed)[0]), footer(&expected[0]));
}

#[test]
fn a_redelivery_beyond_the_dedup_horizon_counts_again() {
    let rules = CountingRules {
        dedup_horizon: DAY,
        ..common::rules()
    };
    let mut shard = Shard::new(rules);
    let old = comment("c1", "a", "2026-11-01T00:00:00Z");
    assert_eq!(shard.apply(&old), Applied::Counted);
    // Event time moves three days on; the sweep forgets c1, and article a,
    // idle for a whole horizon, leaves memory for cold segment 7.
    shard.apply(&comment("c2", "b", "2026-11-04T00:00:00Z"));
    let evicted = shard.drain(NOW, true, 7).evicted;
    assert_eq!(evicted.len(), 1);
    assert_eq!(shard.apply(&old), Applied::Cold { segment: 7 });
    let (id, cold) = evicted.into_iter().next().unwrap();
    shard.rehydrate(id, cold);
    assert_eq!(
        shard.apply(&old),
        Applied::Counted,
        "outside the horizon a redelivery is a new observation"
    );
    let a = shard
        .drain(NOW, true, 8)
        .totals
        .into_iter()
        .find(|r| r.article_id == "a")
        .unwrap();
    assert_eq!(
        (a.counts[Counter::SocialComments], a.version),
        (2, 2),
        "counting went on from the evicted state"
    );
    // Within the horizon it is still remembered.
    assert_eq!(
        shard.apply(&comment("c2", "b", "2026-11-04T00:00:00Z")),
        Applied::Duplicate
    );
}

#[test]
fn unchanged_articles_get_no_new_row() {
    let mut shard = Shard::new(common::rules());
    let c = comment("c1", "a", "2026-11-01T10:00:00Z");
    shard.apply(&c);
    assert_eq!(shard.drain(NOW, true, 0).totals.len(), 1);
    shard.apply(&c); // duplicate only
    assert!(shard.drain(NOW, true, 0).totals.is_empty());
}

#[test]
fn windows_close_when_the_watermark_passes_and_late_events_add_rows() {
    let rules = CountingRules {
        window_size: HOUR,
        max_out_of_orderness: 10 * 60 * SECOND,
        ..common::rules()
    };
    let mut shard = Shard::new(rules);
    shard.apply(&comment("c1", "a", "2026-11-01T10:15:00Z"));
    shard.apply(&comment("c2", "a", "2026-11-01T10:45:00Z"));
    // Watermark 10:50 - 10 min = 10:40: the 10:00 window is still open.
    assert!(shard.drain(NOW, false, 0).engagement.is_empty());

    shard.apply(&comment("c3", "a", "2026-11-01T11:20:00Z"));
    // Watermark 11:10 passes 11:00, the end of the 10:00 window.
    let rows = shard.drain(NOW, false, 0).engagement;
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].window_start, at("2026-11-01T10:00:00Z"));
    assert_eq!(rows[0].window_end, at("2026-11-01T11:00:00Z"));
    assert_eq!(rows[0].counts[Counter::SocialComments], 2);

    // A late comment for the closed window is not dropped: it adds a row.
    shard.apply(&comment("late", "a", "2026-11-01T10:30:00Z"));
    let rows = shard.drain(NOW, false, 0).engagement;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (
            rows[0].window_start,
            rows[0].counts[Counter::SocialComments]
        ),
        (at("2026-11-01T10:00:00Z"), 1)
    );

    // Closing everything emits the open 11:00 window; sums equal totals.
    let rest = shard.drain(NOW, true, 0);
    assert_eq!(rest.engagement.len(), 1);
    assert!(
        rest.totals.is_empty(),
        "nothing changed since the last drain"
    );
}

#[test]
fn engagement_sums_equal_totals_and_sources_land_in_their_first_window() {
    let rules = CountingRules {
        window_size: HOUR,
        ..common::rules()
    };
    let mut shard = Shard::new(rules);
    let events = [
        source("s1", "a", "2026-11-01T10:00:00Z", "x.example"),
        source("s2", "a", "2026-11-01T12:00:00Z", "X.example"),
        source("s3", "a", "2026-11-01T12:30:00Z", "y.example"),
        comment("c1", "a", "2026-11-01T11:00:00Z"),
        comment("c1", "a", "2026-11-01T11:00:00Z"),
        post("p1", "a", "2026-11-01T13:00:00Z"),
    ];
    for e in &events {
        shard.apply(e);
    }
    let out = shard.drain(NOW, true, 0);
    let sum = out.engagement.iter().fold((0, 0, 0), |acc, r| {
        (
            acc.0 + r.counts[Counter::ConfirmingSources],
            acc.1 + r.counts[Counter::SocialComments],
            acc.2 + r.counts[Counter::ForumPosts],
        )
    });
    assert_eq!(sum, footer(&out.totals[0]));
    let ten = out
        .engagement
        .iter()
        .find(|r| r.window_start == at("2026-11-01T10:00:00Z"))
        .unwrap();
    assert_eq!(ten.counts[Counter::ConfirmingSources], 1);
    let twelve = out
        .engagement
        .iter()
        .find(|r| r.window_start == at("2026-11-01T12:00:00Z"))
        .unwrap();
    assert_eq!(
        twelve.counts[Counter::ConfirmingSources],
        1,
        "X.example is not new; y.example is"
    );
}

#[test]
fn a_restored_snapshot_behaves_exactly_like_the_original() {
    let mut shard = Shard::new(common::rules());
    shard.apply(&comment("c1", "a", "2026-11-01T10:00:00Z"));
    shard.apply(&source("s1", "a", "2026-11-01T10:00:00Z", "x.example"));
    shard.drain(NOW, false, 0);
    let mut restored = round_trip(&shard);
    for s in [&mut shard, &mut restored] {
        assert_eq!(
            s.apply(&comment("c1", "a", "2026-11-01T10:00:00Z")),
            Applied::Duplicate
        );
        s.apply(&source("s2", "a", "2026-11-01T10:00:00Z", "X.EXAMPLE"));
        s.apply(&comment("c2", "a", "2026-11-01T10:01:00Z"));
    }
    let a = shard.drain(NOW, true, 0);
    let b = restored.drain(NOW, true, 0);
    assert_eq!(a.totals, b.totals);
    assert_eq!(a.engagement, b.engagement);
    assert_eq!(a.totals[0].version, 2);
}

#[test]
fn idle_articles_leave_memory_and_come_back_exactly() {
    let rules = CountingRules {
        dedup_horizon: DAY,
        window_size: HOUR,
        ..common::rules()
    };
    let mut shard = Shard::new(rules);
    shard.apply(&published("p", "old", "2026-11-01T09:00:00Z", "Old story"));
    shard.apply(&source("s1", "old", "2026-11-01T10:00:00Z", "x.example"));
    shard.apply(&comment("c1", "old", "2026-11-01T10:00:00Z"));
    let first = shard.drain(NOW, false, 1);
    assert!(
        first.evicted.is_empty(),
        "still inside the horizon, and its windows are open"
    );

    // Two days later the watermark closes old's windows and its dedup
    // memory expires, in the same drain.
    shard.apply(&comment("n1", "new", "2026-11-03T12:00:00Z"));
    let out = shard.drain(NOW, false, 3);
    let evicted: Vec<&str> = out.evicted.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(
        evicted,
        ["old"],
        "only the idle article leaves; new has open windows"
    );
    assert_eq!((shard.article_count(), shard.cold_article_count()), (1, 1));

    // It survives a snapshot while cold.
    let mut shard = round_trip(&shard);
    let again = source("s2", "old", "2026-11-03T21:00:00Z", "X.EXAMPLE");
    assert_eq!(shard.apply(&again), Applied::Cold { segment: 3 });
    let (id, cold) = out.evicted.into_iter().next().unwrap();
    shard.rehydrate(id, cold);
    assert_eq!(shard.apply(&again), Applied::Counted);
    shard.apply(&comment("c2", "old", "2026-11-03T21:00:00Z"));
    let old = shard
        .drain(NOW, true, 4)
        .totals
        .into_iter()
        .find(|r| r.article_id == "old")
        .unwrap();
    assert_eq!(old.title.as_deref(), Some("Old story"));
    assert_eq!(
        footer(&old),
        (1, 2, 0),
        "X.EXAMPLE is the same source; c2 adds to c1"
    );
    assert_eq!(old.version, 2, "versions go on from the evicted state");
    assert_eq!(old.first_event_at, at("2026-11-01T09:00:00Z"));
    assert_eq!(shard.cold_article_count(), 0);
}
